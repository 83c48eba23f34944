"""A container's copy of the records it last wrote (store.customers.load_for_write): the
steady webhook path skips its read, and a stale copy is caught by the profile's ``rev``
check and read again, never lost."""
from __future__ import annotations

import json

import pytest
from app_fixtures import DynamoCalls, app_client, make_merchant, normalize_record  # noqa: F401
from stripe_events import Stream
from test_reliability_helpers import table_invariants

# The invariants scan the whole table: start this module with it empty.
pytestmark = pytest.mark.usefixtures("table_of_its_own")


def _renewals(prefix: str, months: int) -> tuple[Stream, list[dict]]:
    s = Stream(prefix)
    cus = s.customer(f"{prefix}@example.com", "Cache Kept")
    sub = s.subscription(cus, 1500, currency="eur")
    for _ in range(months):
        s.invoice(cus, sub, 1500)
    return s, s.events


def _outcome(response) -> str:
    assert response.status_code == 200, response.body
    return json.loads(response.body)["outcome"]


def test_the_steady_path_is_one_transaction_in_a_warm_container(app_client):  # noqa: F811
    merchant = make_merchant(app_client)
    _, events = _renewals("warmcache", 3)
    merchant.deliver_until_applied(events[:-1])
    with DynamoCalls() as ddb:
        assert _outcome(merchant.deliver(events[-1])) == "applied"
    assert ddb.calls == ["TransactWriteItems"], ddb.calls
    # A redelivery is refused by the event marker in that one transaction.
    with DynamoCalls() as ddb:
        assert _outcome(merchant.deliver(events[-1])) == "duplicate"
    assert ddb.calls == ["TransactWriteItems", "PutItem"], ddb.calls
    table_invariants(merchant.account_id, {e["id"] for e in events})


def test_a_stale_copy_is_refused_read_again_and_nothing_is_lost(app_client):  # noqa: F811
    """Another container wrote the record since this one kept its copy: the transaction
    built on the copy fails its ``rev`` condition, the record is read again, and the end
    state is the same as a delivery without any copy."""
    from chalicelib.store import customers as store

    merchant = make_merchant(app_client)
    _, events = _renewals("stalecache", 3)
    merchant.deliver_until_applied(events[:-2])
    customer_id = merchant.customers()[0]["id"]
    _, stale = store._collection_cache[customer_id]
    assert _outcome(merchant.deliver(events[-2])) == "applied"
    store.remember_collection(stale)  # as if another container had written events[-2]
    with DynamoCalls() as ddb:
        assert _outcome(merchant.deliver(events[-1])) == "applied"
    # Read again at once (no back-off, the pointer kept: a fold would show in the read).
    assert ddb.calls == ["TransactWriteItems", "Query", "TransactWriteItems"], ddb.calls
    fresh = make_merchant(app_client)
    store.forget_all_collections()
    fresh.deliver_until_applied(events)
    assert normalize_record(merchant.get_json(f"/api/v1/customers/{customer_id}")) == \
        normalize_record(fresh.get_json(f"/api/v1/customers/{fresh.customers()[0]['id']}"))
    table_invariants(merchant.account_id, {e["id"] for e in events})


@pytest.mark.parametrize("kind", ["500", "lost"])
def test_a_write_of_unknown_outcome_drops_the_copy(app_client, kind):  # noqa: F811
    """After a 5xx or a lost answer the write may or may not have landed: the next
    delivery reads the record again instead of trusting the copy."""
    from bench import ddbhooks
    from chalicelib.store import customers as store

    merchant = make_merchant(app_client)
    _, events = _renewals(f"unknown{kind}", 2)
    merchant.deliver_until_applied(events[:-1])
    customer_id = merchant.customers()[0]["id"]
    assert customer_id in store._collection_cache
    plan = ddbhooks.FaultPlan(rate=1.0, kinds={kind: 1}, operations=frozenset({"TransactWriteItems"}))
    with ddbhooks.botocore_attempts(1), ddbhooks.faults(plan):
        assert merchant.deliver(events[-1]).status_code == 503
    assert customer_id not in store._collection_cache
    with DynamoCalls() as ddb:
        outcome = _outcome(merchant.deliver(events[-1]))
    assert outcome == ("duplicate" if kind == "lost" else "applied")
    assert ddb.calls[0] == "Query", ddb.calls
    table_invariants(merchant.account_id, {e["id"] for e in events}, strict_audit=kind != "lost")


def test_the_copy_is_bounded_in_records_and_items(app_client, monkeypatch):  # noqa: F811
    from chalicelib.store import customers as store

    merchant = make_merchant(app_client)
    s = Stream("boundcache")
    for i in range(5):
        cus = s.customer(f"bound{i}@example.com", f"Bound {i}")
        s.subscription(cus, 1000 + i)
    store.forget_all_collections()
    monkeypatch.setattr(store, "COLLECTION_CACHE_RECORDS", 3)
    merchant.deliver_until_applied(s.events)
    assert len(store._collection_cache) == 3
    assert store._collection_items == sum(n for n, _ in store._collection_cache.values())
    # Each record is a profile, its Stripe customer's own profile fact and a subscription
    # (3 items; the new one 2): 7 items keep two records.
    monkeypatch.setattr(store, "COLLECTION_CACHE_ITEMS", 7)
    s.events.clear()
    s.customer("bound9@example.com", "Bound 9")
    merchant.deliver_until_applied(s.events)
    assert len(store._collection_cache) == 2 and store._collection_items <= 7
    # A record over the per-record bound is not kept at all.
    monkeypatch.setattr(store, "COLLECTION_CACHE_ITEMS_PER_RECORD", 1)
    s.events.clear()
    s.subscription(s.customer("bound10@example.com", "Bound 10"), 500)
    merchant.deliver_until_applied(s.events)
    kept = {c.profile["email"] for _, c in store._collection_cache.values()}
    assert "bound10@example.com" not in kept
