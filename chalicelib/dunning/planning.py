"""Which dunning steps a payment fact's change plans: the reaction (records.reactions) of
dunning. It only describes writes (due steps) from the change it is given; the steps'
handlers (dunning.steps) read the account's settings and the invoice when they run.

  a subscription's or plan's invoice payment that became failed or requires_action
      → ``dunning:<invoice>:start`` (``dunning.start``), due now: it opens the invoice's
        dunning once, and plans the e-mail and (mode "ours") the first retry
  one that became succeeded after it had failed
      → ``dunning:<invoice>:recovered`` (``dunning.recovered``), due now: it closes the
        dunning and plans the recovered e-mail; the pending retry and final action are
        dropped in this same write (their handlers check the invoice anyway)

A redelivered event changes no fact, so it plans nothing. Payments that are not an
invoice's (one-time orders) are not dunned.
"""
from __future__ import annotations

from chalicelib.records.reactions import Change, Context, Effects
from chalicelib.store import steps as steps_store
from chalicelib.store.steps import Step

FAILED = ("failed", "requires_action")


def invoice_key(invoice_ref: str) -> str:
    """The invoice's part of step ids (``stripe:in_…``)."""
    return invoice_ref


def retry_step_id(invoice_ref: str) -> str:
    return f"dunning:{invoice_key(invoice_ref)}:retry"


def final_step_id(invoice_ref: str) -> str:
    return f"dunning:{invoice_key(invoice_ref)}:final"


def mail_step_id(invoice_ref: str, mail: str, n: int | None = None) -> str:
    return f"dunning:{invoice_key(invoice_ref)}:mail:{mail}" + (f":{n}" if n else "")


def react(context: Context, changes: list[Change]) -> Effects:
    effects = Effects()
    for change in changes:
        if change.kind != "PAY" or change.after.get("one_time") or \
                not change.after.get("invoice") or not change.became("status"):
            continue
        invoice = change.after["invoice"]
        status = change.after.get("status")
        # How the news came: "confirmed" (the customer paid in the portal), "staff" (a
        # merchant's retry action) or "webhook".
        data = {"invoice": invoice, "payment_fact": change.fact_id, "status": status,
                "source": context.source,
                "subscription": change.after.get("subscription"),
                "failure_message": change.after.get("failure_message")}
        if status in FAILED:
            effects.ops.append(steps_store.plan_op(Step(
                context.account_id, f"dunning:{invoice_key(invoice)}:start", "dunning.start",
                context.now, context.customer_id, data)))
        elif status == "succeeded" and (change.before or {}).get("status") in FAILED:
            effects.ops.append(steps_store.cancel_op(context.account_id,
                                                     retry_step_id(invoice)))
            effects.ops.append(steps_store.cancel_op(context.account_id,
                                                     final_step_id(invoice)))
            effects.ops.append(steps_store.plan_op(Step(
                context.account_id, f"dunning:{invoice_key(invoice)}:recovered",
                "dunning.recovered", context.now, context.customer_id, data)))
    return effects
