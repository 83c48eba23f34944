"""Many failed invoices swept by three overlapping sweeps, every webhook delivered three
times in a shuffled order: exactly one charge per invoice attempt (counted at devstack's
Stripe proxy), one e-mail per step (counted in moto's SES), and the card-network caps hold.

Every customer has a card of their own that declines on charge (devstack's control
``POST /_shim/declining_cards``: its own number and fingerprint, as on Stripe), so the
per-card caps never hold an attempt back and every invoice is retried on its schedule
(two attempts, a day apart). A small run in `make test`; the full 1,000 invoices behind the soak marker
(`make soak`).
"""
from __future__ import annotations

import contextlib
import json
import random
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from app_fixtures import Merchant, app_client  # noqa: F401
from stripe_events import Stream
from test_dunning import KEY, shim_payments

from chalicelib.accounts.service import create_account
from chalicelib.domain.events import Ref
from chalicelib.dunning import settings as dunning_settings
from chalicelib.processors.stripe.gateway import StripeGateway
from chalicelib.scheduler import service as scheduler
from chalicelib.store import customers as customers_store
from chalicelib.store import dunning as dunning_store
from chalicelib.timeutil import iso

pytestmark = pytest.mark.usefixtures("table_of_its_own")
SUPPORT = "billing@example.com"


def declining_card(stripe_shim: str, decline_code: str = "insufficient_funds") -> str:
    """A card number of its own that declines every charge (devstack's control)."""
    number = "4" + "".join(str(secrets.randbelow(10)) for _ in range(15))
    form = urllib.parse.urlencode({"number": number, "decline_code": decline_code}).encode()
    with urllib.request.urlopen(f"{stripe_shim}/_shim/declining_cards", data=form,
                                timeout=10) as answer:
        assert json.load(answer)["number"] == number
    return number


def _attach(shim_client, customer: str, number: str) -> str:
    pm = shim_client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034,
                                 "cvc": "123"}})
    shim_client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    return pm.id


def test_declining_cards_have_their_own_number_fingerprint_and_decline_code(
        stripe_client, stripe_shim):
    shim_client = stripe.StripeClient(KEY, base_addresses={"api": stripe_shim})
    first, second = declining_card(stripe_shim), declining_card(stripe_shim, "do_not_honor")
    customer = shim_client.v1.customers.create(params={"email": "two-cards@example.com"})
    a, b = _attach(shim_client, customer.id, first), _attach(shim_client, customer.id, second)
    cards = {pm.id: pm.card for pm in shim_client.v1.payment_methods.list(
        params={"customer": customer.id, "type": "card"}).data}
    assert (cards[a].last4, cards[b].last4) == (first[-4:], second[-4:])
    assert cards[a].fingerprint != cards[b].fingerprint
    assert shim_client.v1.payment_methods.retrieve(a).card.fingerprint == \
        cards[a].fingerprint
    # The product's gateway sees a decline with the card's code, charge after charge.
    shim_client.v1.customers.update(customer.id, params={
        "invoice_settings": {"default_payment_method": b}})
    plan = stripe_client.v1.plans.create(params={
        "amount": 500, "currency": "eur", "interval": "month", "product": {"name": "Jam"}})
    with contextlib.suppress(stripe.CardError):
        stripe_client.v1.subscriptions.create(params={
            "customer": customer.id, "items": [{"plan": plan.id}]})
    invoice = next(inv for inv in stripe_client.v1.invoices.list(
        params={"customer": customer.id}).data if inv.status == "open")
    gateway = StripeGateway(KEY, api_base=stripe_shim, max_network_retries=0)
    state = gateway.invoice_state(Ref("stripe", invoice.id))
    assert (state.decline_code, state.payment_method.id) == ("do_not_honor", b)
    assert state.card_fingerprint == cards[b].fingerprint
    outcome = gateway.pay_invoice(Ref("stripe", invoice.id), Ref("stripe", a),
                                  f"declining-{invoice.id}")
    assert (outcome.status, outcome.decline_code) == ("declined", "insufficient_funds")
    assert shim_payments(stripe_shim)[invoice.id] == 1
    # An ordinary number is left alone: a card that pays.
    ok = _attach(shim_client, customer.id, "4242424242424242")
    paid = gateway.pay_invoice(Ref("stripe", invoice.id), Ref("stripe", ok), f"ok-{invoice.id}")
    assert paid.status == "paid"


def _overlapping_sweeps(at: datetime) -> None:
    """Three sweeps at once, again until a round finds nothing to claim (a sweep reads at
    most 100 due steps a shard: a thousand take a few rounds)."""
    for _ in range(60):
        results, errors = [], []

        def sweep(results=results, errors=errors):
            try:
                results.append(scheduler.sweep(at))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=sweep) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        if not any(r["claimed"] for r in results):
            return
    raise AssertionError("the sweeps still found steps to claim after 60 rounds")


