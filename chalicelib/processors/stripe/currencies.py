"""Stripe's unit for amounts, and the conversion to and from the project's stored exponent.

Stripe counts every amount in an integer "smallest unit" of its own, which is not always
ISO 4217's minor unit (``chalicelib.money``, what the project stores). From Stripe's
"Supported currencies" page (https://docs.stripe.com/currencies):

- Unless noted, a currency is two-decimal: 1000 = 10.00.
- Zero-decimal (#zero-decimal): BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF
  XPF; 500 = ¥500. MGA is zero-decimal at Stripe but two-decimal in ISO 4217.
- Three-decimal (#three-decimal): BHD JOD KWD OMR TND; 5124 = 5.124 KWD. For "compatibility
  with Stripe's payments partners" the API requires the last digit to be 0 (round to the
  nearest ten) in payment intents, refunds and disputes.
- Special cases (#special-cases):
  - ISK became zero-decimal at the card networks (14 April 2023) but "remains a
    two-decimal currency in the Stripe API": 100 = 1 króna, and amounts must be evenly
    divisible by 100 (ISO: 0 decimals).
  - UGX: although listed among the zero-decimal currencies, backwards compatibility makes
    the API represent it "as a two-decimal value, where the decimal amount is always 00":
    to charge 5 UGX, send 500 (ISO: 0 decimals). Stripe answers anything else with
    ``invalid_charge_amount_no_decimal_compatible`` ("Currency UGX has become effectively
    zero-decimal and charged amounts must be evenly divisible by 100").
  - HUF and TWD are two-decimal for charges (and refunds); Stripe treats them as
    zero-decimal only for payouts, which this product does not make. Same as ISO.
"""
from __future__ import annotations

from chalicelib import money

ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                          "vnd", "vuv", "xaf", "xof", "xpf"})
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
# Two-decimal in the API, whole units only: the API unit of 1/100 that must stay 00.
WHOLE_UNITS_IN_HUNDREDTHS = frozenset({"isk", "ugx"})
DEFAULT_API_EXPONENT = 2


def api_exponent(currency: str) -> int:
    """How many decimals Stripe's integer amounts of ``currency`` carry."""
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return DEFAULT_API_EXPONENT


def _api_step(code: str) -> int:
    """The API amounts Stripe accepts in a request are multiples of this."""
    if code in WHOLE_UNITS_IN_HUNDREDTHS:
        return 100
    if code in THREE_DECIMAL:
        return 10
    return 1


def to_stored(amount: int, currency: str) -> int:
    """A Stripe amount as the project stores it: ISK 100000 (Stripe) → 1000; MGA 1000 →
    100000; JPY, USD, KWD, HUF unchanged. ValueError when the stored exponent cannot hold
    it (fractional krónur from before April 2023)."""
    return money.rescale(amount, api_exponent(currency), money.exponent(currency))


def from_stored(amount: int, currency: str) -> int:
    """A stored amount as Stripe's API wants it (a refund's amount, say): ISK 1000 → 100000.
    ValueError when Stripe cannot take it exactly: a fraction Stripe's unit cannot hold
    (MGA 10.50), or an amount Stripe refuses (KWD 5.124: the last digit must be 0)."""
    code = currency.lower()
    api_amount = money.rescale(amount, money.exponent(code), api_exponent(code))
    step = _api_step(code)
    if api_amount % step:
        raise ValueError(f"Stripe takes {code.upper()} amounts only in multiples of {step} "
                         f"of its unit, not {api_amount}")
    return api_amount
