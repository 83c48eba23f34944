"""What a signed-in customer can do about their billing: cards, paying a failed invoice,
cancelling a subscription at period end and taking it back.

Plain Python over the record (``records``) and the processor's gateway. Every object a
customer names (subscription, payment, card) is looked up in *their* record or *their*
processor customer's cards first; anything else is "not found". Nothing is recorded as
done unless the processor said so; what it confirmed is recorded at once
(``records.record_confirmed``), and the webhook that follows carries the same facts.
"""
from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib import ids
from chalicelib.blocks import service as blocks
from chalicelib.domain.events import PaymentChanged, PaymentMethodChanged, Ref, SubscriptionChanged
from chalicelib.errors import BadRequest, Conflict, Forbidden, NotFound
from chalicelib.processors.gateway import Gateway, PaymentOutcome, ProcessorError, SavedCard
from chalicelib.records import service as records

ACTIVE = {"active", "trialing", "past_due", "canceling", "unpaid", "paused"}


def _ref(value: str | None) -> Ref | None:
    if not value or ":" not in value:
        return None
    processor, _, ext = value.partition(":")
    return Ref(processor, ext)


def payable_ref(payment: dict) -> Ref | None:
    """What the processor pays for a missed payment: its invoice; for a processor without
    invoices (PayPal: a subscription's outstanding balance), the missed payment's own ref.
    None: not a payment anyone can pay again."""
    if payment.get("invoice"):
        return _ref(payment["invoice"])
    refs = payment.get("processor_refs") or []
    if payment.get("subscription") and not payment.get("one_time") and len(refs) == 1:
        return _ref(refs[0])
    return None


def paid_event(payment: dict, paid: Ref, customer: Ref | None,
               card: SavedCard | None) -> PaymentChanged:
    """What a successful payment of a missed payment records at once (the webhook that
    follows says the same). An invoice is paid; a balance without an invoice (PayPal) is
    recovered, not received: the processor's own payment of it (PayPal's sale) is the
    money in, and would otherwise count twice."""
    now = int(time.time())
    if payment.get("invoice"):
        return PaymentChanged(occurred_at=now, customer=customer, email=None, payment=paid,
                              invoice=paid, status="succeeded",
                              payment_method=card.payment_method if card else None,
                              card=card.card if card else None, paid_at=now)
    return PaymentChanged(occurred_at=now, customer=customer, email=None, payment=paid,
                          status="recovered")


def card_id(account_id: str, payment_method: Ref) -> str:
    """The id a browser sees for a saved card (never the processor's own id)."""
    return ids.stable_id("card", account_id, str(payment_method))


@dataclass(frozen=True)
class CardView:
    id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    expired: bool
    used_by: tuple[str, ...]  # subscription ids charged to it


