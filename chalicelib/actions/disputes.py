"""Merchant actions on a customer's disputes (chargebacks), on the one action mechanism
(``actions.service.run``):

- "record repayment" notes a repayment of a lost dispute made elsewhere (a bank transfer,
  cash), never above what remains, even when two are recorded at once: the action's
  transaction raises the dispute's recorded total only on the condition that it stays
  within the disputed amount less what its links were paid (``store.recorded_total_write``,
  as the refund ledger's ``available >= amount``); the loser of a race gets a 409 and,
  sent again, the answer for what then remains. Any recorded repayment deactivates the
  open repayment link (if any) at the processor: the link asks for the amount that
  remained when it was sent, so the customer could otherwise pay more than is owed.
  When something still remains, the answer (and the dashboard) offers a new link for it
  (``next``), which "send repayment link" creates for what remains;
- "send repayment link" creates a processor-hosted payment link for what remains (the
  disputed amount minus what was repaid), e-mails it to the customer (kind
  ``dispute_repayment``), records it on the dispute and writes ``dispute.repayment_requested``
  to the outbox. While a link is open (neither paid nor deactivated) a second request
  answers that link: no second link. Two concurrent requests get the same link too: the
  processor call's idempotency key derives from the dispute and what was repaid (not from
  the action's key), so the processor answers both with one link.
- ``react`` (a records reaction): the record's payment that was paid through a repayment
  link (Stripe's ``checkout.session.completed`` names its ``payment_link``) marks that link
  paid, once whatever the redeliveries; the dispute then counts it as repaid.

The dispute is looked up on the customer's own record first (another customer's or an
unknown one is 404); only a lost dispute is repaid (409 otherwise).
"""
from __future__ import annotations

import re

from chalicelib import formatting, ids, templating, timeutil
from chalicelib.actions import service as actions
from chalicelib.actions.service import ActionContext, ActionSpec, Result, Step, customer_record
from chalicelib.domain.events import Ref
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.observability import logger
from chalicelib.processors.registry import gateway_for
from chalicelib.records.reactions import Change, Context, Effects
from chalicelib.store import actions as action_store
from chalicelib.store import repayments as store

MAX_METHOD = 100
MAX_NOTE = 2000


def _dispute(record: dict, dispute_id: str) -> dict:
    found = next((d for d in record.get("disputes") or [] if d["id"] == dispute_id), None)
    if found is None:
        raise NotFound("No such dispute for this customer.")
    return found


def _is_open(row: dict) -> bool:
    return row["kind"] == "link" and not row.get("paid") and not row.get("deactivated_at")


def repayment_state(account_id: str, dispute: dict) -> dict:
    """A dispute's repayments, what they add up to (recorded ones and paid links), what
    remains, and the open repayment link (sent, neither paid nor deactivated) if any."""
    rows = store.list_for(account_id, dispute["id"])
    recorded = paid_links = 0
    for row in rows:
        if row["kind"] == "recorded":
            recorded += row["amount"]
        elif row.get("paid"):
            paid = row["paid"].get("amount")
            paid_links += paid if paid is not None else row["amount"]
    repaid = recorded + paid_links
    open_link = next((r for r in reversed(rows) if _is_open(r)), None)
    return {"repayments": rows, "repaid": repaid, "recorded": recorded,
            "paid_links": paid_links, "open_link": open_link,
            "remaining": max((dispute.get("amount") or 0) - repaid, 0)}


def link_view(row: dict) -> dict:
    """A repayment link as the API and the dashboard show it."""
    paid = row.get("paid")
    return {"repayment_id": row["repayment_id"], "kind": "link", "amount": row["amount"],
            "currency": row["currency"], "url": row["url"], "requested_at": row["at"],
            "requested_by": row["by"],
            "status": "paid" if paid else "deactivated" if row.get("deactivated_at")
            else "open", "paid_at": paid["paid_at"] if paid else None,
            "deactivated_at": row.get("deactivated_at")}


def _link_ref(value: str) -> Ref:
    processor, _, ext = value.partition(":")
    return Ref(processor, ext)


def _processor_of(dispute: dict) -> str:
    ref = dispute.get("processor_ref") or dispute.get("dispute") or dispute.get("processor_id") or ""
    return ref.partition(":")[0] if ":" in ref else "stripe"


def _mail_link(account: dict, record: dict, customer_id: str, dispute: dict, amount: int,
               url: str) -> bool:
    """E-mail the link to the customer; whether it was sent (staff can copy it otherwise)."""
    from chalicelib.mail.sender import MailFailed, Message, Suppressed, send
    from chalicelib.portal.service import brand_of

    brand = brand_of(account)
    locale = formatting.supported_locale(
        ((account.get("settings") or {}).get("portal") or {}).get("locale"))
    context = {"brand": brand, "locale": locale, "customer_name": record.get("name"),
               "amount": formatting.money(amount, dispute.get("currency"), locale),
               "disputed": formatting.money(dispute.get("amount"), dispute.get("currency"),
                                            locale), "portal_link": url}
    try:
        send(Message(from_name=brand["name"], from_address=brand["support_email"],
                     reply_to=brand["support_email"], to=record["email"],
                     subject=templating.render_subject("mail/dispute_repayment.txt", **context),
                     text=templating.render("mail/dispute_repayment.txt", **context),
                     html=templating.render("mail/dispute_repayment.html", **context)),
             account_id=account["account_id"], customer_id=customer_id,
             kind="dispute_repayment")
    except (MailFailed, Suppressed) as exc:
        logger.warning("the repayment link was not mailed", extra={"error": str(exc)})
        return False
    return True


