"""The Stripe gateway: against localstripe for what it covers, and against Stripe-shaped
answers (built from Stripe's own example objects) for what localstripe cannot do."""
from __future__ import annotations

import json
import urllib.parse

import pytest
from stripe_events import fixture

from chalicelib.domain.events import Ref
from chalicelib.processors.gateway import CardDeclined, ProcessorError, ProcessorUnavailable
from chalicelib.processors.stripe.gateway import StripeGateway


def _ref(stripe_id: str) -> Ref:
    return Ref("stripe", stripe_id)


# --- localstripe -------------------------------------------------------------------


@pytest.fixture
def gateway(stack):
    return StripeGateway("sk_test_gateway", api_base=stack.stripe_url)


def _customer_with_card(stripe_client, number="4242424242424242"):
    customer = stripe_client.v1.customers.create(params={"email": "gw@example.com"})
    pm = stripe_client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 4, "exp_year": 2032, "cvc": "123"}})
    stripe_client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    return customer, pm


def test_setup_intent_and_cards_on_localstripe(gateway, stripe_client):
    customer, pm = _customer_with_card(stripe_client)
    setup = gateway.create_card_setup(_ref(customer.id))
    assert setup.client_secret.startswith(setup.setup.id)
    cards = gateway.list_cards(_ref(customer.id))
    assert [(c.payment_method.id, c.card.last4, c.card.exp_year) for c in cards] == [
        (pm.id, "4242", 2032)]
    gateway.set_default_card(_ref(customer.id), _ref(pm.id))
    assert stripe_client.v1.customers.retrieve(customer.id).invoice_settings[
        "default_payment_method"] == pm.id
    gateway.detach_card(_ref(pm.id))
    assert gateway.list_cards(_ref(customer.id)) == []


def test_cancel_at_period_end_and_undo_on_localstripe(gateway, stripe_client):
    customer, pm = _customer_with_card(stripe_client)
    stripe_client.v1.customers.update(customer.id, params={
        "invoice_settings": {"default_payment_method": pm.id}})
    plan = stripe_client.v1.plans.create(params={
        "amount": 900, "currency": "usd", "interval": "month", "product": {"name": "Box"}})
    sub = stripe_client.v1.subscriptions.create(params={
        "customer": customer.id, "items": [{"plan": plan.id}]})
    gateway.cancel_at_period_end(_ref(sub.id), reason=None)
    assert stripe_client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is True
    gateway.undo_cancel(_ref(sub.id))
    assert stripe_client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False


def test_unknown_objects_are_a_processor_error(gateway):
    with pytest.raises(ProcessorError):
        gateway.undo_cancel(_ref("sub_doesnotexist"))


# --- Stripe-shaped answers -----------------------------------------------------------


class FakeStripe:
    """An HTTP client for the stripe library that answers from a table of routes."""

    def __init__(self, routes):
        import stripe

        class Client(stripe.HTTPClient):
            name = "fake"

            def request(inner, method, url, headers, post_data=None, **_):
                path = urllib.parse.urlsplit(url).path
                self.calls.append((method.upper(), path, urllib.parse.parse_qs(post_data or ""),
                                   dict(headers or {})))
                answer = routes[(method.upper(), path)]
                if isinstance(answer, Exception):
                    raise answer
                status, body = answer
                return json.dumps(body), status, {}

            def close(inner):
                pass

        self.calls = []
        self.client = Client()


def _fake_gateway(routes):
    fake = FakeStripe(routes)
    return StripeGateway("sk_test_fake", http_client=fake.client, max_network_retries=0), fake


def test_set_subscription_card_sends_default_payment_method():
    sub = fixture("subscription", id="sub_123", default_payment_method="pm_9")
    gw, fake = _fake_gateway({("POST", "/v1/subscriptions/sub_123"): (200, sub)})
    gw.set_subscription_card(_ref("sub_123"), _ref("pm_9"))
    _, _, form, _ = fake.calls[0]
    assert form == {"default_payment_method": ["pm_9"]}


def test_pay_invoice_with_a_chosen_card():
    paid = fixture("invoice", id="in_1", status="paid")
    gw, fake = _fake_gateway({("POST", "/v1/invoices/in_1/pay"): (200, paid)})
    outcome = gw.pay_invoice(_ref("in_1"), _ref("pm_2"), idempotency_key="pay-in_1-pm_2-a")
    assert outcome.status == "paid"
    _, _, form, headers = fake.calls[0]
    assert form["payment_method"] == ["pm_2"] and form["off_session"] == ["true"]
    assert headers["Idempotency-Key"] == "pay-in_1-pm_2-a"


