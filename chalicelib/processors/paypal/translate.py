"""PayPal events → the project's domain events.

Dispatches on the event type, then on the resource's type and version, since one event
type comes in several shapes (``BILLING.SUBSCRIPTION.CREATED`` of a v2 ``subscription``
or of a legacy ``Agreement``; ``PAYMENT.CAPTURE.REFUNDED`` of a v2 ``refund`` or of a v1
``capture``). Families read: v2 subscriptions (``BILLING.SUBSCRIPTION.*`` including
``PAYMENT.FAILED``), legacy agreements, v1 sales (``PAYMENT.SALE.*``), v2 captures and
their refunds and reversals, checkout orders (``CHECKOUT.ORDER.*``), disputes
(``CUSTOMER.DISPUTE.*`` and the legacy ``RISK.DISPUTE.CREATED``) and vault tokens
(``VAULT.PAYMENT-TOKEN.*``, ``VAULT.CREDIT-CARD.*``). Any other type (plans, v1 orders,
authorizations, …) translates to nothing: recorded and ignored. So does a shape that
names nothing we could file it under (a reversal that names no sale).

PayPal ids carry no type and sales and captures share one namespace (a dispute's
``seller_transaction_id`` names either), so refs are typed here: ``txn_<id>`` (a v1
sale or a v2 capture), ``order_<id>``, ``refund_<id>``, ``dispute_<id>``, ``payer_<id>``
(a PayPal account, the processor customer), ``vault_<id>`` (a vault customer),
``token_<id>`` / ``card_<id>`` (a vault token, a v1 vault card), ``payment_<PAY-id>`` (a v1
payment), and subscriptions by PayPal's own id (``I-…``, v2 and legacy alike).

Sales and captures carry no payer: they name their subscription (``billing_agreement_id``)
or order (``supplementary_data.related_ids.order_id``, the ``up`` link) as owner hints, and
refunds name their sale or capture; records.apply finds the record through them, or asks
PayPal (client.PayPalClient.owner_of).

A failed subscription payment (``BILLING.SUBSCRIPTION.PAYMENT.FAILED``, or any subscription
event whose ``billing_info.last_failed_payment`` is set) is a payment ``due_<sub>_<time>``,
``failed`` while the subscription has an outstanding balance and ``recovered`` (not a
payment received: PayPal's sale of the retry is) once it has none.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from chalicelib.domain.events import (
    Address,
    Card,
    CustomerChanged,
    DisputeChanged,
    DomainEvent,
    LineItem,
    PaymentChanged,
    PaymentMethodChanged,
    Ref,
    RefundChanged,
    SubscriptionChanged,
    Translation,
)
from chalicelib.processors.paypal.values import amount as money_of
from chalicelib.processors.paypal.values import parse_time

PROCESSOR = "paypal"
_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
# A subscription's ref is PayPal's id itself: no "_", which separates a typed ref's kind.
_SUBSCRIPTION_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
_MAX_INSTALLMENTS = 120

Handler = Callable[[dict, dict], tuple[list[DomainEvent], list[Ref]]]


# --- small readers ---------------------------------------------------------------------


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _str(value, limit: int = 500) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


def _int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdecimal() \
            and len(value.strip()) <= 9:
        return int(value.strip())
    return None


def ref(kind: str, paypal_id) -> Ref | None:
    """A typed ref (see the module); None for a missing or malformed id."""
    if not isinstance(paypal_id, str) or not _ID.fullmatch(paypal_id):
        return None
    return Ref(PROCESSOR, f"{kind}_{paypal_id}")


def subscription_ref(paypal_id) -> Ref | None:
    if not isinstance(paypal_id, str) or not _SUBSCRIPTION_ID.fullmatch(paypal_id):
        return None
    return Ref(PROCESSOR, paypal_id)


def _link_id(resource: dict, rel: str, path_part: str) -> str | None:
    """The last path segment of the resource's link ``rel`` whose path holds ``path_part``."""
    for link in _list(resource.get("links")):
        link = _dict(link)
        href = link.get("href")
        if link.get("rel") == rel and isinstance(href, str) and path_part in href:
            return href.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    return None


def _positive(value: int | None) -> int | None:
    return abs(value) if value is not None else None


