"""A "cancel at period end" that the processor cannot keep itself (PayPal cancels at once
and for good), carried out by the scheduler.

The action (dashboard, merchant API) or the portal records the pending cancel on the
subscription's fact (``cancel_at_period_end``), as for Stripe; PayPal's gateway asks nothing
of PayPal then. This module:

- ``react`` (a records reaction): a PayPal subscription's fact whose pending cancel is
  set plans the due step ``pending_cancel:<sub fact>:<period end>`` (kind
  ``pending_cancel.run``) at ``due_cancel_time``, 48 hours before the next billing time,
  so PayPal starts no new cycle (due at once when that is already past). The period is
  the one current when the cancel was asked for: a billing time that moves afterwards
  (PayPal billed the next cycle anyway) moves nothing. A mark taken back ("keep my
  subscription", recover) drops the step; a subscription that ended keeps it, to no effect.
- ``handle`` (the scheduler's handler): when the step is due and the record still says the
  subscription is set to end, cancels it at PayPal (PayPal's own state makes a repeat
  harmless) and records the cancellation at once, with the period end as its
  ``ended_at``: the record shows it canceling until then (``records.view``), and
  PayPal's own CANCELLED webhook that follows carries no end time to change that. A mark
  taken back meanwhile is done with nothing to do. Payments PayPal took for a cycle after
  the period the customer asked to end (its sales from that billing time on) are
  refunded in full, through the refund action (``actions.refunds``: its ledger,
  PayPal-Request-Id, the activity log, by ``system:pending_cancel``) with the key
  ``late_payments`` uses for the same payment (one refund whichever runs first); one the
  record does not know yet (its webhook not in) is refunded when the step runs again a
  few minutes later, or by ``late_payments`` when its webhook comes.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.domain.events import Ref, SubscriptionChanged
from chalicelib.errors import AppError
from chalicelib.observability import logger
from chalicelib.processors.gateway import ProcessorUnavailable
from chalicelib.records.reactions import Change, Context, Effects
from chalicelib.selfservice import late_payments
from chalicelib.store import steps as steps_store
from chalicelib.store.steps import Step
from chalicelib.timeutil import iso

KIND = "pending_cancel.run"
ACTOR = "system:pending_cancel"
# A payment PayPal took from this long before the period end on is the next cycle's.
BILLING_SLACK_SECONDS = late_payments.BILLING_SLACK_SECONDS
# The step runs again this often while a payment to refund is not in the record yet.
RECHECK_MINUTES = 5
MAX_RECHECKS = 6
ENDED = ("canceled", "incomplete_expired", "ended")
# The processors whose period-end cancel is kept by us.
KEPT_BY_US = ("paypal",)


def step_id(sub_fact: str, period_end: int) -> str:
    return f"pending_cancel:{sub_fact}:{period_end}"


def _pending(values: dict | None) -> tuple[int, int] | None:
    """(period end, due time) of a fact's pending cancel kept by us, or None."""
    values = values or {}
    ref = str(values.get("subscription") or "")
    if ref.partition(":")[0] not in KEPT_BY_US or values.get("status") in ENDED:
        return None
    # Imported only for a processor that needs it (the gateway loads PayPal's client).
    from chalicelib.processors.paypal.gateway import due_cancel_time

    due = due_cancel_time({"processor_ref": ref,
                           "cancel_at_period_end": values.get("cancel_at_period_end"),
                           "current_period_end": values.get("current_period_end")})
    return (values["current_period_end"], due) if due is not None else None


