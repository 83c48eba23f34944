"""Webhook applies write the catalogue's events (integrations.reactions) in the record's
transaction, once per change whatever the redeliveries and their order."""
from __future__ import annotations

import random
from collections import Counter

import jsonschema
import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream

from chalicelib.store import customers as store


def story(prefix: str, email: str) -> Stream:
    """One customer's year: a card, a subscription whose first payment fails then is paid,
    an order refunded in part and disputed, the subscription set to end, taken back and
    canceled, a payment plan paid off, a new name."""
    s = Stream(prefix)
    cus = s.customer(email, "Ada")
    pm = s.card(cus)
    sub = s.subscription(cus, 1500, pm=pm)
    inv = s.invoice(cus, sub, 1500, type_="invoice.payment_failed")
    s.invoice(cus, sub, 1500, type_="invoice.paid", inv=inv)
    pi, ch = s.one_time(cus, 2500)
    s.refund(cus, pi, ch, 500)
    s.charge_refunded(cus, pi, ch, 2500, 500)
    dispute = s.dispute(pi, ch, 2500)
    s.dispute(pi, ch, 2500, status="lost", type_="charge.dispute.closed", did=dispute)
    s.update_subscription(sub, cus, 1500, cancel_at_period_end=True)
    s.update_subscription(sub, cus, 1500, cancel_at_period_end=False)
    plan = s.subscription(cus, 1000, installments=2)
    s.invoice(cus, plan, 1000)
    s.invoice(cus, plan, 1000)
    s.update_subscription(sub, cus, 1500, status="canceled",
                          event_type="customer.subscription.deleted", canceled_at=s.t)
    s.customer(email, "Ada L", event_type="customer.updated", cid=cus)
    return s


IN_ORDER = Counter({
    "customer.created": 1, "card.updated": 1, "subscription.created": 2, "order.created": 3,
    "payment.failed": 1, "payment.recovered": 1, "payment.succeeded": 4,
    # refund.created and charge.refunded both report the refund: one event id, twice.
    "payment.refunded": 2, "refund.created": 1, "dispute.opened": 1, "dispute.closed": 1,
    "subscription.canceling": 1, "subscription.recovered": 1, "payment_plan.completed": 1,
    "subscription.canceled": 1, "customer.updated": 1})


def _outbox(merchant) -> list[dict]:
    return store.list_outbox(merchant.account_id, 500)


@pytest.fixture(scope="module")
def in_order(app_client):  # noqa: F811
    merchant = make_merchant(app_client)
    s = story("obx", "ordered@example.com")
    for event in s.events:
        assert merchant.deliver(event).status_code == 200
    return merchant, s


def test_a_customers_story_writes_each_catalogue_event_of_its_changes(in_order):
    merchant, _ = in_order
    events = _outbox(merchant)
    assert Counter(e["type"] for e in events) == IN_ORDER
    by_type = {e["type"]: e for e in events}
    # Each carries the object as the merchant API shows it, and the customer.
    record = merchant.get_json(f"/api/v1/customers/{events[0]['customer_id']}")
    canceled = by_type["subscription.canceled"]["data"]
    assert canceled["object"]["status"] == "canceled"
    assert canceled["object"]["id"] in {s["id"] for s in record["subscriptions"]}
    # As it was when the change was written (the name changed later).
    assert canceled["customer"] == {"id": record["id"], "email": "ordered@example.com",
                                    "name": "Ada"}
    recovered = by_type["payment.recovered"]["data"]["object"]
    assert recovered["status"] == "succeeded" and recovered["amount"] == 1500
    assert by_type["payment.refunded"]["data"]["object"]["refunded"] == 500
    refund = by_type["refund.created"]["data"]["object"]
    assert refund["amount"] == 500 and refund["payment_id"] == \
        by_type["payment.refunded"]["data"]["object"]["id"]
    assert by_type["payment_plan.completed"]["data"]["object"]["installments_paid"] == 2
    assert "name" in by_type["customer.updated"]["data"]["changed_fields"]
    assert by_type["dispute.closed"]["data"]["object"]["status"] == "lost"
    # One id per happening: only the refund's two reports share theirs.
    ids = Counter(e["event_id"] for e in events)
    assert [t for t, n in ids.items() if n > 1] == [by_type["payment.refunded"]["event_id"]]


def test_the_payloads_match_the_catalogue_schema(in_order):
    from test_catalogue import check_payloads

    from chalicelib.integrations import catalogue

    merchant, _ = in_order
    schema = catalogue.schema()
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    check_payloads(validator, [catalogue.payload({**e, "account_id": merchant.account_id})
                               for e in _outbox(merchant)])


def test_redelivering_every_event_shuffled_writes_nothing_more(in_order):
    merchant, s = in_order
    before = sorted((e["event_id"], e["type"]) for e in _outbox(merchant))
    again = list(s.events)
    random.Random(13).shuffle(again)
    for event in again:
        assert merchant.deliver(event).status_code == 200
    assert sorted((e["event_id"], e["type"]) for e in _outbox(merchant)) == before


def test_every_event_twice_in_any_order_reports_each_change_once(app_client):  # noqa: F811
    merchant = make_merchant(app_client)
    s = story("obxshuf", "shuffled@example.com")
    doubled = s.events + s.events
    random.Random(1313).shuffle(doubled)
    merchant.deliver_until_applied(doubled)
    events = _outbox(merchant)
    ids = {e["event_id"] for e in events}
    counts = Counter(e["type"] for e in events)
    # What happens once happened once, whichever delivery brought it first.
    for once in ("customer.created", "refund.created", "dispute.opened", "dispute.closed",
                 "payment_plan.completed", "subscription.canceled"):
        assert counts[once] == 1, (once, counts)
    assert counts["subscription.created"] == 2 and counts["order.created"] == 3
    # Every paid payment once: an older "failed" arriving after "paid" changes nothing.
    assert counts["payment.succeeded"] == 4
    assert len(ids) == len(events) - 1  # only the refund's two reports share an id