def _card_error(code, message, payment_intent=None):
    error = {"type": "card_error", "code": code, "message": message}
    if payment_intent:
        error["payment_intent"] = payment_intent
    return 402, {"error": error}


def test_pay_invoice_declined_shows_stripes_message():
    gw, _ = _fake_gateway({("POST", "/v1/invoices/in_1/pay"): _card_error(
        "card_declined", "Your card has insufficient funds.")})
    outcome = gw.pay_invoice(_ref("in_1"), _ref("pm_2"), idempotency_key="k1")
    assert outcome.status == "declined"
    assert outcome.message == "Your card has insufficient funds."


def test_pay_invoice_needing_authentication_returns_the_intent_secret():
    intent = fixture("payment_intent", id="pi_7", client_secret="pi_7_secret_x",
                     status="requires_action")
    gw, _ = _fake_gateway({("POST", "/v1/invoices/in_1/pay"): _card_error(
        "invoice_payment_intent_requires_action", "This payment requires additional user action.",
        payment_intent=intent)})
    outcome = gw.pay_invoice(_ref("in_1"), None, idempotency_key="k2")
    assert (outcome.status, outcome.client_secret) == ("requires_action", "pi_7_secret_x")


def test_network_and_server_errors_are_unavailable_not_500():
    import stripe

    gw, _ = _fake_gateway({
        ("POST", "/v1/subscriptions/sub_1"): (500, {"error": {"type": "api_error",
                                                              "message": "boom"}}),
        ("POST", "/v1/subscriptions/sub_2"): stripe.APIConnectionError("no route"),
    })
    for sub in ("sub_1", "sub_2"):
        with pytest.raises(ProcessorUnavailable) as caught:
            gw.cancel_at_period_end(_ref(sub), reason="too expensive")
        assert "Nothing was changed" in caught.value.message
    with pytest.raises(CardDeclined):
        _fake_gateway({("POST", "/v1/subscriptions/sub_3"): _card_error(
            "card_declined", "Declined.")})[0].set_subscription_card(_ref("sub_3"), _ref("pm_1"))


def test_pay_invoice_left_open_reads_why_from_its_payment_intent():
    """localstripe leaves the invoice open instead of answering with a card error."""
    open_invoice = fixture("invoice", id="in_1", status="open", payment_intent="pi_7")
    needs_bank = fixture("payment_intent", id="pi_7", client_secret="pi_7_secret_x",
                         status="requires_action")
    declined = fixture("payment_intent", id="pi_7", status="requires_payment_method",
                       last_payment_error={"code": "card_declined",
                                           "message": "Your card was declined."})
    for intent, expected in ((needs_bank, ("requires_action", "pi_7_secret_x")),
                             (declined, ("declined", None))):
        gw, _ = _fake_gateway({("POST", "/v1/invoices/in_1/pay"): (200, open_invoice),
                               ("GET", "/v1/payment_intents/pi_7"): (200, intent)})
        outcome = gw.pay_invoice(_ref("in_1"), _ref("pm_2"), idempotency_key="k3")
        assert (outcome.status, outcome.client_secret) == expected
        if outcome.status == "declined":
            assert outcome.message == "Your card was declined."
    # Today's invoices name no payment intent: a plain "did not go through".
    gw, _ = _fake_gateway({("POST", "/v1/invoices/in_1/pay"): (
        200, fixture("invoice", id="in_1", status="open", payment_intent=None))})
    outcome = gw.pay_invoice(_ref("in_1"), None, idempotency_key="k4")
    assert (outcome.status, outcome.message) == ("declined", "The payment did not go through.")


def test_refund_sends_stripes_unit_and_refuses_what_it_cannot_hold(gateway, stripe_client):
    """Refund amounts are the project's stored minor units; the gateway converts them to
    Stripe's (ISK: two decimals at Stripe, none stored) and refuses what Stripe's unit
    cannot hold exactly, before any call."""
    from chalicelib.processors.gateway import AmountNotAccepted

    customer, pm = _customer_with_card(stripe_client)
    intent = stripe_client.v1.payment_intents.create(params={
        "amount": 500000, "currency": "isk", "customer": customer.id, "payment_method": pm.id})
    stripe_client.v1.payment_intents.confirm(intent.id)
    made = gateway.create_refund(_ref(intent.id), 1000, "isk", None,
                                 idempotency_key=f"rf-{intent.id}")
    assert stripe_client.v1.refunds.retrieve(made.refund.id).amount == 100000  # ISK 1,000
    assert (made.amount, made.currency) == (1000, "isk")
    for amount, currency in ((5124, "kwd"), (100050, "mga")):
        with pytest.raises(AmountNotAccepted):
            gateway.create_refund(_ref(intent.id), amount, currency, None,
                                  idempotency_key="never-sent")
