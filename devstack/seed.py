"""Demo data for `make dev`, created in localstripe through the stripe library.

Nothing is written to the table here: localstripe sends signed webhooks for what we
create (about a second later, asynchronously) and the app builds its records from
them, exactly as with Stripe. So this only talks to localstripe and works (and can be
tried) whether or not the webhook route is finished.

Run alone:  .venv/bin/python -m devstack.seed --api-base http://127.0.0.1:8420
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from dataclasses import dataclass, field

import requests
import stripe
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from devstack import servers

# Test card numbers localstripe knows (as Stripe does): 4242… always succeeds,
# 4000000000000341 can be attached to a customer but every charge on it fails.
CARD_OK = "4242424242424242"
CARD_FAILS_LATER = "4000000000000341"

# Posting to the app. `chalice local` serves one process for everything, and while
# localstripe's own burst of webhooks is being applied a busy machine can keep a request
# waiting for many seconds: wait for the app to answer at all, then give each post time,
# and retry what may succeed later (no connection, a timeout, 429, 5xx) with exponential
# backoff and jitter. Bounded: the worst case (ATTEMPTS × read timeout + backoff) stays
# well inside the 300 s a Stripe signature is accepted for, so one signature serves every
# attempt. Handlers are idempotent by event id, so a retried post cannot count twice.
APP_READY_SECONDS = 120.0
ATTEMPTS = 5
BACKOFF_SECONDS = 1.0    # urllib3's schedule: 0, 2, 4, 8 s (+ up to 1 s jitter) between tries
BACKOFF_MAX_SECONDS = 15.0
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
RETRY_STATUSES = (429, 500, 502, 503, 504)
# The Stripe client's own retries (connection errors and what Stripe marks retryable).
STRIPE_NETWORK_RETRIES = 3


class SeedStepFailed(RuntimeError):
    """A seed step that did not succeed after its retries; the message says what and why."""


@dataclass
class Deliveries:
    """What a posting step did: events the app accepted, and one line per event it did not."""

    sent: int = 0
    failed: list[str] = field(default_factory=list)


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
    client = stripe.StripeClient(api_key, base_addresses={"api": api_base},
                                 max_network_retries=STRIPE_NETWORK_RETRIES)
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


# --- PayPal: a customer who pays with PayPal, through the PayPal stand-in ----------------------

PAYPAL_WEBHOOK_ID = "WH-DEVSTACK-DEMO"


def seed_paypal(stub_url: str, app_url: str, account_id: str, ca_pem: str,
                out=sys.stdout) -> dict[str, str]:
    """A PayPal customer of the demo shop, as PayPal would report them: a monthly
    subscription with one sale paid and one payment missed (USD 15 outstanding), and a
    one-time order of USD 30 partly refunded (USD 5, by the stand-in's refund API, which
    sends PayPal's refund webhook).

    Sets the account's PayPal credentials (sandbox, made up: the stand-in takes any) and
    the stand-in's webhook target (the app's ``/webhooks/paypal/<account>``), so what the
    portal and the dashboard do later sends PayPal's webhooks too. The objects go into the
    stand-in's state (for PayPal's API reads) and their events are sent signed by the
    stand-in to the app: nothing is written to the table here but the account's settings."""
    import base64
    import ssl
    import urllib.request
    from datetime import UTC, datetime, timedelta

    from chalicelib.accounts.service import set_paypal

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(
        context=ssl.create_default_context(cadata=ca_pem)))

    def call(method: str, path: str, payload=None, headers: dict | None = None) -> dict:
        request = urllib.request.Request(
            stub_url.rstrip("/") + path, method=method,
            data=None if payload is None else json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", **(headers or {})})
        with opener.open(request, timeout=READ_TIMEOUT) as response:
            body = response.read()
        return json.loads(body) if body else {}

    ids: dict[str, str] = {}
    print(f"Seeding a PayPal customer through the PayPal stand-in at {stub_url}", file=out)
    set_paypal(account_id, client_id="AZdevstackdemo0001", client_secret="EJdevstackdemo-secret-0001",
               webhook_id=PAYPAL_WEBHOOK_ID, mode="sandbox")
    webhook_url = f"{app_url.rstrip('/')}/webhooks/paypal/{account_id}"
    call("PUT", "/_stub/webhook-target", {"url": webhook_url, "webhook_id": PAYPAL_WEBHOOK_ID})

    now = datetime.now(UTC).replace(microsecond=0)

    def at(days: float) -> str:
        return (now + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

    serial = iter(range(1, 100))

    def send(event_type: str, resource_type: str, resource: dict, version: str | None = "2.0",
             when: str | None = None) -> None:
        event = {"id": f"WH-DEMO-{next(serial):04d}-{account_id[-8:].upper()}",
                 "event_version": "1.0", "create_time": when or at(0),
                 "resource_type": resource_type, "event_type": event_type,
                 "summary": event_type.lower(), "resource": resource}
        if version:
            event["resource_version"] = version
        sent = call("POST", "/_stub/send", {"event": event, "url": webhook_url,
                                            "webhook_id": PAYPAL_WEBHOOK_ID})
        if sent.get("status") != 200:
            raise SeedStepFailed(f"the app answered {sent.get('status')} to PayPal's "
                                 f"{event_type}: {str(sent.get('body'))[:200]}")

    payer = {"payer_id": "DEMOPAYER01", "email_address": "frida@example.com",
             "name": {"given_name": "Frida", "surname": "Kahlo"}}
    sub_id = "I-DEMO" + account_id[-8:].upper().replace("_", "")
    plan = {"name": "Studio membership (PayPal)", "billing_cycles": [
        {"tenure_type": "REGULAR", "total_cycles": 0,
         "frequency": {"interval_unit": "MONTH", "interval_count": 1},
         "pricing_scheme": {"fixed_price": {"currency_code": "USD", "value": "15.00"}}}]}

    def subscription(outstanding: str, failed: bool) -> dict:
        billing = {"outstanding_balance": {"currency_code": "USD", "value": outstanding},
                   "next_billing_time": at(12), "failed_payments_count": 1 if failed else 0,
                   "last_payment": {"amount": {"currency_code": "USD", "value": "15.00"},
                                    "time": at(-48)}}
        if failed:
            billing["last_failed_payment"] = {
                "amount": {"currency_code": "USD", "value": "15.00"}, "time": at(-18),
                "reason_code": "PAYMENT_DENIED"}
        return {"id": sub_id, "status": "ACTIVE", "plan_id": "P-DEMO-STUDIO", "plan": plan,
                "start_time": at(-48), "status_update_time": at(-48),
                "subscriber": {"payer_id": payer["payer_id"],
                               "email_address": payer["email_address"], "name": payer["name"]},
                "billing_info": billing}

    send("BILLING.SUBSCRIPTION.ACTIVATED", "subscription", subscription("0.00", False),
         when=at(-48))
    sale_id = "DEMOSALE" + account_id[-6:].upper()
    sale = {"id": sale_id, "state": "completed", "billing_agreement_id": sub_id,
            "amount": {"total": "15.00", "currency": "USD"}, "create_time": at(-48)}
    call("PUT", f"/_stub/objects/sales/{sale_id}", sale)
    send("PAYMENT.SALE.COMPLETED", "sale", sale, version=None, when=at(-48))
    failing = subscription("15.00", True)
    call("PUT", f"/_stub/objects/subscriptions/{sub_id}", failing)
    send("BILLING.SUBSCRIPTION.PAYMENT.FAILED", "subscription", failing, when=at(-18))
    ids["paypal_subscription"] = sub_id
    print(f"  {'paypal_subscription':<24} {sub_id} USD 15.00 / month, one payment missed",
          file=out)

    order_id = "DEMOORDER" + account_id[-6:].upper()
    capture_id = "DEMOCAPTURE" + account_id[-6:].upper()
    capture = {"id": capture_id, "status": "COMPLETED", "create_time": at(-3),
               "amount": {"currency_code": "USD", "value": "30.00"},
               "supplementary_data": {"related_ids": {"order_id": order_id}}}
    order = {"id": order_id, "status": "COMPLETED", "intent": "CAPTURE", "payer": payer,
             "create_time": at(-3), "update_time": at(-3),
             "purchase_units": [{"description": "Printed poster set",
                                 "amount": {"currency_code": "USD", "value": "30.00"},
                                 "payments": {"captures": [capture]}}]}
    call("PUT", f"/_stub/objects/orders/{order_id}", order)
    call("PUT", f"/_stub/objects/captures/{capture_id}", capture)
    send("CHECKOUT.ORDER.COMPLETED", "checkout-order", order, when=at(-3))
    # The partial refund through PayPal's own API (the stand-in's), as a merchant would.
    basic = base64.b64encode(b"AZdevstackdemo0001:EJdevstackdemo-secret-0001").decode()
    token = urllib.request.Request(
        stub_url.rstrip("/") + "/v1/oauth2/token", data=b"grant_type=client_credentials",
        method="POST", headers={"Authorization": f"Basic {basic}",
                                "Content-Type": "application/x-www-form-urlencoded"})
    with opener.open(token, timeout=READ_TIMEOUT) as response:
        access = json.loads(response.read())["access_token"]
    refund = call("POST", f"/v2/payments/captures/{capture_id}/refund",
                  {"amount": {"currency_code": "USD", "value": "5.00"}},
                  headers={"Authorization": f"Bearer {access}",
                           "PayPal-Request-Id": f"demo-refund-{capture_id}"})
    ids["paypal_order"], ids["paypal_refund"] = order_id, refund["id"]
    print(f"  {'paypal_order':<24} {order_id} USD 30.00, USD 5.00 refunded", file=out)
    return ids


def wait_until_answering(url: str, timeout: float = APP_READY_SECONDS) -> bool:
    """Readiness probe: poll ``url`` until the app answers HTTP (any status), with backoff.

    False after ``timeout`` seconds without an answer; the caller reports it and carries on.
    """
    deadline = time.monotonic() + timeout
    pause = 0.2
    while not servers.answers_http(url):
        if time.monotonic() + pause > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
    return True


def _session(attempts: int, backoff: float) -> requests.Session:
    retry = Retry(total=attempts - 1, connect=attempts - 1, read=attempts - 1,
                  status=attempts - 1, other=0, redirect=0,
                  allowed_methods=None,  # POST too: the webhook handlers are idempotent
                  status_forcelist=RETRY_STATUSES, raise_on_status=False,
                  backoff_factor=backoff, backoff_max=BACKOFF_MAX_SECONDS,
                  backoff_jitter=backoff, retry_after_max=int(BACKOFF_MAX_SECONDS))
    session = requests.Session()
    session.trust_env = False  # loopback: never through a configured HTTP proxy
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def post_event(webhook_url: str, event: dict, webhook_secret: str, *,
               attempts: int = ATTEMPTS, backoff: float = BACKOFF_SECONDS,
               timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)) -> int:
    """POST ``event`` to ``webhook_url`` signed like Stripe, retrying what may pass later.

    Returns the app's 2xx status; raises SeedStepFailed naming the event and the last
    answer (or network error) when every attempt failed or the app refused it (4xx).
    """
    body = json.dumps(event).encode()
    now = int(time.time())
    mac = hmac.new(webhook_secret.encode(), f"{now}.".encode() + body, hashlib.sha256)
    headers = {"Content-Type": "application/json",
               "Stripe-Signature": f"t={now},v1={mac.hexdigest()}"}
    what = f"{event.get('type')} {event.get('id')}"
    with _session(attempts, backoff) as session:
        try:
            response = session.post(webhook_url, data=body, headers=headers, timeout=timeout)
        except requests.RequestException as e:
            raise SeedStepFailed(f"{what}: no answer from {webhook_url} after {attempts} "
                                 f"attempts ({_reason(e)})") from None
    if not response.ok:
        tried = f"after {attempts} attempts" if response.status_code in RETRY_STATUSES else \
            "(not retried: the app refused it)"
        raise SeedStepFailed(f"{what}: {webhook_url} answered HTTP {response.status_code} "
                             f"{tried}: {response.text[:200].strip()}")
    return response.status_code


def _reason(error: requests.RequestException) -> str:
    # requests wraps urllib3's MaxRetryError, whose reason is the last underlying error.
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return str(reason or error)


def send_missing_failure_events(api_base: str, webhook_url: str, webhook_secret: str,
                                 api_key: str = "sk_test_demo", *,
                                 attempts: int = ATTEMPTS,
                                 backoff: float = BACKOFF_SECONDS) -> Deliveries:
    """Send the ``invoice.payment_failed`` Stripe sends for a subscription's failed first
    invoice and localstripe does not: signed like Stripe, for every open invoice. A gap of
    localstripe's filled by the dev stack, like devstack/stripe_shim.py; not product code.

    Never raises for one event the app would not take: each is retried (see post_event)
    and, if it still fails, reported in the result while the others go on.
    """
    client = stripe.StripeClient(api_key, base_addresses={"api": api_base},
                                 max_network_retries=STRIPE_NETWORK_RETRIES)
    deliveries = Deliveries()
    for invoice in client.v1.invoices.list(params={"limit": 100}).data:
        if invoice.status != "open":
            continue
        event = {"id": f"evt_devfail{invoice.id[3:]}", "object": "event",
                 "type": "invoice.payment_failed", "created": int(time.time()),
                 "data": {"object": invoice.to_dict()}}
        try:
            post_event(webhook_url, event, webhook_secret, attempts=attempts, backoff=backoff)
        except SeedStepFailed as e:
            deliveries.failed.append(str(e))
        else:
            deliveries.sent += 1
    return deliveries


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
