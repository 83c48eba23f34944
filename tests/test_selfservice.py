"""Self-service through Stripe (service level; the portal pages drive the same service):
cards per subscription, paying a failed invoice, cancel at period end and undo.

Records come from localstripe's own signed webhooks to the app over HTTP; the gateway
talks to localstripe through devstack's proxy for the two calls localstripe lacks.
"""
from __future__ import annotations

import contextlib
import secrets
import time

import pytest
import stripe
from app_fixtures import Merchant, app_client  # noqa: F401
from portal_helpers import attach_card, wait_for
from stripe_events import fixture

from chalicelib.accounts.service import create_account
from chalicelib.errors import Conflict, Forbidden, NotFound
from chalicelib.processors.stripe.gateway import StripeGateway
from chalicelib.records import service as records
from chalicelib.selfservice.service import SelfService, card_id
from chalicelib.store import customers as store


@pytest.fixture
def shop(stack, app_server, app_client, stripe_client, stripe_shim):  # noqa: F811
    """A merchant whose localstripe webhooks reach the app; one customer with a card and a
    monthly subscription, and a payment plan."""
    secret = f"whsec_{secrets.token_hex(12)}"
    created = create_account(name=f"Self {secrets.token_hex(3)}", support_email="s@shop.test",
                             stripe_secret_key="sk_test_self", stripe_webhook_secrets=[secret])
    account = created.account
    stack.register_stripe_webhook(f"{app_server}/webhooks/stripe/{account['account_id']}",
                                  secret, webhook_id=f"self-{account['account_id']}")
    email = f"self-{secrets.token_hex(3)}@example.com"
    customer = stripe_client.v1.customers.create(params={"email": email, "name": "Self Service"})
    first = attach_card(stripe_client, customer.id, "4242424242424242")
    stripe_client.v1.customers.update(customer.id, params={
        "invoice_settings": {"default_payment_method": first}})
    plan = stripe_client.v1.plans.create(params={
        "amount": 1200, "currency": "eur", "interval": "month", "product": {"name": "Coffee"}})
    sub = stripe_client.v1.subscriptions.create(params={"customer": customer.id,
                                                       "items": [{"plan": plan.id}]})
    instalments = stripe_client.v1.subscriptions.create(params={
        "customer": customer.id, "items": [{"plan": plan.id}], "metadata": {"installments": "3"}})
    merchant = Merchant(app_client, account["account_id"], created.api_key, [secret])
    cid = wait_for(lambda: store.find_by_email(account["account_id"], email), bool)
    # Until the customer's default card has arrived too (localstripe sends its events
    # about a second later, in no guaranteed order).
    wait_for(lambda: records.get_record(account["account_id"], cid),
          lambda r: r and r["subscriptions"] and r["payment_plans"] and all(
              s["card_id"] for s in r["subscriptions"] + r["payment_plans"]))
    gateway = StripeGateway("sk_test_self", api_base=stripe_shim)
    return {"service": SelfService(account, cid, gateway), "account": account, "customer": customer,
            "sub": sub, "plan_sub": instalments, "first_card": first, "merchant": merchant,
            "client": stripe_client, "cid": cid}


def test_cards_per_subscription_and_removal_rules(shop):
    service, client = shop["service"], shop["client"]
    account_id = shop["account"]["account_id"]
    [card] = service.cards()
    sub_id = service.record()["subscriptions"][0]["id"]
    assert card.last4 == "4242" and not card.expired and sub_id in card.used_by
    assert service.start_card_setup().startswith("seti_")

    # A new card (Stripe.js would attach it through the setup intent) for one subscription only.
    second = attach_card(client, shop["customer"].id, "5555555555554444")
    second_id = card_id(account_id, records_ref(second))
    service.set_card(sub_id, second_id, for_all=False)
    record = service.record()
    assert record["subscriptions"][0]["card_id"] == second_id
    assert record["payment_plans"][0]["card_id"] == card.id  # unchanged
    with pytest.raises(Conflict):
        service.remove_card(second_id)  # pays for an active subscription
    # "Use this card for all", then the first card is free to go.
    service.set_card(None, second_id, for_all=True)
    assert {s["card_id"] for s in service.record()["payment_plans"]} == {second_id}
    service.remove_card(card.id)
    assert [c.id for c in service.cards()] == [second_id]
    # Another customer's card, or nonsense, is "not found".
    with pytest.raises(NotFound):
        service.set_card(sub_id, "card_notmine", for_all=False)
    with pytest.raises(NotFound):
        service.set_card("sub_notmine", second_id, for_all=False)


