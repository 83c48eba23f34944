"""Blocking and unblocking a customer's details through the merchant API, end to end: a
customer seeded at localstripe (webhooks to the app), the API through Chalice's test
client; what a block stops (the portal's sign-in link, self-service), the log of each
detail, the outbox and activity log, and the Stripe Radar value lists at the Stripe
stand-in when the account pushes blocks there."""
from __future__ import annotations

import json
import re
import secrets

import pytest
import stripe
from app_fixtures import app_client  # noqa: F401
from customer_action_helpers import seeded_shop
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    ask_link,
    mails_to,
    portal_settings,
    sessions_of,
    sign_in,
    text,
)

pytestmark = pytest.mark.usefixtures("portal_settings")


@pytest.fixture(scope="module")
def shop(app_client, stack):  # noqa: F811
    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_url})
    return seeded_shop(app_client, stack, client)


def _post(shop, action: str, body: dict, key: str | None = None, customer_id=None):
    headers = {"Authorization": f"Bearer {shop.shop.merchant.api_key}",
               "Content-Type": "application/json",
               "Idempotency-Key": key or secrets.token_hex(12)}
    response = shop.shop.merchant.client.http.post(
        f"/api/v1/customers/{customer_id or shop.customer_id()}/{action}",
        body=json.dumps(body).encode(), headers=headers)
    return response.status_code, json.loads(response.body or b"{}")


def _outbox(shop, kind: str) -> list[dict]:
    from chalicelib.store.customers import list_outbox

    return [o for o in list_outbox(shop.account_id) if o["type"] == kind]


def _blocks(shop) -> dict:
    from chalicelib.blocks import service as blocks
    from chalicelib.records import service as records

    overview, _ = records.get_overview(shop.account_id, shop.customer_id(), 10)
    return blocks.record_view(shop.account_id, overview, shop.record()["payments"])


def _sign_in_page(app_client, shop, email: str) -> str:  # noqa: F811
    response = ask_link(PortalClient(app_client.http), shop.shop, email)
    assert response.status_code == 200
    body = re.sub(r'(value|nonce)="[^"]*"', "", text(response))
    return body.replace(email.lower(), "EMAIL")


def test_bad_input_and_foreign_details_change_nothing(shop):
    assert _post(shop, "block", {"all": True})[0] == 400  # no reason
    assert _post(shop, "block", {"reason": "fraud"})[0] == 400  # nothing chosen
    assert _post(shop, "block", {"emails": "a@b.c", "reason": "x"})[0] == 400
    assert _post(shop, "block", {"cards": ["pm_123"], "reason": "x"})[0] == 400
    assert _post(shop, "block", {"all": "yes", "reason": "x"})[0] == 400
    assert _post(shop, "block", {"all": True, "reason": "x", "extra": 1})[0] == 400
    assert _post(shop, "block", {"emails": [f"other-{secrets.token_hex(3)}@example.com"],
                                 "reason": "x"})[0] == 404
    assert _post(shop, "block", {"cards": ["card_" + "a" * 24], "reason": "x"})[0] == 404
    assert _post(shop, "block", {"processor_customers": ["cus_notours"], "reason": "x"})[0] == 404
    assert _post(shop, "block", {"all": True, "reason": "x"},
                 customer_id="cst_" + "0" * 26)[0] == 404
    assert _post(shop, "unblock", {"all": True, "reason": "x"})[0] == 409  # nothing blocked
    assert _outbox(shop, "customer.blocked") == []
    assert not _blocks(shop)["any_blocked"]


