"""End to end: localstripe signs and sends its own webhooks to the app over HTTP."""
from __future__ import annotations

import secrets

import requests
from portal_helpers import wait_for


def test_localstripe_webhooks_build_the_record(stack, app_server, stripe_client):
    from chalicelib.accounts.service import create_account

    secret = f"whsec_{secrets.token_hex(16)}"
    created = create_account(name=f"E2E {secrets.token_hex(3)}", support_email="e2e@shop.test",
                             stripe_secret_key="sk_test_devstack", stripe_webhook_secrets=[secret])
    account_id = created.account["account_id"]
    stack.register_stripe_webhook(f"{app_server}/webhooks/stripe/{account_id}", secret,
                                  webhook_id=f"e2e-{account_id}")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {created.api_key}"

    email = f"e2e-{secrets.token_hex(3)}@example.com"
    customer = stripe_client.v1.customers.create(params={"email": email, "name": "Zoë E2E"})
    pm = stripe_client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                 "exp_year": 2031, "cvc": "123"}})
    stripe_client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    stripe_client.v1.customers.update(customer.id, params={
        "invoice_settings": {"default_payment_method": pm.id}})
    intent = stripe_client.v1.payment_intents.create(params={
        "amount": 4900, "currency": "eur", "customer": customer.id, "payment_method": pm.id})
    stripe_client.v1.payment_intents.confirm(intent.id)
    plan = stripe_client.v1.plans.create(params={
        "amount": 1500, "currency": "eur", "interval": "month",
        "product": {"name": "Monthly box"}, "nickname": "Monthly box"})
    stripe_client.v1.subscriptions.create(params={
        "customer": customer.id, "items": [{"plan": plan.id}]})

    def record():
        listing = api.get(f"{app_server}/api/v1/customers", params={"q": email}).json()["data"]
        if not listing:
            return None
        return api.get(f"{app_server}/api/v1/customers/{listing[0]['id']}").json()

    final = wait_for(record, lambda r: r is not None and r["subscriptions"]
                     and r["stats"]["orders"] == 2
                     and r["stats"]["lifetime_value"].get("eur") == 6400, timeout=30)
    assert final["name"] == "Zoë E2E"
    assert final["subscriptions"][0]["status"] == "active"
    assert final["subscriptions"][0]["amount"] == 1500
    # localstripe sends no payment_method.* events and no card details on charges, so the
    # card on file is not known here (Stripe sends both; see test_webhooks).
    kinds = sorted(o["kind"] for o in final["orders"])
    assert kinds == ["one_time", "subscription"]
    deliveries = api.get(f"{app_server}/api/v1/webhook-deliveries",
                         params={"limit": 100}).json()["data"]
    assert deliveries and all(d["outcome"] in ("applied", "ignored", "duplicate") for d in deliveries)
