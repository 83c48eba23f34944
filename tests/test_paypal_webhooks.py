"""POST /webhooks/paypal/{account}: deliveries signed by devstack's PayPal stand-in, verified
as PayPal's (the dev CA through the dev override), applied to the records like Stripe's:
subscriptions, payments and refunds in the merchant API, owners asked of PayPal's API, one
record per e-mail across Stripe and PayPal, any order and duplicates converge, and the
refusals answer 400 and write nothing."""
from __future__ import annotations

import json
import random
import secrets
import ssl
import urllib.request

import pytest
from app_fixtures import app_client, make_merchant, normalize_record  # noqa: F401
from stripe_events import Stream

from devstack import servers


class PayPalStub:
    def __init__(self, url: str):
        self.url = url
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=ssl.create_default_context(
                cadata=servers.paypal_dev_ca())))

    def call(self, method: str, path: str, payload=None):
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if payload is None else json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        with self._opener.open(request, timeout=30) as response:
            return json.load(response)

    def put(self, kind: str, paypal_id: str, obj: dict) -> None:
        self.call("PUT", f"/_stub/objects/{kind}/{paypal_id}", obj)

    def sign(self, event: dict, webhook_id: str, cert: str = "CERT-devstack") -> tuple[bytes, dict]:
        signed = self.call("POST", "/_stub/sign", {"event": event, "webhook_id": webhook_id,
                                                   "cert": cert})
        import base64

        return base64.b64decode(signed["body_base64"]), signed["headers"]

    def served(self) -> list[dict]:
        return self.call("GET", "/_stub/requests")


@pytest.fixture(scope="module")
def stub(stack) -> PayPalStub:
    return PayPalStub(stack.paypal.url)


class PayPalMerchant:
    def __init__(self, client, stub: PayPalStub):
        from chalicelib.accounts.service import set_paypal

        self.m = make_merchant(client)
        self.webhook_id = "WH" + secrets.token_hex(8).upper()
        set_paypal(self.m.account_id, client_id="AZdevstack" + secrets.token_hex(8),
                   client_secret="EJdevstack" + secrets.token_hex(12), webhook_id=self.webhook_id,
                   mode="sandbox")
        self.stub = stub

    def deliver(self, event: dict, cert: str = "CERT-devstack", headers: dict | None = None,
                webhook_id: str | None = None):
        body, signed = self.stub.sign(event, webhook_id or self.webhook_id, cert)
        return self.m.client.http.post(f"/webhooks/paypal/{self.m.account_id}", body=body,
                                       headers={**signed, **(headers or {})})

    def deliver_until_applied(self, events: list[dict], rounds: int = 10) -> None:
        pending = list(events)
        for _ in range(rounds):
            retry = []
            for event in pending:
                r = self.deliver(event)
                if r.status_code >= 500:
                    retry.append(event)
                else:
                    assert r.status_code == 200, (r.status_code, r.body)
            if not retry:
                return
            pending = retry
        raise AssertionError(f"never applied: {[e['event_type'] for e in pending]}")


class PayPalStory:
    """A PayPal customer's events in PayPal's shapes, times increasing."""

    def __init__(self, email: str, start: str = "2025-01-0{d}T10:00:{s:02d}Z"):
        self.email, self.events, self.n = email, [], 0
        self.sub_id = "I-" + secrets.token_hex(6).upper()
        self.payer_id = secrets.token_hex(6).upper()

    def _time(self) -> str:
        self.n += 1
        return f"2025-01-{1 + self.n // 50:02d}T10:{self.n % 50:02d}:00Z"

    def _event(self, event_type: str, resource_type: str, resource: dict, version="2.0") -> dict:
        event = {"id": "WH-" + secrets.token_hex(8).upper(), "event_version": "1.0",
                 "create_time": self._time(), "resource_type": resource_type,
                 "event_type": event_type, "resource": resource}
        if version:
            event["resource_version"] = version
        self.events.append(event)
        return event

    def subscription_object(self, status="ACTIVE", outstanding="0.00", failed=None) -> dict:
        billing = {"outstanding_balance": {"currency_code": "USD", "value": outstanding},
                   "next_billing_time": "2025-02-01T10:00:00Z", "failed_payments_count": 1 if failed else 0}
        if failed:
            billing["last_failed_payment"] = {"amount": {"currency_code": "USD", "value": "10.00"},
                                              "time": failed, "reason_code": "PAYMENT_DENIED"}
        return {"id": self.sub_id, "status": status, "plan_id": "P-GOLD",
                "start_time": "2025-01-01T09:00:00Z", "status_update_time": "2025-01-01T10:00:00Z",
                "subscriber": {"email_address": self.email, "payer_id": self.payer_id,
                               "name": {"given_name": "Pay", "surname": "Pal"}},
                "billing_info": billing, "plan": {"name": "Gold plan", "billing_cycles": [
                    {"tenure_type": "REGULAR", "total_cycles": 0,
                     "frequency": {"interval_unit": "MONTH", "interval_count": 1},
                     "pricing_scheme": {"fixed_price": {"currency_code": "USD", "value": "10.00"}}}]}}

    def subscription(self, event_type="BILLING.SUBSCRIPTION.ACTIVATED", **kwargs) -> dict:
        return self._event(event_type, "subscription", self.subscription_object(**kwargs))

    def sale(self, total="10.00", state="completed") -> str:
        sale_id = secrets.token_hex(8).upper()
        self._event(f"PAYMENT.SALE.{state.upper()}", "sale", {
            "id": sale_id, "state": state, "amount": {"total": total, "currency": "USD"},
            "billing_agreement_id": self.sub_id, "create_time": self._time()}, version=None)
        return sale_id

    def sale_refund(self, sale_id: str, total="-4.00") -> None:
        self._event("PAYMENT.SALE.REFUNDED", "sale", {
            "id": secrets.token_hex(8).upper(), "state": "completed", "sale_id": sale_id,
            "amount": {"total": total, "currency": "USD"}, "create_time": self._time()}, version=None)


