"""The recovery report: per month (the month an invoice's payment first failed, in the
account's time zone: the notices setting) and currency, the failed amount, the recovered
amount by channel, the recovery rate and the median time to recovery.

The month is fixed when the dunning opens (``month_of``, in the zone in force then) and
kept on the dunning state (``report_month``): the recovery is counted under that same
month, whenever it comes and whatever the zone is by then. So a changed time zone applies
to failures from then on; months already counted stay as they were counted (before this
was per zone they were UTC months: a state without ``report_month`` counts its recovery
under the UTC month of ``started_at``, where its failure was counted).

Read from the monthly aggregates that dunning's own writes keep (store.dunning
``failed_op`` / ``recovered_op``, in the same transaction as the state they count): one
Query per report, whatever the number of invoices. A recovery counts under the month its
payment failed in, so a month's rate is that month's failures' fate and never passes 100%.

The median is read from a bounded histogram of times to recovery
(``store.dunning.RECOVERY_BUCKET_HOURS``): the bucket holding the median is exact, the
figure inside it is a linear interpolation, so it is off by at most that bucket's width
(within an hour under 3 hours, within a day around two days, within a week around two
weeks); ``median_range_hours`` gives the exact bounds.
"""
from __future__ import annotations

import re
from datetime import datetime

from chalicelib.errors import BadRequest
from chalicelib.notices import settings as notice_settings
from chalicelib.notices import timing
from chalicelib.store import dunning as store

MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")  # fullmatch; ASCII digits only
MAX_MONTHS = 36  # the aggregates are tiny; this bounds a page and a response


def _months_between(first: str, last: str) -> int:
    (y1, m1), (y2, m2) = (map(int, first.split("-")), map(int, last.split("-")))
    return (y2 - y1) * 12 + (m2 - m1) + 1


def _month_back(month: str, back: int) -> str:
    year, mon = map(int, month.split("-"))
    index = year * 12 + (mon - 1) - back
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def time_zone_of(account_id: str) -> str:
    """The account's time zone (the notices setting; UTC until the merchant sets one)."""
    return notice_settings.get(account_id)["time_zone"]


def month_of(at: datetime, zone: str | None) -> str:
    """The month (``YYYY-MM``) the instant ``at`` falls in, in the zone ``zone``: 23:30 UTC
    on 31 January is February in a UTC+2 account. Daylight-saving time is the zone's."""
    return at.astimezone(timing.zone(zone)).strftime("%Y-%m")


def period(first: str | None, last: str | None, now: datetime,
           zone: str | None = None) -> tuple[str, str]:
    """The months asked for (``YYYY-MM``, inclusive); by default the last 12 to this one
    (this month in ``zone``). A bad month, an inverted range or one over MAX_MONTHS is a
    400."""
    this_month = month_of(now, zone)
    last = last or this_month
    first = first or _month_back(last if MONTH.fullmatch(last) else this_month, 11)
    for name, value in (("from", first), ("to", last)):
        if not isinstance(value, str) or not MONTH.fullmatch(value):
            raise BadRequest(f'"{name}" must be a month as YYYY-MM.', code="bad_request")
    span = _months_between(first, last)
    if span < 1:
        raise BadRequest('"from" must not be after "to".', code="bad_request")
    if span > MAX_MONTHS:
        raise BadRequest(f"A report covers at most {MAX_MONTHS} months.", code="bad_request")
    return first, last


def median_of(histogram: list[int]) -> tuple[float | None, list]:
    """The median time to recovery in hours (interpolated inside its bucket) and the
    bucket's exact bounds ``[low, high]`` (high None for the open last bucket)."""
    total = sum(histogram)
    if not total:
        return None, []
    edges = (0, *store.RECOVERY_BUCKET_HOURS)
    half, before = total / 2, 0
    for i, count in enumerate(histogram):
        if count and before + count >= half:
            low = edges[i]
            high = edges[i + 1] if i + 1 < len(edges) else None
            if high is None:
                return float(low), [low, None]
            return round(low + (high - low) * (half - before) / count, 1), [low, high]
        before += count
    return None, []  # unreachable: the counts add up to total


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def recovery(account_id: str, first: str, last: str, zone: str | None = None) -> dict:
    """The report of ``account_id`` from month ``first`` to ``last`` (as ``period``
    gives them): one row per month and currency that had a failed payment, oldest first.
    ``time_zone``: the zone the report's months are read in now (``zone``, else the
    account's)."""
    rows = []
    for month in store.recovery_months(account_id, first, last):
        recovered = sum(month["recovered"].values())
        median, bounds = median_of(month["histogram"])
        rows.append({
            "month": month["month"], "currency": month["currency"],
            "failed_count": month["failed_count"], "failed_amount": month["failed_amount"],
            "recovered_count": month["recovered_count"], "recovered_amount": recovered,
            "recovered_by_channel": month["recovered"],
            "recovery_rate": _rate(recovered, month["failed_amount"]),
            "invoice_recovery_rate": _rate(month["recovered_count"], month["failed_count"]),
            "median_hours_to_recovery": median, "median_range_hours": bounds,
        })
    return {"from": first, "to": last, "time_zone": zone or time_zone_of(account_id),
            "channels": list(store.CHANNELS), "months": rows}
