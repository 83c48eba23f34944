"""Realistic PayPal event streams and their delivery, for the replay and convergence tests
and the webhook benchmark (the PayPal counterpart of stripe_events.py and story.py).

The shapes are PayPal's (tests/fixtures/paypal/webhooks and PayPal's OpenAPI documents):
v2 subscriptions (``BILLING.SUBSCRIPTION.*``, resource_version 2.0), v1 sales naming their
subscription in ``billing_agreement_id`` (no resource_version), v2 checkout orders, v2
captures naming their order (``supplementary_data.related_ids`` and the ``up`` link), v2
refunds naming their capture (``up``), disputes naming the disputed transaction.

Ids are made from the stream's prefix and a counter, so a story is the same bytes every
run; times increase one minute per event from ``start``, except where PayPal sends two
events within one second (``next_at_same_instant``: a capture and its order's completion,
an activation and its first sale), where which came first rests on the app's tie-break.
``objects`` holds what PayPal's API would
answer for the subscriptions, orders, captures and sales of the story: the app asks for
them when a sale or capture arrives before the subscription or order that names its payer.

Delivery goes through test_paypal_webhooks's PayPalMerchant: each attempt signed anew by
devstack's PayPal stand-in (``/_stub/sign``, the dev CA), as PayPal signs each attempt.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from stripe_events import Stream
from test_paypal_webhooks import PayPalMerchant, PayPalStub

PAYPAL_START = datetime(2025, 11, 1, 9, 0, tzinfo=UTC)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _money(minor: int, currency: str) -> str:
    """PayPal's decimal string of an amount in minor units (two decimals: the currencies
    these stories use; PayPal takes none for JPY, HUF and TWD)."""
    assert currency.upper() not in ("JPY", "HUF", "TWD"), currency
    return f"{minor // 100}.{minor % 100:02d}"


class PayPalStream:
    """Builds PayPal customers' stories as a list of events in PayPal's shapes."""

    def __init__(self, prefix: str, start: datetime = PAYPAL_START):
        self.prefix = "".join(c for c in prefix.upper() if c.isalnum())[:6] or "P"
        self.t = start
        self.events: list[dict] = []
        self.objects: dict[str, dict[str, dict]] = {}  # kind → id → what PayPal's API answers
        self._n = 0
        self.same_instant = 0
        self._opened: dict[str, str] = {}  # dispute id → its create_time

    def _id(self, head: str = "", width: int = 17) -> str:
        self._n += 1
        body = f"{self.prefix}{self._n:06d}"
        return head + body.rjust(width - len(head), "X")

    def _now(self) -> str:
        if self.same_instant:
            self.same_instant -= 1
        else:
            self.t += timedelta(minutes=1)
        return _iso(self.t)

    def _next(self) -> str:
        """The time the next event will carry."""
        return _iso(self.t if self.same_instant else self.t + timedelta(minutes=1))

    def next_at_same_instant(self, events: int = 1) -> None:
        """The next ``events`` events carry the time of the one before (PayPal sends a
        capture's and its order's completion, or an activation and its first sale, within
        one second): which came first then rests on the app's tie-break alone."""
        self.same_instant = events

    def _event(self, event_type: str, resource_type: str, resource: dict,
               version: str | None = "2.0") -> dict:
        event = {"id": "WH-" + self._id(width=20), "event_version": "1.0",
                 "create_time": self._now(), "resource_type": resource_type,
                 "event_type": event_type,
                 "summary": event_type.lower().replace(".", " "),
                 "resource": json.loads(json.dumps(resource))}
        if version:
            event["resource_version"] = version
        self.events.append(event)
        return event

    def _keep(self, kind: str, obj: dict) -> None:
        self.objects.setdefault(kind, {})[obj["id"]] = json.loads(json.dumps(obj))

    # --- a subscription ---------------------------------------------------------------------

    def subscription(self, email: str, name: tuple[str, str], price: int, currency="USD",
                     plan="Gold plan") -> dict:
        """A v2 subscription (not yet sent): the dict later events of it change."""
        sub = {"id": "I-" + self._id(width=12), "plan_id": "P-" + self._id(width=24),
               "status": "APPROVAL_PENDING", "quantity": "1",
               "start_time": self._next(),
               "status_update_time": self._next(),
               "subscriber": {"email_address": email, "payer_id": self._id(width=13),
                              "name": {"given_name": name[0], "surname": name[1]}},
               "billing_info": {"outstanding_balance": {"currency_code": currency, "value": "0.00"},
                                "cycle_executions": [{"tenure_type": "REGULAR", "sequence": 1,
                                                      "cycles_completed": 0,
                                                      "cycles_remaining": 0,
                                                      "total_cycles": 0}],
                                "next_billing_time": _iso(self.t + timedelta(days=30)),
                                "failed_payments_count": 0},
               "plan": {"name": plan, "billing_cycles": [{
                   "tenure_type": "REGULAR", "sequence": 1, "total_cycles": 0,
                   "frequency": {"interval_unit": "MONTH", "interval_count": 1},
                   "pricing_scheme": {"fixed_price": {"currency_code": currency,
                                                      "value": _money(price, currency)}}}]},
               "_price": price, "_currency": currency}
        return sub

    def subscription_event(self, sub: dict, event_type: str, status: str | None = None,
                           outstanding: int | None = None) -> dict:
        if status:
            sub["status"] = status
        if outstanding is not None:
            sub["billing_info"]["outstanding_balance"]["value"] = _money(outstanding, sub["_currency"])
        at = self._next()
        if status:
            sub["status_update_time"] = at
        resource = {k: v for k, v in sub.items() if not k.startswith("_")}
        self._keep("subscriptions", resource)
        return self._event(event_type, "subscription", resource)

    def payment_failed(self, sub: dict) -> str:
        """BILLING.SUBSCRIPTION.PAYMENT.FAILED: a balance outstanding; the failure's time."""
        failed_at = self._next()
        sub["billing_info"]["last_failed_payment"] = {
            "amount": {"currency_code": sub["_currency"], "value": _money(sub["_price"], sub["_currency"])},
            "time": failed_at, "reason_code": "PAYMENT_DENIED"}
        sub["billing_info"]["failed_payments_count"] = 1
        self.subscription_event(sub, "BILLING.SUBSCRIPTION.PAYMENT.FAILED",
                                outstanding=sub["_price"])
        return failed_at

    def sale(self, sub: dict, amount: int | None = None, state="completed",
             sale_id: str | None = None) -> str:
        """A v1 sale of the subscription (PAYMENT.SALE.COMPLETED and the like; with
        ``sale_id``, a later state of that sale)."""
        sale_id = sale_id or self._id()
        resource = {"id": sale_id, "state": state,
                    "amount": {"total": _money(amount or sub["_price"], sub["_currency"]),
                               "currency": sub["_currency"],
                               "details": {"subtotal": _money(amount or sub["_price"], sub["_currency"])}},
                    "payment_mode": "INSTANT_TRANSFER", "protection_eligibility": "ELIGIBLE",
                    "transaction_fee": {"value": "0.59", "currency": sub["_currency"]},
                    "billing_agreement_id": sub["id"], "create_time": self._next(),
                    "update_time": self._next(),
                    "links": [{"href": f"https://api.paypal.com/v1/payments/sale/{sale_id}",
                               "rel": "self", "method": "GET"}]}
        self._keep("sales", resource)
        self._event(f"PAYMENT.SALE.{state.upper()}", "sale", resource, version=None)
        return sale_id

    def sale_refund(self, sale_id: str, amount: int, currency="USD") -> str:
        """PAYMENT.SALE.REFUNDED: the refund (a negative total, as PayPal sends it)."""
        refund_id = self._id()
        self._event("PAYMENT.SALE.REFUNDED", "sale", {
            "id": refund_id, "state": "completed", "sale_id": sale_id,
            "amount": {"total": "-" + _money(amount, currency), "currency": currency},
            "create_time": self._next(),
            "links": [{"href": f"https://api.paypal.com/v1/payments/refund/{refund_id}",
                       "rel": "self", "method": "GET"},
                      {"href": f"https://api.paypal.com/v1/payments/sale/{sale_id}",
                       "rel": "sale", "method": "GET"}]}, version=None)
        return refund_id

    # --- a checkout order, its capture and refund -------------------------------------------

    def order(self, email: str, name: tuple[str, str], payer_id: str, amount: int,
              currency="USD", item="Pierogi cookbook") -> tuple[dict, str]:
        """CHECKOUT.ORDER.APPROVED, PAYMENT.CAPTURE.COMPLETED, CHECKOUT.ORDER.COMPLETED of a
        one-item order; returns the order and the capture id."""
        order_id = self._id()
        value = {"currency_code": currency, "value": _money(amount, currency)}
        order = {"id": order_id, "intent": "CAPTURE", "status": "APPROVED",
                 "payer": {"name": {"given_name": name[0], "surname": name[1]},
                           "email_address": email, "payer_id": payer_id},
                 "purchase_units": [{"reference_id": "default", "description": item,
                                     "amount": {**value, "breakdown": {"item_total": value}},
                                     "items": [{"name": item, "quantity": "1",
                                                "unit_amount": value}]}],
                 "create_time": self._next(),
                 "links": [{"href": f"https://api.paypal.com/v2/checkout/orders/{order_id}",
                            "rel": "self", "method": "GET"}]}
        self._keep("orders", order)
        self._event("CHECKOUT.ORDER.APPROVED", "checkout-order", order)
        capture_id = self._id()
        capture = {"id": capture_id, "status": "COMPLETED", "amount": value, "final_capture": True,
                   "seller_protection": {"status": "ELIGIBLE"},
                   "supplementary_data": {"related_ids": {"order_id": order_id}},
                   "create_time": self._next(),
                   "update_time": self._next(),
                   "links": [{"href": f"https://api.paypal.com/v2/payments/captures/{capture_id}",
                              "rel": "self", "method": "GET"},
                             {"href": f"https://api.paypal.com/v2/checkout/orders/{order_id}",
                              "rel": "up", "method": "GET"}]}
        self._keep("captures", capture)
        self._event("PAYMENT.CAPTURE.COMPLETED", "capture", capture)
        order["status"] = "COMPLETED"
        order["update_time"] = capture["update_time"]
        self.next_at_same_instant()
        order["purchase_units"][0]["payments"] = {"captures": [
            {k: v for k, v in capture.items() if k != "supplementary_data"}]}
        self._keep("orders", order)
        self._event("CHECKOUT.ORDER.COMPLETED", "checkout-order", order)
        return order, capture_id

    def capture_refund(self, capture_id: str, amount: int, currency="USD") -> str:
        """PAYMENT.CAPTURE.REFUNDED of a v2 refund (its capture in the ``up`` link)."""
        refund_id = self._id()
        self._event("PAYMENT.CAPTURE.REFUNDED", "refund", {
            "id": refund_id, "status": "COMPLETED",
            "amount": {"currency_code": currency, "value": _money(amount, currency)},
            "create_time": self._next(),
            "update_time": self._next(),
            "links": [{"href": f"https://api.paypal.com/v2/payments/refunds/{refund_id}",
                       "rel": "self", "method": "GET"},
                      {"href": f"https://api.paypal.com/v2/payments/captures/{capture_id}",
                       "rel": "up", "method": "GET"}]})
        return refund_id

    # --- a dispute ---------------------------------------------------------------------------

    def dispute(self, transaction_id: str, amount: int, currency="USD",
                outcome: str | None = None, dispute_id: str | None = None) -> str:
        """CUSTOMER.DISPUTE.CREATED (open), or with ``outcome`` CUSTOMER.DISPUTE.RESOLVED."""
        dispute_id = dispute_id or "PP-D-" + self._id(width=12)
        opened = self._opened.setdefault(dispute_id, self._next())
        resource = {"dispute_id": dispute_id, "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
                    "status": "RESOLVED" if outcome else "OPEN",
                    "disputed_transactions": [{"seller_transaction_id": transaction_id,
                                               "seller_protection_eligible": True}],
                    "dispute_amount": {"currency_code": currency, "value": _money(amount, currency)},
                    "create_time": opened, "update_time": self._next()}
        if outcome:
            resource["dispute_outcome"] = {"outcome_code": outcome}
        self._event("CUSTOMER.DISPUTE.RESOLVED" if outcome else "CUSTOMER.DISPUTE.CREATED",
                    "dispute", resource, version="1.0")
        return dispute_id


