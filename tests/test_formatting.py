"""Locales: a merchant's setting becomes one the product (and its package) has data for."""
from __future__ import annotations

import pytest

from chalicelib.formatting import DEFAULT_LOCALE, SUPPORTED_LOCALES, date, money, supported_locale


@pytest.mark.parametrize("setting, locale", [
    ("de", "de"), ("en-GB", "en_GB"), ("pt_br", "pt_BR"), (" fr-CA ", "fr_CA"),
    ("de-LU", "de"), ("xx", DEFAULT_LOCALE), ("", DEFAULT_LOCALE), (None, DEFAULT_LOCALE),
    (42, DEFAULT_LOCALE), ("../../etc", DEFAULT_LOCALE), ("zh_CN", DEFAULT_LOCALE),
])
def test_a_setting_becomes_a_supported_locale(setting, locale):
    assert supported_locale(setting) == locale


def test_every_supported_locale_formats_money_and_dates():
    for locale in SUPPORTED_LOCALES:
        assert "49" in money(4900, "eur", locale) and "2026" in date("2026-03-12T10:00:00Z", locale)
    assert money(4900, "eur", "de_DE") == "49,00\xa0€"
    assert money(150000, "jpy", "en_GB") == "JP¥150,000"  # outside Japan, which yen


def test_money_converts_by_the_stored_exponent_not_cldr_digits():
    # Stored amounts are ISO 4217 minor units: the lek has hundredths, CLDR shows none.
    assert money(100000, "all") == "ALL1,000"
    assert money(100050, "all") == "ALL1,000.50"  # a fraction is shown, never rounded away
    assert money(1000, "isk") == "ISK1,000"  # ISO: no decimals (Stripe's 100000)
    assert money(1000, "kwd", "de_DE") == "1,000\xa0KWD"
    assert money(4900, "EUR") == "€49.00" and money(None, "eur") == "" and money(4900, None) == ""
    assert money(-150, "usd") == "-$1.50"
