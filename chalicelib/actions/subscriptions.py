"""Merchant actions on a customer's subscriptions and failed payments, on the one action
mechanism (``actions.service.run``): cancel now or at period end, cancel a scheduled
cancellation now, recover one, pause and resume collection, change plan (with the
processor's proration preview), and retry a failed payment.

Every object is looked up in the customer's own record first (another customer's or an
unknown id is 404 before the processor is called); an action that does not apply to the
object's state is 409 and changes nothing. What the processor confirmed goes to the
record, the outbox and the activity log in one transaction (``run``).

Payment plans: a merchant may cancel one (the unpaid balance stays unpaid: the answer says
how much); the portal never offers it (selfservice).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable

from chalicelib.actions import service as actions
from chalicelib.actions.service import (
    ActionContext,
    ActionSpec,
    Result,
    Step,
    account_of,
    customer_record,
)
from chalicelib.domain.events import PauseCollection, Ref, SubscriptionChanged
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.processors.gateway import PAUSE_BEHAVIORS, Gateway, PlanChangePreview
from chalicelib.processors.registry import gateway_for
from chalicelib.selfservice.service import SelfService, paid_event, payable_ref
from chalicelib.staff import roles

# Which states each action applies to (the record's derived status).
RUNNING = ("active", "trialing", "past_due", "unpaid", "paused", "canceling")
CANCELABLE_AT_END = ("active", "trialing", "past_due", "paused")
PAUSABLE = ("active", "trialing", "past_due", "unpaid")
PLAN_CHANGEABLE = ("active", "trialing", "past_due")
RETRYABLE = ("failed", "requires_action")
PRICE_RE = re.compile(r"^(price|plan)_[A-Za-z0-9_]{1,100}$|^[A-Za-z0-9_-]{1,64}$")
MAX_REASON = 500
MAX_NOTE = 2000
DAY = 86400
MAX_PAUSE_DAYS = 366 * 2

# (account, processor) → that processor's gateway for the account.
GatewayFor = Callable[[dict, str], Gateway]


def _subscription(record: dict, subscription_id: str) -> dict:
    for sub in record["subscriptions"] + record["payment_plans"]:
        if sub["id"] == subscription_id:
            return sub
    raise NotFound("No such subscription for this customer.")


def _ref(value: str | None) -> Ref:
    processor, _, ext = (value or "").partition(":")
    if not processor or not ext:
        raise Conflict("This subscription is not known to a processor.", code="not_applicable")
    return Ref(processor, ext)


def _text(value, limit: int, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be text.", code="bad_request")
    value = value.strip()
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters.", code="bad_request")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise BadRequest(f"{name} has control characters.", code="bad_request")
    return value or None


def _not_applicable(message: str) -> Conflict:
    return Conflict(message, code="not_applicable")


def _public(sub: dict) -> dict:
    return {"id": sub["id"], "status": sub["status"]}


class SubscriptionActions:
    """The actions on one customer's subscriptions, for one staff member or API client."""

    def __init__(self, ctx: ActionContext, customer_id: str,
                 gateway_factory: GatewayFor = gateway_for):
        self.ctx = ctx
        self.customer_id = customer_id
        self._gateway_factory = gateway_factory
        self._gateways: dict[str, Gateway] = {}

    def gateway_of(self, ref: Ref) -> Gateway:
        """The gateway of the processor that holds ``ref`` (a customer may have Stripe and
        PayPal subscriptions side by side)."""
        if ref.processor not in self._gateways:
            self._gateways[ref.processor] = self._gateway_factory(
                account_of(self.ctx.account_id), ref.processor)
        return self._gateways[ref.processor]

    def _spec(self, name: str, permission: str, request: dict, reason=None,
              note=None) -> ActionSpec:
        return ActionSpec(name=name, customer_id=self.customer_id, permission=permission,
                          request=request, reason=_text(reason, MAX_REASON, "The reason"),
                          note=_text(note, MAX_NOTE, "The note"))

    def _run(self, spec: ActionSpec, perform: Callable[[Step], Result]) -> dict:
        return actions.run(self.ctx, spec, perform).body

    def _changed(self, sub: dict, **values) -> SubscriptionChanged:
        return SubscriptionChanged(occurred_at=int(time.time()),
                                   customer=_ref(sub["processor_customer"])
                                   if sub.get("processor_customer") else None,
                                   email=None, subscription=_ref(sub["processor_ref"]), **values)

    def _outbox(self, event_type: str, sub: dict, **data) -> dict:
        return {"type": event_type, "data": {"customer_id": self.customer_id,
                                             "subscription_id": sub["id"], **data}}

    # --- cancelling --------------------------------------------------------------------

    def cancel(self, subscription_id: str, at: str, *, prorate: bool = False,
               reason: str | None = None, note: str | None = None) -> dict:
        """``at``: "now" (also a subscription set to end: its scheduled cancellation is
        made now) or "period_end" (keep it active until the next rebill date)."""
        if at not in ("now", "period_end"):
            raise BadRequest('"at" must be "now" or "period_end".', code="bad_request")
        if not isinstance(prorate, bool):
            raise BadRequest('"prorate" must be true or false.', code="bad_request")
        if at == "period_end" and prorate:
            raise BadRequest("Nothing is prorated at the end of the period.", code="bad_request")
        name = "subscription.cancel_now" if at == "now" else "subscription.cancel_at_period_end"
        permission = "cancel_now" if at == "now" else "cancel_at_period_end"
        spec = self._spec(name, permission, {"subscription_id": subscription_id, "at": at,
                                             "prorate": prorate}, reason, note)

        def perform(step: Step) -> Result:
            sub = _subscription(customer_record(self.ctx.account_id, self.customer_id), subscription_id)
            ref = _ref(sub["processor_ref"])
            unpaid = sub.get("remaining_balance") if "installments_total" in sub else None
            if at == "now":
                if sub["status"] not in RUNNING:
                    raise _not_applicable("This subscription has already ended.")
                self.gateway_of(ref).cancel_now(ref, prorate=prorate, invoice_now=prorate,
                                        reason=spec.reason, idempotency_key=step.key("cancel"))
                now = int(time.time())
                event = self._changed(sub, status="canceled", canceled_at=now, ended_at=now)
                outbox = self._outbox("subscription.canceled", sub, reason=spec.reason,
                                      prorated=prorate, scheduled=sub["status"] == "canceling",
                                      unpaid_balance=unpaid)
                after = {"status": "canceled"}
            else:
                if sub["status"] == "canceling":
                    raise _not_applicable("This subscription is already set to end at the end "
                                          "of its period.")
                if sub["status"] not in CANCELABLE_AT_END:
                    raise _not_applicable("Only a running subscription can be set to end.")
                self.gateway_of(ref).cancel_at_period_end(ref, spec.reason,
                                                  idempotency_key=step.key("cancel"))
                event = self._changed(sub, cancel_at_period_end=True)
                outbox = self._outbox("subscription.canceling", sub, reason=spec.reason,
                                      ends_at=sub.get("current_period_end"),
                                      unpaid_balance=unpaid)
                after = {"status": "canceling", "ends_at": sub.get("current_period_end")}
            body = {"subscription": {"id": sub["id"], **after}}
            if unpaid is not None:
                body["unpaid_balance"] = {"amount": unpaid, "currency": sub.get("currency")}
            return Result(body=body, events=[event], outbox=[outbox], before=_public(sub),
                          after=after, target=self.customer_id)

        return self._run(spec, perform)

    def recover(self, subscription_id: str, *, note: str | None = None) -> dict:
        """Take back a subscription set to end at period end."""
        spec = self._spec("subscription.recover", "cancel_at_period_end",
                          {"subscription_id": subscription_id}, None, note)

        def perform(step: Step) -> Result:
            sub = _subscription(customer_record(self.ctx.account_id, self.customer_id), subscription_id)
            if sub["status"] != "canceling":
                raise _not_applicable("This subscription is not set to end.")
            ref = _ref(sub["processor_ref"])
            self.gateway_of(ref).undo_cancel(ref, idempotency_key=step.key("recover"))
            after = {"status": "active"}
            return Result(body={"subscription": {"id": sub["id"], **after}},
                          events=[self._changed(sub, cancel_at_period_end=False, cancel_at=0)],
                          outbox=[self._outbox("subscription.recovered", sub)],
                          before=_public(sub), after=after)

        return self._run(spec, perform)

    # --- pausing collection -------------------------------------------------------------

    def pause(self, subscription_id: str, behavior: str, resumes_at: int | None = None, *,
              reason: str | None = None, note: str | None = None) -> dict:
        if behavior not in PAUSE_BEHAVIORS:
            raise BadRequest(f'"behavior" must be one of {", ".join(PAUSE_BEHAVIORS)}.',
                             code="bad_request")
        if resumes_at is not None:
            now = int(time.time())
            if isinstance(resumes_at, bool) or not isinstance(resumes_at, int) or \
                    not now < resumes_at <= now + MAX_PAUSE_DAYS * DAY:
                raise BadRequest('"resumes_at" must be a time in the next two years.',
                                 code="bad_request")
        spec = self._spec("subscription.pause", "change_subscription",
                          {"subscription_id": subscription_id, "behavior": behavior,
                           "resumes_at": resumes_at}, reason, note)

        def perform(step: Step) -> Result:
            sub = _subscription(customer_record(self.ctx.account_id, self.customer_id), subscription_id)
            if sub["status"] == "paused":
                raise _not_applicable("Collection is already paused.")
            if sub["status"] not in PAUSABLE:
                raise _not_applicable("Only a running subscription can be paused.")
            ref = _ref(sub["processor_ref"])
            self.gateway_of(ref).pause_collection(ref, behavior, resumes_at,
                                                  idempotency_key=step.key("pause"))
            after = {"status": "paused", "behavior": behavior, "resumes_at": resumes_at}
            return Result(body={"subscription": {"id": sub["id"], **after}},
                          events=[self._changed(sub, status="paused", pause=PauseCollection(
                              behavior=behavior, resumes_at=resumes_at))],
                          outbox=[self._outbox("subscription.paused", sub, behavior=behavior,
                                               resumes_at=resumes_at)],
                          before=_public(sub), after=after)

        return self._run(spec, perform)

    def resume(self, subscription_id: str, *, note: str | None = None) -> dict:
        spec = self._spec("subscription.resume", "change_subscription",
                          {"subscription_id": subscription_id}, None, note)

        def perform(step: Step) -> Result:
            sub = _subscription(customer_record(self.ctx.account_id, self.customer_id), subscription_id)
            if sub["status"] != "paused":
                raise _not_applicable("Collection of this subscription is not paused.")
            ref = _ref(sub["processor_ref"])
            self.gateway_of(ref).resume_collection(ref, idempotency_key=step.key("resume"))
            after = {"status": "active"}
            return Result(body={"subscription": {"id": sub["id"], **after}},
                          events=[self._changed(sub, status="active")],
                          outbox=[self._outbox("subscription.resumed", sub)],
                          before=_public(sub), after=after)

        return self._run(spec, perform)

    # --- changing plan ------------------------------------------------------------------

    def _plan_target(self, subscription_id: str, price) -> dict:
        if not isinstance(price, str) or not PRICE_RE.match(price):
            raise BadRequest('"price" must be the processor\'s price id.', code="bad_request")
        sub = _subscription(customer_record(self.ctx.account_id, self.customer_id), subscription_id)
        if "installments_total" in sub:
            raise _not_applicable("A payment plan's plan cannot be changed.")
        if sub["status"] not in PLAN_CHANGEABLE:
            raise _not_applicable("Only an active subscription can change its plan.")
        return sub

    def preview_plan_change(self, subscription_id: str, price: str,
                            prorate: bool = True) -> PlanChangePreview:
        """What the processor would bill (no change, no action key: a read)."""
        if not isinstance(prorate, bool):
            raise BadRequest('"prorate" must be true or false.', code="bad_request")
        if not roles.allows(self.ctx.role, "change_subscription"):
            raise actions.forbidden(self.ctx, self._spec(
                "subscription.change_plan", "change_subscription", {}))
        sub = self._plan_target(subscription_id, price)
        ref = _ref(sub["processor_ref"])
        return self.gateway_of(ref).preview_plan_change(ref, price, prorate, int(time.time()))

    def change_plan(self, subscription_id: str, price: str, prorate: bool,
                    proration_date: int, *, reason: str | None = None,
                    note: str | None = None) -> dict:
        """``proration_date``: the preview's, so the change bills what was shown."""
        if not isinstance(prorate, bool):
            raise BadRequest('"prorate" must be true or false.', code="bad_request")
        now = int(time.time())
        if isinstance(proration_date, bool) or not isinstance(proration_date, int) or \
                not now - DAY <= proration_date <= now + 60:
            raise BadRequest('"proration_date" must be the preview\'s (within the last day).',
                             code="bad_request")
        spec = self._spec("subscription.change_plan", "change_subscription",
                          {"subscription_id": subscription_id, "price": price,
                           "prorate": prorate, "proration_date": proration_date}, reason, note)

        def perform(step: Step) -> Result:
            sub = self._plan_target(subscription_id, price)
            ref = _ref(sub["processor_ref"])
            preview = self.gateway_of(ref).preview_plan_change(ref, price, prorate, proration_date)
            self.gateway_of(ref).change_plan(ref, price, prorate, proration_date,
                                     idempotency_key=step.key("change_plan"))
            amount = next((line.amount for line in reversed(preview.lines)
                           if not line.proration), None)
            after = {"price": price, "amount": amount, "currency": preview.currency,
                     "prorated": prorate, "proration_amount": preview.proration_amount}
            return Result(body={"subscription": {"id": sub["id"], **after}},
                          events=[self._changed(sub, amount=amount, currency=preview.currency)],
                          outbox=[self._outbox("subscription.updated", sub, change="plan",
                                               **after)],
                          before={**_public(sub), "amount": sub.get("amount"),
                                  "currency": sub.get("currency")}, after=after)

        return self._run(spec, perform)

    # --- retrying a failed payment ---------------------------------------------------------

    def retry_payment(self, payment_id: str, card_id: str | None = None, *,
                      note: str | None = None) -> dict:
        """Pay a failed invoice now with the card on file (``card_id`` None) or another of
        the customer's cards. A decline or a bank's authentication request is an answer,
        not an error: the action is done (a new try is a new action)."""
        if card_id is not None and (not isinstance(card_id, str) or
                                    not re.match(r"^card_[A-Za-z0-9_-]{4,80}$", card_id)):
            raise BadRequest('"card_id" must be one of the customer\'s card ids.',
                             code="bad_request")
        spec = self._spec("payment.retry", "retry_payment",
                          {"payment_id": payment_id, "card_id": card_id}, None, note)

        def perform(step: Step) -> Result:
            record = customer_record(self.ctx.account_id, self.customer_id)
            payment = next((p for p in record["payments"] if p["id"] == payment_id), None)
            if payment is None:
                raise NotFound("No such payment for this customer.")
            invoice = payable_ref(payment)
            if payment["status"] not in RETRYABLE or invoice is None:
                raise _not_applicable("This payment is not waiting to be paid.")
            sub = next((s for s in record["subscriptions"] + record["payment_plans"]
                        if s["processor_ref"] == payment.get("subscription")), None)
            gateway = self.gateway_of(invoice)
            helper = SelfService(account_of(self.ctx.account_id), self.customer_id, gateway,
                                 processor=invoice.processor)
            customer = helper._processor_customer(record, sub)
            card = helper._card(customer, card_id) if card_id else None
            outcome = gateway.pay_invoice(
                invoice, card.payment_method if card else None, idempotency_key=step.key("pay"))
            body = {"payment": {"id": payment_id, "outcome": outcome.status,
                                "message": outcome.message}}
            events = [paid_event(payment, invoice, customer, card)] \
                if outcome.status == "paid" else []
            return Result(body=body, events=events, before={"status": payment["status"]},
                          after={"outcome": outcome.status, "card_id": card_id})

        return self._run(spec, perform)