def paypal_customer_story(stream: PayPalStream, n: int, email: str | None = None,
                          name: tuple[str, str] | None = None) -> dict:
    """One PayPal customer's life, varied by ``n``: a subscription activated and paid, a
    failed payment recovered by PayPal's retry (n % 3 == 2: pending first, an eCheck), a
    partial refund of a sale; suspended and
    re-activated, cancelled (odd n); a checkout order captured and partly (or, n % 3 == 0,
    fully) refunded; a dispute of the retry's sale, resolved (n % 2 == 0, lost) or open.
    Returns the ids, for the tests' own assertions."""
    email = email or (f"PayPal.Payer{n}@Example.com" if n % 3 == 0 else f"paypal.payer{n}@example.com")
    name = name or ("Zoë", f"Pay{n}")
    price = 1000 + n
    sub = stream.subscription(email, name, price)
    stream.subscription_event(sub, "BILLING.SUBSCRIPTION.CREATED")
    stream.subscription_event(sub, "BILLING.SUBSCRIPTION.ACTIVATED", status="ACTIVE")
    if n % 2 == 0:
        stream.next_at_same_instant()
    first = stream.sale(sub)
    failed_at = stream.payment_failed(sub)
    if n % 3 == 2:  # the retry paid by eCheck: pending for days, then completed
        retry = stream.sale(sub, state="pending")
        stream.sale(sub, sale_id=retry)
    else:
        retry = stream.sale(sub)
    stream.subscription_event(sub, "BILLING.SUBSCRIPTION.UPDATED", outstanding=0)
    stream.sale_refund(first, 400)
    if n % 2 == 1:
        stream.subscription_event(sub, "BILLING.SUBSCRIPTION.SUSPENDED", status="SUSPENDED")
        stream.subscription_event(sub, "BILLING.SUBSCRIPTION.RE-ACTIVATED", status="ACTIVE")
        stream.subscription_event(sub, "BILLING.SUBSCRIPTION.CANCELLED", status="CANCELLED")
    payer_id = sub["subscriber"]["payer_id"]
    order_amount = 2500 + n
    order, capture = stream.order(email, name, payer_id, order_amount)
    refunded = order_amount if n % 3 == 0 else 500
    stream.capture_refund(capture, refunded)
    dispute = stream.dispute(retry, price)
    if n % 2 == 0:
        stream.dispute(retry, price, outcome="RESOLVED_BUYER_FAVOUR", dispute_id=dispute)
    return {"email": email, "subscription": sub["id"], "price": price, "first_sale": first,
            "lifetime_value_usd": 2 * price - 400 + order_amount - refunded,
            "active": n % 2 == 0,
            "retry_sale": retry, "failed_at": failed_at, "order": order["id"],
            "capture": capture, "order_amount": order_amount, "order_refunded": refunded,
            "dispute": dispute, "payer_id": payer_id}


