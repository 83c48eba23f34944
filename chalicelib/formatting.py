"""Money and dates for people: Babel for symbols, separators and dates; UTC.

A stored amount becomes major units by the project's exponent table (chalicelib.money), not
by Babel's CLDR display digits, which differ from the stored minor unit for ALL, RSD, ISK…
Babel is imported on first use (Chalice zips ship no .pyc; cold start matters).
"""
from __future__ import annotations

from copy import copy
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

from chalicelib.money import exponent, to_major

DEFAULT_LOCALE = "en"
# The locales pages, mail and receipts can be shown in (a merchant's portal setting
# ``locale``). The deployment package keeps Babel's data for these only (infra/package.sh).
SUPPORTED_LOCALES = (
    "en", "en_US", "en_GB", "en_AU", "en_CA", "en_IE", "en_NZ",
    "de", "de_DE", "de_AT", "de_CH", "fr", "fr_FR", "fr_BE", "fr_CA", "fr_CH",
    "es", "es_ES", "es_MX", "it", "it_IT", "it_CH", "nl", "nl_NL", "nl_BE",
    "pl", "pl_PL", "pt", "pt_PT", "pt_BR",
)


def supported_locale(value: object) -> str:
    """A merchant's locale setting as one the product has data for: ``en-GB`` is
    ``en_GB``; an unknown territory falls back to its language, anything else to
    DEFAULT_LOCALE (Babel would raise on a locale it has no data for)."""
    if not isinstance(value, str):
        return DEFAULT_LOCALE
    parts = value.strip().replace("-", "_").split("_")
    language = parts[0].lower()
    if len(parts) > 1 and f"{language}_{parts[1].upper()}" in SUPPORTED_LOCALES:
        return f"{language}_{parts[1].upper()}"
    return language if language in SUPPORTED_LOCALES else DEFAULT_LOCALE


def _shown_decimals(major: Decimal, code: str) -> int:
    """CLDR's usual decimals for the currency (``ALL 1,000``, ``€10.00``), unless the amount
    has a fraction beyond them: then every decimal of the stored minor unit
    (``ALL 1,000.50``). A non-zero fraction is never hidden or rounded away."""
    from babel.numbers import get_currency_precision

    usual = get_currency_precision(code)
    if major == major.quantize(Decimal(1).scaleb(-usual), rounding=ROUND_DOWN):
        return usual
    return max(usual, exponent(code))


def money(amount: int | None, currency: str | None, locale: str = DEFAULT_LOCALE) -> str:
    """A stored amount for people: ``1500, "eur"`` → ``€15.00``; ``1500, "jpy"`` →
    ``¥1,500``; ``1000, "isk"`` → ``ISK1,000``. Empty when unknown."""
    if amount is None or not currency:
        return ""
    from babel import Locale

    code = currency.upper()
    major = to_major(amount, code)
    babel_locale = Locale.parse(locale)
    # The locale's own currency pattern (symbol, grouping, placement) with the decimals
    # decided above: Babel would otherwise round to CLDR's digits.
    pattern = copy(babel_locale.currency_formats["standard"])
    decimals = _shown_decimals(major, code)
    pattern.frac_prec = (decimals, decimals)
    return pattern.apply(major, babel_locale, currency=code, currency_digits=False)


def _parse(value: str | int | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    text = str(value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _in_zone(parsed: datetime, time_zone: str | None) -> datetime:
    """``parsed`` in the IANA zone ``time_zone`` (a moment the account chose as a local
    day, such as a pause's resume date); UTC when none is given or it is unknown."""
    if not time_zone:
        return parsed
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return parsed.astimezone(ZoneInfo(time_zone))
    except (ZoneInfoNotFoundError, ValueError):
        return parsed


def date(value, locale: str = DEFAULT_LOCALE, time_zone: str | None = None) -> str:
    """An ISO time (or epoch) as a calendar date, e.g. ``12 Mar 2026``: UTC's, or the
    zone's when ``time_zone`` is given."""
    parsed = _parse(value)
    if parsed is None:
        return ""
    from babel.dates import format_date

    return format_date(_in_zone(parsed, time_zone).date(), format="medium", locale=locale)


def iso_date(value, time_zone: str | None = None) -> str:
    """The date as ``YYYY-MM-DD`` (for ``<time datetime>``): UTC's, or the zone's."""
    parsed = _parse(value)
    return _in_zone(parsed, time_zone).date().isoformat() if parsed else ""


def interval(unit: str | None, count: int | None = 1) -> str:
    if not unit:
        return ""
    count = count or 1
    if count == 1:
        return {"day": "day", "week": "week", "month": "month", "year": "year"}.get(unit, unit)
    return f"{count} {unit}s"


def card(card: dict | None) -> str:
    """``Visa •••• 4242``; empty when unknown."""
    if not card or not card.get("last4"):
        return ""
    brand = (card.get("brand") or "card").replace("_", " ")
    brand = {"amex": "American Express", "mastercard": "Mastercard", "visa": "Visa",
             "discover": "Discover", "diners": "Diners Club", "jcb": "JCB",
             "unionpay": "UnionPay"}.get(brand.lower(), brand.title())
    return f"{brand} •••• {card['last4']}"
