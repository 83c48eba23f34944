"""Reactions to a record's change are written in its transaction, once per change."""
from __future__ import annotations

from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream

from chalicelib.records import reactions
from chalicelib.store import customers as store


def test_a_reaction_writes_once_per_change_whatever_the_redeliveries(app_client, monkeypatch):  # noqa: F811
    seen: list[list[reactions.Change]] = []

    def react(context: reactions.Context, changes: list[reactions.Change]) -> reactions.Effects:
        seen.append(changes)
        paid = [c for c in changes if c.kind == "PAY" and c.became("status")]
        return reactions.Effects(outbox=[
            {"event_id": f"evt_test_{c.fact_id}_{c.after['status']}", "type": "payment.test",
             "occurred_at": context.now, "data": {"payment_id": c.fact_id,
                                                  "email": context.email}}
            for c in paid])

    monkeypatch.setattr(reactions, "_reactions", lambda: [react])
    merchant = make_merchant(app_client)
    s = Stream("react")
    cus = s.customer("react@example.com", "React")
    s.one_time(cus, 2500)
    for event in s.events + s.events:  # every event twice: the second changes nothing
        assert merchant.deliver(event).status_code == 200
    events = [e for e in store.list_outbox(merchant.account_id) if e["type"] == "payment.test"]
    assert len(events) == 1, events
    assert events[0]["data"]["email"] == "react@example.com"
    customer_id = merchant.customers()[0]["id"]
    assert events[0]["customer_id"] == customer_id
    # The change carried the values before (none: a new payment) and after.
    pay_changes = [c for changes in seen for c in changes if c.kind == "PAY"]
    assert pay_changes and pay_changes[0].before is None
    assert pay_changes[-1].after["status"] == "succeeded"


def test_a_failing_reaction_writes_nothing(app_client, monkeypatch):  # noqa: F811
    def react(context, changes):
        raise RuntimeError("reaction failed")

    monkeypatch.setattr(reactions, "_reactions", lambda: [react])
    merchant = make_merchant(app_client)
    s = Stream("reactfail")
    cus = s.customer("fail@example.com", "Fail")
    s.one_time(cus, 900)
    statuses = [merchant.deliver(e).status_code for e in s.events]
    assert all(code >= 500 for code in statuses), statuses
    assert merchant.customers() == []
