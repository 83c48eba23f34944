"""Faults: DynamoDB throttles and fails about 10% of the calls; the webhook answers 5xx,
the sender retries, and the end state is the one a fault-free run reaches: no event
lost, none applied twice, no half-written record, no orphan item.

Faults are injected with botocore's own events (bench/ddbhooks.py): throttling
(ThrottlingException, ProvisionedThroughputExceededException) and 500/503 answered
before the request reaches DynamoDB Local, and "lost" responses (the write is applied,
the caller gets a 500). botocore's retries are switched off (one attempt per call) so
every fault reaches the app instead of being retried away.
"""
from __future__ import annotations

import json
import time

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream
from test_reliability_helpers import (
    deliver_noisy,
    diff_records,
    long_story,
    record_figures,
    records,
    table_invariants,
)

from bench import ddbhooks

# The invariants scan the whole table: start this module with it empty.
pytestmark = pytest.mark.usefixtures("table_of_its_own")


def _faulty_run(app_client, customers: int, renewals: int, rate: float, seed: int,  # noqa: F811
                name: str, noisy: bool):
    events = long_story(customers, renewals, prefix=name[:2])
    baseline = make_merchant(app_client)
    baseline.deliver_until_applied(events)
    expected = records(baseline)

    faulty = make_merchant(app_client)
    plan = ddbhooks.FaultPlan(rate=rate, seed=seed)
    t0 = time.monotonic()
    with ddbhooks.botocore_attempts(1), ddbhooks.faults(plan), ddbhooks.recording() as rec:
        if noisy:
            delivered = deliver_noisy(faulty, events, seed=seed, threads=4, max_rounds=60)
        else:
            delivered = _in_order_with_retries(faulty, events)
    seconds = time.monotonic() - t0

    got = records(faulty)
    problems = diff_records(got, expected)
    assert not problems, "\n".join(problems[:5])
    invariants = table_invariants(faulty.account_id, {e["id"] for e in events})
    figures = {
        "customers": customers, "events": len(events), "fault_rate": rate,
        "dynamodb_calls": plan.seen, "faults_injected": plan.total_injected,
        "faults_by_kind": dict(plan.injected), "calls_by_operation": dict(rec.calls),
        **delivered, **invariants, "seconds": round(seconds, 1),
    }
    assert plan.total_injected > 0
    record_figures(name, figures)
    return figures


def _in_order_with_retries(merchant, events, max_attempts: int = 60) -> dict:
    """Stripe's way: each event in order; a 5xx is retried (here at once) until 200."""
    statuses: dict[int, int] = {}
    outcomes: dict[str, int] = {}
    deliveries = 0
    worst = 0
    for event in events:
        for attempt in range(1, max_attempts + 1):
            response = merchant.deliver(event)
            deliveries += 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            body = json.loads(response.body or b"{}")
            key = body.get("outcome") or body.get("error")
            outcomes[key] = outcomes.get(key, 0) + 1
            if response.status_code < 500:
                assert response.status_code == 200, (response.status_code, body, event["type"])
                worst = max(worst, attempt)
                break
        else:
            raise AssertionError(f"{event['id']} never applied in {max_attempts} attempts")
    return {"deliveries": deliveries, "statuses": statuses, "outcomes": outcomes,
            "most_attempts_for_one_event": worst}


def test_faults_in_order_sender_retries_same_end_state(app_client):  # noqa: F811
    figures = _faulty_run(app_client, customers=8, renewals=3, rate=0.10, seed=7,
                          name="faults-quick-in-order", noisy=False)
    assert figures["statuses"].get(200) == figures["events"]


def test_faults_with_duplicated_shuffled_concurrent_deliveries(app_client):  # noqa: F811
    _faulty_run(app_client, customers=8, renewals=3, rate=0.10, seed=8,
                name="faults-quick-noisy", noisy=True)


