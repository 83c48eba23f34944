"""Amounts from Stripe, stored in ISO 4217 minor units, shown in major units.

Stripe's own list of currencies and its decimal rules are restated here from its
"Supported currencies" page (https://docs.stripe.com/currencies), independently of
chalicelib.processors.stripe.currencies, so that the adapter is checked against the
document rather than against itself.
"""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from app_fixtures import app_client  # noqa: F401
from babel.numbers import format_currency
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    customer_id_of,
    download_pdf,
    make_shop,
    portal_settings,
    sign_in,
    text,
)
from stripe_events import Stream

from chalicelib import money as stored
from chalicelib.formatting import SUPPORTED_LOCALES, money
from chalicelib.processors.stripe import currencies as stripe_currencies
from chalicelib.processors.stripe import translate


def _codes(text: str) -> list[str]:
    return text.split()


# Stripe's presentment currencies (docs.stripe.com/currencies, "Supported presentment
# currencies"), plus codes Stripe listed before they were withdrawn (HRK, EEK, LTL, LVL,
# MRO, VEF, SVC) whose payments may still be read.
STRIPE_CURRENCIES = _codes("""
usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp
byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip
gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt
lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr
nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sll sos
srd std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xcg xof xpf
yer zar zmw
hrk eek ltl lvl mro vef svc
""")
# "Zero-decimal currencies" (UGX is listed there too, but see the special cases below).
STRIPE_ZERO_DECIMAL = set(_codes("bif clp djf gnf jpy kmf krw mga pyg rwf vnd vuv xaf xof xpf"))
# "Three-decimal currencies": the last digit must be 0.
STRIPE_THREE_DECIMAL = set(_codes("bhd jod kwd omr tnd"))
# "Special cases": ISK and UGX are zero-decimal in fact but two-decimal in the API (the two
# decimals always 00); HUF and TWD are two-decimal for charges, zero-decimal for payouts.
STRIPE_TWO_DECIMAL_WHOLE = {"isk", "ugx"}

# ISO 4217's exceptions to two decimals, restated: the table must agree.
ISO_ZERO = set(_codes("BIF BYR CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"))
ISO_THREE = set(_codes("BHD IQD JOD KWD LYD OMR TND"))
ISO_FOUR = {"CLF", "UYW"}
# The currencies issue 9 found shown 100x too large (CLDR shows them without decimals).
FOUND_100X = _codes("isk all lbp rsd mmk yer sos lak afn sll")


def stripe_exponent(code: str) -> int:
    return 0 if code in STRIPE_ZERO_DECIMAL else 3 if code in STRIPE_THREE_DECIMAL else 2


def shown_number(shown: str) -> Decimal:
    """The number in an en-formatted amount (``ISK1,000``, ``KWD1.000``, ``¥1,000``)."""
    return Decimal(re.search(r"[0-9][0-9,]*(?:\.[0-9]+)?", shown).group().replace(",", ""))


# --- the tables -----------------------------------------------------------------------------

def test_every_stripe_currency_is_in_the_stored_table_and_the_table_is_iso():
    missing = [c for c in STRIPE_CURRENCIES if c.upper() not in stored.ISO_4217_EXPONENTS]
    assert missing == []
    for code, digits in stored.ISO_4217_EXPONENTS.items():
        expected = 0 if code in ISO_ZERO else 3 if code in ISO_THREE else 4 if code in ISO_FOUR else 2
        assert digits == expected, code


def test_the_adapter_reads_stripes_units_as_documented():
    for code in STRIPE_CURRENCIES:
        assert stripe_currencies.api_exponent(code) == stripe_exponent(code), code
        assert stripe_currencies.api_exponent(code.upper()) == stripe_exponent(code), code


# --- Stripe → stored → shown, every currency --------------------------------------------------

@pytest.mark.parametrize("code", STRIPE_CURRENCIES)
def test_a_thousand_units_from_stripe_show_as_a_thousand(code):
    from_stripe = 1000 * 10 ** stripe_exponent(code)
    amount = stripe_currencies.to_stored(from_stripe, code)
    assert amount == 1000 * 10 ** stored.exponent(code)
    shown = money(amount, code)
    # Exactly what Babel makes of 1,000 major units: its symbol, separators and CLDR decimals.
    assert shown == format_currency(Decimal(1000), code.upper(), locale="en"), shown
    assert shown_number(shown) == 1000
    # And back, as a refund of it would be sent.
    assert stripe_currencies.from_stored(amount, code) == from_stripe


