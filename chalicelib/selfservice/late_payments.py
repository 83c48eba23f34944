"""Payments a processor took after we cancelled the subscription, refunded in full
automatically.

PayPal's cancel is immediate and final, but a cycle PayPal was already billing can still
land after it (its sale dated after the cancel), and a period-end cancel is carried out by
us 48 hours early (``selfservice.pending_cancel``), so a late sweep can let PayPal bill the
next cycle first. The customer owes neither.

- ``react`` (a records reaction): when a payment of such a subscription succeeds, or the
  subscription becomes cancelled, each of its succeeded payments taken at or after the
  cancel (``refund_from``) and not yet refunded plans the due step
  ``late_payment:<payment>`` (kind ``late_payment.refund``), due at once. Either order of
  the two webhooks plans it: the second write sees both facts.
- ``handle`` (the scheduler's handler): reads the record again and refunds what remains
  of the payment through the refund action (``actions.refunds``: its ledger,
  ``PayPal-Request-Id``, the activity log, by ``ACTOR``), with the idempotency key
  ``late_payment:<payment>:refund`` that ``pending_cancel`` uses for the same payment: a
  step planned twice, run twice or racing the pending cancel's own refund makes one
  refund.
"""
from __future__ import annotations

from datetime import datetime

from chalicelib.errors import AppError
from chalicelib.observability import logger
from chalicelib.records.reactions import Change, Context, Effects
from chalicelib.store import steps as steps_store
from chalicelib.store.steps import Step

KIND = "late_payment.refund"
ACTOR = "system:late_payment"
# The processors that may take a payment after a cancel (Stripe starts no invoice then).
REFUNDED_PROCESSORS = ("paypal",)
# A payment PayPal took from this long before the end of the period paid for is the next
# cycle's (PayPal bills around its next billing time, not at it to the second).
BILLING_SLACK_SECONDS = 3600
NOTE = "Taken after the subscription was cancelled: refunded automatically."


def step_id(payment_id: str) -> str:
    return f"late_payment:{payment_id}"


def refund_key(payment_id: str) -> str:
    """The refund action's idempotency key for a payment taken after the cancel (one
    refund per payment, whoever makes it)."""
    return f"late_payment:{payment_id}:refund"


def _epoch(value: str | None) -> int | None:
    if not value:
        return None
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


def refund_from(sub: dict) -> int | None:
    """From when a payment of the subscription (as the record shows it) is one taken after
    we cancelled it: the cancel's time, or for a period-end cancel carried out early, the
    end of the period paid for less PayPal's billing slack, whichever is first. None when
    the subscription is not cancelled at its processor."""
    if str(sub.get("processor_ref") or "").partition(":")[0] not in REFUNDED_PROCESSORS:
        return None
    canceled_at = _epoch(sub.get("canceled_at"))
    if canceled_at is None or sub.get("status") not in ("canceled", "canceling"):
        return None
    ends = _epoch(sub.get("cancel_at"))
    return min(canceled_at, ends - BILLING_SLACK_SECONDS) if ends else canceled_at


def late_payments(record: dict, sub: dict) -> list[dict]:
    """The subscription's succeeded payments taken after we cancelled it that still have
    something left to refund."""
    since = refund_from(sub)
    if since is None:
        return []
    return [p for p in record.get("payments") or []
            if p.get("subscription") == sub["processor_ref"] and p["status"] == "succeeded"
            and (_epoch(p.get("paid_at")) or 0) >= since
            and (p.get("refunded") or 0) < (p.get("amount") or 0)]


def react(context: Context, changes: list[Change]) -> Effects:
    effects = Effects()
    subs: set[str] = set()  # processor refs of the subscriptions to look at
    for change in changes:
        status = change.after.get("status")
        ref = change.after.get("subscription")
        if not isinstance(ref, str) or ref.partition(":")[0] not in REFUNDED_PROCESSORS:
            continue
        became = {"SUB": "canceled", "PAY": "succeeded"}.get(change.kind)
        if became is not None and status == became and change.became("status"):
            subs.add(ref)
    if not subs:
        return effects
    record = context.record()
    due = context.now
    for sub in record.get("subscriptions", []) + record.get("payment_plans", []):
        if sub["processor_ref"] not in subs:
            continue
        for payment in late_payments(record, sub):
            effects.ops.append(steps_store.plan_op(Step(
                context.account_id, step_id(payment["id"]), KIND, due, context.customer_id,
                {"payment": payment["id"], "subscription": sub["id"]})))
    return effects


def refund_in_full(account_id: str, customer_id: str, payment_id: str, actor: str) -> bool:
    """Refund what remains of a payment taken after the cancel, through the refund action;
    True when refunded, False when the processor or the action refused it (logged). An
    unknown outcome (5xx), or the same refund still being made by the other caller
    (``action_in_progress``), raises: the caller's step runs again, with the same key."""
    from chalicelib.actions.refunds import Refunds
    from chalicelib.actions.service import ActionContext
    from chalicelib.staff import roles

    ctx = ActionContext(account_id=account_id, actor_id=actor, actor_email=None,
                        role=roles.ADMIN, ip=None, source="api",
                        idempotency_key=refund_key(payment_id))
    try:
        Refunds(ctx, customer_id).refund(payment_id, None, "requested_by_customer", NOTE)
    except AppError as exc:
        if exc.status >= 500 or exc.code == "action_in_progress":
            raise
        logger.error("a payment taken after a cancel could not be refunded",
                     extra={"account_id": account_id, "payment_id": payment_id,
                            "error": exc.code})
        return False
    return True


def handle(step: Step, now: datetime):
    from chalicelib.records import service as records
    from chalicelib.scheduler.service import Outcome

    del now
    record = records.get_record(step.account_id, step.customer_id or "", consistent=True)
    payment_id = step.data.get("payment")
    sub = next((s for s in (record or {}).get("subscriptions", []) +
                (record or {}).get("payment_plans", [])
                if s["id"] == step.data.get("subscription")), None)
    if record is None or sub is None or payment_id not in {
            p["id"] for p in late_payments(record, sub)}:
        return Outcome.done({"refunded": False, "why": "nothing left to refund"})
    if not refund_in_full(step.account_id, step.customer_id or "", payment_id, ACTOR):
        return Outcome.failed({"refunded": False, "payment": payment_id})
    return Outcome.done({"refunded": True, "payment": payment_id})
