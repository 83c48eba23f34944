"""Reading PayPal's values: times in every form PayPal sends, money as decimal strings.

Times: RFC 3339 with ``Z`` or an offset (``2018-08-15T12:13:29-07:00``), fractions of a
second of any length, a zone name instead of an offset in older shapes (``PDT``,
``America/Los_Angeles``), dates and times without a zone (dispute due dates: taken as
UTC), the classic ``HH:MM:SS Mon DD, YYYY PDT``, and epoch milliseconds (legacy risk
disputes). Anything else, or a date no calendar has (the simulator sends
``2018-19-12T22:20:32.000Z``), is None: never an exception.

Money: ``{"value", "currency_code"}`` (v2), ``{"total", "currency"}`` (v1), or a value
whose currency is given elsewhere (legacy agreements' ``plan.curr_code``), converted by
``chalicelib.money.from_decimal_string`` (PayPal takes no decimals for JPY, HUF and TWD:
``"1000"`` HUF is 1000 forints, stored as 100000 fillér).
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from chalicelib import money
from chalicelib.observability import logger

MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,12}))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?|[A-Za-z][A-Za-z0-9_/+-]{0,40})?")
_CLASSIC = re.compile(r"(\d{1,2}):(\d{2}):(\d{2}) ([A-Za-z]{3})\.? (\d{1,2}), (\d{4})"
                      r"(?: ([A-Za-z][A-Za-z0-9_/+-]{0,40}))?")
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# The zone abbreviations PayPal's older payloads use (its own time is Pacific).
_ABBREVIATIONS = {"utc": 0, "gmt": 0, "ut": 0, "z": 0, "pst": -8, "pdt": -7, "mst": -7,
                  "mdt": -6, "cst": -6, "cdt": -5, "est": -5, "edt": -4}


def _zone(name: str | None):
    if not name or name in ("Z", "z"):
        return UTC
    if name[0] in "+-":
        digits = name[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            return None
        sign = -1 if name[0] == "-" else 1
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    offset = _ABBREVIATIONS.get(name.lower())
    if offset is not None:
        return timezone(timedelta(hours=offset))
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return None


def _epoch(dt: datetime) -> int | None:
    seconds = int(dt.timestamp())
    return seconds if 0 <= seconds <= MAX_TIME else None


def parse_time(value) -> int | None:
    """Epoch seconds of a PayPal time, or None (see the module)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = int(value / 1000) if value > 10**11 else int(value)
        return seconds if 0 <= seconds <= MAX_TIME else None
    if not isinstance(value, str) or not 0 < len(value) <= 80:
        return None
    text = value.strip()
    try:
        match = _ISO.fullmatch(text)
        if match:
            year, month, day, hour, minute, second, fraction, zone = match.groups()
            tz = _zone(zone)
            if tz is None:
                return None
            micro = int((fraction or "0")[:6].ljust(6, "0"))
            dt = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                          int(second or 0), micro, tzinfo=tz)
            return _epoch(dt)
        match = _CLASSIC.fullmatch(text)
        if match:
            hour, minute, second, month_name, day, year, zone = match.groups()
            month = _MONTHS.get(month_name.lower())
            tz = _zone(zone)
            if month is None or tz is None:
                return None
            return _epoch(datetime(int(year), month, int(day), int(hour), int(minute),
                                   int(second), tzinfo=tz))
    except (ValueError, OverflowError):  # a date no calendar has
        return None
    return None


def currency(value) -> str | None:
    if isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha():
        return value.lower()
    return None


def amount(value: dict | None, currency_code: str | None = None) -> tuple[int | None, str | None]:
    """``(stored amount, currency)`` of a PayPal money object; the amount is None when it
    is missing or not an exact decimal of the currency. Signs are kept (callers decide
    what a negative refund total means)."""
    if not isinstance(value, dict):
        return None, currency(currency_code)
    code = currency(value.get("currency_code") or value.get("currency")) or currency(currency_code)
    text = value.get("value") if "value" in value else value.get("total")
    if code is None or not isinstance(text, str):
        return None, code
    try:
        return money.from_decimal_string(text.strip(), code), code
    except ValueError:
        logger.warning("a PayPal amount that is not an exact decimal of its currency",
                       extra={"currency": code, "value": text[:40]})
        return None, code