def react(context: Context, changes: list[Change]) -> Effects:
    effects = Effects()
    for change in changes:
        if change.kind != "SUB":
            continue
        before, after = _pending(change.before), _pending(change.after)
        if (before is None) == (after is None):
            continue  # nothing asked or taken back (a moved billing time moves nothing)
        # A subscription that ended keeps its step: the handler finds nothing to do (a
        # step dropped while it runs would lose its outcome).
        if before is not None and change.after.get("status") not in ENDED:
            effects.ops.append(steps_store.cancel_op(context.account_id,
                                                     step_id(change.fact_id, before[0])))
        if after is not None:
            due = max(after[1], int(_parse(context.now).timestamp()))
            effects.ops.append(steps_store.plan_op(Step(
                context.account_id, step_id(change.fact_id, after[0]), KIND,
                iso(datetime.fromtimestamp(due, UTC)), context.customer_id,
                {"sub_fact": change.fact_id, "subscription": change.after["subscription"],
                 "period_end": after[0]})))
    return effects


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def handle(step: Step, now: datetime):
    from chalicelib.actions.service import account_of
    from chalicelib.processors.registry import gateway_for
    from chalicelib.records import service as records
    from chalicelib.scheduler.service import Outcome

    record = records.get_record(step.account_id, step.customer_id or "", consistent=True)
    sub = next((s for s in (record or {}).get("subscriptions", [])
                if s["id"] == step.data.get("sub_fact")), None)
    # Cancelled at the processor (by this step or anyone): the record shows it canceling
    # until the period end (records.view), with the cancel's time.
    ended = sub is not None and bool(sub.get("canceled_at"))
    if ended and step.data.get("cancelled"):
        # Run again for a payment whose webhook was not in yet: refunds only.
        return _refund_later_payments(step, now, record, sub)
    if sub is None or sub["status"] != "canceling" or ended:
        return Outcome.done({"cancelled": False, "why": "no longer set to end"})
    processor, _, paypal_id = sub["processor_ref"].partition(":")
    ref = Ref(processor, paypal_id)
    try:
        gateway_for(account_of(step.account_id), processor).cancel_now(
            ref, prorate=False, invoice_now=False,
            reason="Cancelled at the end of the paid period", idempotency_key=step.step_id)
    except ProcessorUnavailable:
        raise  # unknown outcome: the sweep runs the step again when its lease ends
    except AppError as exc:
        logger.error("a pending cancel could not be carried out",
                     extra={"account_id": step.account_id, "step_id": step.step_id,
                            "error": exc.code})
        return Outcome.failed({"cancelled": False, "error": exc.code, "message": exc.message})
    at = int(now.timestamp())
    # Ended at PayPal now, the customer keeps it until the end of the period paid for
    # (``ended_at``): canceling until then (records.view.subscription_status).
    records.record_confirmed(step.account_id, step.customer_id or "", [SubscriptionChanged(
        occurred_at=at, customer=None, email=None, subscription=ref, status="canceled",
        canceled_at=at, ended_at=int(step.data.get("period_end") or at))])
    return _refund_later_payments(step, now, records.get_record(
        step.account_id, step.customer_id or "", consistent=True), sub)


def _refund_later_payments(step: Step, now: datetime, record: dict | None, sub: dict):
    """Refund, in full, what PayPal took for a cycle after the period the customer asked to
    end; the step's outcome (done, or again in a few minutes for a payment whose webhook
    has not come yet)."""
    from chalicelib.actions.service import account_of
    from chalicelib.processors.registry import gateway_for
    from chalicelib.scheduler.service import Outcome

    processor, _, paypal_id = sub["processor_ref"].partition(":")
    since = int(step.data.get("period_end") or 0) - BILLING_SLACK_SECONDS
    taken = [t for t in gateway_for(account_of(step.account_id), processor).transactions(
        Ref(processor, paypal_id), since, int(now.timestamp()) + 60)
        if t.status in ("COMPLETED", "PARTIALLY_REFUNDED") and (t.at or 0) >= since]
    by_ref = {ref: p for p in (record or {}).get("payments", []) for ref in p["processor_refs"]}
    refunded, missing, refused = [], [], []
    for txn in taken:
        payment = by_ref.get(str(txn.payment))
        if payment is None:
            missing.append(txn.payment.id)
            continue
        if (payment.get("refunded") or 0) >= (payment.get("amount") or 0):
            continue
        # The same refund (its key) as late_payments' step for this payment: one refund.
        if late_payments.refund_in_full(step.account_id, step.customer_id or "",
                                        payment["id"], ACTOR):
            refunded.append(payment["id"])
        else:
            refused.append(payment["id"])
    result = {"cancelled": True, "refunded": refunded}
    if refused:
        result["refund_refused"] = refused
    if missing and step.attempts < MAX_RECHECKS:
        due = now + timedelta(minutes=RECHECK_MINUTES)
        return Outcome.later(iso(due), {**step.data, "cancelled": True})
    if missing:
        logger.error("payments taken after a cancel request were not refunded",
                     extra={"account_id": step.account_id, "step_id": step.step_id})
        result["not_refunded"] = missing
    return Outcome.done(result)