def mixed_customer_story(stripe: Stream, paypal: PayPalStream, n: int) -> dict:
    """One customer paying with both under one e-mail (PayPal spells it in other case): at
    Stripe a card, a USD subscription paid once, a EUR one-time order partly refunded; at
    PayPal paypal_customer_story. Returns what the one record must show."""
    email = f"both.ways{n}@example.com"
    cus = stripe.customer(email, f"Both Ways {n}")
    pm = stripe.card(cus, last4=f"{4100 + n}")
    sub = stripe.subscription(cus, 2000 + n, pm=pm)
    stripe.invoice(cus, sub, 2000 + n)
    pi, charge = stripe.one_time(cus, 2500, currency="eur", email=email)
    stripe.refund(cus, pi, charge, 500, currency="eur")
    story = paypal_customer_story(paypal, n, email=email.upper().replace("EXAMPLE", "Example"),
                                  name=("Both", f"Ways {n}"))
    return {"email": email, "paypal": story,
            "lifetime_value": {"usd": 2000 + n + story["lifetime_value_usd"], "eur": 2500 - 500},
            "active_subscriptions": 1 + story["active"]}


# --- delivery ---------------------------------------------------------------------------------


def put_objects(stub: PayPalStub, stream: PayPalStream) -> None:
    """Tell devstack's PayPal stand-in what PayPal's API knows of the stream's
    subscriptions, orders, captures and sales."""
    for kind, objects in stream.objects.items():
        for paypal_id, obj in objects.items():
            stub.put(kind, paypal_id, obj)


