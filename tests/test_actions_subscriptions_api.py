"""Merchant API actions on subscriptions and failed payments, end to end: a customer
seeded at localstripe (webhooks to the app), the API through Chalice's test client, the
Stripe stand-in's state afterwards; the record, the outbox and the activity log."""
from __future__ import annotations

import json
import secrets
import time

import pytest
import requests
from app_fixtures import app_client  # noqa: F401
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    CARD_OTHER,
    fail_an_invoice,
    make_stripe_shop,
    portal_settings,
)

pytestmark = pytest.mark.usefixtures("portal_settings")


@pytest.fixture
def shop(app_client, stack, app_server, stripe_client):  # noqa: F811
    return make_stripe_shop(app_client, stack, app_server, stripe_client)


def _post(shop, path: str, body: dict | None = None, key: str | None = "new",
          api_key: str | None = None):
    headers = {"Authorization": f"Bearer {api_key or shop.shop.merchant.api_key}",
               "Content-Type": "application/json"}
    if key == "new":
        key = secrets.token_hex(12)
    if key is not None:
        headers["Idempotency-Key"] = key
    response = shop.shop.merchant.client.http.post(
        path, body=json.dumps(body or {}).encode(), headers=headers)
    return response.status_code, json.loads(response.body or b"{}")


def _sub_path(shop, stripe_sub: str, action: str) -> str:
    return (f"/api/v1/customers/{shop.customer_id()}/subscriptions/"
            f"{shop.sub(stripe_sub)['id']}/{action}")


def _at_stripe(stack, sub_id: str) -> dict:
    return requests.get(f"{stack.stripe_api_url}/v1/subscriptions/{sub_id}", timeout=10,
                        headers={"Authorization": "Bearer sk_test_portal"}).json()


def _outbox(shop, kind: str) -> list[dict]:
    from chalicelib.store.customers import list_outbox

    # The events the actions wrote (their data names the source), not those the shop's
    # webhooks derived (integrations.reactions).
    return [o for o in list_outbox(shop.account_id) if o["type"] == kind
            and "source" in o["data"]]


def _activity(shop, action: str) -> list[dict]:
    from chalicelib.activity import service as activity

    return activity.list(shop.account_id, limit=200, action_prefix=action)[0]


def test_cancel_at_period_end_then_recover_then_cancel_now(shop, stack):
    path = _sub_path(shop, shop.subscription, "cancel")
    key = secrets.token_hex(12)
    status, body = _post(shop, path, {"at": "period_end", "reason": "moving abroad",
                                      "note": "called on the phone"}, key=key)
    assert status == 200, body
    assert body["subscription"]["status"] == "canceling"
    assert _at_stripe(stack, shop.subscription)["cancel_at_period_end"] is True
    assert shop.sub(shop.subscription)["status"] == "canceling"
    # The same key and body again: the stored answer, nothing done twice.
    assert _post(shop, path, {"at": "period_end", "reason": "moving abroad",
                              "note": "called on the phone"}, key=key) == (200, body)
    assert len(_outbox(shop, "subscription.canceling")) == 1
    entries = _activity(shop, "subscription.cancel_at_period_end")
    assert len(entries) == 1 and entries[0]["reason"] == "moving abroad"
    # The same key with another body: 422.
    assert _post(shop, path, {"at": "now"}, key=key)[0] == 422
    # Already set to end: 409, nothing changed.
    assert _post(shop, path, {"at": "period_end"})[0] == 409

    status, body = _post(shop, _sub_path(shop, shop.subscription, "recover"))
    assert status == 200 and body["subscription"]["status"] == "active"
    assert _at_stripe(stack, shop.subscription)["cancel_at_period_end"] is False
    assert shop.sub(shop.subscription)["status"] == "active"
    assert len(_outbox(shop, "subscription.recovered")) == 1
    assert _post(shop, _sub_path(shop, shop.subscription, "recover"))[0] == 409

    # Scheduled again, then made now.
    assert _post(shop, path, {"at": "period_end"})[0] == 200
    status, body = _post(shop, path, {"at": "now", "reason": "fraud suspected"})
    assert status == 200 and body["subscription"]["status"] == "canceled"
    assert _at_stripe(stack, shop.subscription)["status"] == "canceled"
    assert shop.sub(shop.subscription)["status"] == "canceled"
    [canceled] = _outbox(shop, "subscription.canceled")
    assert canceled["data"]["scheduled"] is True and canceled["data"]["source"] == "api"
    assert _post(shop, path, {"at": "now"})[0] == 409


