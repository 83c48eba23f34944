"""The derived record's planned payments and purchases grouped by product, built from
signed webhooks."""
from __future__ import annotations

import secrets
from datetime import datetime

from app_fixtures import app_client, merchant  # noqa: F401
from stripe_events import DAY, Stream


def _next_month(iso: str) -> str:
    at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return at.replace(year=year, month=month).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _story(prefix: str):
    s = Stream(prefix)
    cus = s.customer(f"{prefix}@example.com", "Plan Ned")
    pm = s.card(cus, last4="4242", brand="visa")
    sub = s.subscription(cus, 1500, pm=pm, nickname="Pro membership")
    s.invoice(cus, sub, 1500)
    plan = s.subscription(cus, 9900, installments=4, nickname="Photography course")
    s.invoice(cus, plan, 9900)
    ending = s.subscription(cus, 700, nickname="Newsletter", cancel_at_period_end=True)
    s.invoice(cus, ending, 700)
    s.t += 2 * DAY
    pi1, _ = s.one_time(cus, 4900)
    s.t += 2 * DAY
    pi2, charge2 = s.one_time(cus, 4900)
    s.refund(cus, pi2, charge2, 1000)
    return s, sub, plan, ending, pi1, pi2


def test_planned_payments_are_renewals_and_remaining_instalments(merchant):  # noqa: F811
    s, sub, plan, ending, *_ = _story("plan" + secrets.token_hex(3))
    merchant.deliver_until_applied(s.events)
    [customer] = merchant.customers()
    record = merchant.get_json(f"/api/v1/customers/{customer['id']}")
    subs = {x["processor_ref"]: x for x in record["subscriptions"] + record["payment_plans"]}
    pro, course = subs[f"stripe:{sub}"], subs[f"stripe:{plan}"]
    assert subs[f"stripe:{ending}"]["status"] == "canceling"

    planned = record["planned_payments"]
    # No renewal of the subscription set to cancel; 3 instalments of 4 left.
    assert [(p["kind"], p["product"]) for p in planned if p["kind"] == "renewal"] == \
        [("renewal", "Pro membership")]
    renewal = next(p for p in planned if p["kind"] == "renewal")
    assert (renewal["due_at"], renewal["amount"], renewal["currency"], renewal["subscription_id"]) \
        == (pro["current_period_end"], 1500, "usd", pro["id"])
    instalments = [p for p in planned if p["kind"] == "instalment"]
    first_due = course["next_due_at"]
    assert [(p["instalment"], p["due_at"], p["amount"]) for p in instalments] == [
        (2, first_due, 9900), (3, _next_month(first_due), 9900),
        (4, _next_month(_next_month(first_due)), 9900)]
    assert all(p["instalments_total"] == 4 for p in instalments)
    assert [p["due_at"] for p in planned] == sorted(p["due_at"] for p in planned)


def test_purchases_are_grouped_by_product_with_their_last_action(merchant):  # noqa: F811
    s, _, _, _, pi1, pi2 = _story("purch" + secrets.token_hex(3))
    merchant.deliver_until_applied(s.events)
    [customer] = merchant.customers()
    record = merchant.get_json(f"/api/v1/customers/{customer['id']}")
    groups = {(g["kind"], g["product"]): g for g in record["purchases"]}
    assert set(groups) == {("subscription", "Pro membership"), ("payment_plan", "Photography course"),
                           ("subscription", "Newsletter"), ("one_time", "Ebook: Pierogi")}
    payments = {p["id"]: p for p in record["payments"]}
    ebook = groups[("one_time", "Ebook: Pierogi")]
    # Two one-time orders of one product: one group, newest first; its last action is the
    # refund of the newer one.
    assert len(ebook["transactions"]) == 2
    newer, older = (payments[t] for t in ebook["transactions"])
    assert f"stripe:{pi2}" in newer["processor_refs"] and f"stripe:{pi1}" in older["processor_refs"]
    action = ebook["last_action"]
    assert (action["status"], action["amount"], action["currency"]) == \
        ("partially_refunded", 1000, "usd")
    assert action["at"] == newer["refunds"][0]["created_at"]
    pro = groups[("subscription", "Pro membership")]
    [paid] = [payments[t] for t in pro["transactions"]]
    assert pro["last_action"] == {"at": paid["paid_at"], "method": "visa •••• 4242",
                                  "status": "succeeded", "amount": 1500, "currency": "usd"}
    # Newest action first.
    ats = [g["last_action"]["at"] for g in record["purchases"]]
    assert ats == sorted(ats, reverse=True) and record["purchases"][0] is not None
    assert record["purchases"][0]["product"] == "Ebook: Pierogi"


def test_the_overview_plans_the_same_payments(merchant):  # noqa: F811
    from chalicelib.records import service as records

    s, *_ = _story("plov" + secrets.token_hex(3))
    merchant.deliver_until_applied(s.events)
    [customer] = merchant.customers()
    overview, _ = records.get_overview(merchant.account_id, customer["id"], 10)
    record = records.get_record(merchant.account_id, customer["id"])
    assert overview["planned_payments"] == record["planned_payments"]
    assert len(record["planned_payments"]) == 4
