"""The Stripe gateway's subscription and customer calls of the merchant actions, against
the dev stack's Stripe stand-in (localstripe + devstack/stripe_shim_billing.py), and the
stand-in's refusals where Stripe refuses."""
from __future__ import annotations

import time

import pytest
import requests
from portal_helpers import attach_card

from chalicelib.domain.events import Ref
from chalicelib.processors.gateway import CustomerChanges, ProcessorError
from chalicelib.processors.stripe.gateway import VALUE_LISTS, StripeGateway


def _ref(stripe_id: str) -> Ref:
    return Ref("stripe", stripe_id)


@pytest.fixture
def gateway(stripe_shim):
    return StripeGateway("sk_test_actions", api_base=stripe_shim, max_network_retries=0)


def _plan(stripe_client, amount, interval="month", currency="usd"):
    return stripe_client.v1.plans.create(params={
        "amount": amount, "currency": currency, "interval": interval,
        "product": {"name": f"Plan {amount}"}}).id


def _subscribed(stripe_client, amount=1000, email="sub-actions@example.com"):
    customer = stripe_client.v1.customers.create(params={"email": email}).id
    card = attach_card(stripe_client, customer, "4242424242424242")
    stripe_client.v1.customers.update(customer, params={
        "invoice_settings": {"default_payment_method": card}})
    plan = _plan(stripe_client, amount)
    sub = stripe_client.v1.subscriptions.create(params={
        "customer": customer, "items": [{"plan": plan}]})
    return customer, sub, card


def _sub(stripe_shim, sub_id):
    return requests.get(f"{stripe_shim}/v1/subscriptions/{sub_id}", timeout=10,
                        headers={"Authorization": "Bearer sk_test_actions"}).json()


def _pending(stripe_client, customer):
    return stripe_client.v1.invoice_items.list(params={"customer": customer}).data


def test_pause_and_resume_collection(gateway, stripe_client, stripe_shim):
    _, sub, _ = _subscribed(stripe_client)
    resumes = int(time.time()) + 30 * 86400
    gateway.pause_collection(_ref(sub.id), "void", resumes, idempotency_key="pause-1")
    seen = _sub(stripe_shim, sub.id)
    assert seen["pause_collection"] == {"behavior": "void", "resumes_at": resumes}
    assert seen["status"] == "active"  # pausing collection is not a status
    gateway.resume_collection(_ref(sub.id), idempotency_key="resume-1")
    assert _sub(stripe_shim, sub.id)["pause_collection"] is None