@pytest.mark.parametrize("code", [c for c in STRIPE_CURRENCIES
                                  if stripe_exponent(c) >= 2 and c not in STRIPE_TWO_DECIMAL_WHOLE])
def test_a_fraction_from_stripe_is_shown_not_rounded(code):
    from_stripe = 100050 * 10 ** (stripe_exponent(code) - 2)  # 1,000.50
    shown = money(stripe_currencies.to_stored(from_stripe, code), code)
    assert shown_number(shown) == Decimal("1000.50"), shown
    assert "1,000.50" in shown, shown


@pytest.mark.parametrize("code", FOUND_100X)
def test_the_currencies_found_100x_too_large(code):
    amount = stripe_currencies.to_stored(100000, code)  # 1,000 in Stripe's two-decimal unit
    assert money(amount, code) == f"{code.upper()}1,000"


def test_examples_by_hand():
    assert money(stripe_currencies.to_stored(100000, "isk"), "isk") == "ISK1,000"
    assert money(stripe_currencies.to_stored(1000, "jpy"), "jpy") == "¥1,000"
    assert money(stripe_currencies.to_stored(1000, "kwd"), "kwd") == "KWD1.000"
    assert money(stripe_currencies.to_stored(1000, "kwd"), "kwd", "de_DE") == "1,000\xa0KWD"
    assert money(stripe_currencies.to_stored(1000, "mga"), "mga") == "MGA1,000"
    assert money(stripe_currencies.to_stored(500000, "ugx"), "ugx") == "UGX5,000"
    assert money(stripe_currencies.to_stored(100050, "huf"), "huf", "de_DE") == "1.000,50\xa0HUF"


def test_every_locale_shows_a_fraction_that_cldr_would_drop():
    from babel.numbers import get_decimal_symbol

    for locale in SUPPORTED_LOCALES:
        # ALL 1,000.50: CLDR shows the lek without decimals, the stored hundredths are kept.
        assert f"{get_decimal_symbol(locale)}50" in money(100050, "all", locale), locale
        assert money(100000, "all", locale) == format_currency(1000, "ALL", locale=locale)
    assert money(100050, "all", "de_DE") == "1.000,50\xa0ALL"
    assert money(100000, "all", "de_DE") == "1.000\xa0ALL"


# --- the same amount from a decimal-string processor (PayPal) -------------------------------

@pytest.mark.parametrize("code, stripe_amount, decimal", [
    ("HUF", 100000, "1000"), ("TWD", 100000, "1000"), ("JPY", 1000, "1000"),
    ("ISK", 100000, "1000"), ("KWD", 1230, "1.23"), ("EUR", 1050, "10.50"), ("MGA", 1000, "1000"),
])
def test_stripe_and_a_decimal_string_give_the_same_stored_amount(code, stripe_amount, decimal):
    assert stripe_currencies.to_stored(stripe_amount, code.lower()) == \
        stored.from_decimal_string(decimal, code)


def test_decimal_strings_are_refused_unless_plain_and_exact():
    assert stored.from_decimal_string("1000", "HUF") == 100000
    assert stored.from_decimal_string("10.00", "JPY") == 10  # the same number
    assert stored.from_decimal_string(".5", "EUR") == 50
    assert stored.from_decimal_string("12345678901234567890123.45", "USD") == \
        1234567890123456789012345  # no float, no Decimal context rounding
    for bad, code in (("10.5", "JPY"), ("1.001", "EUR"), ("1.0001", "KWD"), ("1e3", "EUR"),
                      ("NaN", "EUR"), ("Infinity", "EUR"), (" 1", "EUR"), ("1,000", "EUR"),
                      ("+1", "EUR"), ("10.", "EUR"), ("", "EUR"), ("١٢", "EUR"), ("1" * 40, "EUR"),
                      (None, "EUR"), (10, "EUR"), ("0x10", "EUR"), ("1_000", "EUR")):
        with pytest.raises(ValueError):
            stored.from_decimal_string(bad, code)


# --- amounts that cannot be converted exactly ----------------------------------------------