def _run(app_client, stripe_client, stripe_shim, sent_emails, size: int):  # noqa: F811
    secret = f"whsec_{secrets.token_hex(12)}"
    created = create_account(name=f"Load {secrets.token_hex(3)}",
                             support_email=SUPPORT, stripe_secret_key=KEY,
                             stripe_webhook_secrets=[secret])
    account_id = created.account["account_id"]
    # Two attempts a day apart, then the subscription is cancelled.
    dunning_settings.update(account_id, {"mode": "ours", "schedule_days": [1, 2],
                                         "final_action": "cancel"}, iso(datetime.now(UTC)))
    merchant = Merchant(app_client, account_id, created.api_key, [secret])
    shim_client = stripe.StripeClient(KEY, base_addresses={"api": stripe_shim})
    plan = stripe_client.v1.plans.create(params={
        "amount": 900, "currency": "eur", "interval": "month", "product": {"name": "Tea"}})
    stream = Stream(secrets.token_hex(3), start=int(time.time()) - 3600)
    invoices, emails = [], []
    for i in range(size):
        email = f"load-{i}-{secrets.token_hex(3)}@example.com"
        customer = stripe_client.v1.customers.create(params={"email": email})
        bad = _attach(shim_client, customer.id, declining_card(stripe_shim))
        stripe_client.v1.customers.update(customer.id, params={
            "invoice_settings": {"default_payment_method": bad}})
        with contextlib.suppress(stripe.CardError):
            stripe_client.v1.subscriptions.create(params={
                "customer": customer.id, "items": [{"plan": plan.id}]})
        invoice = next(inv for inv in stripe_client.v1.invoices.list(
            params={"customer": customer.id}).data if inv.status == "open")
        stream.customer(email, f"Load {i}", cid=customer.id)
        stream.subscription(customer.id, 900, currency="eur", status="past_due",
                            sid=invoice.subscription, nickname="Tea")
        stream.invoice(customer.id, invoice.subscription, 900, currency="eur", email=email,
                       type_="invoice.payment_failed", inv=invoice.id)
        invoices.append(invoice.id)
        emails.append(email)
    # Every event three times, in a shuffled order (at least once, out of order).
    deliveries = stream.events * 3
    random.Random(size).shuffle(deliveries)
    merchant.deliver_until_applied(deliveries)

    t0 = datetime.now(UTC) + timedelta(seconds=5)
    sweeps = [t0 + timedelta(days=day, minutes=day) for day in range(4)]  # a day and a bit
    for at in sweeps:
        _overlapping_sweeps(at)

    charges = shim_payments(stripe_shim)
    assert [charges.get(i, 0) for i in invoices] == [2] * size
    states = dunning_store.get_states(account_id, [f"stripe:{i}" for i in invoices])
    assert {s.data["status"] for s in states.values()} == {"exhausted"}
    attempts = [s.data["attempts"] for s in states.values()]
    assert all([a["n"] for a in tried] == [1, 2] for tried in attempts)
    assert {a["decline_code"] for tried in attempts for a in tried} == {"insufficient_funds"}
    # Every card its own: no cap held an attempt back, each ran at the sweep it fell due.
    assert all([a["at"] for a in tried] == [iso(sweeps[1]), iso(sweeps[2])]
               for tried in attempts)
    sent = Counter()
    for message in sent_emails():
        for to in (message.get("destinations") or {}).get("ToAddresses", []):
            sent[to] += 1
    # payment failed, final warning, subscription ended: one each, whatever the overlap.
    assert [sent[e] for e in emails] == [3] * size
    exhausted = [e for e in customers_store.list_outbox(account_id, limit=10 * size)
                 if e["type"] == "dunning.exhausted"]
    assert len(exhausted) == size
    return {"invoices": size, "charges": sum(charges.get(i, 0) for i in invoices),
            "customer_emails": sum(sent[e] for e in emails)}


def test_overlapping_sweeps_and_redelivered_webhooks_charge_and_mail_once(
        app_client, stripe_client, stripe_shim, sent_emails):  # noqa: F811
    _run(app_client, stripe_client, stripe_shim, sent_emails, size=4)


@pytest.mark.soak
def test_overlapping_sweeps_at_scale(app_client, stripe_client, stripe_shim,  # noqa: F811
                                     sent_emails, capsys):
    started = time.monotonic()
    figures = _run(app_client, stripe_client, stripe_shim, sent_emails, size=1000)
    with capsys.disabled():
        print(f"\ndunning soak: {figures}, {time.monotonic() - started:.0f} s")