def _record(m, email: str) -> dict:
    found = [c for c in m.customers() if c["email"] == email]
    assert len(found) == 1, m.customers()
    return m.get_json(f"/api/v1/customers/{found[0]['id']}")


def _converged(record: dict) -> dict:
    """The record without when it was made here (PayPal names no customer creation time)."""
    return {k: v for k, v in normalize_record(record).items() if k != "created_at"}


def _story(email: str) -> PayPalStory:
    story = PayPalStory(email)
    story.subscription("BILLING.SUBSCRIPTION.CREATED", status="APPROVAL_PENDING")
    story.subscription("BILLING.SUBSCRIPTION.ACTIVATED")
    first = story.sale()
    story.sale_refund(first, "-4.00")
    failed_at = "2025-01-02T10:30:00Z"
    story.subscription("BILLING.SUBSCRIPTION.PAYMENT.FAILED", outstanding="10.00", failed=failed_at)
    story.sale("10.00")
    return story


def test_a_paypal_customers_subscription_payments_and_refund_in_the_merchant_api(app_client, stub):  # noqa: F811
    pm = PayPalMerchant(app_client, stub)
    story = _story("payer.one@example.com")
    for event in story.events:
        r = pm.deliver(event)
        assert r.status_code == 200, r.body
        assert json.loads(r.body)["outcome"] == "applied"
    record = _record(pm.m, "payer.one@example.com")
    assert record["name"] == "Pay Pal"
    [sub] = record["subscriptions"]
    assert sub["processor_ref"] == f"paypal:{story.sub_id}" and sub["product"] == "Gold plan"
    assert (sub["amount"], sub["currency"], sub["interval"]) == (1000, "usd", "month")
    assert sub["status"] == "past_due" and sub["missed_payments"] == 1
    succeeded = [p for p in record["payments"] if p["status"] == "succeeded"]
    assert sorted(p["amount"] for p in succeeded) == [1000, 1000]
    assert sorted(p["refunded"] for p in succeeded) == [0, 400]
    [failed] = [p for p in record["payments"] if p["status"] == "failed"]
    assert failed["amount"] == 1000 and failed["subscription"] == f"paypal:{story.sub_id}"
    assert record["stats"]["lifetime_value"] == {"usd": 1600}
    assert record["stats"]["active_subscriptions"] == 1
    deliveries = pm.m.get_json("/api/v1/webhook-deliveries")["data"]
    assert {d["outcome"] for d in deliveries} == {"applied"}
    # The balance paid: the missed payment is recovered (not counted as a payment twice).
    r = pm.deliver(story.subscription("BILLING.SUBSCRIPTION.UPDATED", failed="2025-01-02T10:30:00Z"))
    assert r.status_code == 200
    record = _record(pm.m, "payer.one@example.com")
    assert record["subscriptions"][0]["status"] == "active"
    assert record["subscriptions"][0]["missed_payments"] == 0
    assert record["stats"]["lifetime_value"] == {"usd": 1600}


def test_a_sale_before_its_subscription_finds_the_payer_through_paypals_api(app_client, stub):  # noqa: F811
    pm = PayPalMerchant(app_client, stub)
    story = PayPalStory("early.sale@example.com")
    stub.put("subscriptions", story.sub_id, story.subscription_object())
    sale_id = story.sale("12.34")
    r = pm.deliver(story.events[-1])
    assert r.status_code == 200 and json.loads(r.body)["outcome"] == "applied", r.body
    record = _record(pm.m, "early.sale@example.com")
    assert [p["amount"] for p in record["payments"]] == [1234]
    assert f"paypal:txn_{sale_id}" in record["payments"][0]["processor_refs"]
    served = [(s["method"], s["path"]) for s in stub.served()]
    assert ("POST", "/v1/oauth2/token") in served
    assert ("GET", f"/v1/billing/subscriptions/{story.sub_id}") in served
    # A refund of a sale PayPal does not know is deferred (503), never guessed.
    unknown = PayPalStory("nobody@example.com")
    unknown.sale_refund("UNKNOWNSALE0001")
    assert pm.deliver(unknown.events[-1]).status_code == 503


