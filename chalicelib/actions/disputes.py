"""Merchant actions on a customer's disputes (chargebacks), on the one action mechanism
(``actions.service.run``): "record repayment" notes a repayment of a lost dispute made
elsewhere (a bank transfer, cash), never above what the dispute took; the record's
dispute then shows what was repaid and what remains.

The dispute is looked up on the customer's own record first (another customer's or an
unknown one is 404); only a lost dispute is repaid (409 otherwise).
"""
from __future__ import annotations

import re

from chalicelib import ids, timeutil
from chalicelib.actions import service as actions
from chalicelib.actions.service import ActionContext, ActionSpec, Result, Step, customer_record
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.store import repayments as store

MAX_METHOD = 100
MAX_NOTE = 2000


def _dispute(record: dict, dispute_id: str) -> dict:
    found = next((d for d in record.get("disputes") or [] if d["id"] == dispute_id), None)
    if found is None:
        raise NotFound("No such dispute for this customer.")
    return found


def repayment_state(account_id: str, dispute: dict) -> dict:
    """A dispute's repayments and what they add up to."""
    rows = store.list_for(account_id, dispute["id"])
    repaid = sum(int(r["amount"]) for r in rows)
    return {"repayments": rows, "repaid": repaid,
            "remaining": max((dispute.get("amount") or 0) - repaid, 0)}


class DisputeActions:
    def __init__(self, ctx: ActionContext, customer_id: str):
        self.ctx = ctx
        self.customer_id = customer_id

    def record_repayment(self, dispute_id: str, amount, method=None, note=None) -> dict:
        """``amount`` in minor units of the dispute's currency, at most what remains."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise BadRequest('"amount" must be a positive whole number of minor units.',
                             code="bad_amount")
        if method is not None and (not isinstance(method, str) or len(method) > MAX_METHOD
                                   or re.search(r"[\x00-\x1f]", method)):
            raise BadRequest(f'"method" must be text of at most {MAX_METHOD} characters.',
                             code="bad_request")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise BadRequest(f'"note" must be text of at most {MAX_NOTE} characters.',
                             code="bad_request")
        spec = ActionSpec(name="dispute.record_repayment", customer_id=self.customer_id,
                          permission="refund", request={"dispute_id": dispute_id,
                                                        "amount": amount, "method": method},
                          note=(note or "").strip() or None)

        def perform(step: Step) -> Result:
            dispute = _dispute(customer_record(self.ctx.account_id, self.customer_id),
                               dispute_id)
            if dispute.get("status") != "lost":
                raise Conflict("Only a lost dispute is repaid.", code="not_applicable")
            state = repayment_state(self.ctx.account_id, dispute)
            if amount > state["remaining"]:
                raise BadRequest("The amount is more than remains to be repaid on this "
                                 "dispute.", code="amount_above_remaining")
            repayment = {"customer_id": self.customer_id, "dispute_id": dispute_id,
                         # One id per action: a retried action writes the same item.
                         "repayment_id": ids.stable_id("rpy", self.ctx.account_id,
                                                       step.key_hash),
                         "kind": "recorded", "amount": amount,
                         "currency": dispute.get("currency") or "", "method":
                         (method or "").strip() or None, "by": self.ctx.actor_id,
                         "at": timeutil.now_iso()}
            after = {"repaid": state["repaid"] + amount,
                     "remaining": state["remaining"] - amount}
            return Result(
                body={"repayment": {k: repayment[k] for k in (
                    "repayment_id", "kind", "amount", "currency", "method", "at")},
                      "dispute": {"id": dispute_id, "amount": dispute.get("amount"), **after}},
                before={"repaid": state["repaid"]}, after=after,
                writes=[store.new_write(self.ctx.account_id, repayment)])

        return actions.run(self.ctx, spec, perform).body
