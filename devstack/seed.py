"""Demo data for `make dev`, created in localstripe through the stripe library.

Nothing is written to the table here: localstripe sends signed webhooks for what we
create (about a second later, asynchronously) and the app builds its records from
them, exactly as with Stripe. So this only talks to localstripe and works (and can be
tried) whether or not the webhook route is finished.

Run alone:  .venv/bin/python -m devstack.seed --api-base http://127.0.0.1:8420
"""
from __future__ import annotations

import argparse
import os
import sys

import stripe

# Test card numbers localstripe knows (as Stripe does): 4242… always succeeds,
# 4000000000000341 can be attached to a customer but every charge on it fails.
CARD_OK = "4242424242424242"
CARD_FAILS_LATER = "4000000000000341"


def _card(client: stripe.StripeClient, number: str, name: str) -> stripe.PaymentMethod:
    # Raw card numbers are refused by real Stripe's API (Stripe.js collects them);
    # localstripe accepts them, which is all the seed needs.
    return client.v1.payment_methods.create(params={
        "type": "card",
        "card": {"number": number, "exp_month": "12", "exp_year": "2030", "cvc": "123"},
        "billing_details": {"name": name},
    })


def _customer(client: stripe.StripeClient, name: str, email: str,
              card: str | None = None) -> stripe.Customer:
    """A customer, with a card attached and set as default for invoices if given."""
    params: dict = {"name": name, "email": email}
    if card:
        pm = _card(client, card, name)
        params["payment_method"] = pm.id
        params["invoice_settings"] = {"default_payment_method": pm.id}
    return client.v1.customers.create(params=params)


def seed(api_base: str, api_key: str = "sk_test_demo", out=sys.stdout) -> dict[str, str]:
    """Create the demo customers and purchases; return their ids by label."""
    client = stripe.StripeClient(api_key, base_addresses={"api": api_base})
    ids: dict[str, str] = {}

    def note(label: str, obj_id: str, detail: str = "") -> None:
        ids[label] = obj_id
        print(f"  {label:<24} {obj_id} {detail}".rstrip(), file=out)

    print(f"Seeding localstripe at {api_base}", file=out)

    # localstripe has Plans (no Prices); a plan creates its product inline.
    membership = client.v1.plans.create(params={
        "amount": 1500, "currency": "eur", "interval": "month",
        "nickname": "Pro membership, monthly", "product": {"name": "Pro membership"},
    })
    note("plan_membership", membership.id, "15.00 EUR / month")
    course = client.v1.plans.create(params={
        "amount": 9900, "currency": "eur", "interval": "month",
        "nickname": "Photo course, 3 instalments",
        "product": {"name": "Photography course (3 instalments)"},
    })
    note("plan_course", course.id, "99.00 EUR / month x 3")

    # A one-time purchase, paid now.
    grace = _customer(client, "Grace Hopper", "grace@example.com", CARD_OK)
    note("customer_one_time", grace.id, grace.email)
    payment = client.v1.payment_intents.create(params={
        "amount": 4900, "currency": "eur", "customer": grace.id,
        "payment_method": grace.invoice_settings.default_payment_method,
        "confirm": True, "metadata": {"product": "E-book bundle"},
    })
    note("payment_one_time", payment.id, f"{payment.status}, 49.00 EUR")

    # A monthly subscription, for a name that needs more than ASCII.
    zoe = _customer(client, "Zoë Łukasiewicz", "zoe.lukasiewicz@example.com", CARD_OK)
    note("customer_subscription", zoe.id, zoe.email)
    sub = client.v1.subscriptions.create(params={
        "customer": zoe.id, "items": [{"plan": membership.id}],
    })
    note("subscription", sub.id, sub.status)

    # A payment plan: a monthly subscription the app ends after 3 paid instalments.
    mateo = _customer(client, "Mateo Núñez", "mateo@example.com", CARD_OK)
    note("customer_payment_plan", mateo.id, mateo.email)
    plan_sub = client.v1.subscriptions.create(params={
        "customer": mateo.id, "items": [{"plan": course.id}],
        "metadata": {"installments": "3"},
    })
    note("payment_plan", plan_sub.id, f"{plan_sub.status}, installments=3")

    # A card that attaches but fails: the subscription's first invoice is not paid and
    # the subscription stays "incomplete".
    kenji = _customer(client, "Kenji Watanabe", "kenji@example.com", CARD_FAILS_LATER)
    note("customer_failing_card", kenji.id, kenji.email)
    failed_sub = client.v1.subscriptions.create(params={
        "customer": kenji.id, "items": [{"plan": membership.id}],
    })
    note("subscription_failing", failed_sub.id, failed_sub.status)
    # localstripe sends no failure event for that invoice (only invoice.created and
    # customer.subscription.created with status "incomplete"); a declined one-time
    # charge does send payment_intent.payment_failed, so the app sees a failure too.
    try:
        client.v1.payment_intents.create(params={
            "amount": 2500, "currency": "eur", "customer": kenji.id,
            "payment_method": kenji.invoice_settings.default_payment_method,
            "confirm": True, "metadata": {"product": "Gift card"},
        })
        raise RuntimeError("localstripe accepted a charge on a card that should fail")
    except stripe.CardError as e:
        note("payment_declined", e.code or "card_declined", "25.00 EUR")

    # Someone who signed up and has not bought anything yet.
    ada = _customer(client, "Ada Lovelace", "ada@example.com")
    note("customer_no_purchase", ada.id, ada.email)

    return ids


def send_missing_failure_events(api_base: str, webhook_url: str, webhook_secret: str,
                                 api_key: str = "sk_test_demo") -> int:
    """Send the ``invoice.payment_failed`` Stripe sends for a subscription's failed first
    invoice and localstripe does not: signed like Stripe, for every open invoice. A gap of
    localstripe's filled by the dev stack, like devstack/stripe_shim.py; not product code."""
    import hashlib
    import hmac
    import json
    import time
    import urllib.request

    client = stripe.StripeClient(api_key, base_addresses={"api": api_base})
    sent = 0
    for invoice in client.v1.invoices.list(params={"limit": 100}).data:
        if invoice.status != "open":
            continue
        now = int(time.time())
        body = json.dumps({"id": f"evt_devfail{invoice.id[3:]}", "object": "event",
                           "type": "invoice.payment_failed", "created": now,
                           "data": {"object": invoice.to_dict()}}).encode()
        mac = hmac.new(webhook_secret.encode(), f"{now}.".encode() + body, hashlib.sha256)
        request = urllib.request.Request(webhook_url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Stripe-Signature": f"t={now},v1={mac.hexdigest()}"})
        with urllib.request.urlopen(request, timeout=10):
            sent += 1
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-base", default=os.environ.get("STRIPE_API_BASE"),
                        help="localstripe's URL (default: $STRIPE_API_BASE)")
    parser.add_argument("--api-key", default="sk_test_demo")
    args = parser.parse_args(argv)
    if not args.api_base:
        parser.error("--api-base or STRIPE_API_BASE is required (never seed real Stripe)")
    seed(args.api_base, args.api_key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
