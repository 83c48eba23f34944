"""The recovery report (dunning.report): monthly aggregates kept in the same write as
each invoice's dunning state, read with one Query.

A dunning life per recovery channel against localstripe's failing card (tests/
test_dunning.py's ``Failing``): our scheduled retry, the customer in the portal, a staff
retry through the merchant API (counted as ``staff``, not ``customer``); months and
currencies apart; the median read from the histogram; the dashboard page's roles; and
another account's key sees nothing of it.
"""
from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from app_fixtures import Merchant, app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    StaffShop,
    add_member,
    dashboard_settings,
    make_staff_shop,
    staff_sign_in,
)
from portal_helpers import CARD_OK, PortalClient, attach_card, text
from test_dunning import KEY, Failing, sweep_until_idle

from chalicelib.accounts.service import create_account
from chalicelib.domain.events import Ref
from chalicelib.dunning import report
from chalicelib.errors import BadRequest
from chalicelib.processors.stripe.gateway import StripeGateway
from chalicelib.records import service as records
from chalicelib.selfservice.service import SelfService, card_id
from chalicelib.store import customers as customers_store
from chalicelib.store import dunning as dunning_store

# Sweeps run every due step in the table: a table of this module's own.
pytestmark = pytest.mark.usefixtures("table_of_its_own", "dashboard_settings")


def _count(*ops) -> None:
    """Each op in a write of its own, as dunning's steps write them (a transaction may
    not touch one item twice)."""
    for op in ops:
        customers_store.commit([], None, None, also=[op])


def _api_report(merchant: Merchant, query: str = ""):
    return merchant.client.http.get(f"/api/v1/reports/recovery{query}", headers={
        "Authorization": f"Bearer {merchant.api_key}"})


def _row(account_id: str, when: datetime) -> dict:
    month = when.strftime("%Y-%m")
    [row] = report.recovery(account_id, month, month)["months"]
    return row


def test_months_and_currencies_apart_and_the_median_from_the_histogram():
    acct = f"acct_rr{secrets.token_hex(4)}"
    failed, recovered = dunning_store.failed_op, dunning_store.recovered_op
    # Invoices spread over the aggregate's shards: the report sums them.
    _count(*[failed(acct, "2031-01", "eur", 1000, f"stripe:in_{i}") for i in range(3)],
           failed(acct, "2031-01", "usd", 700, "stripe:in_u"),
           failed(acct, "2031-02", "eur", 500, "stripe:in_f"),
           failed(acct, "2031-04", "eur", 900, "stripe:in_a"))
    _count(recovered(acct, "2031-01", "eur", 1000, "stripe:in_0", "automatic_retry", 5),
           recovered(acct, "2031-01", "eur", 1000, "stripe:in_1", "staff", 30),
           recovered(acct, "2031-02", "eur", 500, "stripe:in_f", "customer", 100))
    # Another account's months are not this one's.
    _count(failed(f"{acct}x", "2031-01", "eur", 99999, "stripe:in_x"))

    got = report.recovery(acct, "2031-01", "2031-03")
    assert [(r["month"], r["currency"]) for r in got["months"]] == [
        ("2031-01", "eur"), ("2031-01", "usd"), ("2031-02", "eur")]
    jan_eur, jan_usd, feb_eur = got["months"]
    assert (jan_eur["failed_count"], jan_eur["failed_amount"]) == (3, 3000)
    assert (jan_eur["recovered_count"], jan_eur["recovered_amount"]) == (2, 2000)
    assert jan_eur["recovered_by_channel"] == {"automatic_retry": 1000, "customer": 0,
                                               "staff": 1000, "processor": 0}
    assert jan_eur["recovery_rate"] == 0.6667 and jan_eur["invoice_recovery_rate"] == 0.6667
    # 5 h falls in [3, 6), 30 h in [24, 48): the median (the first of two) is in [3, 6).
    assert jan_eur["median_range_hours"] == [3, 6]
    assert 3 <= jan_eur["median_hours_to_recovery"] <= 6
    assert (jan_usd["failed_amount"], jan_usd["recovered_amount"], jan_usd["recovery_rate"],
            jan_usd["median_hours_to_recovery"], jan_usd["median_range_hours"]) == (
        700, 0, 0.0, None, [])
    assert feb_eur["recovered_by_channel"]["customer"] == 500
    assert feb_eur["recovery_rate"] == 1.0 and feb_eur["median_range_hours"] == [96, 120]
    assert report.recovery(acct, "2031-04", "2031-04")["months"][0]["failed_amount"] == 900
    assert report.recovery(acct, "2030-01", "2030-12")["months"] == []


