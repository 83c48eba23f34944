"""Concurrency: racing first events for one e-mail make one record; racing deliveries of
one event apply it once (exactly one "applied" in the audit trail, the rest
"duplicate"), on the first-sight path and on the steady path.
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream
from test_reliability_helpers import record_figures, table_invariants

# The invariants scan the whole table: start this module with it empty.
pytestmark = pytest.mark.usefixtures("table_of_its_own")

THREADS = 8


def _race(fn, args: list) -> list:
    """Run fn(arg) for every arg at (nearly) the same moment."""
    barrier = threading.Barrier(len(args))

    def go(arg):
        barrier.wait(timeout=30)
        return fn(arg)

    with ThreadPoolExecutor(max_workers=len(args)) as pool:
        return list(pool.map(go, args))


def _audit(merchant, event_id: str) -> list[str]:
    from chalicelib.store import customers as store

    entries, _ = store.list_deliveries(merchant.account_id, 100, None)
    return sorted(e["outcome"] for e in entries if e["event_id"] == event_id)


def _parallel_first_events(app_client, rounds: int, senders: int, name: str):  # noqa: F811
    retries = 0
    for round_ in range(rounds):
        merchant = make_merchant(app_client)
        s = Stream(f"pf{name[-4:]}{round_}")
        events = []
        for i in range(senders):
            # Different Stripe customers, one person: the e-mail in several spellings.
            cus = s.customer(["Race@Example.com", "race@example.com", "RACE@EXAMPLE.COM"][i % 3],
                             f"Racer {i}")
            s.one_time(cus, 100 + i, email="race@example.com")
            events.append(s.events[-1])  # the payment: its e-mail starts the record
        statuses = _race(lambda e, m=merchant: m.deliver(e).status_code, events)
        retries += sum(1 for code in statuses if code == 503)
        merchant.deliver_until_applied(events)  # what answered 503 is delivered again
        merchant.deliver_until_applied(s.events)  # and the customer.created events
        customers = merchant.customers()
        assert [c["email"] for c in customers] == ["race@example.com"], customers
        record = merchant.get_json(f"/api/v1/customers/{customers[0]['id']}")
        assert record["stats"]["orders"] == senders
        assert record["stats"]["lifetime_value"] == {"usd": sum(100 + i for i in range(senders))}
        table_invariants(merchant.account_id, {e["id"] for e in s.events})
    record_figures(name, {"rounds": rounds, "racing_senders": senders, "answered_503": retries})


def test_parallel_first_events_for_one_email_make_one_record(app_client):  # noqa: F811
    _parallel_first_events(app_client, rounds=2, senders=THREADS, name="concurrency-first-quick")


@pytest.mark.soak
def test_soak_parallel_first_events_for_one_email_make_one_record(app_client):  # noqa: F811
    _parallel_first_events(app_client, rounds=20, senders=16, name="concurrency-first-soak")


@pytest.mark.parametrize("path", ["first-sight", "steady"])
def test_parallel_duplicate_deliveries_apply_once(app_client, path):  # noqa: F811
    merchant = make_merchant(app_client)
    s = Stream(f"dup{path[:3]}")
    cus = s.customer("dup@example.com", "Dupli Cate")
    sub = s.subscription(cus, 1500)
    if path == "steady":
        merchant.deliver_until_applied(s.events)
        s.events.clear()
        s.invoice(cus, sub, 1500)
        event = s.events[0]
    else:
        event = s.events[0]  # customer.created for an e-mail the app has never seen
    responses = _race(merchant.deliver, [event] * THREADS)
    outcomes = sorted(json.loads(r.body).get("outcome") or json.loads(r.body)["error"]
                      for r in responses)
    assert all(r.status_code in (200, 503) for r in responses), outcomes
    merchant.deliver_until_applied([event])
    audit = _audit(merchant, event["id"])
    assert audit.count("applied") == 1, audit
    assert outcomes.count("applied") == 1, outcomes
    assert len(merchant.customers()) == 1
    if path == "steady":
        record = merchant.get_json(f"/api/v1/customers/{merchant.customers()[0]['id']}")
        assert record["stats"]["lifetime_value"] == {"usd": 1500}
    table_invariants(merchant.account_id)
    record_figures(f"concurrency-duplicates-{path}", {"senders": THREADS, "outcomes": outcomes,
                                                       "audit": audit})
