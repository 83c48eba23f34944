"""Realistic Stripe event streams built from Stripe's own example objects.

``fixtures/stripe/fixtures.json`` beside this file (Stripe's OpenAPI fixtures, MIT: see the
LICENSE there) holds today's shapes; ``legacy=True`` produces the older shapes
(invoice.subscription at the top level, plan on the subscription, charges embedded in the
payment intent) that accounts on earlier API versions and localstripe send.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from pathlib import Path

FIXTURES = json.loads(
    (Path(__file__).resolve().parent / "fixtures" / "stripe" / "fixtures.json").read_text())

DAY = 86400
MONTH = 30 * DAY


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def fixture(fixture_name: str, **overrides) -> dict:
    obj = copy.deepcopy(FIXTURES[fixture_name])
    obj.update(overrides)
    return obj


class Stream:
    """Builds a customer's story as a list of Stripe events with increasing ``created``."""

    def __init__(self, prefix: str, start: int = 1_760_000_000, legacy: bool = False):
        self.prefix = prefix
        self.t = start
        self.legacy = legacy
        self.events: list[dict] = []
        self._n = 0
        self._started: dict[str, int] = {}  # subscription → its start (Stripe never moves it)

    def _id(self, kind: str) -> str:
        self._n += 1
        return f"{kind}_{self.prefix}{self._n:04d}"

    def event(self, type_: str, obj: dict, previous: dict | None = None, step: int = 60) -> dict:
        self.t += step
        data = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        evt = fixture("event", id=self._id("evt"), type=type_, created=self.t, data=data)
        self.events.append(evt)
        return evt

    # --- objects -----------------------------------------------------------------

    def customer(self, email: str, name: str, event_type: str = "customer.created", cid=None) -> str:
        cid = cid or self._id("cus")
        obj = fixture("customer", id=cid, email=email, name=name, created=self.t,
                      phone="+44 20 7946 0000",
                      address={"city": "Kraków", "country": "PL", "line1": "ul. Długa 1",
                               "line2": None, "postal_code": "31-147", "state": None})
        self.event(event_type, obj)
        return cid

    def card(self, customer: str, last4: str = "4242", exp=(12, 2030), brand="visa") -> str:
        pm = self._id("pm")
        obj = fixture("payment_method", id=pm, customer=customer, created=self.t)
        obj["card"] = {**obj["card"], "last4": last4, "brand": brand, "display_brand": brand,
                       "exp_month": exp[0], "exp_year": exp[1]}
        self.event("payment_method.attached", obj)
        return pm

    def subscription(self, customer: str, amount: int, currency="usd", installments=None,
                     status="active", event_type="customer.subscription.created", sid=None,
                     cancel_at_period_end=False, nickname="Gold plan", pm=None) -> str:
        sid = sid or self._id("sub")
        obj = self._subscription_obj(sid, customer, amount, currency, installments, status,
                                     cancel_at_period_end, nickname, pm)
        self.event(event_type, obj)
        return sid

    def _subscription_obj(self, sid, customer, amount, currency, installments, status,
                          cancel_at_period_end, nickname, pm):
        obj = fixture("subscription", id=sid, customer=customer, status=status, currency=currency,
                      cancel_at=None, cancel_at_period_end=cancel_at_period_end,
                      canceled_at=None, ended_at=None, start_date=self._started.setdefault(sid, self.t),
                      created=self._started[sid],
                      pause_collection=None, default_payment_method=pm,
                      metadata={"installments": str(installments)} if installments else {})
        if self.legacy:
            obj.pop("items")
            obj["plan"] = {"id": "plan_gold", "amount": amount, "currency": currency,
                           "interval": "month", "interval_count": 1, "nickname": nickname}
            obj["quantity"] = 1
            obj["current_period_start"] = self.t
            obj["current_period_end"] = self.t + MONTH
        else:
            item = copy.deepcopy(obj["items"]["data"][0])
            item["price"] = {**item["price"], "unit_amount": amount, "currency": currency,
                             "nickname": nickname}
            item["plan"] = {**item["plan"], "amount": amount, "currency": currency,
                            "interval_count": 1, "nickname": nickname}
            item["current_period_start"] = self.t
            item["current_period_end"] = self.t + MONTH
            item["quantity"] = 1
            obj["items"] = {**obj["items"], "data": [item]}
        return obj

    def update_subscription(self, sid, customer, amount, event_type="customer.subscription.updated",
                            **kw) -> None:
        obj = self._subscription_obj(sid, customer, amount, kw.pop("currency", "usd"),
                                     kw.pop("installments", None), kw.pop("status", "active"),
                                     kw.pop("cancel_at_period_end", False),
                                     kw.pop("nickname", "Gold plan"), kw.pop("pm", None))
        obj.update(kw)
        self.event(event_type, obj)

    def invoice(self, customer: str, sid: str | None, amount: int, type_="invoice.paid",
                currency="usd", email=None, inv=None, intent=None, charge=None) -> str:
        inv = inv or self._id("in")
        paid = type_ in ("invoice.paid", "invoice.payment_succeeded")
        obj = fixture("invoice", id=inv, customer=customer, currency=currency,
                      amount_due=amount, amount_paid=amount if paid else 0,
                      amount_remaining=0 if paid else amount, customer_email=email,
                      status="paid" if paid else "open", total=amount, subtotal=amount,
                      billing_reason="subscription_cycle", created=self.t,
                      status_transitions={"finalized_at": self.t, "marked_uncollectible_at": None,
                                          "paid_at": self.t if paid else None, "voided_at": None},
                      next_payment_attempt=None if paid else self.t + 3 * DAY,
                      number=f"INV-{inv[-6:]}", total_taxes=[])
        obj["lines"] = {**obj["lines"], "data": [{**obj["lines"]["data"][0], "amount": amount,
                                                  "currency": currency,
                                                  "description": "1 × Gold plan"}]}
        if self.legacy:
            obj["subscription"] = sid
            obj["parent"] = None
            obj["payment_intent"] = intent
            obj["charge"] = charge
        else:
            obj["subscription"] = None
            obj["parent"] = {"type": "subscription_details", "quote_details": None,
                             "subscription_details": {"metadata": {}, "subscription": sid}}
        self.event(type_, obj)
        return inv

    def one_time(self, customer: str | None, amount: int, currency="usd", email=None,
                 pi=None, via_checkout=False) -> tuple[str, str]:
        pi = pi or self._id("pi")
        charge = self._id("ch")
        obj = fixture("payment_intent", id=pi, customer=customer, amount=amount,
                      amount_received=amount, currency=currency, status="succeeded",
                      latest_charge=charge, receipt_email=email, description="Ebook: Pierogi",
                      payment_method=None, created=self.t, last_payment_error=None)
        if via_checkout:
            session = fixture("checkout.session", id=self._id("cs"), mode="payment",
                              payment_intent=pi, customer=customer, amount_total=amount,
                              currency=currency, payment_status="paid", status="complete",
                              customer_details={**FIXTURES["checkout.session"]["customer_details"],
                                                "email": email})
            self.event("checkout.session.completed", session)
        self.event("payment_intent.succeeded", obj)
        return pi, charge

    def refund(self, customer, pi, charge, amount, currency="usd", rid=None) -> str:
        rid = rid or self._id("re")
        obj = fixture("refund", id=rid, customer=customer, payment_intent=pi, charge=charge,
                      amount=amount, currency=currency, status="succeeded", created=self.t)
        self.event("refund.created", obj)
        return rid

    def charge_refunded(self, customer, pi, charge, amount, refunded, currency="usd"):
        obj = fixture("charge", id=charge, customer=customer, payment_intent=pi, amount=amount,
                      amount_refunded=refunded, currency=currency, refunded=refunded >= amount,
                      created=self.t)
        obj.pop("refunds", None)
        self.event("charge.refunded", obj)

    def dispute(self, pi, charge, amount, status="warning_needs_response",
                type_="charge.dispute.created", did=None, currency="usd") -> str:
        did = did or self._id("dp")
        obj = fixture("dispute", id=did, payment_intent=pi, charge=charge, amount=amount,
                      currency=currency, status=status, created=self.t)
        self.event(type_, obj)
        return did
