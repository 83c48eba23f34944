"""When a notice goes out: the account's local sending hour on the customer's date.

Every notice is tied to a *local date* in the account's time zone (the merchant's
customers' dates: "your card expires on 31 March"), and goes out at the account's sending
hour on that date. Dates are calendar dates in that zone, so a daylight-saving change
moves the UTC instant, never the date or the hour the customer sees.

Two local hours need a decision, made here once:
- a hour that does not exist (clocks jump 02:00 → 03:00 in Europe/Berlin on the last
  Sunday of March): the notice goes out at the same distance after the jump as the hour
  was after 02:00, i.e. 02:30 → 03:30 (what ``fold=0`` means in PEP 495);
- a hour that happens twice (clocks go back 03:00 → 02:00 on the last Sunday of October):
  the first of the two (``fold=0``), so a notice never waits an extra hour.
"""
from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DEFAULT_TIME_ZONE = "UTC"
DEFAULT_HOUR = 10
# Card expiry notices: this many days before the day the card stops working, and the
# day it has stopped ("expired").
CARD_NOTICE_DAYS = (30, 7)
DEFAULT_RENEWAL_DAYS = 7
RENEWAL_DAYS_MAX = 60
INSTALMENT_DAYS_MAX = 60
# No zone is ahead of UTC by more than 14 hours (Pacific/Kiritimati): a local date cannot
# begin before its UTC midnight minus this.
_MAX_UTC_OFFSET = timedelta(hours=14)


class BadTimeZone(ValueError):
    pass


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def time_zone(name: object) -> str:
    """An IANA zone name as the setting keeps it; raises BadTimeZone for anything else
    (``"CET"``-style aliases Python knows are accepted, paths and free text are not)."""
    if not isinstance(name, str) or not name or len(name) > 64 or name not in _zone_names():
        raise BadTimeZone("The time zone must be an IANA name such as Europe/Berlin.")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadTimeZone("The time zone must be an IANA name such as Europe/Berlin.") from exc
    return name


def zone(name: str | None) -> ZoneInfo:
    """The account's zone; UTC when unset or unknown (a setting saved by an older build)."""
    try:
        return ZoneInfo(time_zone(name or DEFAULT_TIME_ZONE))
    except BadTimeZone:
        return ZoneInfo(DEFAULT_TIME_ZONE)


def send_time(local_date: date, tz: str | None, hour: int = DEFAULT_HOUR) -> datetime:
    """The UTC instant of ``hour``:00 on ``local_date`` in ``tz`` (see the module's note on
    hours that do not exist or happen twice)."""
    if not 0 <= hour <= 23:
        raise ValueError("hour must be 0-23")
    wall = datetime.combine(local_date, time(hour), tzinfo=zone(tz)).replace(fold=0)
    instant = wall.astimezone(UTC)
    # fold=0 in a gap reads the wall time with the offset from before the jump: that is the
    # instant "as long after the jump as the hour was after its start", our choice above.
    return instant


def local_date(instant: datetime, tz: str | None) -> date:
    """The calendar date ``instant`` falls on in ``tz``."""
    return instant.astimezone(zone(tz)).date()


def earliest_start(local: date) -> datetime:
    """The first UTC instant at which ``local`` has begun somewhere on earth: a step for a
    notice on that date is due no earlier, whatever the account's zone turns out to be."""
    return datetime.combine(local, time(0), tzinfo=UTC) - _MAX_UTC_OFFSET


def card_valid_until(exp_month: int, exp_year: int, tz: str | None) -> datetime:
    """The UTC instant a card stops working: it is valid through the last day of its
    expiry month, i.e. until the local midnight that begins the next month."""
    if not 1 <= int(exp_month) <= 12:
        raise ValueError("exp_month must be 1-12")
    return datetime.combine(first_day_after(int(exp_month), int(exp_year)), time(0),
                            tzinfo=zone(tz)).astimezone(UTC)


def last_valid_day(exp_month: int, exp_year: int) -> date:
    return date(int(exp_year), int(exp_month),
                calendar.monthrange(int(exp_year), int(exp_month))[1])


def first_day_after(exp_month: int, exp_year: int) -> date:
    return last_valid_day(exp_month, exp_year) + timedelta(days=1)


def card_notice_dates(exp_month: int, exp_year: int) -> dict[str, date]:
    """The local dates of a card's notices: ``30d`` and ``7d`` (that many days before the
    day it stops working) and ``expired`` (that day: the day after its last valid day)."""
    after = first_day_after(exp_month, exp_year)
    dates = {f"{days}d": after - timedelta(days=days) for days in CARD_NOTICE_DAYS}
    dates["expired"] = after
    return dates


def days_before(instant: datetime, tz: str | None, days: int) -> date:
    """The local date ``days`` before the local date of ``instant`` (an upcoming renewal
    or instalment N days ahead, on the customer's calendar)."""
    return local_date(instant, tz) - timedelta(days=days)


def expiry_label(exp_month: int, exp_year: int) -> str:
    """``2027-03``: the part of a card notice's step id naming the expiry it is about."""
    return f"{int(exp_year):04d}-{int(exp_month):02d}"
