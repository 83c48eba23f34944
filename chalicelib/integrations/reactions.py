"""The catalogue's events derived from a record's change (``records.reactions``).

A webhook or a confirmed self-service change hands this the facts it changed, each with
its values before and after; this names the product events they mean (a payment became
succeeded → ``payment.succeeded``) and writes them to the outbox in the record's own
transaction. A redelivered processor event changes no fact and so derives nothing.

Event ids are derived, not drawn: from the account, the fact, the type and, for what can
happen more than once to one object (a payment failing again, a subscription updated),
a digest of the fact's values after the change. So a retried transaction writes the same
event, and two writes that report one happening (an invoice's payment seen both through
its invoice and through its intent; a refund seen as ``refund.created`` and as
``charge.refunded``) name one event id, which the fan-out delivers once
(``integrations.delivery``: a delivery's id derives from the event's).

The object in each event is the record's own view of it (``context.record()``, the
merchant API's shape), never a second serializer.
"""
from __future__ import annotations

import hashlib
import json

from chalicelib import ids
from chalicelib.integrations import catalogue
from chalicelib.records.reactions import Change, Context, Effects
from chalicelib.timeutil import iso_from_epoch

MISSED = {"failed", "requires_action"}
NOT_PURCHASED = {None, "incomplete", "incomplete_expired"}
CLOSED_DISPUTE = {"won", "lost", "warning_closed"}
RUNNING = {"active", "trialing", "past_due", "unpaid"}


def _digest(values: dict) -> str:
    encoded = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(encoded, digest_size=8).hexdigest()


def _changed_fields(change: Change) -> list[str]:
    before = change.before or {}
    return sorted(k for k in set(before) | set(change.after)
                  if before.get(k) != change.after.get(k))