def test_a_payment_plan_may_be_cancelled_by_the_merchant_with_its_balance(shop, stack):
    status, body = _post(shop, _sub_path(shop, shop.plan_subscription, "cancel"), {"at": "now"})
    assert status == 200, body
    assert body["unpaid_balance"]["currency"] == "eur" and body["unpaid_balance"]["amount"] > 0
    assert _at_stripe(stack, shop.plan_subscription)["status"] == "canceled"


def test_bad_input_and_unknown_objects_change_nothing(shop, stack):
    path = _sub_path(shop, shop.subscription, "cancel")
    assert _post(shop, path, {"at": "tomorrow"})[0] == 400
    assert _post(shop, path, {"at": "now", "prorate": "yes"})[0] == 400
    assert _post(shop, path, {"at": "now", "extra": 1})[0] == 400
    assert _post(shop, path, {"at": "now"}, key=None)[0] == 400  # no Idempotency-Key
    assert _post(shop, path, {"at": "now"}, key="has space")[0] == 400
    other = f"/api/v1/customers/cst_unknown/subscriptions/{shop.sub(shop.subscription)['id']}"
    assert _post(shop, other + "/cancel", {"at": "now"})[0] == 404
    unknown = f"/api/v1/customers/{shop.customer_id()}/subscriptions/sub_nope/cancel"
    assert _post(shop, unknown, {"at": "now"})[0] == 404
    assert _post(shop, path, {"at": "now"}, api_key="bp_wrong")[0] == 401
    assert _post(shop, _sub_path(shop, shop.subscription, "pause"),
                 {"behavior": "forever"})[0] == 400
    assert _post(shop, _sub_path(shop, shop.subscription, "pause"),
                 {"behavior": "void", "resumes_at": 1})[0] == 400
    assert _at_stripe(stack, shop.subscription)["status"] == "active"
    assert not _at_stripe(stack, shop.subscription)["cancel_at_period_end"]
    assert shop.sub(shop.subscription)["status"] == "active"
    assert _outbox(shop, "subscription.canceled") == []


def test_another_accounts_customer_is_not_found(shop, app_client, stack, stripe_client,  # noqa: F811
                                                app_server):
    other = make_stripe_shop(app_client, stack, app_server, stripe_client)
    path = _sub_path(shop, shop.subscription, "cancel")
    assert _post(other, path, {"at": "now"})[0] == 404
    assert _at_stripe(stack, shop.subscription)["status"] == "active"


def test_pause_and_resume_collection(shop, stack):
    resumes = int(time.time()) + 20 * 86400
    status, body = _post(shop, _sub_path(shop, shop.subscription, "pause"),
                         {"behavior": "keep_as_draft", "resumes_at": resumes})
    assert status == 200, body
    assert _at_stripe(stack, shop.subscription)["pause_collection"] == {
        "behavior": "keep_as_draft", "resumes_at": resumes}
    assert shop.sub(shop.subscription)["status"] == "paused"
    assert _post(shop, _sub_path(shop, shop.subscription, "pause"), {"behavior": "void"})[0] == 409
    status, body = _post(shop, _sub_path(shop, shop.subscription, "resume"))
    assert status == 200 and body["subscription"]["status"] == "active"
    assert _at_stripe(stack, shop.subscription)["pause_collection"] is None
    assert shop.sub(shop.subscription)["status"] == "active"
    assert [len(_outbox(shop, k)) for k in ("subscription.paused", "subscription.resumed")] == [1, 1]
    assert _post(shop, _sub_path(shop, shop.subscription, "resume"))[0] == 409