def test_block_all_stops_sign_in_and_self_service_then_unblock(shop, app_client, sent_emails,  # noqa: F811
                                                               stack):
    from chalicelib.actions.service import account_of
    from chalicelib.errors import Forbidden
    from chalicelib.processors.registry import gateway_for
    from chalicelib.selfservice.service import SelfService

    unknown = f"nobody-{secrets.token_hex(4)}@example.com"
    customer = PortalClient(app_client.http)
    sign_in(customer, shop.shop, shop.email, sent_emails)
    assert sessions_of(shop.customer_id()) == 1
    key = secrets.token_hex(12)
    body = {"all": True, "reason": "chargeback fraud", "note": "three disputes this month"}
    status, blocked = _post(shop, "block", body, key=key)
    assert status == 200, blocked
    assert sessions_of(shop.customer_id()) == 0  # the portal session ended with the block
    kinds = sorted(d["kind"] for d in blocked["blocked"])
    assert kinds == ["card", "customer", "email"]
    card = next(d for d in blocked["blocked"] if d["kind"] == "card")
    assert card["card_ids"] == [shop.card_id(shop.first_card)] and "4242" in card["label"]
    assert _post(shop, "block", body, key=key) == (200, blocked)  # the same key: once
    assert _post(shop, "block", {**body, "all": False, "emails": [shop.email]},
                 key=key)[0] == 422
    assert _post(shop, "block", {"all": True, "reason": "again"})[0] == 409
    [event] = _outbox(shop, "customer.blocked")
    assert event["data"]["reason"] == "chargeback fraud" and event["data"]["source"] == "api"

    view = _blocks(shop)
    assert view["any_blocked"] and view["email"]["blocked"]
    assert view["email"]["log"][0]["reason"] == "chargeback fraud"
    assert view["customers"][f"stripe:{shop.customer}"]["blocked"]
    assert view["cards"][shop.card_id(shop.first_card)]["blocked"]

    # The portal answers a blocked address exactly as an unknown one, and sends nothing.
    sent_before = len(mails_to(sent_emails, shop.email))
    assert _sign_in_page(app_client, shop, shop.email) == _sign_in_page(app_client, shop, unknown)
    assert len(mails_to(sent_emails, shop.email)) == sent_before

    account = account_of(shop.account_id)
    helper = SelfService(account, shop.customer_id(), gateway_for(account))
    with pytest.raises(Forbidden) as refused:
        helper.cancel(shop.sub(shop.subscription)["id"], None)
    assert refused.value.code == "customer_blocked"
    assert shop.sub(shop.subscription)["status"] == "active"

    status, unblocked = _post(shop, "unblock", {"emails": [shop.email.upper()],
                                                "reason": "cleared by the bank"})
    assert status == 200 and unblocked["unblocked"] == [{"kind": "email", "value": shop.email}]
    view = _blocks(shop)
    assert not view["email"]["blocked"] and view["customers"][f"stripe:{shop.customer}"]["blocked"]
    assert [e["action"] for e in view["email"]["log"]] == ["unblock", "block"]
    # The processor customer is still blocked: self-service stays off, sign-in works.
    with pytest.raises(Forbidden):
        helper.cancel(shop.sub(shop.subscription)["id"], None)
    assert _sign_in_page(app_client, shop, shop.email) == _sign_in_page(app_client, shop, unknown)
    assert len(mails_to(sent_emails, shop.email)) == sent_before + 1

    assert _post(shop, "unblock", {"all": True, "reason": "all clear"})[0] == 200
    assert not _blocks(shop)["any_blocked"]
    assert len(_outbox(shop, "customer.unblocked")) == 2


def test_blocks_pushed_to_radar_when_the_account_asks(shop, stack):
    from chalicelib.store import accounts

    account = accounts.get(shop.account_id)
    accounts.update_settings(shop.account_id, {**(account.get("settings") or {}),
                                               "blocks": {"push_to_radar": True}})
    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_api_url})

    def listed(alias: str) -> list[str]:
        found = client.v1.radar.value_lists.list(params={"alias": alias}).data
        if not found:
            return []
        return [i.value for i in client.v1.radar.value_list_items.list(
            params={"value_list": found[0].id}).data]

    status, body = _post(shop, "block", {"cards": [shop.card_id(shop.first_card)],
                                         "processor_customers": [shop.customer],
                                         "reason": "stolen card"})
    assert status == 200, body
    fingerprint = shop.client.v1.payment_methods.retrieve(shop.first_card).card.fingerprint
    # The test session's Stripe account is shared: other tests list values of their own.
    assert listed("bp_blocked_cards").count(fingerprint) == 1
    assert listed("bp_blocked_customers").count(shop.customer) == 1
    assert _post(shop, "unblock", {"all": True, "reason": "refunded"})[0] == 200
    assert fingerprint not in listed("bp_blocked_cards")
    assert shop.customer not in listed("bp_blocked_customers")