def records_ref(stripe_id):
    from chalicelib.domain.events import Ref

    return Ref("stripe", stripe_id)


def test_cancel_and_keep_with_outbox_events(shop):
    service = shop["service"]
    sub = service.record()["subscriptions"][0]
    service.cancel(sub["id"], reason="Moving abroad")
    assert shop["client"].v1.subscriptions.retrieve(shop["sub"].id).cancel_at_period_end is True
    assert service.record()["subscriptions"][0]["status"] == "canceling"
    service.keep(sub["id"])
    assert service.record()["subscriptions"][0]["status"] == "active"
    assert shop["client"].v1.subscriptions.retrieve(shop["sub"].id).cancel_at_period_end is False
    # The portal's own (their data names the source), not those webhooks derived.
    outbox = [e for e in store.list_outbox(shop["account"]["account_id"])
              if "source" in e["data"]]
    assert [e["type"] for e in outbox] == ["subscription.recovered", "subscription.canceling"]
    # The derived event's object comes with the portal's reason (one event, not two).
    assert outbox[1]["data"]["object"]["id"] == sub["id"]
    assert outbox[1]["data"]["reason"] == "Moving abroad"
    # Payment plans never cancel here; with self-cancel off, nothing cancels.
    plan = service.record()["payment_plans"][0]
    with pytest.raises(Forbidden):
        service.cancel(plan["id"], reason=None)
    off = SelfService({**shop["account"], "settings": {"portal": {"self_cancel": False}}},
                      shop["cid"], service.gateway)
    with pytest.raises(Forbidden):
        off.cancel(sub["id"], reason=None)
    assert service.record()["subscriptions"][0]["status"] == "active"


def test_pay_a_failed_invoice_with_a_chosen_card_and_a_decline(shop):
    service, client, merchant = shop["service"], shop["client"], shop["merchant"]
    customer = shop["customer"].id
    # A failed renewal: an open invoice at localstripe, and Stripe's invoice.payment_failed.
    bad = attach_card(client, customer, "4000000000000341")
    client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": bad}})
    plan = client.v1.plans.create(params={"amount": 800, "currency": "eur", "interval": "month",
                                          "product": {"name": "Tea"}})
    with contextlib.suppress(stripe.CardError):
        client.v1.subscriptions.create(params={"customer": customer, "items": [{"plan": plan.id}]})
    invoice = next(i for i in client.v1.invoices.list(params={"customer": customer}).data
                   if i.status == "open")
    failed = fixture("invoice", id=invoice.id, customer=customer, currency="eur", amount_due=800,
                     amount_paid=0, status="open", subscription=invoice.subscription, parent=None)
    event = fixture("event", id=f"evt_{secrets.token_hex(6)}", type="invoice.payment_failed",
                    created=int(time.time()), data={"object": failed})
    assert merchant.deliver(event).status_code == 200
    record = wait_for(service.record, lambda r: r["stats"]["missed_payments"] == 1)
    payment = next(p for p in record["payments"] if p["status"] == "failed")
    account_id = shop["account"]["account_id"]

    declined = service.pay_now(payment["id"], card_id(account_id, records_ref(bad)), attempt="1")
    assert declined.status == "declined" and declined.message
    assert service.record()["stats"]["missed_payments"] == 1  # nothing recorded

    good = card_id(account_id, records_ref(shop["first_card"]))
    paid = service.pay_now(payment["id"], good, attempt="2")
    assert paid.status == "paid"
    record = service.record()
    assert record["stats"]["missed_payments"] == 0
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"
    with pytest.raises(Conflict):
        service.pay_now(payment["id"], good, attempt="3")  # nothing left to pay