def react(context: Context, changes: list[Change]) -> Effects:
    """A payment paid through a repayment link marks the link paid (records.reactions)."""
    effects = Effects()
    for change in changes:
        link = change.after.get("payment_link")
        if change.kind != "PAY" or not link or change.after.get("status") != "succeeded":
            continue
        if not (change.became("payment_link") or change.became("status")):
            continue
        effects.ops.append(store.paid_op(
            context.account_id, link, change.fact_id, change.after.get("amount"),
            change.after.get("currency"), context.now))
    return effects


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
            # The conditional write that keeps concurrent recordings within the dispute.
            cap = (dispute.get("amount") or 0) - state["paid_links"]
            writes = [store.new_write(self.ctx.account_id, repayment),
                      store.recorded_total_write(self.ctx.account_id, dispute_id, amount, cap,
                                                 state["recorded"])]
            link = state["open_link"]
            deactivated = None
            if link is not None:
                # The link asks for what remained when it was sent: after any repayment
                # made elsewhere the customer could pay it and overpay.
                gateway_for(actions.account_of(self.ctx.account_id),
                            _processor_of(dispute)).deactivate_payment_link(
                    _link_ref(link["link_id"]), step.key("deactivate_link"))
                writes.append(store.deactivated_write(self.ctx.account_id, link,
                                                      repayment["at"]))
                after["link_deactivated"] = link["repayment_id"]
                deactivated = link_view({**link, "deactivated_at": repayment["at"]})
            currency = dispute.get("currency") or ""
            return Result(
                body={"repayment": {k: repayment[k] for k in (
                    "repayment_id", "kind", "amount", "currency", "method", "at")},
                      "dispute": {"id": dispute_id, "amount": dispute.get("amount"), **{
                          k: after[k] for k in ("repaid", "remaining")}},
                      "link_deactivated": deactivated,
                      "next": {"action": "send_repayment_link", "amount": after["remaining"],
                               "currency": currency,
                               "message": "Send a new repayment link for the remaining "
                                          f"{formatting.money(after['remaining'], currency)}."}
                      if deactivated is not None and after["remaining"] > 0 else None},
                before={"repaid": state["repaid"]}, after=after, writes=writes)

        try:
            return actions.run(self.ctx, spec, perform).body
        except action_store.Conflict:
            # Another repayment of this dispute was recorded at the same time and this one
            # would have gone above what remains (or the same key ran twice at once).
            raise Conflict("Another repayment of this dispute was recorded at the same "
                           "time. Check what remains, then send this one again.",
                           code="repayments_changed") from None

        return actions.run(self.ctx, spec, perform).body

    def send_repayment_link(self, dispute_id: str) -> dict:
        """A payment link for what remains of a lost dispute, e-mailed to the customer; the
        open one if there is one. ``{"repayment": link_view, "created", "mailed",
        "dispute": {id, amount, repaid, remaining}}``."""
        spec = ActionSpec(name="dispute.send_repayment_link", customer_id=self.customer_id,
                          permission="refund", request={"dispute_id": dispute_id})

        def perform(step: Step) -> Result:
            record = customer_record(self.ctx.account_id, self.customer_id)
            dispute = _dispute(record, dispute_id)
            if dispute.get("status") != "lost":
                raise Conflict("Only a lost dispute is repaid.", code="not_applicable")
            state = repayment_state(self.ctx.account_id, dispute)
            summary = {"id": dispute_id, "amount": dispute.get("amount"),
                       "repaid": state["repaid"], "remaining": state["remaining"]}
            if state["open_link"] is not None:
                return Result(body={"repayment": link_view(state["open_link"]),
                                    "created": False, "mailed": False, "dispute": summary})
            if state["remaining"] <= 0:
                raise Conflict("Nothing remains to be repaid on this dispute.",
                               code="nothing_remains")
            if not record.get("email"):
                raise Conflict("The customer has no e-mail address to send the link to.",
                               code="no_email")
            amount, currency = state["remaining"], dispute.get("currency") or ""
            account = actions.account_of(self.ctx.account_id)
            # One link per dispute and amount repaid so far, whoever asks: the processor
            # answers concurrent requests (and a retry) with the same link.
            repayment_id = ids.stable_id("rpl", self.ctx.account_id, dispute_id,
                                         str(state["repaid"]))
            link = gateway_for(account, _processor_of(dispute)).create_payment_link(
                amount, currency, f"Repayment of a disputed payment to {account['name']}"[:250],
                {"account_id": self.ctx.account_id, "customer_id": self.customer_id,
                 "dispute_id": dispute_id, "repayment_id": repayment_id},
                f"repayment-link:{repayment_id}")
            row = {"customer_id": self.customer_id, "dispute_id": dispute_id,
                   "repayment_id": repayment_id, "kind": "link", "amount": amount,
                   "currency": currency, "method": None, "by": self.ctx.actor_id,
                   "at": timeutil.now_iso(), "link_id": str(link.link), "url": link.url,
                   "deactivated_at": None}
            mailed = _mail_link(account, record, self.customer_id, dispute, amount, link.url)
            view = link_view(row)
            return Result(
                body={"repayment": view, "created": True, "mailed": mailed,
                      "dispute": summary},
                before={"open_link": None}, after={"open_link": repayment_id,
                                                   "amount": amount, "mailed": mailed},
                outbox=[{"type": "dispute.repayment_requested", "data": {
                    "customer_id": self.customer_id, "dispute_id": dispute_id,
                    "repayment_id": repayment_id, "amount": amount, "currency": currency,
                    "url": link.url}}],
                writes=[store.link_write(self.ctx.account_id, row)])

        return actions.run(self.ctx, spec, perform).body
