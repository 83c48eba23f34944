"""The recovery report's months are the account's (its notices time zone), not UTC's: a
payment that failed at 23:30 UTC on 31 January in a UTC+2 account belongs to February.
The month is fixed when the dunning opens and kept on its state, so the recovery lands in
the same month whatever the zone is by then; a dunning opened before (no month kept) counts
its recovery under the UTC month its failure was counted in.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from app_fixtures import app_client  # noqa: F401
from portal_helpers import CARD_OK, attach_card
from test_dunning import Failing, sweep_until_idle

from chalicelib.dunning import report, steps
from chalicelib.notices import settings as notice_settings
from chalicelib.store import customers as customers_store
from chalicelib.store import dunning as dunning_store

pytestmark = pytest.mark.usefixtures("table_of_its_own")


@pytest.mark.parametrize("at,zone,month", [
    # The brief's case: UTC+2 (Athens in winter) is already February.
    (datetime(2031, 1, 31, 23, 30, tzinfo=UTC), "Europe/Athens", "2031-02"),
    (datetime(2031, 1, 31, 23, 30, tzinfo=UTC), "UTC", "2031-01"),
    (datetime(2031, 1, 31, 23, 30, tzinfo=UTC), None, "2031-01"),
    (datetime(2031, 2, 1, 3, 0, tzinfo=UTC), "America/New_York", "2031-01"),
    # Berlin, summer time from 30 March 2031 (UTC+2): 22:30 UTC on 31 March is April...
    (datetime(2031, 3, 31, 22, 30, tzinfo=UTC), "Europe/Berlin", "2031-04"),
    # ... but in winter time (UTC+1) 22:30 UTC on the last day is still that month,
    (datetime(2031, 2, 28, 22, 30, tzinfo=UTC), "Europe/Berlin", "2031-02"),
    (datetime(2031, 2, 28, 23, 30, tzinfo=UTC), "Europe/Berlin", "2031-03"),
    # and back to UTC+1 from 26 October: 22:30 UTC on 31 October is October again.
    (datetime(2031, 10, 31, 22, 30, tzinfo=UTC), "Europe/Berlin", "2031-10"),
    (datetime(2031, 10, 31, 23, 0, tzinfo=UTC), "Europe/Berlin", "2031-11"),
])
def test_the_month_is_the_accounts(at, zone, month):
    assert report.month_of(at, zone) == month


def test_the_default_period_ends_with_this_month_in_the_accounts_zone():
    now = datetime(2031, 3, 31, 22, 30, tzinfo=UTC)
    assert report.period(None, None, now) == ("2030-04", "2031-03")
    assert report.period(None, None, now, "Europe/Berlin") == ("2030-05", "2031-04")


def _api_report(merchant, query: str) -> dict:
    answer = merchant.client.http.get(f"/api/v1/reports/recovery{query}", headers={
        "Authorization": f"Bearer {merchant.api_key}"})
    assert answer.status_code == 200, answer.body
    return json.loads(answer.body)


def test_a_failure_late_on_the_last_day_counts_in_the_accounts_next_month(
        app_client, stripe_client, stripe_shim):  # noqa: F811
    shop = Failing(app_client, stripe_client, stripe_shim, "ours", [1, 3])
    notice_settings.update(shop.account_id, {"time_zone": "Europe/Athens"})  # UTC+2
    t0 = datetime(2031, 1, 31, 23, 30, tzinfo=UTC)
    sweep_until_idle(t0)
    assert shop.state()["report_month"] == "2031-02"
    got = _api_report(shop.merchant, "?from=2031-01&to=2031-02")
    assert got["time_zone"] == "Europe/Athens"
    assert [(r["month"], r["failed_count"], r["failed_amount"]) for r in got["months"]] == [
        ("2031-02", 1, 1500)]

    # The merchant moves the account to Los Angeles (where t0 was still 31 January): the
    # recovery is counted where the failure was, so February's rate stays whole.
    notice_settings.update(shop.account_id, {"time_zone": "America/Los_Angeles"})
    good = attach_card(stripe_client, shop.customer, CARD_OK)
    stripe_client.v1.customers.update(shop.customer, params={
        "invoice_settings": {"default_payment_method": good}})
    sweep_until_idle(t0 + timedelta(days=1, minutes=1))
    assert shop.state()["channel"] == "automatic_retry"
    got = _api_report(shop.merchant, "?from=2031-01&to=2031-02")
    assert got["time_zone"] == "America/Los_Angeles"
    [february] = got["months"]
    assert (february["month"], february["failed_amount"], february["recovered_amount"],
            february["recovery_rate"]) == ("2031-02", 1500, 1500, 1.0)


def test_a_dunning_opened_under_utc_months_recovers_in_its_utc_month():
    """States written before months were the account's carry no ``report_month``: their
    failure was counted under the UTC month of ``started_at``, and so is the recovery."""
    account_id = "acct_rm_utc_before"
    data = {"status": "recovered", "started_at": "2031-01-31T23:30:00Z", "amount": 700,
            "currency": "eur", "channel": "customer"}
    state = dunning_store.State(account_id, "cst_x", "stripe:in_before", data)
    ops = [dunning_store.failed_op(account_id, "2031-01", "eur", 700, "stripe:in_before"),
           *steps._recovery_count(state, datetime(2031, 2, 1, 10, 0, tzinfo=UTC))]
    for op in ops:
        customers_store.commit([], None, None, also=[op])
    [january] = report.recovery(account_id, "2031-01", "2031-02", "Europe/Athens")["months"]
    assert (january["month"], january["failed_amount"], january["recovered_amount"]) == (
        "2031-01", 700, 700)