def _address_v2(value) -> Address | None:
    value = _dict(value)
    fields = {"line1": _str(value.get("address_line_1"), 200),
              "line2": _str(value.get("address_line_2"), 200),
              "city": _str(value.get("admin_area_2"), 200),
              "state": _str(value.get("admin_area_1"), 200),
              "postal_code": _str(value.get("postal_code"), 200),
              "country": _str(value.get("country_code"), 200)}
    return Address(**fields) if any(fields.values()) else None


def _address_v1(value) -> Address | None:
    value = _dict(value)
    fields = {k: _str(value.get(k), 200) for k in ("line1", "line2", "city", "state", "postal_code")}
    fields["country"] = _str(value.get("country_code"), 200)
    return Address(**fields) if any(fields.values()) else None


def _name(*parts) -> str | None:
    return _str(" ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()), 200)


# --- dispatch -----------------------------------------------------------------------------


def translate(event: dict) -> Translation | None:
    """None for event types and shapes the product does not use (recorded and ignored)."""
    handler = _handler(event)
    if handler is None:
        return None
    events, hints = handler(event, event["resource"])
    return Translation(event_id=event["id"], event_type=event["type"],
                       occurred_at=event["occurred_at"], events=tuple(events),
                       owner_hints=tuple(dict.fromkeys(h for h in hints if h)))


def _handler(event: dict) -> Handler | None:
    event_type = event["type"].upper()
    resource = event["resource"]
    resource_type = str(event.get("resource_type") or "").lower()
    v2 = str(event.get("resource_version") or "").startswith("2")
    if event_type.startswith("BILLING.SUBSCRIPTION."):
        if resource_type == "agreement" or (not v2 and "agreement_details" in resource):
            return _agreement
        if resource_type == "subscription" or v2:
            return _subscription
        return None
    if event_type.startswith("PAYMENT.SALE."):
        # REFUNDED and REVERSED carry the refund (naming its sale), the others the sale.
        if event_type in ("PAYMENT.SALE.REFUNDED", "PAYMENT.SALE.REVERSED") or "sale_id" in resource:
            return _sale_refund
        return _sale
    if event_type.startswith("PAYMENT.CAPTURE."):
        if resource_type == "refund" or event_type in ("PAYMENT.CAPTURE.REFUNDED",
                                                       "PAYMENT.CAPTURE.REVERSED"):
            return _capture_refund
        return _capture
    if event_type.startswith("CHECKOUT.ORDER."):
        return _order
    if event_type.startswith("CUSTOMER.DISPUTE."):
        return _dispute
    if event_type == "RISK.DISPUTE.CREATED":
        return _risk_dispute
    if event_type.startswith("VAULT.PAYMENT-TOKEN."):
        return _vault_token
    if event_type.startswith("VAULT.CREDIT-CARD."):
        return _vault_card
    return None


# --- subscriptions ----------------------------------------------------------------------

_STATUS_V2 = {"APPROVAL_PENDING": "incomplete", "APPROVED": "incomplete", "ACTIVE": "active",
              "SUSPENDED": "paused", "CANCELLED": "canceled", "EXPIRED": "canceled"}
_STATUS_V1 = {"pending": "incomplete", "active": "active", "suspended": "paused",
              "cancelled": "canceled", "canceled": "canceled", "expired": "canceled"}
_TYPE_STATUS = {"BILLING.SUBSCRIPTION.CANCELLED": "canceled",
                "BILLING.SUBSCRIPTION.EXPIRED": "canceled",
                "BILLING.SUBSCRIPTION.SUSPENDED": "paused"}
_INTERVALS = {"day": "day", "week": "week", "month": "month", "year": "year"}


def _installments(cycles) -> int | None:
    """A plan whose regular billing ends after N payments is a payment plan (as Stripe's
    subscriptions that end after N payments are)."""
    n = _int(cycles)
    return n if n is not None and 1 < n <= _MAX_INSTALLMENTS else None


def _regular_cycle_v2(plan: dict) -> dict:
    cycles = [_dict(c) for c in _list(plan.get("billing_cycles"))]
    return next((c for c in cycles if c.get("tenure_type") == "REGULAR"), {})


def _subscription(event, r):
    sub = subscription_ref(r.get("id"))
    if sub is None:
        return [], []
    subscriber = _dict(r.get("subscriber"))
    name = _dict(subscriber.get("name"))
    shipping = _dict(subscriber.get("shipping_address"))
    payer = ref("payer", subscriber.get("payer_id"))
    email = _str(subscriber.get("email_address"), 320)
    at = event["occurred_at"]
    billing = _dict(r.get("billing_info"))
    outstanding, currency = money_of(billing.get("outstanding_balance"))
    status = _TYPE_STATUS.get(event["type"].upper()) or _STATUS_V2.get(str(r.get("status")).upper())
    if status == "active" and outstanding and outstanding > 0:
        status = "past_due"
    # Webhooks carry only plan_id; an expanded plan (GET …?fields=plan) has the price.
    plan = _dict(r.get("plan"))
    cycle = _regular_cycle_v2(plan)
    frequency = _dict(cycle.get("frequency"))
    price, price_currency = money_of(_dict(cycle.get("pricing_scheme")).get("fixed_price"))
    quantity = _int(r.get("quantity")) or 1
    for candidate in (price_currency, _dict(billing.get("last_payment")).get("amount"),
                      r.get("shipping_amount")):
        currency = currency or (candidate if isinstance(candidate, str) else money_of(candidate)[1])
    ended = status == "canceled"
    out: list[DomainEvent] = []
    full_name = _name(name.get("given_name"), name.get("surname")) or \
        _str(_dict(shipping.get("name")).get("full_name"), 200)
    address = _address_v2(shipping.get("address"))
    if full_name or address:
        out.append(CustomerChanged(occurred_at=at, customer=payer, email=email,
                                   name=full_name, address=address))
    executions = [_dict(c) for c in _list(billing.get("cycle_executions"))]
    regular = next((c for c in executions if c.get("tenure_type") == "REGULAR"), {})
    product = _str(plan.get("name"), 200) or _str(r.get("custom_id"), 200) or \
        _str(r.get("plan_id"), 200)
    out.append(SubscriptionChanged(
        occurred_at=at, customer=payer, email=email, subscription=sub, status=status,
        product=product,
        amount=price * quantity if price is not None else None,
        currency=currency,
        interval=_INTERVALS.get(str(frequency.get("interval_unit")).lower()),
        interval_count=_int(frequency.get("interval_count")),
        current_period_end=None if ended else parse_time(billing.get("next_billing_time")),
        started_at=parse_time(r.get("start_time")),
        # When PayPal cancelled it; not ``ended_at``, which is until when the customer keeps
        # what they paid for (ours: selfservice.pending_cancel), never PayPal's to say.
        canceled_at=parse_time(r.get("status_update_time")) if ended else None,
        installments=_installments(regular.get("total_cycles") or cycle.get("total_cycles")),
    ))
    failed = _dict(billing.get("last_failed_payment"))
    failed_at = parse_time(failed.get("time"))
    if failed_at is not None:
        due, due_currency = money_of(failed.get("amount"))
        settled = outstanding == 0
        out.append(PaymentChanged(
            occurred_at=at, customer=payer, email=email,
            payment=Ref(PROCESSOR, f"due_{sub.id}_{failed_at}"),
            status="recovered" if settled else "failed",
            amount=due, currency=due_currency or currency, subscription=sub, one_time=False,
            description=product, due_at=failed_at,
            failure_message=None if settled else _str(failed.get("reason_code"), 100),
        ))
    return out, [sub]


def _agreement(event, r):
    """A legacy billing agreement (``resource_type: Agreement``)."""
    sub = subscription_ref(r.get("id"))
    if sub is None:
        return [], []
    payer_info = _dict(_dict(r.get("payer")).get("payer_info"))
    payer = ref("payer", payer_info.get("payer_id"))
    email = _str(payer_info.get("email"), 320)
    at = event["occurred_at"]
    plan = _dict(r.get("plan"))
    plan_currency = plan.get("curr_code")
    definitions = [_dict(d) for d in _list(plan.get("payment_definitions"))]
    regular = next((d for d in definitions if str(d.get("type")).upper() == "REGULAR"), {})
    price, currency = money_of(regular.get("amount"), plan_currency)
    details = _dict(r.get("agreement_details"))
    outstanding, _ = money_of(details.get("outstanding_balance"), plan_currency)
    status = _TYPE_STATUS.get(event["type"].upper()) or _STATUS_V1.get(str(r.get("state")).lower())
    if status == "active" and outstanding and outstanding > 0:
        status = "past_due"
    ended = status == "canceled"
    out: list[DomainEvent] = []
    full_name = _name(payer_info.get("first_name"), payer_info.get("last_name"))
    address = _address_v1(payer_info.get("shipping_address") or r.get("shipping_address"))
    if full_name or address:
        out.append(CustomerChanged(occurred_at=at, customer=payer, email=email,
                                   name=full_name, address=address))
    out.append(SubscriptionChanged(
        occurred_at=at, customer=payer, email=email, subscription=sub, status=status,
        product=_str(r.get("description"), 200) or _str(r.get("name"), 200),
        amount=price, currency=currency,
        interval=_INTERVALS.get(str(regular.get("frequency")).lower()),
        interval_count=_int(regular.get("frequency_interval")),
        current_period_end=None if ended else parse_time(details.get("next_billing_date")),
        started_at=parse_time(r.get("start_date")),
        canceled_at=at if ended else None,
        installments=_installments(regular.get("cycles")),
    ))
    return out, [sub]


# --- v1 sales ----------------------------------------------------------------------------

_SALE_STATUS = {"completed": "succeeded", "pending": "pending", "denied": "failed",
                "failed": "failed", "refunded": "succeeded", "partially_refunded": "succeeded"}
_TYPE_SALE_STATUS = {"PAYMENT.SALE.COMPLETED": "succeeded", "PAYMENT.SALE.PENDING": "pending",
                     "PAYMENT.SALE.DENIED": "failed"}


def _sale(event, r):
    txn = ref("txn", r.get("id"))
    if txn is None:
        return [], []
    sub = subscription_ref(r.get("billing_agreement_id"))
    parent = ref("payment", r.get("parent_payment"))
    amount, currency = money_of(r.get("amount"))
    status = _TYPE_SALE_STATUS.get(event["type"].upper()) or _SALE_STATUS.get(str(r.get("state")).lower())
    return [PaymentChanged(
        occurred_at=event["occurred_at"], customer=None, email=None,
        payment=txn, charge=txn, intent=None if sub else parent, subscription=sub,
        status=status, amount=_positive(amount), currency=currency, one_time=sub is None,
        paid_at=parse_time(r.get("create_time")) if status == "succeeded" else None,
        failure_message=_str(r.get("reason_code"), 100) if status in ("pending", "failed") else None,
    )], [sub or parent, txn]


_REFUND_STATUS = {"completed": "succeeded", "pending": "pending", "failed": "failed",
                  "cancelled": "canceled", "canceled": "canceled"}


def _refund(event, r, payment: Ref, reversal: bool):
    amount, currency = money_of(r.get("amount"))
    reason = "reversal" if reversal else (
        _str(r.get("refund_reason_code"), 100) or _str(r.get("reason"), 100))
    return RefundChanged(
        occurred_at=event["occurred_at"], customer=None, email=None,
        refund=ref("refund", r.get("id")),
        # Refund and reversal totals come negative in some sale events: a refund is positive.
        amount=_positive(amount), currency=currency,
        status=_REFUND_STATUS.get(str(r.get("state") or r.get("status")).lower()),
        reason=reason.lower() if reason else None,
        charge=payment, created_at=parse_time(r.get("create_time")),
    )


def _sale_refund(event, r):
    sale = ref("txn", r.get("sale_id") or _link_id(r, "sale", "/payments/sale/"))
    if sale is None or ref("refund", r.get("id")) is None:
        return [], []  # a reversal naming no sale: nothing to file it under
    return [_refund(event, r, sale, event["type"].upper() == "PAYMENT.SALE.REVERSED")], [sale]


# --- v2 captures, their refunds; checkout orders -------------------------------------------

_CAPTURE_STATUS = {"COMPLETED": "succeeded", "PARTIALLY_REFUNDED": "succeeded",
                   "REFUNDED": "succeeded", "PENDING": "pending", "DECLINED": "failed",
                   "FAILED": "failed"}


def _order_of_capture(r: dict) -> Ref | None:
    related = _dict(_dict(r.get("supplementary_data")).get("related_ids"))
    return ref("order", related.get("order_id") or _link_id(r, "up", "/checkout/orders/"))


def _capture_event(event, r, order: Ref | None, customer=None, email=None) -> PaymentChanged | None:
    txn = ref("txn", r.get("id"))
    if txn is None:
        return None
    amount, currency = money_of(r.get("amount"))
    # v2 says ``status``; a v1 capture says ``state``, as its sales do.
    status = _CAPTURE_STATUS.get(str(r.get("status")).upper()) or \
        _SALE_STATUS.get(str(r.get("state")).lower())
    reason = _str(_dict(r.get("status_details")).get("reason"), 100)
    return PaymentChanged(
        occurred_at=event["occurred_at"], customer=customer, email=email,
        payment=txn, charge=txn, intent=order, status=status,
        amount=_positive(amount), currency=currency, one_time=True,
        paid_at=parse_time(r.get("create_time")) if status == "succeeded" else None,
        failure_message=reason.lower() if reason and status in ("pending", "failed") else None,
    )


def _capture(event, r):
    # A v2 capture names its order; a v1 capture its payment.
    order = _order_of_capture(r) or ref("payment", r.get("parent_payment"))
    payment = _capture_event(event, r, order)
    if payment is None:
        return [], []
    return [payment], [order, payment.payment]


def _capture_refund(event, r):
    """A v2 refund (its capture in the ``up`` link) or a v1 one (``capture_id``)."""
    capture = ref("txn", r.get("capture_id") or _link_id(r, "up", "/payments/captures/")
                  or _link_id(r, "capture", "/payments/capture/"))
    if capture is None or ref("refund", r.get("id")) is None:
        return [], []
    return [_refund(event, r, capture, event["type"].upper() == "PAYMENT.CAPTURE.REVERSED")], [capture]


_ORDER_STATUS = {"COMPLETED": "succeeded", "APPROVED": "pending", "SAVED": "pending",
                 "CREATED": "pending", "PAYER_ACTION_REQUIRED": "requires_action",
                 "VOIDED": "canceled"}


def _order(event, r):
    order = ref("order", r.get("id"))
    if order is None:
        return [], []
    payer = _dict(r.get("payer"))
    customer = ref("payer", payer.get("payer_id"))
    email = _str(payer.get("email_address"), 320)
    at = event["occurred_at"]
    units = [_dict(u) for u in _list(r.get("purchase_units"))]
    total, currency, lines, captures = 0, None, [], []
    for unit in units:
        value, code = money_of(unit.get("amount"))
        if value is None or (currency and code != currency):
            total = None if currency and code != currency else total
            continue
        currency = code
        total = None if total is None else total + value
        for item in _list(unit.get("items")):
            item = _dict(item)
            unit_amount, _ = money_of(item.get("unit_amount"))
            quantity = _int(item.get("quantity")) or 1
            if _str(item.get("name")) and unit_amount is not None:
                lines.append(LineItem(description=_str(item.get("name"), 200),
                                      amount=unit_amount * quantity, quantity=quantity))
        captures += [_dict(c) for c in _list(_dict(unit.get("payments")).get("captures"))]
    status = _ORDER_STATUS.get(str(r.get("status")).upper())
    if status == "succeeded" and str(r.get("intent")).upper() == "AUTHORIZE":
        status = "pending"  # authorized, not yet captured
    description = next((_str(u.get("description"), 200) for u in units if _str(u.get("description"))),
                       None) or (lines[0].description if lines else None)
    out: list[DomainEvent] = []
    name = _dict(payer.get("name"))
    full_name = _name(name.get("given_name"), name.get("surname"))
    if full_name:
        out.append(CustomerChanged(occurred_at=at, customer=customer, email=email, name=full_name))
    out.append(PaymentChanged(
        occurred_at=at, customer=customer, email=email, payment=order, intent=order,
        status=status, amount=total if currency else None, currency=currency,
        description=description, lines=tuple(lines) or None, one_time=True,
        paid_at=(parse_time(r.get("update_time")) or at) if status == "succeeded" else None,
    ))
    for capture in captures:
        payment = _capture_event(event, capture, order, customer, email)
        if payment is not None:
            out.append(payment)
    return out, [order]


# --- disputes -------------------------------------------------------------------------------

_OUTCOMES = {"RESOLVED_BUYER_FAVOUR": "lost", "RESOLVED_WITH_PAYOUT": "lost",
             "RESOLVED_SELLER_FAVOUR": "won", "CANCELED_BY_BUYER": "won", "ACCEPTED": "lost",
             "DENIED": "won", "NONE": "warning_closed"}


def dispute_status(r: dict) -> str | None:
    """A dispute's status as ours (a webhook's resource, or the Disputes API's dispute):
    PayPal's open statuses in lower case, a resolved one won or lost by its outcome."""
    status = str(r.get("status") or "").upper()
    if status == "RESOLVED":
        outcome = str(_dict(r.get("dispute_outcome")).get("outcome_code") or "").upper()
        return _OUTCOMES.get(outcome, "warning_closed")
    return status.lower() or None


def _dispute(event, r):
    dispute = ref("dispute", r.get("dispute_id"))
    if dispute is None:
        return [], []
    transactions = [ref("txn", _dict(t).get("seller_transaction_id"))
                    for t in _list(r.get("disputed_transactions"))]
    transactions = [t for t in transactions if t]
    amount, currency = money_of(r.get("dispute_amount"))
    reason = _str(r.get("reason"), 100)
    return [DisputeChanged(
        occurred_at=event["occurred_at"], customer=None, email=None, dispute=dispute,
        amount=amount, currency=currency, status=dispute_status(r),
        reason=reason.lower() if reason else None,
        charge=transactions[0] if transactions else None,
        created_at=parse_time(r.get("create_time")),
    )], transactions


def _risk_dispute(event, r):
    """The legacy dispute shape (``RISK.DISPUTE.CREATED``)."""
    dispute = ref("dispute", r.get("dispute_id"))
    transaction = ref("txn", r.get("seller_payment_id"))
    if dispute is None:
        return [], []
    amount, currency = money_of(r.get("dispute_amount"))
    return [DisputeChanged(
        occurred_at=event["occurred_at"], customer=None, email=None, dispute=dispute,
        amount=amount, currency=currency, status="open", charge=transaction,
        created_at=parse_time(r.get("dispute_creation_date")),
    )], [transaction]


# --- vault ----------------------------------------------------------------------------------


def _expiry(text) -> tuple[int | None, int | None]:
    match = re.fullmatch(r"(\d{4})-(\d{2})", text) if isinstance(text, str) else None
    return (int(match[2]), int(match[1])) if match else (None, None)


def _vault_token(event, r):
    """A v3 payment token: a card or a PayPal wallet saved for a vault customer."""
    token = ref("token", r.get("id"))
    source = _dict(r.get("payment_source"))
    wallet = _dict(source.get("paypal"))
    customer = ref("vault", _dict(r.get("customer")).get("id")) or ref("payer", wallet.get("payer_id"))
    # A wallet's e-mail is the PayPal account's, the customer's own; a card's billing
    # details are not, and never route a record.
    email = _str(wallet.get("email_address"), 320)
    if token is None or (customer is None and email is None):
        return [], []
    card = _dict(source.get("card"))
    month, year = _expiry(card.get("expiry"))
    return [PaymentMethodChanged(
        occurred_at=event["occurred_at"], customer=customer, email=email, payment_method=token,
        card=Card(brand=_str(card.get("brand"), 40), last4=_str(card.get("last_digits"), 4),
                  exp_month=month, exp_year=year) if card.get("last_digits") else None,
        attached="DELET" not in event["type"].upper(),
        created_at=parse_time(_dict(r.get("metadata")).get("create_time") or r.get("create_time")),
    )], []


def _vault_card(event, r):
    """A v1 vault card (``VAULT.CREDIT-CARD.*``)."""
    card_ref = ref("card", r.get("id"))
    customer = ref("vault", r.get("external_customer_id")) or ref("payer", r.get("payer_id"))
    if card_ref is None or customer is None:
        return [], []
    number = _str(r.get("number"), 40) or ""
    return [PaymentMethodChanged(
        occurred_at=event["occurred_at"], customer=customer, email=None, payment_method=card_ref,
        card=Card(brand=_str(r.get("type"), 40), last4=number[-4:] if number[-4:].isdigit() else None,
                  exp_month=_int(r.get("expire_month")), exp_year=_int(r.get("expire_year"))),
        attached=event["type"].upper() != "VAULT.CREDIT-CARD.DELETED",
        created_at=parse_time(r.get("create_time")),
    )], []
