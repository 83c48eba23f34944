"""The dev stack's proxy lets the product's real Stripe calls work against localstripe."""
from __future__ import annotations

import contextlib

import stripe
from portal_helpers import attach_card

from chalicelib.domain.events import Ref
from chalicelib.processors.stripe.gateway import StripeGateway


def test_per_subscription_card_and_paying_a_failed_invoice_through_the_shim(stripe_shim,
                                                                           stripe_client):
    gateway = StripeGateway("sk_test_shim", api_base=stripe_shim)
    customer = stripe_client.v1.customers.create(params={"email": "shim@example.com"}).id
    bad = attach_card(stripe_client, customer, "4000000000000341")
    stripe_client.v1.customers.update(customer, params={
        "invoice_settings": {"default_payment_method": bad}})
    plan = stripe_client.v1.plans.create(params={
        "amount": 700, "currency": "usd", "interval": "month", "product": {"name": "Box"}})
    # localstripe refuses the creation when the first payment fails, but keeps the open invoice.
    with contextlib.suppress(stripe.CardError):
        stripe_client.v1.subscriptions.create(params={"customer": customer,
                                                      "items": [{"plan": plan.id}]})
    subs = stripe_client.v1.subscriptions.list(params={"customer": customer}).data
    invoices = stripe_client.v1.invoices.list(params={"customer": customer}).data
    assert subs and invoices and invoices[0].status == "open"

    good = attach_card(stripe_client, customer, "4242424242424242")
    gateway.set_subscription_card(Ref("stripe", subs[0].id), Ref("stripe", good))
    outcome = gateway.pay_invoice(Ref("stripe", invoices[0].id), Ref("stripe", good),
                                  idempotency_key="shim-test-1")
    assert outcome.status == "paid"
    assert stripe_client.v1.invoices.retrieve(invoices[0].id).status == "paid"


def test_paying_with_a_card_leaves_the_customers_default_as_it_was(stripe_shim, stripe_client):
    import time

    gateway = StripeGateway("sk_test_shim", api_base=stripe_shim)
    customer = stripe_client.v1.customers.create(params={"email": "own@example.com"}).id
    own = attach_card(stripe_client, customer, "4242424242424242")
    stripe_client.v1.customers.update(customer, params={
        "invoice_settings": {"default_payment_method": own}})
    declines = attach_card(stripe_client, customer, "4000000000000341")
    other = attach_card(stripe_client, customer, "5555555555554444")
    plan = stripe_client.v1.plans.create(params={
        "amount": 500, "currency": "usd", "interval": "month", "product": {"name": "Box"}})
    sub = stripe_client.v1.subscriptions.create(params={
        "customer": customer, "items": [{"plan": plan.id}]}).id
    invoice = stripe_client.v1.invoices.create(params={"customer": customer,
                                                       "subscription": sub})
    # A per-subscription card is kept by the proxy, not made the customer's default.
    gateway.set_subscription_card(Ref("stripe", sub), Ref("stripe", other))
    assert stripe_client.v1.customers.retrieve(customer).invoice_settings \
        .default_payment_method == own
    # Two payments in a row (a decline, then another card), faster than the restore.
    assert gateway.pay_invoice(Ref("stripe", invoice.id), Ref("stripe", declines),
                               idempotency_key="own-1").status == "declined"
    assert gateway.pay_invoice(Ref("stripe", invoice.id), Ref("stripe", other),
                               idempotency_key="own-2").status == "paid"
    time.sleep(2.5)
    assert stripe_client.v1.customers.retrieve(customer).invoice_settings \
        .default_payment_method == own


def test_stripe_js_through_the_proxy_saves_a_card_on_the_customer(stripe_shim, stripe_client):
    import json

    import requests

    customer = stripe_client.v1.customers.create(params={"email": "js@example.com"}).id
    intent = stripe_client.v1.setup_intents.create(params={"customer": customer})
    origin = {"Origin": "http://127.0.0.1:9"}
    script = requests.get(f"{stripe_shim}/js.stripe.com/v3/", headers=origin, timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    assert script.headers["Access-Control-Allow-Origin"] == origin["Origin"]
    # What the stand-in's confirmCardSetup sends: a publishable key, no secret key.
    confirmed = requests.post(
        f"{stripe_shim}/v1/setup_intents/{intent.id}/confirm", headers=origin, timeout=10,
        data=json.dumps({"key": "pk_test_x", "client_secret": intent.client_secret,
                         "payment_method_data": {"type": "card", "card": {
                             "number": "4242424242424242", "exp_month": "1",
                             "exp_year": "2031", "cvc": "123"}}}))
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded"
    assert confirmed.headers["Access-Control-Allow-Origin"] == origin["Origin"]
    pm = confirmed.json()["payment_method"]
    listed = stripe_client.v1.payment_methods.list(params={"customer": customer, "type": "card"})
    assert [p.id for p in listed.data] == [pm]
    assert requests.options(f"{stripe_shim}/v1/tokens", headers=origin,
                            timeout=10).status_code == 204
