"""Money and dates for people: Babel, minor units → major by the currency's digits, UTC.

Babel is imported on first use (Chalice zips ship no .pyc; cold start matters).
"""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

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


def currency_digits(currency: str) -> int:
    from babel.numbers import get_currency_precision

    return get_currency_precision(currency.upper())


def to_major(amount: int, currency: str) -> Decimal:
    return Decimal(int(amount)).scaleb(-currency_digits(currency))


def money(amount: int | None, currency: str | None, locale: str = DEFAULT_LOCALE) -> str:
    """``1500, "eur"`` → ``€15.00``; ``1500, "jpy"`` → ``¥1,500``. Empty when unknown."""
    if amount is None or not currency:
        return ""
    from babel.numbers import format_currency

    code = currency.upper()
    digits = currency_digits(code)
    return format_currency(Decimal(int(amount)).scaleb(-digits), code, locale=locale,
                           currency_digits=True)


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


def date(value, locale: str = DEFAULT_LOCALE) -> str:
    """An ISO time (or epoch) as a UTC calendar date, e.g. ``12 Mar 2026``."""
    parsed = _parse(value)
    if parsed is None:
        return ""
    from babel.dates import format_date

    return format_date(parsed.date(), format="medium", locale=locale)


def iso_date(value) -> str:
    """The UTC date as ``YYYY-MM-DD`` (for ``<time datetime>``)."""
    parsed = _parse(value)
    return parsed.date().isoformat() if parsed else ""


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
