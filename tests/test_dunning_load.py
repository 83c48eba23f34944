"""Many failed invoices swept by three overlapping sweeps, every webhook delivered three
times in a shuffled order: exactly one charge per invoice attempt (counted at devstack's
Stripe proxy), one e-mail per step (counted in moto's SES), and the card-network caps hold.

localstripe has one card that attaches and then fails (4000000000000341), and a card's
fingerprint is its number's: every customer here has the same card, so the caps (2 retries
a day, 8 in 30 days per card) spread the invoices' retries over the days swept. A small run
in `make test`; a larger one behind the soak marker (`make soak`).
"""
from __future__ import annotations

import contextlib
import random
import secrets
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from app_fixtures import Merchant, app_client  # noqa: F401
from portal_helpers import CARD_DECLINES, attach_card
from stripe_events import Stream
from test_dunning import KEY, shim_payments

from chalicelib.accounts.service import create_account
from chalicelib.dunning import settings as dunning_settings
from chalicelib.scheduler import service as scheduler
from chalicelib.store import customers as customers_store
from chalicelib.store import dunning as dunning_store
from chalicelib.timeutil import iso

pytestmark = pytest.mark.usefixtures("table_of_its_own")


def _overlapping_sweeps(at: datetime) -> None:
    """Three sweeps at once, again until a round finds nothing to claim."""
    for _ in range(8):
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


def _run(app_client, stripe_client, stripe_shim, sent_emails, size: int,  # noqa: F811
         days: int):
    secret = f"whsec_{secrets.token_hex(12)}"
    created = create_account(name=f"Load {secrets.token_hex(3)}",
                             support_email="billing@example.com", stripe_secret_key=KEY,
                             stripe_webhook_secrets=[secret])
    account_id = created.account["account_id"]
    dunning_settings.update(account_id, {"mode": "ours", "schedule_days": [1],
                                         "final_action": "cancel"}, iso(datetime.now(UTC)))
    merchant = Merchant(app_client, account_id, created.api_key, [secret])
    plan = stripe_client.v1.plans.create(params={
        "amount": 900, "currency": "eur", "interval": "month", "product": {"name": "Tea"}})
    stream = Stream(secrets.token_hex(3), start=int(time.time()) - 3600)
    invoices, emails = [], []
    for i in range(size):
        email = f"load-{i}-{secrets.token_hex(3)}@example.com"
        customer = stripe_client.v1.customers.create(params={"email": email})
        bad = attach_card(stripe_client, customer.id, CARD_DECLINES)
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
    _overlapping_sweeps(t0)
    for day in range(1, days + 1):
        _overlapping_sweeps(t0 + timedelta(days=day, minutes=day))  # a day and a bit apart

    charges = shim_payments(stripe_shim)
    assert [charges.get(i, 0) for i in invoices] == [1] * size
    states = dunning_store.get_states(account_id, [f"stripe:{i}" for i in invoices])
    assert {s.data["status"] for s in states.values()} == {"exhausted"}
    assert all(len(s.data["attempts"]) == 1 for s in states.values())
    # The caps, across invoices of the one card: never more than 2 in any 24 hours.
    times = sorted(datetime.fromisoformat(s.data["attempts"][0]["at"].replace("Z", "+00:00"))
                   for s in states.values())
    assert all(sum(1 for t in times if at <= t < at + timedelta(days=1)) <= 2 for at in times)
    assert all(sum(1 for t in times if at <= t < at + timedelta(days=30)) <= 8 for at in times)
    sent = Counter()
    for message in sent_emails():
        for to in (message.get("destinations") or {}).get("ToAddresses", []):
            sent[to] += 1
    # payment failed, then subscription ended: one each, whatever the overlap.
    assert [sent[e] for e in emails] == [2] * size
    exhausted = [e for e in customers_store.list_outbox(account_id, limit=1000)
                 if e["type"] == "dunning.exhausted"]
    assert len(exhausted) == size


def test_overlapping_sweeps_and_redelivered_webhooks_charge_and_mail_once(
        app_client, stripe_client, stripe_shim, sent_emails):  # noqa: F811
    _run(app_client, stripe_client, stripe_shim, sent_emails, size=4, days=3)


@pytest.mark.soak
def test_overlapping_sweeps_at_scale(app_client, stripe_client, stripe_shim,  # noqa: F811
                                     sent_emails):
    # 8 retries per card and 30 days: 40 invoices of the one card take five months.
    _run(app_client, stripe_client, stripe_shim, sent_emails, size=40, days=160)
