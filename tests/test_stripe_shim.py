"""The dev stack's proxy lets the product's real Stripe calls work against localstripe."""
from __future__ import annotations

import contextlib

import stripe

from chalicelib.domain.events import Ref
from chalicelib.processors.stripe.gateway import StripeGateway


def _card(client, customer, number):
    pm = client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 1, "exp_year": 2033, "cvc": "123"}})
    client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    return pm.id


def test_per_subscription_card_and_paying_a_failed_invoice_through_the_shim(stripe_shim,
                                                                           stripe_client):
    gateway = StripeGateway("sk_test_shim", api_base=stripe_shim)
    customer = stripe_client.v1.customers.create(params={"email": "shim@example.com"}).id
    bad = _card(stripe_client, customer, "4000000000000341")
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

    good = _card(stripe_client, customer, "4242424242424242")
    gateway.set_subscription_card(Ref("stripe", subs[0].id), Ref("stripe", good))
    outcome = gateway.pay_invoice(Ref("stripe", invoices[0].id), Ref("stripe", good),
                                  idempotency_key="shim-test-1")
    assert outcome.status == "paid"
    assert stripe_client.v1.invoices.retrieve(invoices[0].id).status == "paid"