def test_a_count_that_meets_another_transaction_is_sent_again(monkeypatch):
    """Many sweeps ADD to one month's totals at once: a write cancelled only because
    another transaction held the item did not apply, so it is sent again (the count lands
    once); a write without such a counter still answers Conflict at once."""
    from pynamodb.exceptions import CancellationReason, TransactWriteError

    class HeldElsewhere(TransactWriteError):
        @property
        def cancellation_reasons(self):
            return [None, CancellationReason(code="TransactionConflict")]

    real, calls = customers_store._transact, []

    def busy_once(ops):
        calls.append(len(ops))
        if len(calls) == 1:
            raise HeldElsewhere("held")
        real(ops)

    monkeypatch.setattr(customers_store, "_transact", busy_once)
    monkeypatch.setattr("chalicelib.backoff.pause", lambda attempt: None)
    acct = f"acct_rr{secrets.token_hex(4)}"
    _count(dunning_store.failed_op(acct, "2031-01", "eur", 1000, "stripe:in_1"))
    assert len(calls) == 2
    assert report.recovery(acct, "2031-01", "2031-01")["months"][0]["failed_count"] == 1
    calls.clear()
    with pytest.raises(customers_store.Conflict):
        customers_store.commit([], None, None, also=[
            dunning_store.state_op(dunning_store.State(acct, "cst_x", "stripe:in_2"))])
    assert len(calls) == 1