def _unless_blocked(method):
    """A self-service change: 403 for a customer whose details the merchant blocked."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        blocks.check_self_service(self.account_id, self.customer_id)
        return method(self, *args, **kwargs)
    return guarded


class SelfService:
    def __init__(self, account: dict, customer_id: str, gateway: Gateway, now=None,
                 processor: str = "stripe"):
        self.account = account
        self.account_id = account["account_id"]
        self.customer_id = customer_id
        self.gateway = gateway  # the gateway of ``processor``
        self.processor = processor
        self._now = now or (lambda: datetime.now(UTC))

    # --- lookups, always inside this customer's record ------------------------------------

    def record(self) -> dict:
        record = records.get_record(self.account_id, self.customer_id, consistent=True)
        if record is None:
            raise NotFound("no such customer")
        return record

    def _subscription(self, record: dict, subscription_id: str) -> dict:
        for sub in record["subscriptions"] + record["payment_plans"]:
            if sub["id"] == subscription_id:
                return sub
        raise NotFound("no such subscription")

    def _processor_customer(self, record: dict, sub: dict | None = None) -> Ref:
        # Without a subscription: a customer of this gateway's processor (a customer may
        # pay with Stripe and with PayPal).
        ref = _ref((sub or {}).get("processor_customer")) or next(
            (_ref(s["processor_customer"]) for s in record["subscriptions"] + record["payment_plans"]
             if str(s.get("processor_customer") or "").startswith(self.processor + ":")), None)
        if ref is None:
            raise NotFound("no payment account for this customer")
        return ref

    def _saved_cards(self, customer: Ref) -> dict[str, SavedCard]:
        return {card_id(self.account_id, c.payment_method): c
                for c in self.gateway.list_cards(customer)}

    def _card(self, customer: Ref, chosen_card_id: str, to_charge: bool = True,
              saved: dict[str, SavedCard] | None = None) -> SavedCard:
        card = (saved if saved is not None else self._saved_cards(customer)).get(chosen_card_id)
        if card is None:
            raise NotFound("no such card")
        if to_charge and self._expired(card.card):
            raise BadRequest("This card has expired. Choose another card or add a new one.",
                             code="card_expired")
        return card

    def _expired(self, card) -> bool:
        now = self._now()
        return bool(card.exp_year and card.exp_month and
                    (card.exp_year, card.exp_month) < (now.year, now.month))

    # --- cards -------------------------------------------------------------------------

    def cards(self, record: dict | None = None) -> list[CardView]:
        """The customer's saved cards. ``record``: one the caller has just read (a page
        that shows the record too), to save a second read."""
        record = record or self.record()
        customer = self._processor_customer(record)
        charged_to: dict[str, list[str]] = {}
        for sub in record["subscriptions"] + record["payment_plans"]:
            if sub["status"] in ACTIVE and sub.get("card_id"):
                charged_to.setdefault(sub["card_id"], []).append(sub["id"])
        out = []
        for cid, saved in self._saved_cards(customer).items():
            c = saved.card
            out.append(CardView(cid, c.brand, c.last4, c.exp_month, c.exp_year, self._expired(c),
                                tuple(charged_to.get(cid, ()))))
        return out

    @_unless_blocked
    def start_card_setup(self) -> str:
        """A client secret for the processor's card form (the card never reaches us)."""
        return self.gateway.create_card_setup(self._processor_customer(self.record())).client_secret

    @_unless_blocked
    def set_card(self, subscription_id: str | None, chosen_card_id: str, for_all: bool) -> None:
        record = self.record()
        targets = ([s for s in record["subscriptions"] + record["payment_plans"]
                    if s["status"] in ACTIVE] if for_all
                   else [self._subscription(record, subscription_id or "")])
        if not targets:
            raise BadRequest("You have no active subscription to change.")
        customer = self._processor_customer(record, targets[0])
        saved = self._saved_cards(customer)
        card = self._card(customer, chosen_card_id, saved=saved)
        # The cards themselves too, as the processor lists them: the record can name each
        # subscription's card at once, before (or without) the processor's
        # payment_method events.
        events: list = [PaymentMethodChanged(occurred_at=int(time.time()), customer=customer,
                                             email=None, payment_method=c.payment_method,
                                             card=c.card, attached=True)
                        for c in saved.values()]
        for sub in targets:
            if sub["status"] not in ACTIVE:
                raise Conflict("This subscription has ended; its card cannot be changed.")
            self.gateway.set_subscription_card(_ref(sub["processor_ref"]), card.payment_method)
            events.append(SubscriptionChanged(
                occurred_at=int(time.time()), customer=customer, email=None,
                subscription=_ref(sub["processor_ref"]), payment_method=card.payment_method))
        if for_all:
            self.gateway.set_default_card(customer, card.payment_method)
        records.record_confirmed(self.account_id, self.customer_id, events)
        self.pay_open_invoices(chosen_card_id, [s["processor_ref"] for s in targets])

    def pay_open_invoices(self, chosen_card_id: str,
                          subscriptions: list[str] | None = None) -> dict[str, str]:
        """A card the customer just chose pays every open invoice (of ``subscriptions``)
        at once: the customer's own payment, not a retry (no retry cap counts it). A
        decline or an unreachable processor leaves the invoice to its dunning. Payment id →
        outcome."""
        outcomes = {}
        for payment in self.record()["payments"]:
            if payment["status"] not in ("failed", "requires_action") or \
                    not payment.get("invoice") or (subscriptions is not None and
                                                   payment.get("subscription") not in subscriptions):
                continue
            try:
                outcomes[payment["id"]] = self.pay_now(
                    payment["id"], chosen_card_id, attempt=f"new-card:{chosen_card_id}").status
            except (ProcessorError, Conflict) as exc:
                outcomes[payment["id"]] = type(exc).__name__
        return outcomes

    @_unless_blocked
    def remove_card(self, chosen_card_id: str) -> None:
        for card in self.cards():
            if card.id == chosen_card_id:
                if card.used_by:
                    raise Conflict("This card pays for an active subscription; choose another "
                                   "card for it first.", code="card_in_use")
                customer = self._processor_customer(self.record())
                saved = self._card(customer, chosen_card_id, to_charge=False)
                self.gateway.detach_card(saved.payment_method)
                records.record_confirmed(self.account_id, self.customer_id, [
                    PaymentMethodChanged(occurred_at=int(time.time()), customer=customer,
                                         email=None, payment_method=saved.payment_method,
                                         card=saved.card, attached=False)])
                return
        raise NotFound("no such card")

    # --- paying a failed invoice --------------------------------------------------------

    @_unless_blocked
    def pay_now(self, payment_id: str, chosen_card_id: str | None,
                attempt: str) -> PaymentOutcome:
        """Pay a missed payment: an invoice with the chosen card; a balance without an
        invoice (PayPal) from the payment method the payer keeps at the processor
        (``chosen_card_id`` None)."""
        record = self.record()
        payment = next((p for p in record["payments"] if p["id"] == payment_id), None)
        if payment is None:
            raise NotFound("no such payment")
        invoice = payable_ref(payment)
        if payment["status"] not in ("failed", "requires_action") or invoice is None:
            raise Conflict("This payment is not waiting to be paid.", code="not_payable")
        sub = next((s for s in record["subscriptions"] + record["payment_plans"]
                    if s["processor_ref"] == payment.get("subscription")), None)
        customer = self._processor_customer(record, sub)
        card = self._card(customer, chosen_card_id or "") if payment.get("invoice") else None
        method = card.payment_method if card else None
        # One key per customer's try: a double click pays once, a new try is a new attempt.
        key = hashlib.sha256(f"{invoice}|{method}|{attempt}".encode()).hexdigest()
        outcome = self.gateway.pay_invoice(invoice, method, idempotency_key=key)
        if outcome.status == "paid":
            records.record_confirmed(self.account_id, self.customer_id,
                                     [paid_event(payment, invoice, customer, card)])
        return outcome

    # --- cancel at period end, and undo ---------------------------------------------------

    def can_self_cancel(self, sub: dict) -> bool:
        allowed = (self.account.get("settings") or {}).get("portal", {}).get("self_cancel", True)
        return bool(allowed) and "installments_total" not in sub and sub["status"] in (
            "active", "trialing", "past_due")

    @_unless_blocked
    def cancel(self, subscription_id: str, reason: str | None) -> None:
        record = self.record()
        sub = self._subscription(record, subscription_id)
        if "installments_total" in sub:
            raise Forbidden("Payment plans cannot be cancelled here; please contact support.")
        if not self.can_self_cancel(sub):
            raise Forbidden("Cancelling is not available for this subscription.")
        reason = (reason or "").strip()[:500] or None
        ref = _ref(sub["processor_ref"])
        self.gateway.cancel_at_period_end(ref, reason)
        self._confirm_subscription(sub, ref, cancel_at_period_end=True,
                                   event_type="subscription.canceling", reason=reason)

    def can_keep(self, sub: dict) -> bool:
        """Whether "Keep my subscription" applies: set to end, and self-cancel is on."""
        allowed = (self.account.get("settings") or {}).get("portal", {}).get("self_cancel", True)
        return bool(allowed) and "installments_total" not in sub and \
            sub["status"] == "canceling" and sub.get("recoverable", True)

    @_unless_blocked
    def keep(self, subscription_id: str) -> None:
        record = self.record()
        sub = self._subscription(record, subscription_id)
        if sub["status"] != "canceling":
            raise Conflict("This subscription is not set to end.", code="not_canceling")
        if not self.can_keep(sub):
            raise Forbidden("This change is not available here.")
        ref = _ref(sub["processor_ref"])
        self.gateway.undo_cancel(ref)
        self._confirm_subscription(sub, ref, cancel_at_period_end=False,
                                   event_type="subscription.recovered", reason=None)

    def _confirm_subscription(self, sub: dict, ref: Ref, *, cancel_at_period_end: bool,
                              event_type: str, reason: str | None) -> None:
        now = self._now()
        records.record_confirmed(
            self.account_id, self.customer_id,
            [SubscriptionChanged(occurred_at=int(time.time()),
                                 customer=_ref(sub.get("processor_customer")), email=None,
                                 subscription=ref, cancel_at_period_end=cancel_at_period_end)],
            outbox=[{"event_id": ids.new_id("evt"), "type": event_type,
                     "occurred_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                     "data": {"subscription_id": sub["id"], "reason": reason,
                              "ends_at": sub.get("current_period_end"),
                              "source": "customer_portal"}}])
