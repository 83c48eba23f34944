"""Notice timing: the account's local hour on the customer's date, across daylight saving."""
from datetime import UTC, date, datetime

import pytest

from chalicelib.notices import timing


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_send_time_follows_berlin_summer_and_winter_time():
    # Saturday before the spring change: CET (UTC+1); the Monday after: CEST (UTC+2).
    assert timing.send_time(date(2027, 3, 27), "Europe/Berlin", 10) == utc(2027, 3, 27, 9)
    assert timing.send_time(date(2027, 3, 28), "Europe/Berlin", 10) == utc(2027, 3, 28, 8)
    assert timing.send_time(date(2026, 10, 24), "Europe/Berlin", 10) == utc(2026, 10, 24, 8)
    assert timing.send_time(date(2026, 10, 25), "Europe/Berlin", 10) == utc(2026, 10, 25, 9)


def test_hour_that_does_not_exist_goes_out_after_the_jump():
    # 28 March 2027, Berlin: 02:00 → 03:00. 02:30 does not exist: sent at 03:30 CEST.
    sent = timing.send_time(date(2027, 3, 28), "Europe/Berlin", 2)
    assert sent == utc(2027, 3, 28, 1)  # 03:00 CEST
    assert sent.astimezone(timing.zone("Europe/Berlin")).hour == 3
    # New York, 14 March 2027: 02:00 EST → 03:00 EDT.
    assert timing.send_time(date(2027, 3, 14), "America/New_York", 2) == utc(2027, 3, 14, 7)


def test_hour_that_happens_twice_takes_the_first():
    # 25 October 2026, Berlin: 02:00-03:00 happens twice; the first is still CEST (UTC+2).
    assert timing.send_time(date(2026, 10, 25), "Europe/Berlin", 2) == utc(2026, 10, 25, 0)
    # 1 November 2026, New York: 01:00-02:00 twice; the first is EDT (UTC-4).
    assert timing.send_time(date(2026, 11, 1), "America/New_York", 1) == utc(2026, 11, 1, 5)


def test_card_is_valid_through_the_last_day_of_its_month_in_the_accounts_zone():
    assert timing.last_valid_day(2, 2028) == date(2028, 2, 29)
    assert timing.card_valid_until(2, 2028, "UTC") == utc(2028, 3, 1)
    # Midnight that starts April in New York (EDT) is 04:00 UTC.
    assert timing.card_valid_until(3, 2027, "America/New_York") == utc(2027, 4, 1, 4)
    assert timing.card_notice_dates(3, 2027) == {
        "30d": date(2027, 3, 2), "7d": date(2027, 3, 25), "expired": date(2027, 4, 1)}
    assert timing.card_notice_dates(12, 2026)["expired"] == date(2027, 1, 1)


def test_renewal_date_is_the_customers_calendar_date():
    # 00:30 UTC on 1 April is still 31 March in New York: 7 days before is 24 March.
    assert timing.days_before(utc(2027, 4, 1, 0, 30), "America/New_York", 7) == date(2027, 3, 24)
    assert timing.days_before(utc(2027, 4, 1, 0, 30), "Europe/Berlin", 7) == date(2027, 3, 25)


def test_earliest_start_is_before_any_zones_send_time():
    day = date(2027, 3, 28)
    for tz in ("Pacific/Kiritimati", "Europe/Berlin", "America/New_York", "Pacific/Pago_Pago"):
        assert timing.earliest_start(day) <= timing.send_time(day, tz, 0)


@pytest.mark.parametrize("bad", ["", "Mars/Olympus", "../../etc", 5, None, "x" * 100])
def test_bad_time_zones_are_refused(bad):
    with pytest.raises(timing.BadTimeZone):
        timing.time_zone(bad)
    assert timing.zone(bad if isinstance(bad, str) else None).key == "UTC"
