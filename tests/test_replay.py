"""At-least-once, out-of-order delivery converges: duplicated and shuffled streams give the
same records as one in-order delivery."""
from __future__ import annotations

import random

import pytest
from app_fixtures import app_client, make_merchant, normalize_record  # noqa: F401
from story import story_events


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
