"""A shop with a customer at localstripe whose events reach the app through its real webhook
route, delivered in this process (signed, as Stripe sends them, and sent again on a 5xx
as Stripe does) instead of by localstripe over HTTP to ``chalice local``: the record is
there when the fixture returns, and the events that follow an action (``customer.updated``
after an edit) are delivered by ``deliver_events`` when the test asks, whatever the
machine's load (localstripe does not retry a webhook the busy dev server dropped)."""
from __future__ import annotations

import secrets
import time

import requests
from app_fixtures import Merchant
from portal_helpers import (
    CARD_OK,
    PUBLISHABLE_KEY,
    SENDER_DOMAIN,
    Shop,
    StripeShop,
    wait_for,
)

STRIPE_KEY = "sk_test_portal"


def _events_since(stripe_url: str, since: int) -> list[dict]:
    """localstripe's events created at or after ``since``, oldest first."""
    out, after = [], None
    while True:
        params = {"limit": 100, "created[gte]": since}
        if after:
            params["starting_after"] = after
        page = requests.get(f"{stripe_url}/v1/events", params=params, timeout=30,
                            headers={"Authorization": f"Bearer {STRIPE_KEY}"}).json()
        out += page["data"]
        if not page.get("has_more") or not page["data"]:
            break
        after = page["data"][-1]["id"]
    return sorted(out, key=lambda e: (e["created"], e["id"]))


def _customer_of(event: dict) -> str | None:
    obj = event["data"]["object"]
    if obj.get("object") == "customer":
        return obj.get("id")
    customer = obj.get("customer")
    return customer if isinstance(customer, str) else None


def deliver_events(shop: StripeShop) -> int:
    """Deliver localstripe's new events of the shop's Stripe customers to the app; how many."""
    state = shop.feed
    events = [e for e in _events_since(state["stripe_url"], state["since"])
              if e["id"] not in state["delivered"] and _customer_of(e) in state["customers"]]
    shop.shop.merchant.deliver_until_applied(events)
    state["delivered"].update(e["id"] for e in events)
    return len(events)


def follow_customer(shop: StripeShop, customer: str) -> None:
    """Deliver the events of one more Stripe customer (created at localstripe) too."""
    shop.feed["customers"].add(customer)


def seeded_shop(app_client, stack, client, name: str = "Zoë Łukasiewicz") -> StripeShop:
    """As portal_helpers.make_stripe_shop (a card, Coffee and a 3-instalment course),
    delivered in process."""
    from chalicelib.accounts.service import create_account

    stack.verify_sender(SENDER_DOMAIN)
    since = int(time.time()) - 1
    secret = f"whsec_{secrets.token_hex(12)}"
    created = create_account(
        name=f"Shop {secrets.token_hex(4)}", support_email="support@shop.test",
        stripe_secret_key=STRIPE_KEY, stripe_webhook_secrets=[secret],
        stripe_publishable_key=PUBLISHABLE_KEY,
        settings={"branding": {"color": "#0a7d5a", "company_address": None, "logo_url": None},
                  "portal": {"self_cancel": True}})
    account = created.account
    merchant = Merchant(app_client, account["account_id"], created.api_key, [secret])
    shop = Shop(merchant, account["slug"], account["name"])
    out = add_customer(shop, client, name)
    out.feed = {"stripe_url": stack.stripe_url, "since": since, "delivered": set(),
                "customers": {out.customer}}
    # localstripe makes a few events a moment after the calls that cause them.
    wait_for(lambda: (deliver_events(out), out.customer_id() and out.record())[1],
             lambda r: r and r["subscriptions"] and r["payment_plans"] and all(
                 s["card_id"] for s in r["subscriptions"] + r["payment_plans"]),
             what="the customer's record", timeout=15)
    return out


def add_customer(shop: Shop, client, name: str) -> StripeShop:
    email = f"zoe-{secrets.token_hex(4)}@example.com"
    customer = client.v1.customers.create(params={"email": email, "name": name})
    out = StripeShop(shop, client, email, name, customer.id, "", "", "")
    out.first_card = out.add_card(CARD_OK)
    client.v1.customers.update(customer.id, params={
        "invoice_settings": {"default_payment_method": out.first_card}})
    coffee = client.v1.plans.create(params={
        "amount": 1200, "currency": "eur", "interval": "month", "nickname": "Coffee",
        "product": {"name": "Coffee"}})
    course = client.v1.plans.create(params={
        "amount": 9900, "currency": "eur", "interval": "month",
        "nickname": "Photography course", "product": {"name": "Photography course"}})
    out.subscription = client.v1.subscriptions.create(params={
        "customer": customer.id, "items": [{"plan": coffee.id}]}).id
    out.plan_subscription = client.v1.subscriptions.create(params={
        "customer": customer.id, "items": [{"plan": course.id}],
        "metadata": {"installments": "3"}}).id
    return out


def another_customer(shop: StripeShop, name: str) -> StripeShop:
    """A second customer of the same shop (its own e-mail), recorded."""
    other = add_customer(shop.shop, shop.client, name)
    other.feed = shop.feed
    follow_customer(shop, other.customer)
    wait_for(lambda: (deliver_events(shop), other.customer_id())[1], bool,
             what="the other customer's record", timeout=15)
    return other