def test_pause_refusals_as_stripe_answers(gateway, stripe_client, stripe_shim):
    _, sub, _ = _subscribed(stripe_client)
    headers = {"Authorization": "Bearer sk_test_actions"}
    bad = requests.post(f"{stripe_shim}/v1/subscriptions/{sub.id}", headers=headers, timeout=10,
                        data={"pause_collection[behavior]": "forever"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "pause_collection[behavior]"
    past = requests.post(f"{stripe_shim}/v1/subscriptions/{sub.id}", headers=headers, timeout=10,
                         data={"pause_collection[behavior]": "void",
                               "pause_collection[resumes_at]": "1600000000"})
    assert past.status_code == 400
    assert _sub(stripe_shim, sub.id)["pause_collection"] is None
    with pytest.raises(ValueError):
        gateway.pause_collection(_ref(sub.id), "forever", None, idempotency_key="p")
    with pytest.raises(ProcessorError):
        gateway.pause_collection(_ref("sub_missing"), "void", None, idempotency_key="p2")


def test_plan_change_preview_matches_the_change(gateway, stripe_client, stripe_shim):
    customer, sub, _ = _subscribed(stripe_client, amount=1000)
    bigger = _plan(stripe_client, 3000)
    start, end = sub.current_period_start, sub.current_period_end
    when = start + (end - start) // 2  # half the period left
    preview = gateway.preview_plan_change(_ref(sub.id), bigger, prorate=True,
                                          proration_date=when)
    share = (end - when) / (end - start)
    assert preview.currency == "usd" and preview.proration_date == when
    assert [(line.amount, line.proration) for line in preview.lines] == [
        (-round(1000 * share), True), (round(3000 * share), True), (3000, False)]
    assert preview.proration_amount == round(3000 * share) - round(1000 * share)
    assert preview.amount_due == preview.proration_amount + 3000

    unprorated = gateway.preview_plan_change(_ref(sub.id), bigger, prorate=False,
                                             proration_date=when)
    assert [(line.amount, line.proration) for line in unprorated.lines] == [(3000, False)]
    # Previews change nothing.
    assert _pending(stripe_client, customer) == []
    assert _sub(stripe_shim, sub.id)["plan"]["amount"] == 1000

    gateway.change_plan(_ref(sub.id), bigger, prorate=True, proration_date=when,
                        idempotency_key="plan-1")
    assert _sub(stripe_shim, sub.id)["plan"]["id"] == bigger
    pending = sorted(ii.amount for ii in _pending(stripe_client, customer))
    assert pending == sorted(line.amount for line in preview.lines if line.proration)


def test_plan_change_without_proration_leaves_nothing_pending(gateway, stripe_client,
                                                               stripe_shim):
    customer, sub, _ = _subscribed(stripe_client, amount=1000)
    smaller = _plan(stripe_client, 500)
    gateway.change_plan(_ref(sub.id), smaller, prorate=False,
                        proration_date=sub.current_period_start + 10, idempotency_key="plan-2")
    assert _sub(stripe_shim, sub.id)["plan"]["id"] == smaller
    assert _pending(stripe_client, customer) == []


def test_plan_change_refusals(gateway, stripe_client, stripe_shim):
    customer, sub, _ = _subscribed(stripe_client, amount=1000)
    yearly = _plan(stripe_client, 9000, interval="year")
    euros = _plan(stripe_client, 900, currency="eur")
    for price in (yearly, euros, "price_missing"):
        with pytest.raises(ProcessorError):
            gateway.change_plan(_ref(sub.id), price, prorate=True,
                                proration_date=sub.current_period_start + 10,
                                idempotency_key=f"bad-{price}")
    with pytest.raises(ProcessorError):  # a proration date outside the period
        gateway.preview_plan_change(_ref(sub.id), _plan(stripe_client, 2000), prorate=True,
                                    proration_date=sub.current_period_end + 86400)
    assert _sub(stripe_shim, sub.id)["plan"]["amount"] == 1000
    assert _pending(stripe_client, customer) == []


def test_cancel_now_with_and_without_proration(gateway, stripe_client, stripe_shim):
    customer, sub, _ = _subscribed(stripe_client, amount=1000)
    gateway.cancel_now(_ref(sub.id), prorate=False, invoice_now=False, reason="asked by phone",
                       idempotency_key="c-1")
    gone = _sub(stripe_shim, sub.id)
    assert gone["status"] == "canceled" and gone["canceled_at"]
    assert _pending(stripe_client, customer) == []
    with pytest.raises(ProcessorError):  # Stripe refuses to cancel it twice
        gateway.cancel_now(_ref(sub.id), prorate=False, invoice_now=False, reason=None,
                           idempotency_key="c-2")

    customer2, sub2, _ = _subscribed(stripe_client, amount=1000, email="prorate@example.com")
    gateway.cancel_now(_ref(sub2.id), prorate=True, invoice_now=False, reason=None,
                       idempotency_key="c-3")
    credits = [ii.amount for ii in _pending(stripe_client, customer2)]
    assert len(credits) == 1 and -1000 <= credits[0] < 0


def test_scheduled_cancellation_can_be_made_now(gateway, stripe_client, stripe_shim):
    _, sub, _ = _subscribed(stripe_client)
    gateway.cancel_at_period_end(_ref(sub.id), "moving away", idempotency_key="end-1")
    assert _sub(stripe_shim, sub.id)["cancel_at_period_end"] is True
    gateway.cancel_now(_ref(sub.id), prorate=False, invoice_now=False, reason=None,
                       idempotency_key="now-1")
    assert _sub(stripe_shim, sub.id)["status"] == "canceled"


def test_update_customer_details(gateway, stripe_client):
    customer = stripe_client.v1.customers.create(params={"email": "old@example.com"}).id
    gateway.update_customer(_ref(customer), CustomerChanges(
        name="Ada Lovelace", email="new@example.com", phone="+44 20 7946 0000",
        address={"line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH",
                 "country": "GB"}), idempotency_key="cu-1")
    seen = stripe_client.v1.customers.retrieve(customer)
    assert (seen.name, seen.email, seen.phone) == ("Ada Lovelace", "new@example.com",
                                                    "+44 20 7946 0000")
    assert seen.address["city"] == "London" and seen.address["line2"] == ""
    gateway.update_customer(_ref(customer), CustomerChanges(phone=""), idempotency_key="cu-2")
    seen = stripe_client.v1.customers.retrieve(customer)
    assert seen.name == "Ada Lovelace" and not seen.phone
    with pytest.raises(ProcessorError):
        gateway.update_customer(_ref("cus_missing"), CustomerChanges(name="x"),
                                idempotency_key="cu-3")


def test_cards_carry_their_fingerprint(gateway, stripe_client):
    customer = stripe_client.v1.customers.create(params={"email": "fp@example.com"}).id
    other = stripe_client.v1.customers.create(params={"email": "fp2@example.com"}).id
    attach_card(stripe_client, customer, "4242424242424242")
    attach_card(stripe_client, other, "4242424242424242")
    mine = gateway.list_cards(_ref(customer))[0].fingerprint
    theirs = gateway.list_cards(_ref(other))[0].fingerprint
    assert mine and mine == theirs


def test_radar_value_lists_block_and_unblock(gateway, stripe_shim):
    import stripe

    radar = stripe.StripeClient("sk_test_actions", base_addresses={"api": stripe_shim}).v1.radar
    gateway.block_value("email", "Blocked@Example.com", idempotency_key="b-1")
    gateway.block_value("email", "blocked@example.com", idempotency_key="b-2")  # once only
    gateway.block_value("customer_id", "cus_123abc", idempotency_key="b-3")
    emails = radar.value_lists.list(params={"alias": VALUE_LISTS["email"][0]}).data
    assert len(emails) == 1 and emails[0].item_type == "email"
    # The test session's Stripe account is shared: other tests list values of their own.
    def values() -> list[str]:
        return [i.value for i in radar.value_list_items.list(
            params={"value_list": emails[0].id, "limit": 100}).data]

    assert values().count("blocked@example.com") == 1
    gateway.unblock_value("email", "blocked@example.com")
    assert "blocked@example.com" not in values()
    gateway.unblock_value("email", "never@example.com")  # nothing listed: nothing to do
    with pytest.raises(ProcessorError):  # not a customer id: Stripe refuses the value
        gateway.block_value("customer_id", "someone@example.com", idempotency_key="b-4")
    with pytest.raises(ValueError):
        gateway.block_value("ip_address", "127.0.0.1", idempotency_key="b-5")