def test_the_median_is_exact_to_its_bucket():
    hours = [0.5, 2, 7, 7.5, 25, 49, 200, 2000, 3000]
    histogram = [0] * dunning_store.RECOVERY_BUCKETS
    for h in hours:
        histogram[dunning_store.recovery_bucket(h)] += 1
    median, (low, high) = report.median_of(histogram)
    assert low <= sorted(hours)[len(hours) // 2] < high and low <= median <= high
    # Past the last bound: the open bucket's lower bound.
    assert report.median_of([0] * (dunning_store.RECOVERY_BUCKETS - 1) + [3]) == (
        1440.0, [1440, None])


@pytest.mark.parametrize("first,last", [
    ("2031-13", "2031-12"), ("2031-1", None), ("31-01", None), ("2031-05", "2031-04"),
    ("2020-01", "2031-01"), ("2031-01'", None), ("2031-01\n", None),
    ("２０３１-01", None), ("x" * 100, None)])
def test_a_bad_period_is_refused(first, last):
    with pytest.raises(BadRequest):
        report.period(first, last, datetime(2031, 6, 1, tzinfo=UTC))


def test_the_default_period_is_the_last_twelve_months():
    assert report.period(None, None, datetime(2031, 3, 9, tzinfo=UTC)) == ("2030-04", "2031-03")
    assert report.period(None, "2031-01", datetime(2031, 3, 9, tzinfo=UTC)) == (
        "2030-02", "2031-01")


def _shop(app_client, stripe_client, stripe_shim):  # noqa: F811
    shop = Failing(app_client, stripe_client, stripe_shim, "ours", [1, 3])
    t0 = datetime.now(UTC) + timedelta(seconds=5)
    sweep_until_idle(t0)
    return shop, t0


def _failed_only(shop, t0) -> None:
    row = _row(shop.account_id, t0)
    assert (row["currency"], row["failed_count"], row["failed_amount"],
            row["recovered_count"]) == ("eur", 1, 1500, 0)


def test_our_retry_recovers_and_is_counted_once(app_client, stripe_client, stripe_shim):  # noqa: F811
    shop, t0 = _shop(app_client, stripe_client, stripe_shim)
    _failed_only(shop, t0)
    # Stripe delivers the failure again: not a second failure.
    shop.merchant.deliver_until_applied(shop.events[-1:])
    sweep_until_idle(t0 + timedelta(minutes=1))
    _failed_only(shop, t0)
    # The customer's card works again at Stripe: our retry of day 1 pays.
    good = attach_card(stripe_client, shop.customer, CARD_OK)
    stripe_client.v1.customers.update(shop.customer, params={
        "invoice_settings": {"default_payment_method": good}})
    sweep_until_idle(t0 + timedelta(days=1, minutes=1))
    assert shop.state()["channel"] == "automatic_retry"
    # The processor's news of the payment follows: nothing counted twice.
    sweep_until_idle(t0 + timedelta(days=2))
    row = _row(shop.account_id, t0)
    assert (row["failed_amount"], row["recovered_amount"], row["recovered_count"]) == (
        1500, 1500, 1)
    assert row["recovered_by_channel"]["automatic_retry"] == 1500
    assert row["recovery_rate"] == 1.0
    assert row["median_range_hours"] == [24, 48]


def test_the_customer_in_the_portal(app_client, stripe_client, stripe_shim):  # noqa: F811
    shop, t0 = _shop(app_client, stripe_client, stripe_shim)
    good = attach_card(stripe_client, shop.customer, CARD_OK)
    service = SelfService(shop.account, shop.customer_id,
                          StripeGateway(KEY, api_base=stripe_shim))
    sub = next(s for s in service.record()["subscriptions"])
    service.set_card(sub["id"], card_id(shop.account_id, Ref("stripe", good)), for_all=False)
    sweep_until_idle(t0 + timedelta(hours=2))
    assert shop.state()["channel"] == "customer"
    row = _row(shop.account_id, t0)
    assert row["recovered_by_channel"] == {"automatic_retry": 0, "customer": 1500,
                                           "staff": 0, "processor": 0}
    assert row["median_range_hours"] == [1, 3]


def test_a_staff_retry_counts_as_staff(app_client, stripe_client, stripe_shim):  # noqa: F811
    shop, t0 = _shop(app_client, stripe_client, stripe_shim)
    good = attach_card(stripe_client, shop.customer, CARD_OK)
    payment = next(p for p in records.get_record(shop.account_id, shop.customer_id)["payments"]
                   if p.get("invoice") == shop.invoice_ref)
    answer = shop.merchant.client.http.post(
        f"/api/v1/customers/{shop.customer_id}/payments/{payment['id']}/retry",
        body=json.dumps({"card_id": card_id(shop.account_id, Ref("stripe", good))}).encode(),
        headers={"Authorization": f"Bearer {shop.merchant.api_key}",
                 "Content-Type": "application/json", "Idempotency-Key": secrets.token_hex(8)})
    assert answer.status_code == 200 and json.loads(answer.body)["payment"]["outcome"] == "paid"
    sweep_until_idle(t0 + timedelta(minutes=30))
    assert shop.state()["channel"] == "staff"
    row = _row(shop.account_id, t0)
    assert row["recovered_by_channel"]["staff"] == 1500
    assert row["recovered_by_channel"]["customer"] == 0
    assert row["median_range_hours"] == [0, 1]

    # The merchant API: this account's rows; another account's key: none of them.
    month = t0.strftime("%Y-%m")
    mine = _api_report(shop.merchant, f"?from={month}&to={month}")
    assert mine.status_code == 200
    assert json.loads(mine.body)["months"][0]["recovered_by_channel"]["staff"] == 1500
    other = create_account(name="Other", support_email="o@example.com",
                           stripe_secret_key=KEY, stripe_webhook_secrets=["whsec_o"])
    theirs = _api_report(Merchant(app_client, other.account["account_id"], other.api_key, []),
                         f"?from={month}&to={month}")
    assert theirs.status_code == 200 and json.loads(theirs.body)["months"] == []
    for bad in ("?from=2031-13", f"?from={month}&to=2020-01", "?month=2031-01"):
        assert _api_report(shop.merchant, bad).status_code == 400, bad
    assert _api_report(Merchant(app_client, "x", "bp_live_" + "x" * 43, [])).status_code == 401


@pytest.fixture(scope="module")
def staff_shop(table_of_its_own, app_client, stack) -> StaffShop:  # noqa: F811
    shop = make_staff_shop(app_client, stack)
    _count(dunning_store.failed_op(shop.account_id, "2031-01", "eur", 4200, "stripe:in_1"),
           dunning_store.failed_op(shop.account_id, "2031-01", "jpy", 5000, "stripe:in_2"))
    _count(dunning_store.recovered_op(shop.account_id, "2031-01", "eur", 4200, "stripe:in_1",
                                      "staff", 50))
    return shop


@pytest.mark.parametrize("role,status", [("owner", 200), ("admin", 200), ("support", 200),
                                         ("read_only", 403)])
def test_the_dashboard_page_and_its_roles(app_client, staff_shop, sent_emails, role, status):  # noqa: F811
    email = staff_shop.owner if role == "owner" else add_member(staff_shop, role)[0]
    c = PortalClient(app_client.http)
    staff_sign_in(c, staff_shop.root, email, sent_emails)
    page = c.get(f"{staff_shop.root}/reports/recovery?from=2031-01&to=2031-02")
    assert page.status_code == status
    home = text(c.get(f"{staff_shop.root}/customers"))
    assert (f"{staff_shop.root}/reports/recovery" in home) == (status == 200)
    if status != 200:
        return
    shown = text(page)
    assert "€42.00" in shown and "¥5,000" in shown and "100.0%" in shown
    assert "Staff retries" in shown
    assert "months in UTC, the account's time zone" in shown  # the default zone, named
    assert c.get(f"{staff_shop.root}/reports/recovery?from=2031-13").status_code == 400
    assert "No failed payments" in text(c.get(
        f"{staff_shop.root}/reports/recovery?from=2030-01&to=2030-02"))