class _Deriver:
    def __init__(self, context: Context):
        self.context = context
        self._record: dict | None = None
        self.events: dict[str, dict] = {}  # event id → event (one per id in a write)

    @property
    def record(self) -> dict:
        if self._record is None:
            self._record = self.context.record()
        return self._record

    def emit(self, event_type: str, obj: dict | None, *key: str, **extra) -> None:
        if obj is None:
            return  # the record's view does not show it (a detached card): nothing to say
        event_id = ids.stable_id("evt", self.context.account_id, event_type, *key)
        if event_id in self.events:
            return
        self.events[event_id] = {
            "event_id": event_id, "type": event_type, "occurred_at": self.context.now,
            "data": catalogue.event_data(event_type, obj, self.record, **extra)}

    # --- the record's objects, as the merchant API shows them -------------------------

    def payment(self, ref: str | None) -> dict | None:
        return next((p for p in self.record["payments"] if ref in p["processor_refs"]), None)

    def subscription(self, fact_id: str) -> dict | None:
        return next((s for s in self.record["subscriptions"] + self.record["payment_plans"]
                     if s["id"] == fact_id), None)

    def order(self, order_id: str) -> dict | None:
        return next((o for o in self.record["orders"] if o["id"] == order_id), None)

    def refund(self, change: Change) -> dict | None:
        for p in self.record["payments"]:
            for r in p["refunds"]:
                if r["id"] == change.fact_id:
                    return {**r, "payment_id": p["id"]}
        a = change.after
        return {"id": change.fact_id, "amount": a.get("amount"), "status": a.get("status"),
                "reason": a.get("reason"), "created_at": iso_from_epoch(a.get("created_at")),
                "payment_id": None}

    def customer(self) -> dict:
        return self.record

    # --- derivations, by fact kind ---------------------------------------------------------

    def on_customer(self, c: Change) -> None:
        if c.before is None:
            # One per record: a second processor customer joining names the same event.
            self.emit("customer.created", self.customer(), self.record["id"])
        else:
            self.emit("customer.updated", self.customer(), c.fact_id, _digest(c.after),
                      changed_fields=_changed_fields(c))

    def on_payment(self, c: Change) -> None:
        a, b = c.after, c.before or {}
        ref = a.get("payment")
        # One payment can reach us as its invoice, its intent and its charge: its events
        # come from the fact that identifies it (the invoice, else the intent), not twice.
        primary = ref == (a.get("invoice") or a.get("intent") or ref)
        payment = self.payment(ref)
        if primary and c.became("status"):
            if a["status"] == "succeeded":
                self.emit("payment.succeeded", payment, c.fact_id)
                if b.get("status") in MISSED:
                    self.emit("payment.recovered", payment, c.fact_id)
                if a.get("one_time") and payment is not None:
                    order_id = ids.stable_id("ord", self.context.account_id,
                                             min(payment["processor_refs"]))
                    self.emit("order.created", self.order(order_id), order_id)
                self._plan_completed(a.get("subscription"))
            elif a["status"] == "failed":
                self.emit("payment.failed", payment, c.fact_id, _digest(a))
        if (a.get("amount_refunded") or 0) > (b.get("amount_refunded") or 0):
            self._refunded(payment)

    def _refunded(self, payment: dict | None) -> None:
        if payment is not None and payment["refunded"]:
            # Keyed by the total refunded: the same refund seen twice is one event.
            self.emit("payment.refunded", payment, min(payment["processor_refs"]),
                      str(payment["refunded"]))

    def _plan_completed(self, subscription_ref: str | None) -> None:
        if not subscription_ref:
            return
        plan = next((p for p in self.record["payment_plans"]
                     if p["processor_ref"] == subscription_ref), None)
        if plan is not None and plan["status"] == "completed":
            self.emit("payment_plan.completed", plan, plan["id"])

    def on_refund(self, c: Change) -> None:
        refund = self.refund(c)
        if c.before is None:
            self.emit("refund.created", refund, c.fact_id)
        if refund["payment_id"] and (c.before is None or c.became("status")):
            self._refunded(next((p for p in self.record["payments"]
                                 if p["id"] == refund["payment_id"]), None))

    def on_dispute(self, c: Change) -> None:
        dispute = next((d for d in self.record["disputes"] if d["id"] == c.fact_id), None)
        if c.before is None:
            self.emit("dispute.opened", dispute, c.fact_id)
        if c.became("status") and c.after["status"] in CLOSED_DISPUTE:
            self.emit("dispute.closed", dispute, c.fact_id)

    def on_subscription(self, c: Change) -> None:
        a, b = c.after, c.before
        sub = self.subscription(c.fact_id)
        if b is None or (b.get("status") in NOT_PURCHASED and a.get("status") not in NOT_PURCHASED):
            order_id = ids.stable_id("ord", self.context.account_id, a["subscription"])
            self.emit("order.created", self.order(order_id), order_id)
        if b is None:
            self.emit("subscription.created", sub, c.fact_id)
        # Known first already ended or ending (its creation delivered late): said too.
        status, was = a.get("status"), (b or {}).get("status")
        b = b or {}
        ending = bool(a.get("cancel_at_period_end") or a.get("cancel_at"))
        was_ending = bool(b.get("cancel_at_period_end") or b.get("cancel_at"))
        named = []
        if status == "canceled" and was != "canceled":
            named.append("subscription.canceled")
        elif ending and not was_ending:
            named.append("subscription.canceling")
        elif was_ending and not ending:
            named.append("subscription.recovered")
        if status == "paused" and was != "paused":
            named.append("subscription.paused")
        elif was == "paused" and status in RUNNING:
            named.append("subscription.resumed")
        changed = _changed_fields(c)
        for event_type in named or ([] if c.before is None else ["subscription.updated"]):
            self.emit(event_type, sub, c.fact_id, _digest(a), changed_fields=changed)

    def on_card(self, c: Change) -> None:
        card = next((k for k in self.record["cards"] if k["id"] == c.fact_id), None)
        self.emit("card.updated", card, c.fact_id, _digest(c.after),
                  changed_fields=_changed_fields(c))


_BY_KIND = {"CUS": "on_customer", "PAY": "on_payment", "REFUND": "on_refund",
            "DISPUTE": "on_dispute", "SUB": "on_subscription", "PM": "on_card"}


def react(context: Context, changes: list[Change]) -> Effects:
    """The outbox events a record's change means (``records.reactions``)."""
    deriver = _Deriver(context)
    # Subscriptions before payments: an order is the subscription's before its payment's.
    order = {"CUS": 0, "SUB": 1, "PAY": 2, "REFUND": 3, "DISPUTE": 4, "PM": 5}
    for change in sorted(changes, key=lambda c: (order.get(c.kind, 9), c.fact_id)):
        handler = _BY_KIND.get(change.kind)
        if handler:
            getattr(deriver, handler)(change)
    return Effects(outbox=list(deriver.events.values()))