def test_an_amount_the_other_side_cannot_hold_raises_rather_than_rounds():
    with pytest.raises(ValueError):
        stripe_currencies.to_stored(4010, "isk")  # ISK 40.10, possible before April 2023
    assert stripe_currencies.from_stored(1000, "isk") == 100000
    assert stripe_currencies.from_stored(5, "ugx") == 500
    assert stripe_currencies.from_stored(5120, "kwd") == 5120
    with pytest.raises(ValueError):
        stripe_currencies.from_stored(5124, "kwd")  # Stripe wants the last digit 0
    with pytest.raises(ValueError):
        stripe_currencies.from_stored(100050, "mga")  # 1,000.50 ariary: Stripe counts whole ariary
    assert stripe_currencies.from_stored(100000, "mga") == 1000
    with pytest.raises(ValueError):
        stored.rescale(True, 2, 0)


# --- the Stripe adapter reads every amount in Stripe's unit ---------------------------------

def _translated(event: dict):
    return translate.translate(event).events


def test_every_amount_of_an_isk_invoice_refund_and_dispute_is_converted():
    s = Stream("isk")
    cus = s.customer("isk@example.com", "Guðrún")
    sub = s.subscription(cus, 250000, currency="isk")
    s.invoice(cus, sub, 250000, currency="isk")
    s.events[-1]["data"]["object"]["total_taxes"] = [{"amount": 50000}]
    pi, charge = s.one_time(cus, 490000, currency="isk", via_checkout=True)
    s.events[-2]["data"]["object"]["total_details"] = {"amount_tax": 90000}
    s.refund(cus, pi, charge, 100000, currency="isk")
    s.charge_refunded(cus, pi, charge, 490000, 100000, currency="isk")
    s.dispute(pi, charge, 390000, currency="isk")
    subscription, invoice, checkout, intent, refund, charged, dispute = (
        _translated(e)[-1] for e in s.events[1:])
    assert (subscription.amount, subscription.currency) == (2500, "isk")
    assert (invoice.amount, invoice.tax, invoice.lines[0].amount) == (2500, 500, 2500)
    assert (checkout.amount, checkout.tax) == (4900, 900)
    assert intent.amount == 4900
    assert refund.amount == 1000
    assert charged.amount_refunded == 1000
    assert dispute.amount == 3900


def test_an_amount_without_its_currency_or_not_representable_is_unknown_not_wrong():
    s = Stream("iskf")
    cus = s.customer("f@example.com", "F")
    s.one_time(cus, 4010, currency="isk")  # ISK 40.10
    s.one_time(cus, 4900, currency=None)
    fractional, no_currency = (_translated(e)[-1] for e in s.events[1:])
    assert fractional.amount is None and fractional.currency == "isk"
    assert no_currency.amount is None


# --- through the app: a webhook, the merchant API, the portal and the PDF ---------------------

@pytest.fixture
def shop(app_client, stack):  # noqa: F811
    return make_shop(app_client, stack)


@pytest.mark.usefixtures("portal_settings")
def test_an_isk_payment_shows_its_amount_everywhere(shop, app_client, sent_emails):  # noqa: F811
    s = Stream("iskapp")
    email = "gudrun@example.com"
    cus = s.customer(email, "Guðrún Jónsdóttir")
    sub = s.subscription(cus, 250000, currency="isk", nickname="Sundlaug")  # 2,500 kr a month
    s.invoice(cus, sub, 250000, currency="isk")
    pi, charge = s.one_time(cus, 490000, currency="isk", email=email)  # 4,900 kr
    s.refund(cus, pi, charge, 100000, currency="isk")  # 1,000 kr back
    shop.merchant.deliver_until_applied(s.events)

    cid = customer_id_of(shop, email)
    record = shop.merchant.get_json(f"/api/v1/customers/{cid}")
    payment = next(p for p in record["payments"] if p["one_time"])
    assert (payment["amount"], payment["currency"], payment["refunded"]) == (4900, "isk", 1000)
    assert record["subscriptions"][0]["amount"] == 2500
    assert record["stats"]["lifetime_value"] == {"isk": 2500 + 4900 - 1000}

    c = PortalClient(app_client.http)
    sign_in(c, shop, email, sent_emails)
    overview = text(c.get(f"{shop.root}/"))
    assert "ISK2,500 / month" in overview and "ISK4,900" in overview
    receipt = text(c.get(f"{shop.root}/receipts/{payment['id']}"))
    assert "ISK4,900" in receipt and "ISK3,900" in receipt
    pdf = download_pdf(c.get(f"{shop.root}/receipts/{payment['id']}/pdf").headers["Location"])
    assert "ISK4,900" in pdf and "−ISK1,000" in pdf and "ISK3,900" in pdf
    for page in (overview, receipt, pdf):
        assert "490,000" not in page and "249,000" not in page and "100,000" not in page
