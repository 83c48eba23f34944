"""Stripe events → the project's domain events.

Reads both today's payload shapes (``tests/fixtures/stripe/fixtures.json``) and the older ones
that accounts pinned to earlier API versions (and localstripe) send: an invoice's
subscription at the top level or under ``parent.subscription_details``, a subscription's
period at the top level or on its items, a plan or a price.
"""
from __future__ import annotations

from collections.abc import Callable
from math import ceil

from chalicelib.domain.events import (
    Address,
    Card,
    CustomerChanged,
    DisputeChanged,
    DomainEvent,
    LineItem,
    PauseCollection,
    PaymentChanged,
    PaymentMethodChanged,
    Ref,
    RefundChanged,
    SubscriptionChanged,
    Translation,
)
from chalicelib.observability import logger
from chalicelib.processors.stripe import currencies

PROCESSOR = "stripe"

HANDLED_TYPES: dict[str, Callable[[dict, dict], tuple[list[DomainEvent], list[Ref]]]] = {}

_INTERVAL_SECONDS = {"day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}


def handles(*types: str):
    def register(fn):
        for t in types:
            HANDLED_TYPES[t] = fn
        return fn

    return register


def translate(event: dict) -> Translation | None:
    """None for event types the product does not use (recorded and ignored)."""
    handler = HANDLED_TYPES.get(event["type"])
    if handler is None:
        return None
    events, hints = handler(event, event["data"]["object"])
    return Translation(
        event_id=event["id"],
        event_type=event["type"],
        occurred_at=event["created"],
        events=tuple(events),
        owner_hints=tuple(hints),
    )


# --- small readers -------------------------------------------------------------------


def _id(value) -> str | None:
    """A Stripe reference is an id string, or the object itself when expanded."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def _ref(value) -> Ref | None:
    ext = _id(value)
    return Ref(PROCESSOR, ext) if ext else None


# No Stripe amount, count or time comes near these; anything beyond is not data we keep.
_MAX_INT = 2**53
_MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a date can show


def _int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) <= _MAX_INT else None
    if isinstance(value, str):
        text = value.strip()
        # isdecimal, not isdigit: "²" is a digit int() refuses; and a bounded length.
        if text.isascii() and text.isdecimal() and len(text) <= 15:
            return int(text)
    return None


def _time(value) -> int | None:
    """An epoch time in seconds, only if a date can show it."""
    seconds = _int(value)
    return seconds if seconds is not None and 0 <= seconds <= _MAX_TIME else None


def _str(value, limit: int = 500) -> str | None:
    if isinstance(value, str) and value:
        return value[:limit]
    return None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    if isinstance(value, dict):
        value = value.get("data")
    return value if isinstance(value, list) else []


def _currency(value) -> str | None:
    if isinstance(value, str) and len(value) == 3 and value.isalpha():
        return value.lower()
    return None


def _amount(value, currency: str | None) -> int | None:
    """A Stripe amount in the project's stored exponent (chalicelib.money): ISK 100000 from
    Stripe is 1000. None when unknown, without a currency (its unit is unknown), or when
    the stored exponent cannot hold it exactly (fractional krónur from before 2023)."""
    amount = _int(value)
    if amount is None or currency is None:
        return None
    try:
        return currencies.to_stored(amount, currency)
    except ValueError:
        logger.warning("amount not representable in the stored exponent",
                       extra={"currency": currency, "amount": amount})
        return None


def _address(value) -> Address | None:
    value = _dict(value)
    fields = {k: _str(value.get(k), 200) for k in
              ("line1", "line2", "city", "state", "postal_code", "country")}
    return Address(**fields) if any(fields.values()) else None


def _card(value) -> Card | None:
    value = _dict(value)
    card = Card(
        brand=_str(value.get("display_brand") or value.get("brand"), 40),
        last4=_str(value.get("last4"), 4),
        exp_month=_int(value.get("exp_month")),
        exp_year=_int(value.get("exp_year")),
    )
    return card if card.last4 else None


# --- customers ---------------------------------------------------------------------


@handles("customer.created", "customer.updated")
def _customer(event, obj):
    invoice_settings = _dict(obj.get("invoice_settings"))
    return [CustomerChanged(
        occurred_at=event["created"],
        customer=_ref(obj.get("id")),
        email=_str(obj.get("email"), 320),
        name=_str(obj.get("name"), 200),
        phone=_str(obj.get("phone"), 50),
        address=_address(obj.get("address")),
        created_at=_time(obj.get("created")),
        default_payment_method=_ref(invoice_settings.get("default_payment_method")),
    )], []


# --- subscriptions and payment plans --------------------------------------------------


def _subscription_pricing(obj) -> dict:
    """Amount, interval and period from the items (today), or the plan (older versions)."""
    items = _list(obj.get("items"))
    amount = 0
    currency = _currency(obj.get("currency"))
    interval = interval_count = product = None
    period_start = _time(obj.get("current_period_start"))
    period_end = _time(obj.get("current_period_end"))
    for item in items:
        item = _dict(item)
        price = _dict(item.get("price")) or _dict(item.get("plan"))
        plan = _dict(item.get("plan"))
        unit = _int(price.get("unit_amount"))
        if unit is None:
            unit = _int(plan.get("amount")) or 0
        amount += unit * (_int(item.get("quantity")) or 1)
        recurring = _dict(price.get("recurring"))
        interval = interval or _str(recurring.get("interval") or plan.get("interval"), 10)
        interval_count = interval_count or _int(recurring.get("interval_count") or plan.get("interval_count"))
        currency = currency or _currency(price.get("currency") or plan.get("currency"))
        product_obj = price.get("product") or plan.get("product")
        product = product or _str(price.get("nickname") or plan.get("nickname"), 200) or (
            _str(_dict(product_obj).get("name"), 200))
        period_start = period_start or _time(item.get("current_period_start"))
        period_end = period_end or _time(item.get("current_period_end"))
    if not items:
        plan = _dict(obj.get("plan"))
        amount = (_int(plan.get("amount")) or 0) * (_int(obj.get("quantity")) or 1)
        interval = _str(plan.get("interval"), 10)
        interval_count = _int(plan.get("interval_count"))
        currency = currency or _currency(plan.get("currency"))
        product = _str(plan.get("nickname"), 200)
    return {
        "amount": _amount(amount, currency) if (items or obj.get("plan")) else None,
        "currency": currency,
        "interval": interval,
        "interval_count": interval_count,
        "product": product,
        "current_period_start": period_start,
        "current_period_end": period_end,
    }


def _installments(event, obj, pricing) -> int | None:
    """Stripe has no payment plan object: a plan is a subscription that ends after N payments.

    The rule (README): ``metadata.installments`` set by the merchant's checkout; else a
    ``cancel_at`` present when the subscription was created, N = the whole intervals
    between its start and ``cancel_at``.
    """
    metadata = _dict(obj.get("metadata"))
    n = _int(metadata.get("installments"))
    if n and 1 < n <= 120:
        return n
    cancel_at = _time(obj.get("cancel_at"))
    start = _time(obj.get("start_date")) or _time(obj.get("created"))
    if event["type"] == "customer.subscription.created" and cancel_at and start and pricing["interval"]:
        seconds = _INTERVAL_SECONDS.get(pricing["interval"], 0) * (pricing["interval_count"] or 1)
        if seconds:
            n = ceil((cancel_at - start) / seconds - 0.1)
            if 1 < n <= 120:
                return n
    return None


@handles(
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
)
def _subscription(event, obj):
    pricing = _subscription_pricing(obj)
    status = _str(obj.get("status"), 30)
    if status == "active" and _dict(obj.get("pause_collection")):
        status = "paused"
    if event["type"] == "customer.subscription.deleted":
        status = "canceled"
    metadata = _dict(obj.get("metadata"))
    product = _str(metadata.get("product_name"), 200) or pricing["product"]
    return [SubscriptionChanged(
        occurred_at=event["created"],
        customer=_ref(obj.get("customer")),
        email=None,
        subscription=_ref(obj.get("id")),
        status=status,
        product=product,
        amount=pricing["amount"],
        currency=pricing["currency"],
        interval=pricing["interval"],
        interval_count=pricing["interval_count"],
        current_period_start=pricing["current_period_start"],
        current_period_end=pricing["current_period_end"],
        cancel_at_period_end=obj.get("cancel_at_period_end") if isinstance(
            obj.get("cancel_at_period_end"), bool) else None,
        cancel_at=_time(obj.get("cancel_at")) or (0 if "cancel_at" in obj else None),
        canceled_at=_time(obj.get("canceled_at")),
        ended_at=_time(obj.get("ended_at")),
        started_at=_time(obj.get("start_date")) or _time(obj.get("created")),
        installments=_installments(event, obj, pricing),
        payment_method=_ref(obj.get("default_payment_method")),
        pause=_pause(obj),
    )], []


def _pause(obj) -> PauseCollection | None:
    """Stripe's ``pause_collection``: null when collecting, which clears a pause the record
    knows (an empty PauseCollection); absent from the payload, unknown."""
    if "pause_collection" not in obj:
        return None
    pause = _dict(obj.get("pause_collection"))
    return PauseCollection(behavior=_str(pause.get("behavior"), 30),
                           resumes_at=_time(pause.get("resumes_at")))


@handles("subscription_schedule.created", "subscription_schedule.updated")
def _subscription_schedule(event, obj):
    """A schedule that cancels after its phases is a payment plan of that many payments."""
    subscription = _ref(obj.get("subscription"))
    if subscription is None or obj.get("end_behavior") != "cancel":
        return [], []
    total = 0
    for phase in _list(obj.get("phases")):
        phase = _dict(phase)
        iterations = _int(phase.get("iterations"))
        if iterations is None:
            # Newer API versions give a phase's start and end instead of iterations.
            plan = _dict((_list(phase.get("items")) or [{}])[0]).get("plan")
            interval = _str(_dict(plan).get("interval"), 10)
            count = _int(_dict(plan).get("interval_count")) or 1
            start, end = _time(phase.get("start_date")), _time(phase.get("end_date"))
            seconds = _INTERVAL_SECONDS.get(interval or "", 0) * count
            if not (start and end and seconds):
                return [], []
            iterations = max(round((end - start) / seconds), 0)
        total += iterations
    if not 1 < total <= 120:
        return [], []
    return [SubscriptionChanged(
        occurred_at=event["created"], customer=_ref(obj.get("customer")), email=None,
        subscription=subscription, installments=total,
    )], []


# --- invoices (subscription and plan payments) -----------------------------------------


def _invoice_subscription(obj) -> Ref | None:
    top = _ref(obj.get("subscription"))
    if top:
        return top
    parent = _dict(obj.get("parent"))
    return _ref(_dict(parent.get("subscription_details")).get("subscription"))


def _invoice_lines(obj) -> tuple[LineItem, ...] | None:
    currency = _currency(obj.get("currency"))
    lines = []
    for line in _list(obj.get("lines"))[:50]:
        line = _dict(line)
        amount = _amount(line.get("amount"), _currency(line.get("currency")) or currency)
        if amount is None:
            continue
        lines.append(LineItem(description=_str(line.get("description"), 300) or "Item",
                              amount=amount, quantity=_int(line.get("quantity")) or 1))
    return tuple(lines) or None


def _invoice_tax(obj) -> int | None:
    currency = _currency(obj.get("currency"))
    taxes = obj.get("total_taxes")
    if isinstance(taxes, list):
        return _amount(sum(_int(_dict(t).get("amount")) or 0 for t in taxes), currency)
    return _amount(obj.get("tax"), currency)


def _invoice_payment(event, obj, status, amount_field):
    transitions = _dict(obj.get("status_transitions"))
    currency = _currency(obj.get("currency"))
    return [PaymentChanged(
        occurred_at=event["created"],
        customer=_ref(obj.get("customer")),
        email=_str(obj.get("customer_email"), 320),
        payment=_ref(obj.get("id")),
        status=status,
        amount=_amount(obj.get(amount_field), currency),
        currency=currency,
        tax=_invoice_tax(obj),
        description=_str(obj.get("description"), 300),
        lines=_invoice_lines(obj),
        invoice=_ref(obj.get("id")),
        intent=_ref(obj.get("payment_intent")),
        charge=_ref(obj.get("charge")),
        subscription=_invoice_subscription(obj),
        one_time=False,
        payment_method=_ref(obj.get("default_payment_method")),
        paid_at=_time(transitions.get("paid_at")) if status == "succeeded" else None,
        due_at=_time(obj.get("next_payment_attempt")) or _time(obj.get("due_date")),
        number=_str(obj.get("number"), 100),
    )], []


@handles("invoice.paid", "invoice.payment_succeeded")
def _invoice_paid(event, obj):
    # The same fact under two names: both land on the same payment item.
    return _invoice_payment(event, obj, "succeeded", "amount_paid")


@handles("invoice.payment_failed")
def _invoice_failed(event, obj):
    return _invoice_payment(event, obj, "failed", "amount_due")


@handles("invoice.payment_action_required")
def _invoice_action_required(event, obj):
    return _invoice_payment(event, obj, "requires_action", "amount_due")


# --- one-time payments -------------------------------------------------------------------


def _charge_card(charge) -> Card | None:
    return _card(_dict(_dict(charge).get("payment_method_details")).get("card"))


def _fingerprint(card) -> str | None:
    """A card's fingerprint (a card object, or a charge's ``payment_method_details.card``)."""
    return _str(_dict(card).get("fingerprint"), 64)


def _charge_fingerprint(charge) -> str | None:
    return _fingerprint(_dict(_dict(charge).get("payment_method_details")).get("card"))


@handles("payment_intent.succeeded")
def _payment_intent(event, obj):
    invoice = _ref(obj.get("invoice"))
    charges = _list(obj.get("charges"))  # older API versions embed the charges
    latest = obj.get("latest_charge")
    charge = _ref(latest) or (_ref(charges[0]) if charges else None)
    paid_by = latest if isinstance(latest, dict) else (charges[0] if charges else None)
    card = _charge_card(paid_by) if paid_by is not None else None
    currency = _currency(obj.get("currency"))
    amount = _amount(_int(obj.get("amount_received")) or _int(obj.get("amount")), currency)
    return [PaymentChanged(
        occurred_at=event["created"],
        customer=_ref(obj.get("customer")),
        email=_str(obj.get("receipt_email"), 320),
        payment=_ref(obj.get("id")),
        status="succeeded",
        amount=amount,
        currency=currency,
        description=_str(obj.get("description"), 300),
        invoice=invoice,
        intent=_ref(obj.get("id")),
        charge=charge,
        # A payment raised by an invoice belongs to a subscription; one without is an order.
        one_time=invoice is None,
        payment_method=_ref(obj.get("payment_method")),
        card=card,
        card_fingerprint=_charge_fingerprint(paid_by) if paid_by is not None else None,
        paid_at=event["created"],
    )], []


@handles("checkout.session.completed")
def _checkout_session(event, obj):
    details = _dict(obj.get("customer_details"))
    email = _str(details.get("email") or obj.get("customer_email"), 320)
    customer = _ref(obj.get("customer"))
    out: list[DomainEvent] = []
    if details.get("name") or details.get("phone") or details.get("address"):
        out.append(CustomerChanged(
            occurred_at=event["created"], customer=customer, email=email,
            name=_str(details.get("name"), 200), phone=_str(details.get("phone"), 50),
            address=_address(details.get("address")),
        ))
    mode = obj.get("mode")
    if mode == "payment":
        intent = _ref(obj.get("payment_intent"))
        total = _dict(obj.get("total_details"))
        currency = _currency(obj.get("currency"))
        out.append(PaymentChanged(
            occurred_at=event["created"], customer=customer, email=email,
            payment=intent or _ref(obj.get("id")),
            status="succeeded" if obj.get("payment_status") == "paid" else "pending",
            amount=_amount(obj.get("amount_total"), currency),
            currency=currency,
            tax=_amount(total.get("amount_tax"), currency),
            intent=intent,
            invoice=_ref(obj.get("invoice")) if mode != "payment" else None,
            one_time=True,
            paid_at=event["created"] if obj.get("payment_status") == "paid" else None,
            payment_link=_ref(obj.get("payment_link")),
        ))
    elif mode == "subscription" and _ref(obj.get("subscription")):
        out.append(SubscriptionChanged(
            occurred_at=event["created"], customer=customer, email=email,
            subscription=_ref(obj.get("subscription")),
            started_at=_time(obj.get("created")),
        ))
    if not out and (customer or email):
        out.append(CustomerChanged(occurred_at=event["created"], customer=customer, email=email))
    return out, []


# --- refunds and disputes -------------------------------------------------------------


def _refund_event(event, obj, customer=None):
    currency = _currency(obj.get("currency"))
    return RefundChanged(
        occurred_at=event["created"],
        customer=_ref(obj.get("customer")) or customer,
        email=None,
        refund=_ref(obj.get("id")),
        amount=_amount(obj.get("amount"), currency),
        currency=currency,
        status=_str(obj.get("status"), 30),
        reason=_str(obj.get("reason"), 100),
        intent=_ref(obj.get("payment_intent")),
        charge=_ref(obj.get("charge")),
        created_at=_time(obj.get("created")),
    )


@handles("refund.created", "refund.updated")
def _refund(event, obj):
    hints = [r for r in (_ref(obj.get("payment_intent")), _ref(obj.get("charge"))) if r]
    return [_refund_event(event, obj)], hints


@handles("charge.refunded")
def _charge_refunded(event, obj):
    customer = _ref(obj.get("customer"))
    intent = _ref(obj.get("payment_intent"))
    charge = _ref(obj.get("id"))
    out: list[DomainEvent] = [PaymentChanged(
        occurred_at=event["created"], customer=customer, email=None,
        payment=intent or charge,
        intent=intent, charge=charge,
        invoice=_ref(obj.get("invoice")),
        card=_charge_card(obj),
        card_fingerprint=_charge_fingerprint(obj),
        amount_refunded=_amount(obj.get("amount_refunded"), _currency(obj.get("currency"))),
    )]
    # Since 2022-11-15 the charge no longer embeds its refunds; refund.* events carry them.
    for refund in _list(obj.get("refunds")):
        if isinstance(refund, dict) and _id(refund):
            out.append(_refund_event(event, {**refund, "customer": refund.get("customer")}, customer))
    return out, [r for r in (intent, charge) if r]


@handles("charge.dispute.created", "charge.dispute.closed")
def _dispute(event, obj):
    intent = _ref(obj.get("payment_intent"))
    charge = _ref(obj.get("charge"))
    currency = _currency(obj.get("currency"))
    return [DisputeChanged(
        occurred_at=event["created"], customer=None, email=None,
        dispute=_ref(obj.get("id")),
        amount=_amount(obj.get("amount"), currency),
        currency=currency,
        status=_str(obj.get("status"), 40),
        reason=_str(obj.get("reason"), 100),
        intent=intent, charge=charge,
        created_at=_time(obj.get("created")),
    )], [r for r in (intent, charge) if r]


# --- payment methods -------------------------------------------------------------------


@handles("payment_method.attached", "payment_method.detached",
         "payment_method.automatically_updated")
def _payment_method(event, obj):
    detached = event["type"] == "payment_method.detached"
    customer = _ref(obj.get("customer"))
    if detached and customer is None:
        previous = _dict(_dict(event.get("data")).get("previous_attributes"))
        customer = _ref(previous.get("customer"))
    return [PaymentMethodChanged(
        occurred_at=event["created"],
        customer=customer,
        # A card's billing e-mail is not the customer's: never route a record by it.
        email=None,
        payment_method=_ref(obj.get("id")),
        card=_card(obj.get("card")),
        card_fingerprint=_fingerprint(obj.get("card")),
        attached=not detached,
        created_at=_time(obj.get("created")),
    )], []
