"""At-least-once, out-of-order delivery converges: duplicated and shuffled streams give the
same records as one in-order delivery. Stripe streams, PayPal streams (tests/paypal_events.py,
signed by devstack's PayPal stand-in), and customers paying with both under one e-mail."""
from __future__ import annotations

import random

import pytest
from app_fixtures import app_client, make_merchant, normalize_record  # noqa: F401
from paypal_events import (
    MixedMerchant,
    PayPalStream,
    mixed_customer_story,
    paypal_customer_story,
    put_objects,
)
from story import story_events
from stripe_events import Stream
from test_paypal_webhooks import PayPalStub


def _records(merchant) -> dict:
    return {email: normalize_record(r) for email, r in merchant.records_by_email().items()}


@pytest.mark.parametrize("legacy", [False, True], ids=["current-shapes", "legacy-shapes"])
def test_duplicated_shuffled_streams_converge(app_client, legacy):  # noqa: F811
    events = story_events(6, prefix="r", legacy=legacy)
    in_order = make_merchant(app_client)
    in_order.deliver_until_applied(events)
    expected = _records(in_order)
    assert len(expected) == 6

    for seed in range(4):
        rng = random.Random(seed)
        noisy = [e for e in events for _ in range(rng.randint(1, 3))]
        rng.shuffle(noisy)
        replay = make_merchant(app_client)
        replay.deliver_until_applied(noisy)
        got = _records(replay)
        assert got.keys() == expected.keys(), seed
        for email in expected:
            assert got[email] == expected[email], (seed, email)


def test_in_order_stream_gives_expected_record(app_client):  # noqa: F811
    merchant = make_merchant(app_client)
    merchant.deliver_until_applied(story_events(5, prefix="e"))
    records = merchant.records_by_email()
    # customer0: canceled subscription, a plan recovered after a failure, refunded order,
    # a lost dispute; invoice.paid and invoice.payment_succeeded counted once.
    r0 = records["customer0@example.com"]
    assert r0["name"] == "Renamed 0"
    assert [s["status"] for s in r0["subscriptions"]] == ["canceled"]
    plan = r0["payment_plans"][0]
    assert (plan["installments_paid"], plan["installments_total"]) == (2, 3)
    assert plan["amount_paid"] == 10000 and plan["remaining_balance"] == 5000
    assert plan["next_due_amount"] == 5000 and plan["missed_payments"] == 0
    one_time = [o for o in r0["orders"] if o["kind"] == "one_time"]
    assert [o["status"] for o in one_time] == ["refunded"]
    # Two subscription invoices (2000 each), two plan payments, a fully refunded order.
    assert r0["stats"]["lifetime_value"] == {"usd": 2000 * 2 + 5000 * 2}
    assert r0["stats"]["orders"] == 3
    assert r0["stats"]["active_subscriptions"] == 0
    assert r0["stats"]["active_payment_plans"] == 1
    assert r0["disputes"][0]["status"] == "lost"
    # customer1: the plan payment failed and was not recovered; a second Stripe customer
    # with the same e-mail (other case) bought again: one record.
    r1 = records["customer1@example.com"]
    assert r1["stats"]["subscriptions_with_missed_payment"] == 1
    assert r1["payment_plans"][0]["missed_payments"] == 1
    assert sorted(o["amount"] for o in r1["orders"] if o["kind"] == "one_time") == [999, 1501]
    assert r1["stats"]["active_subscriptions"] == 1
    assert r1["card_on_file"]["last4"] == "4001"
    # customer3 cancelled at period end, then the subscription ended.
    r3 = records["customer3@example.com"]
    assert r3["subscriptions"][0]["status"] == "canceled"
    assert set(records) == {f"customer{n}@example.com" for n in range(5)}


# --- PayPal, and a customer paying with both ----------------------------------------------


@pytest.fixture(scope="module")
def paypal(stack) -> PayPalStub:
    return PayPalStub(stack.paypal.url)


def _paypal_records(merchant) -> dict:
    """Normalized records; a PayPal-only record's ``created_at`` is when it was made here
    (PayPal names no customer creation time), so it is left out."""
    return {email: {k: v for k, v in r.items() if k != "created_at"}
            for email, r in _records(merchant).items()}