def is_paypal(event: dict) -> bool:
    return "event_type" in event


class MixedMerchant:
    """A merchant taking Stripe's and PayPal's deliveries (test_paypal_webhooks's
    PayPalMerchant: an account set up for both): ``deliver`` sends each event to its
    processor's endpoint, so the reliability helpers (deliver_noisy, records) work on a
    stream of both."""

    def __init__(self, client, stub: PayPalStub):
        self.paypal = PayPalMerchant(client, stub)
        self.merchant = self.paypal.m
        self.account_id = self.merchant.account_id

    def deliver(self, event: dict):
        return self.paypal.deliver(event) if is_paypal(event) else self.merchant.deliver(event)

    def deliver_until_applied(self, events: list[dict], max_rounds: int = 20) -> None:
        pending = list(events)
        for _ in range(max_rounds):
            retry = []
            for event in pending:
                response = self.deliver(event)
                if response.status_code >= 500:
                    retry.append(event)
                else:
                    assert response.status_code == 200, (response.status_code, response.body)
            if not retry:
                return
            pending = retry
        raise AssertionError(f"never applied: {[e.get('event_type') or e.get('type') for e in pending]}")

    def records_by_email(self) -> dict[str, dict]:
        return self.merchant.records_by_email()

    def get_json(self, path: str):
        return self.merchant.get_json(path)
