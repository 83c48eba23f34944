"""Events naming objects the app has never seen (a refund or dispute of a charge that
reached us before its payment, or never): routed by asking Stripe who owns the object."""
from __future__ import annotations

import json
import secrets

from app_fixtures import app_client, merchant  # noqa: F401
from stripe_events import Stream


def _paid_charge(stripe_client, email: str, amount: int = 3000):
    customer = stripe_client.v1.customers.create(params={"email": email, "name": "Late Lou"})
    pm = stripe_client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                 "exp_year": 2031, "cvc": "123"}})
    stripe_client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    intent = stripe_client.v1.payment_intents.create(params={
        "amount": amount, "currency": "eur", "customer": customer.id, "payment_method": pm.id})
    intent = stripe_client.v1.payment_intents.confirm(intent.id)
    charge = intent.to_dict().get("latest_charge") or intent.to_dict()["charges"]["data"][0]["id"]
    if isinstance(charge, dict):
        charge = charge["id"]
    return customer.id, intent.id, charge


def test_refund_of_an_unseen_charge_lands_in_its_customers_record(merchant, stripe_client):  # noqa: F811
    email = f"late-{secrets.token_hex(3)}@example.com"
    cus, pi, charge = _paid_charge(stripe_client, email)
    s = Stream(f"ul{secrets.token_hex(3)}")
    s.refund(None, pi, charge, 1000, currency="eur")
    r = merchant.deliver(s.events[-1])
    assert r.status_code == 200, r.body
    assert json.loads(r.body)["outcome"] == "applied"
    [listed] = merchant.customers()
    assert listed["email"] == email
    # The payment arrives later: the same record, refund and payment joined.
    s.one_time(cus, 3000, currency="eur", email=email, pi=pi)
    s.customer(email, "Late Lou", cid=cus)
    merchant.deliver_until_applied(s.events[-2:])
    [record] = merchant.records_by_email().values()
    assert record["id"] == listed["id"]
    assert record["orders"][0]["status"] == "partially_refunded"
    assert record["stats"]["lifetime_value"] == {"eur": 2000}


def test_dispute_of_an_unseen_charge_joins_the_existing_record(merchant, stripe_client):  # noqa: F811
    email = f"disputer-{secrets.token_hex(3)}@example.com"
    cus, pi, charge = _paid_charge(stripe_client, email, amount=5000)
    s = Stream(f"ud{secrets.token_hex(3)}")
    s.customer(email, "Dee", cid=cus)
    s.dispute(pi, charge, 5000)
    merchant.deliver_until_applied(s.events)
    [record] = merchant.records_by_email().values()
    assert record["disputes"][0]["amount"] == 5000


def test_no_processor_key_to_ask_with_answers_503_and_writes_nothing(app_client):  # noqa: F811
    from app_fixtures import Merchant

    from chalicelib.accounts.service import create_account

    secret = f"whsec_{secrets.token_hex(16)}"
    created = create_account(name=f"Shop {secrets.token_hex(4)}", support_email="s@shop.test",
                             stripe_secret_key=None, stripe_webhook_secrets=[secret])
    m = Merchant(app_client, created.account["account_id"], created.api_key, [secret])
    s = Stream(f"un{secrets.token_hex(3)}")
    s.refund(None, "pi_nobody", "ch_nobody", 100)
    r = m.deliver(s.events[-1])
    assert r.status_code == 503
    assert m.customers() == []