def _noisy(events: list[dict], rng: random.Random) -> list[dict]:
    """Each event 1 to 3 times, shuffled: at-least-once, any order."""
    noisy = [e for e in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(noisy)
    return noisy


@pytest.fixture(scope="module")
def paypal_in_order(app_client, paypal):  # noqa: F811
    """Three PayPal customers' stories delivered once, in order (the reference)."""
    stream = PayPalStream("rpo")
    stories = [paypal_customer_story(stream, n) for n in range(3)]
    put_objects(paypal, stream)
    merchant = MixedMerchant(app_client, paypal)
    merchant.deliver_until_applied(stream.events)
    return stream, stories, merchant


def test_paypal_stream_in_order_gives_expected_record(paypal_in_order):
    _, stories, merchant = paypal_in_order
    records = merchant.records_by_email()
    assert set(records) == {s["email"].lower() for s in stories}
    # payer0: active after PayPal's retry recovered the failed payment; the first sale
    # partly refunded; the order captured, then refunded in full; the retry's dispute lost.
    s0, r0 = stories[0], records[stories[0]["email"].lower()]
    assert r0["name"] == "Zoë Pay0"
    [sub] = r0["subscriptions"]
    assert (sub["processor_ref"], sub["status"], sub["amount"], sub["currency"]) == (
        f"paypal:{s0['subscription']}", "active", 1000, "usd")
    assert sub["missed_payments"] == 0
    by_ref = {ref: p for p in r0["payments"] for ref in p["processor_refs"]}
    assert by_ref[f"paypal:txn_{s0['first_sale']}"]["refunded"] == 400
    assert by_ref[f"paypal:txn_{s0['retry_sale']}"]["disputes"][0]["status"] == "lost"
    [due] = [p for p in r0["payments"] if p["due_at"]]
    assert (due["status"], due["amount"]) == ("recovered", 1000)
    order = by_ref[f"paypal:order_{s0['order']}"]
    assert order is by_ref[f"paypal:txn_{s0['capture']}"]  # the order and its capture: one payment
    assert (order["amount"], order["refunded"], order["one_time"]) == (2500, 2500, True)
    assert [o["status"] for o in r0["orders"] if o["kind"] == "one_time"] == ["refunded"]
    # Two sales of 10.00, 4.00 refunded; the order refunded in full; a failure not counted.
    assert r0["stats"]["lifetime_value"] == {"usd": 1000 + 1000 - 400}
    assert r0["stats"]["active_subscriptions"] == 1 and r0["stats"]["missed_payments"] == 0
    # payer1: suspended, re-activated, then cancelled; the order partly refunded; the
    # dispute still open.
    r1 = records[stories[1]["email"]]
    assert [s["status"] for s in r1["subscriptions"]] == ["canceled"]
    assert r1["stats"]["lifetime_value"] == {"usd": 1001 * 2 - 400 + 2501 - 500}
    assert r1["stats"]["active_subscriptions"] == 0
    assert [d["status"] for d in r1["disputes"]] == ["open"]
    # payer2: PayPal's retry was pending (an eCheck), then completed: one payment, counted.
    s2, r2 = stories[2], records[stories[2]["email"]]
    [retry] = [p for p in r2["payments"] if f"paypal:txn_{s2['retry_sale']}" in p["processor_refs"]]
    assert (retry["status"], retry["amount"]) == ("succeeded", 1002)
    assert r2["stats"]["lifetime_value"] == {"usd": 1002 * 2 - 400 + 2502 - 500}
    # Every delivery was applied once.
    outcomes = {d["outcome"] for d in merchant.get_json("/api/v1/webhook-deliveries?limit=100")["data"]}
    assert outcomes == {"applied"}


def test_paypal_duplicated_shuffled_streams_converge(app_client, paypal, paypal_in_order):  # noqa: F811
    stream, _, in_order = paypal_in_order
    expected = _paypal_records(in_order)
    assert len(expected) == 3
    for seed in range(2):
        replay = MixedMerchant(app_client, paypal)
        replay.deliver_until_applied(_noisy(stream.events, random.Random(seed)))
        got = _paypal_records(replay)
        assert got.keys() == expected.keys(), seed
        for email in expected:
            assert got[email] == expected[email], (seed, email)


def test_a_customer_paying_with_stripe_and_paypal_converges_to_one_record(app_client, paypal):  # noqa: F811
    stripe_stream, paypal_stream = Stream("rmx"), PayPalStream("rmx")
    mixed = [mixed_customer_story(stripe_stream, paypal_stream, n) for n in range(2)]
    put_objects(paypal, paypal_stream)
    events = stripe_stream.events + paypal_stream.events
    in_order = MixedMerchant(app_client, paypal)
    in_order.deliver_until_applied(events)
    records = in_order.records_by_email()
    assert set(records) == {m["email"] for m in mixed}
    for m in mixed:
        r = records[m["email"]]
        assert sorted(s["processor_ref"].split(":")[0] for s in r["subscriptions"]) == [
            "paypal", "stripe"]
        assert {p["currency"] for p in r["payments"]} == {"usd", "eur"}
        assert {ref.split(":")[0] for p in r["payments"] for ref in p["processor_refs"]} == {
            "paypal", "stripe"}
        # USD from both processors, EUR from Stripe only.
        assert r["stats"]["lifetime_value"] == m["lifetime_value"], m["email"]
        assert r["stats"]["active_subscriptions"] == m["active_subscriptions"]
    expected = _records(in_order)
    for seed in range(2):
        replay = MixedMerchant(app_client, paypal)
        replay.deliver_until_applied(_noisy(events, random.Random(100 + seed)))
        got = _records(replay)
        assert got.keys() == expected.keys(), seed
        for email in expected:
            assert got[email] == expected[email], (seed, email)