@pytest.mark.soak
def test_soak_faults_with_duplicated_shuffled_concurrent_deliveries(app_client):  # noqa: F811
    _faulty_run(app_client, customers=150, renewals=7, rate=0.10, seed=9,
                name="faults-soak-noisy", noisy=True)


@pytest.mark.soak
def test_soak_faults_at_a_third_of_all_calls(app_client):  # noqa: F811
    _faulty_run(app_client, customers=40, renewals=3, rate=0.33, seed=10,
                name="faults-soak-33pct", noisy=True)


# --- what a client of the webhook sees when DynamoDB fails ------------------------------


def _customer_event(prefix: str) -> dict:
    s = Stream(prefix)
    s.customer(f"{prefix}@example.com", "Fault Tolerant")
    return s.events[0]


@pytest.mark.parametrize("kind", ["throttle", "capacity", "500", "503", "lost"])
def test_a_failed_write_answers_503_and_the_retry_applies_it(app_client, kind):  # noqa: F811
    merchant = make_merchant(app_client)
    event = _customer_event(f"tw{kind}")
    merchant.deliver(_customer_event(f"tw{kind}warm"))  # the account is cached
    plan = ddbhooks.FaultPlan(rate=1.0, kinds={kind: 1},
                              operations=frozenset({"TransactWriteItems"}))
    with ddbhooks.botocore_attempts(1), ddbhooks.faults(plan):
        first = merchant.deliver(event)
    assert first.status_code == 503, first.body
    assert json.loads(first.body)["error"] == "retry_later"
    again = merchant.deliver(event)
    assert again.status_code == 200
    # A lost response means the first delivery was applied after all: the retry is a duplicate.
    assert json.loads(again.body)["outcome"] == ("duplicate" if kind == "lost" else "applied")
    assert len(merchant.customers()) == 2
    table_invariants(merchant.account_id)


def test_an_applied_but_unacknowledged_event_keeps_its_applied_audit_entry(app_client):  # noqa: F811
    from chalicelib.store import customers as store

    merchant = make_merchant(app_client)
    merchant.deliver(_customer_event("lostwarm"))
    event = _customer_event("lostaudit")
    plan = ddbhooks.FaultPlan(rate=1.0, kinds={"lost": 1},
                              operations=frozenset({"TransactWriteItems"}))
    with ddbhooks.botocore_attempts(1), ddbhooks.faults(plan):
        assert merchant.deliver(event).status_code == 503
    assert json.loads(merchant.deliver(event).body)["outcome"] == "duplicate"
    entries, _ = store.list_deliveries(merchant.account_id, 100, None)
    outcomes = sorted(e["outcome"] for e in entries if e["event_id"] == event["id"])
    assert outcomes.count("applied") == 1, outcomes


def test_a_failed_account_read_answers_503(app_client):  # noqa: F811
    from chalicelib.webhooks import service

    merchant = make_merchant(app_client)
    service._account_cache.pop(merchant.account_id, None)
    plan = ddbhooks.FaultPlan(rate=1.0, kinds={"throttle": 1}, operations=frozenset({"GetItem"}))
    with ddbhooks.botocore_attempts(1), ddbhooks.faults(plan):
        response = merchant.deliver(_customer_event("acctread"))
    assert response.status_code == 503, (response.status_code, response.body)


def test_a_failed_audit_write_of_an_ignored_event_answers_503(app_client):  # noqa: F811
    merchant = make_merchant(app_client)
    merchant.deliver(_customer_event("ignwarm"))
    s = Stream("ign")
    s.event("product.created", {"id": "prod_1", "object": "product"})
    plan = ddbhooks.FaultPlan(rate=1.0, kinds={"500": 1}, operations=frozenset({"PutItem"}))
    with ddbhooks.botocore_attempts(1), ddbhooks.faults(plan):
        response = merchant.deliver(s.events[0])
    assert response.status_code == 503, (response.status_code, response.body)