def test_change_plan_with_its_preview(shop, stack):
    bigger = shop.client.v1.plans.create(params={
        "amount": 3600, "currency": "eur", "interval": "month", "product": {"name": "Coffee+"}})
    status, preview = _post(shop, _sub_path(shop, shop.subscription, "plan-preview"),
                            {"price": bigger.id, "prorate": True}, key=None)
    assert status == 200, preview
    assert preview["currency"] == "eur" and preview["lines"][-1]["amount"] == 3600
    assert [line["proration"] for line in preview["lines"]] == [True, True, False]
    assert _at_stripe(stack, shop.subscription)["plan"]["amount"] == 1200  # a read only
    status, body = _post(shop, _sub_path(shop, shop.subscription, "plan"), {
        "price": bigger.id, "prorate": True, "proration_date": preview["proration_date"]})
    assert status == 200, body
    assert body["subscription"]["proration_amount"] == preview["proration_amount"]
    assert _at_stripe(stack, shop.subscription)["plan"]["id"] == bigger.id
    assert shop.sub(shop.subscription)["amount"] == 3600
    [updated] = _outbox(shop, "subscription.updated")
    assert updated["data"]["price"] == bigger.id
    # A payment plan's plan does not change; nor to an unknown price.
    assert _post(shop, _sub_path(shop, shop.plan_subscription, "plan"), {
        "price": bigger.id, "prorate": True,
        "proration_date": preview["proration_date"]})[0] == 409
    status, _ = _post(shop, _sub_path(shop, shop.subscription, "plan"), {
        "price": "price_unknown", "prorate": True, "proration_date": preview["proration_date"]})
    assert status >= 400
    assert _post(shop, _sub_path(shop, shop.subscription, "plan"), {
        "price": bigger.id, "prorate": True})[0] == 400


def test_retry_a_failed_payment_declined_then_paid_with_another_card(shop, stack):
    failed = fail_an_invoice(shop)
    path = f"/api/v1/customers/{shop.customer_id()}/payments/{failed['payment']['id']}/retry"
    status, body = _post(shop, path, {"card_id": shop.card_id(failed["bad_card"])})
    assert status == 200 and body["payment"]["outcome"] == "declined", body
    assert body["payment"]["message"]
    other = shop.add_card(CARD_OTHER)
    status, body = _post(shop, path, {"card_id": shop.card_id(other)})
    assert status == 200 and body["payment"]["outcome"] == "paid", body
    invoice = shop.client.v1.invoices.retrieve(failed["invoice"])
    assert invoice.status == "paid"
    record = shop.record()
    assert next(p for p in record["payments"]
                if p["id"] == failed["payment"]["id"])["status"] == "succeeded"
    assert _post(shop, path, {})[0] == 409  # paid: nothing to retry
    assert _post(shop, path, {"card_id": "pm_123"})[0] == 400
    assert len(_activity(shop, "payment.retry")) == 2


@pytest.mark.parametrize("role", ["owner", "admin", "support", "read_only"])
def test_each_role_may_do_what_its_permissions_say_and_nothing_else(shop, stack, role):
    from chalicelib.actions.service import ActionContext
    from chalicelib.actions.subscriptions import SubscriptionActions
    from chalicelib.errors import Forbidden
    from chalicelib.staff import roles

    def acting():
        return SubscriptionActions(ActionContext(
            account_id=shop.account_id, actor_id=f"stf_{role}", actor_email=f"{role}@shop.test",
            role=role, ip="198.18.0.9", source="dashboard",
            idempotency_key=secrets.token_urlsafe(24)), shop.customer_id())

    sub_id = shop.sub(shop.subscription)["id"]
    attempts = [
        ("cancel_at_period_end", lambda: acting().cancel(sub_id, "period_end"), "canceling"),
        ("cancel_at_period_end", lambda: acting().recover(sub_id), "active"),
        ("change_subscription", lambda: acting().pause(sub_id, "void"), "paused"),
        ("change_subscription", lambda: acting().resume(sub_id), "active"),
        ("cancel_now", lambda: acting().cancel(sub_id, "now"), "canceled"),
    ]
    for permission, attempt, status in attempts:
        before = (_at_stripe(stack, shop.subscription), shop.sub(shop.subscription)["status"])
        if roles.allows(role, permission):
            attempt()
            assert shop.sub(shop.subscription)["status"] == status, (role, permission)
        else:
            with pytest.raises(Forbidden):
                attempt()
            after = (_at_stripe(stack, shop.subscription), shop.sub(shop.subscription)["status"])
            assert after == before, (role, permission)
    refused = [e for e in _activity(shop, "staff.forbidden") if e["actor"] == f"stf_{role}"]
    done = [e for e in _activity(shop, "subscription.") if e["actor"] == f"stf_{role}"]
    expected = [p for p, _, _ in attempts if not roles.allows(role, p)]
    assert len(refused) == len(expected)
    assert len(done) == len(attempts) - len(expected)
    if role in ("support", "read_only"):
        assert _outbox(shop, "subscription.canceled") == []
