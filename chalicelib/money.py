"""The project's one exponent per currency, and exact conversions into and out of it.

Every amount the project stores (facts, records, the merchant API) is an integer count of
the currency's ISO 4217 minor unit: cents for USD and EUR, fils for KWD (3 decimals),
whole units for JPY, ISK and UGX (0 decimals), fillér for HUF (2 decimals, though no coin
exists). ISO's minor unit is what most processors use, and it is a published standard, so
the stored number does not depend on which processor reported a payment.

Each processor adapter converts its own convention into this exponent at the edge (Stripe:
``chalicelib.processors.stripe.currencies``; a processor that sends decimal strings, as
PayPal does: ``from_decimal_string``). Display converts stored → major with the same table
(``to_major``); Babel only places the symbol and separators (``chalicelib.formatting``).
Never use Babel's CLDR digits for amounts: CLDR says ALL, RSD, LBP, ISK… have 0 display
digits, while ISO (and Stripe) count ALL in hundredths, which showed amounts 100x too large.

Conversions are exact: a value that cannot be represented in the target exponent raises
ValueError, never a silently rounded number.
"""
from __future__ import annotations

import re
from decimal import Decimal

# ISO 4217 minor units ("CcyMnrUnts"), written by hand from ISO 4217 List One as published
# by its maintenance agency, SIX (https://www.six-group.com/en/products-services/
# financial-information/data-standards.html), current list of 2025, and checked code by
# code. Not derived from Babel/CLDR, whose display digits differ for ~20 currencies.
# Codes whose minor unit is "N.A." (precious metals XAU XAG XPD XPT, bond units XBA-XBD,
# XDR, XSU, XUA, testing XTS, no-currency XXX) are not money anyone pays in: not listed.
ISO_4217_EXPONENTS: dict[str, int] = {
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2,
    "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BIF": 0, "BMD": 2,
    "BND": 2, "BOB": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2,
    "CAD": 2, "CDF": 2, "CHF": 2, "CLP": 0, "CNY": 2, "COP": 2, "CRC": 2, "CUP": 2,
    "CVE": 2, "CZK": 2, "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2,
    "ETB": 2, "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2,
    "GMD": 2, "GNF": 0, "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2,
    "IDR": 2, "ILS": 2, "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3,
    "JPY": 0, "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3,
    "KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3,
    "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2,
    "MUR": 2, "MVR": 2, "MWK": 2, "MXN": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2,
    "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2,
    "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2,
    "RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2,
    "SLE": 2, "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2,
    "THB": 2, "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2,
    "TZS": 2, "UAH": 2, "UGX": 0, "USD": 2, "UYU": 2, "UZS": 2, "VED": 2, "VES": 2,
    "VND": 0, "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XCG": 2, "XOF": 0, "XPF": 0,
    "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
    # Fund codes and units of account of List One.
    "BOV": 2, "CHE": 2, "CHW": 2, "CLF": 4, "COU": 2, "MXV": 2, "USN": 2, "UYI": 0,
    "UYW": 4, "XAD": 2,
    # Withdrawn (ISO 4217 List Three) but still listed by Stripe, or present in payments made
    # before their withdrawal: their minor unit when they were withdrawn.
    "ANG": 2, "BYR": 0, "CUC": 2, "EEK": 2, "HRK": 2, "LTL": 2, "LVL": 2, "MRO": 2,
    "SLL": 2, "STD": 2, "VEF": 2, "ZMK": 2, "ZWL": 2,
}

# A code the table does not know (a currency created after this table) is taken as
# two-decimal: ISO's and every processor's default. Add new codes to the table.
DEFAULT_EXPONENT = 2

# What a processor's decimal string may look like: ASCII digits, an optional sign and
# fraction, no exponent, no grouping, no spaces (PayPal's documented amount grammar).
_DECIMAL_STRING = re.compile(r"-?(?:[0-9]+|[0-9]*\.[0-9]+)")
_MAX_DECIMAL_STRING = 32


def exponent(currency: str) -> int:
    """The stored exponent of ``currency`` (any case)."""
    return ISO_4217_EXPONENTS.get(currency.upper(), DEFAULT_EXPONENT)


def rescale(amount: int, from_exponent: int, to_exponent: int) -> int:
    """``amount`` counted in 10**-from_exponent units, counted in 10**-to_exponent units;
    ValueError when that is not a whole number (it would have to be rounded)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"an amount is an integer, not {type(amount).__name__}")
    if to_exponent >= from_exponent:
        return amount * 10 ** (to_exponent - from_exponent)
    quotient, remainder = divmod(amount, 10 ** (from_exponent - to_exponent))
    if remainder:
        raise ValueError(f"{amount} (exponent {from_exponent}) has a fraction that exponent "
                         f"{to_exponent} cannot hold")
    return quotient


def to_major(amount: int, currency: str) -> Decimal:
    """A stored amount in major units, exactly: ``1050, "eur"`` → ``Decimal("10.50")``."""
    return Decimal(int(amount)).scaleb(-exponent(currency))


def from_decimal_string(text: str, currency: str) -> int:
    """A processor's decimal string in major units (``"1000"``, ``"10.50"``) as a stored
    amount: ``from_decimal_string("1000", "HUF") == 100000``. ValueError for anything but
    a plain decimal number, and for a non-zero digit beyond the currency's stored exponent
    (``"10.5"`` JPY): never rounded. Trailing zeros are the same number (``"10.00"`` JPY
    is 10)."""
    if not isinstance(text, str) or len(text) > _MAX_DECIMAL_STRING or not _DECIMAL_STRING.fullmatch(text):
        raise ValueError(f"not a decimal amount: {text!r:.40}")
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("-").partition(".")
    digits = exponent(currency)
    if fraction[digits:].strip("0"):
        raise ValueError(f"{text} {currency.upper()} has more decimals than its {digits}")
    # Integer arithmetic: Decimal would round past its context's 28 digits.
    amount = int(whole or "0") * 10 ** digits + int(fraction[:digits].ljust(digits, "0") or "0")
    return -amount if negative else amount