def test_out_of_order_and_duplicate_deliveries_converge(app_client, stub):  # noqa: F811
    story = _story("converge@example.com")
    stub.put("subscriptions", story.sub_id, story.subscription_object())
    in_order = PayPalMerchant(app_client, stub)
    in_order.deliver_until_applied(story.events)
    expected = _converged(_record(in_order.m, "converge@example.com"))
    rng = random.Random(14)
    for _ in range(2):
        shuffled = PayPalMerchant(app_client, stub)
        events = story.events + rng.sample(story.events, 3)
        rng.shuffle(events)
        shuffled.deliver_until_applied(events)
        assert _converged(_record(shuffled.m, "converge@example.com")) == expected
        outcomes = {d["outcome"] for d in shuffled.m.get_json("/api/v1/webhook-deliveries?limit=100")["data"]}
        assert "duplicate" in outcomes


def test_one_customer_paying_with_stripe_and_paypal_is_one_record(app_client, stub):  # noqa: F811
    pm = PayPalMerchant(app_client, stub)
    email = "both.ways@example.com"
    stripe = Stream("both")
    customer = stripe.customer(email, "Both Ways")
    stripe.one_time(customer, 2500, currency="eur")
    pm.m.deliver_until_applied(stripe.events)
    story = PayPalStory(email.upper())  # PayPal's spelling of the same address
    story.subscription()
    story.sale("10.00")
    for event in story.events:
        assert pm.deliver(event).status_code == 200
    assert len(pm.m.customers()) == 1
    record = _record(pm.m, email)
    assert record["stats"]["lifetime_value"] == {"eur": 2500, "usd": 1000}
    assert {p["currency"] for p in record["payments"]} == {"eur", "usd"}
    assert record["subscriptions"][0]["processor_ref"] == f"paypal:{story.sub_id}"


def _nothing_written(pm) -> None:
    assert pm.m.get_json("/api/v1/customers")["data"] == []
    assert pm.m.get_json("/api/v1/webhook-deliveries")["data"] == []


def test_refusals_answer_400_and_write_nothing(app_client, stub):  # noqa: F811
    pm = PayPalMerchant(app_client, stub)
    story = PayPalStory("refused@example.com")
    event = story.subscription()
    before = len(stub.served())
    for cert_url in ("http://127.0.0.1/v1/notifications/certs/CERT-devstack",
                     "https://api.sandbox.paypal.com.evil.example/v1/notifications/certs/CERT-1",
                     "https://user@api.sandbox.paypal.com/v1/notifications/certs/CERT-1",
                     "https://api.sandbox.paypal.com:8443/v1/notifications/certs/CERT-1",
                     stub.url.replace("127.0.0.1", "localhost") + "/v1/notifications/certs/CERT-devstack"):
        r = pm.deliver(event, headers={"paypal-cert-url": cert_url})
        assert r.status_code == 400 and json.loads(r.body)["error"] == "invalid_signature", cert_url
    assert pm.deliver(event, webhook_id="WHNOTTHEONE").status_code == 400
    # Nothing off the allow list was fetched (the wrong webhook id's genuine URL may be).
    assert {s["path"] for s in stub.served()[before:]} <= {"/v1/notifications/certs/CERT-devstack"}
    r = pm.deliver(event, cert="CERT-selfsigned")
    assert r.status_code == 400
    body, headers = stub.sign(event, pm.webhook_id)
    tampered = body.replace(b"refused@example.com", b"attacker@example.com")
    r = pm.m.client.http.post(f"/webhooks/paypal/{pm.m.account_id}", body=tampered, headers=headers)
    assert r.status_code == 400
    verify_api = "/v1/notifications/verify-webhook-signature"
    assert not [s for s in stub.served()[before:] if s["path"] == verify_api]
    _nothing_written(pm)
    # A merchant without PayPal: 404, as an unknown processor.
    plain = make_merchant(app_client)
    assert pm.m.client.http.post(f"/webhooks/paypal/{plain.account_id}", body=body,
                                 headers=headers).status_code == 404


def test_a_certificate_of_an_unknown_ca_is_confirmed_by_paypals_api(app_client, stub):  # noqa: F811
    pm = PayPalMerchant(app_client, stub)
    story = PayPalStory("otherca@example.com")
    before = len(stub.served())
    r = pm.deliver(story.subscription(), cert="CERT-otherca")
    assert r.status_code == 200 and json.loads(r.body)["outcome"] == "applied", r.body
    served = [s["path"] for s in stub.served()[before:]]
    assert served.count("/v1/notifications/verify-webhook-signature") == 1
    assert [c["email"] for c in pm.m.customers()] == ["otherca@example.com"]
