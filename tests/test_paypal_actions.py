"""Merchant API actions on a PayPal customer's subscriptions and payments: the existing
action routes pick the gateway by the object's processor (PayPal's here, against devstack's
stand-in), what PayPal cannot do answers 422 "PayPal does not support …" and changes
nothing, and the webhooks PayPal sends after each call converge with what the action
recorded (one refund, not two; a retried balance counted once)."""
from __future__ import annotations

import json
import math
import re
import secrets
import time

import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import dashboard_settings  # noqa: F401 - a fixture
from test_paypal_webhooks import PayPalMerchant, PayPalStory, PayPalStub

EMAIL = "paypal.actions@example.com"


@pytest.fixture(scope="module")
def stub(stack) -> PayPalStub:
    return PayPalStub(stack.paypal.url)


class Shop:
    """A PayPal merchant with one customer: a subscription with a missed payment (USD 10
    outstanding) and a paid sale, as PayPal's webhooks and its API (the stand-in) have them."""

    def __init__(self, client, stub: PayPalStub):
        self.pm = PayPalMerchant(client, stub)
        self.stub = stub
        self.delivered: set[str] = set()
        story = PayPalStory(EMAIL)
        story.payer_id = "PAYER" + secrets.token_hex(4).upper()  # PayPal's are 13 long
        self.story = story
        story.subscription("BILLING.SUBSCRIPTION.ACTIVATED")
        self.sale_id = story.sale("10.00")
        self.sales = {self.sale_id}  # whose refunds are this customer's
        story.subscription("BILLING.SUBSCRIPTION.PAYMENT.FAILED", outstanding="10.00",
                           failed="2025-01-02T10:30:00Z")
        stub.put("subscriptions", story.sub_id, story.subscription_object(
            outstanding="10.00", failed="2025-01-02T10:30:00Z"))
        stub.put("sales", self.sale_id, {
            "id": self.sale_id, "state": "completed", "billing_agreement_id": story.sub_id,
            "amount": {"total": "10.00", "currency": "USD"}})
        for event in story.events:
            assert self.pm.deliver(event).status_code == 200

    def post(self, path: str, body: dict | None = None, key: str | None = None):
        response = self.pm.m.client.http.post(path, body=json.dumps(body or {}).encode(), headers={
            "Authorization": f"Bearer {self.pm.m.api_key}", "Content-Type": "application/json",
            "Idempotency-Key": key or secrets.token_hex(12)})
        return response.status_code, json.loads(response.body or b"{}")

    def record(self) -> dict:
        [found] = [c for c in self.pm.m.customers() if c["email"] == EMAIL]
        return self.pm.m.get_json(f"/api/v1/customers/{found['id']}")

    def sub_path(self, action: str) -> str:
        record = self.record()
        return f"/api/v1/customers/{record['id']}/subscriptions/{record['subscriptions'][0]['id']}/{action}"

    def at_paypal(self) -> dict:
        from chalicelib.processors.registry import gateway_for
        from chalicelib.store import accounts

        return gateway_for(accounts.get(self.pm.m.account_id), "paypal").subscription(
            self.story.sub_id)

    def deliver_paypals_webhooks(self) -> list[str]:
        """Deliver (signed by the stand-in) the webhooks PayPal queued since the last call
        for this customer's objects."""
        sent = []
        for event in self.stub.call("GET", "/_stub/events"):
            resource = event["resource"]
            mine = self.story.sub_id in (resource.get("id"), resource.get("billing_agreement_id")) \
                or resource.get("sale_id") in self.sales
            if mine and event["id"] not in self.delivered:
                self.delivered.add(event["id"])
                r = self.pm.deliver(event)
                assert r.status_code == 200, r.body
                sent.append(event["event_type"])
        return sent


def _next_second() -> None:
    now = time.time()
    time.sleep(math.ceil(now) - now + 0.01)


@pytest.fixture(scope="module")
def shop(app_client, stub) -> Shop:  # noqa: F811
    return Shop(app_client, stub)


def test_the_dashboard_search_finds_a_paypal_customer_by_payer_or_subscription_id(shop):
    from chalicelib.dashboard import service as dashboard

    account_id, record = shop.pm.m.account_id, shop.record()
    for term in (shop.story.payer_id, shop.story.sub_id):
        found = dashboard.search(account_id, term)
        assert (found["by"], found["open"]) == ("processor_customer", record["id"]), term
    # Looks like a payer id, is not one: searched as a name or e-mail prefix.
    assert dashboard.search(account_id, "NOSUCHPAYER01")["by"] == "prefix"


def test_what_paypal_cannot_do_is_a_clear_422_and_changes_nothing(shop):
    status, body = shop.post(shop.sub_path("cancel"), {"at": "now", "prorate": True})
    assert status == 422 and body["error"] == "not_supported_by_processor", body
    assert body["message"].startswith("PayPal does not support prorating")
    status, body = shop.post(shop.sub_path("plan-preview"), {"price": "P-OTHER"})
    assert status == 422 and "PayPal does not support" in body["message"], body
    status, body = shop.post(shop.sub_path("pause"), {"behavior": "mark_uncollectible"})
    assert status == 422 and "PayPal does not support" in body["message"], body
    assert shop.at_paypal()["status"] == "ACTIVE"
    assert shop.record()["subscriptions"][0]["status"] == "past_due"


def test_refund_of_a_subscription_sale_is_made_once_at_paypal_and_converges(shop, stub):
    record = shop.record()
    [paid] = [p for p in record["payments"] if p["status"] == "succeeded"]
    key = secrets.token_hex(12)
    path = f"/api/v1/customers/{record['id']}/payments/{paid['id']}/refunds"
    status, body = shop.post(path, {"amount": 400, "reason": "requested_by_customer"}, key)
    assert status in (200, 201), body
    again = shop.post(path, {"amount": 400, "reason": "requested_by_customer"}, key)
    assert again == (status, body)
    refunds = [r for r in stub.served() if r["path"] == f"/v1/payments/sale/{shop.sale_id}/refund"]
    assert len(refunds) == 1 and refunds[0]["request_id"] == f"{key}:refund"
    assert refunds[0]["body"] == {"amount": {"currency": "USD", "total": "4.00"}}
    # The record has it at once (the action's confirmed refund names PayPal's sale) …
    [paid] = [p for p in shop.record()["payments"] if p["status"] == "succeeded"]
    assert paid["refunded"] == 400 and len(paid["refunds"]) == 1, paid["refunds"]
    # … and PayPal's webhook is the same refund, not a second.
    assert shop.deliver_paypals_webhooks() == ["PAYMENT.SALE.REFUNDED"]
    [paid] = [p for p in shop.record()["payments"] if p["status"] == "succeeded"]
    assert paid["refunded"] == 400 and len(paid["refunds"]) == 1, paid["refunds"]


def test_pause_and_resume_suspend_and_activate_at_paypal(shop):
    status, body = shop.post(shop.sub_path("pause"), {"behavior": "void"})
    assert status == 200 and body["subscription"]["status"] == "paused", body
    assert shop.at_paypal()["status"] == "SUSPENDED"
    assert shop.deliver_paypals_webhooks() == ["BILLING.SUBSCRIPTION.SUSPENDED"]
    assert shop.record()["subscriptions"][0]["status"] == "paused"
    status, body = shop.post(shop.sub_path("resume"))
    assert status == 200 and body["subscription"]["status"] == "active", body
    assert shop.at_paypal()["status"] == "ACTIVE"
    assert shop.deliver_paypals_webhooks() == ["BILLING.SUBSCRIPTION.ACTIVATED"]


def test_retry_of_the_missed_payment_captures_the_outstanding_balance(shop):
    # The resume above queued PayPal's ACTIVATED (still owing USD 10, so past due). A
    # person retries at least a second later; in the same second PayPal's whole-second
    # times could not order the two states (README, Limits), so the test waits for one.
    _next_second()
    record = shop.record()
    [missed] = [p for p in record["payments"] if p["status"] == "failed"]
    status, body = shop.post(f"/api/v1/customers/{record['id']}/payments/{missed['id']}/retry")
    assert status == 200 and body["payment"]["outcome"] == "paid", body
    assert shop.at_paypal()["billing_info"]["outstanding_balance"]["value"] == "0.00"
    record = shop.record()
    assert [p["status"] for p in record["payments"] if p["id"] == missed["id"]] == ["recovered"]
    assert shop.deliver_paypals_webhooks() == ["PAYMENT.SALE.COMPLETED",
                                               "BILLING.SUBSCRIPTION.UPDATED"]
    record = shop.record()
    assert [p["status"] for p in record["payments"] if p["id"] == missed["id"]] == ["recovered"]
    # The first sale (less its refund) and the retry's sale: the balance counted once.
    assert record["stats"]["lifetime_value"] == {"usd": 1000 - 400 + 1000}
    assert record["subscriptions"][0]["status"] == "active"


def test_cancel_at_period_end_is_kept_by_us_then_cancel_now_at_paypal(shop):
    status, body = shop.post(shop.sub_path("cancel"), {"at": "period_end"})
    assert status == 200 and body["subscription"]["status"] == "canceling", body
    assert shop.at_paypal()["status"] == "ACTIVE"  # PayPal's cancel is immediate: not yet
    sub = shop.record()["subscriptions"][0]
    assert sub["status"] == "canceling"
    status, body = shop.post(shop.sub_path("recover"))
    assert status == 200 and body["subscription"]["status"] == "active", body
    status, body = shop.post(shop.sub_path("cancel"), {"at": "now", "reason": "moved away"})
    assert status == 200 and body["subscription"]["status"] == "canceled", body
    assert shop.at_paypal()["status"] == "CANCELLED"
    assert shop.deliver_paypals_webhooks() == ["BILLING.SUBSCRIPTION.CANCELLED"]
    assert shop.record()["subscriptions"][0]["status"] == "canceled"


def test_the_pending_cancel_is_planned_48_hours_before_the_next_billing():
    from chalicelib.records.reactions import Change, Context
    from chalicelib.selfservice import pending_cancel

    context = Context("acct_x", "cst_x", None, "webhook", "2030-01-01T00:00:00Z", dict)
    before = {"subscription": "paypal:I-ABC", "status": "active",
              "current_period_end": 1_900_000_000}
    marked = {**before, "cancel_at_period_end": True}
    [op] = pending_cancel.react(context, [Change("SUB", "sub_1", before, marked)]).ops
    assert op[0] == "step" and op[1].SK and op[1].kind == "pending_cancel.run"
    assert op[1].GSI3SK.startswith("2030-03-15T")  # 1_900_000_000 - 48 h = 2030-03-15T…
    # Kept: the step goes; a Stripe subscription's period end is Stripe's own.
    [drop] = pending_cancel.react(context, [Change("SUB", "sub_1", marked, before)]).ops
    assert drop[0] == "delete"
    stripe = {**marked, "subscription": "stripe:sub_1"}
    assert pending_cancel.react(context, [Change("SUB", "sub_1", None, stripe)]).ops == []
    # Ended meanwhile: the step stays, and finds nothing to do.
    ended = {**marked, "status": "canceled"}
    assert pending_cancel.react(context, [Change("SUB", "sub_1", marked, ended)]).ops == []
    # A billing time already closer than 48 h: due at once.
    soon = {**marked, "current_period_end": 1_893_456_000 + 3600}  # 2030-01-01T01:00Z
    [op] = pending_cancel.react(context, [Change("SUB", "sub_2", before, soon)]).ops
    assert op[1].GSI3SK.startswith("2030-01-01T00:00:00")


def test_a_cycle_paypal_bills_after_the_period_asked_to_end_is_refunded(app_client, stub):  # noqa: F811
    """The reaction plans the step when the pending cancel is recorded and drops it when it
    is taken back. PayPal bills the next cycle before the due step ran (the mark came late,
    or the sweep): the step, claimed and run as the sweep does, cancels at PayPal and
    refunds that payment through the refund action; the moved billing time moves nothing."""
    from datetime import UTC, datetime

    from chalicelib.activity import service as activity
    from chalicelib.scheduler import service as scheduler
    from chalicelib.selfservice import pending_cancel
    from chalicelib.store import steps as steps_store

    other = Shop(app_client, stub)
    account_id = other.pm.m.account_id
    sub = other.record()["subscriptions"][0]
    period_end = int(datetime.fromisoformat(sub["current_period_end"].replace("Z", "+00:00"))
                     .timestamp())
    step_id = pending_cancel.step_id(sub["id"], period_end)
    assert steps_store.get(account_id, step_id) is None
    assert other.post(other.sub_path("cancel"), {"at": "period_end"})[0] == 200
    planned = steps_store.get(account_id, step_id)
    assert planned is not None and planned.kind == "pending_cancel.run"
    assert planned.customer_id == other.record()["id"]
    assert other.post(other.sub_path("recover"))[0] == 200
    assert steps_store.get(account_id, step_id) is None  # kept: nothing left to do
    assert other.post(other.sub_path("cancel"), {"at": "period_end"})[0] == 200
    other.deliver_paypals_webhooks()
    txn = stub.call("POST", f"/_stub/bill/{other.story.sub_id}", {})
    other.sales.add(txn["id"])
    assert other.deliver_paypals_webhooks() == ["PAYMENT.SALE.COMPLETED",
                                                "BILLING.SUBSCRIPTION.UPDATED"]
    assert other.record()["subscriptions"][0]["status"] == "canceling"
    step = steps_store.get(account_id, step_id)
    assert step is not None and step.status == "pending"  # not moved to the new period

    now = datetime.now(UTC)
    claimed = steps_store.claim(step, now, 60)
    outcome = pending_cancel.handle(claimed, now)
    assert scheduler.write(claimed, outcome, now)
    assert outcome.status == "done" and len(outcome.result["refunded"]) == 1, outcome.result
    assert other.at_paypal()["status"] == "CANCELLED"
    refunds = [r for r in stub.served() if r["path"] == f"/v1/payments/sale/{txn['id']}/refund"]
    assert len(refunds) == 1  # all of it
    assert refunds[0]["body"] == {"amount": {"currency": "USD", "total": "10.00"}}
    record = other.record()
    [billed] = [p for p in record["payments"] if f"paypal:txn_{txn['id']}" in p["processor_refs"]]
    assert billed["refunded"] == billed["amount"] == 1000
    entries = activity.list(account_id, limit=50, action_prefix="refund")[0]
    assert [e["actor"] for e in entries] == [pending_cancel.ACTOR]
    assert steps_store.get(account_id, step_id).status == "done"
    assert other.deliver_paypals_webhooks() == ["BILLING.SUBSCRIPTION.CANCELLED",
                                                "PAYMENT.SALE.REFUNDED"]
    assert other.record()["subscriptions"][0]["status"] == "canceled"
    assert billed["refunded"] == 1000 and len(billed["refunds"]) == 1
    # Run again (a sweep that died before writing): nothing more at PayPal.
    again = pending_cancel.handle(claimed, now)
    assert again.status == "done" and again.result["cancelled"] is False
    assert len([r for r in stub.served() if r["path"] == refunds[0]["path"]]) == 1


def test_the_record_page_offers_no_plan_change_and_retry_captures_at_paypal(
        app_client, stack, stub, sent_emails, dashboard_settings):  # noqa: F811
    from dashboard_helpers import make_staff_shop, staff_sign_in
    from portal_helpers import PortalClient, text

    from chalicelib.accounts.service import set_paypal

    staff_shop = make_staff_shop(app_client, stack)
    webhook_id = "WH" + secrets.token_hex(8).upper()
    set_paypal(staff_shop.account_id, client_id="AZdash" + secrets.token_hex(6),
               client_secret="EJdash" + secrets.token_hex(10), webhook_id=webhook_id,
               mode="sandbox")
    story = PayPalStory(f"dash.{secrets.token_hex(4)}@example.com")
    story.subscription("BILLING.SUBSCRIPTION.ACTIVATED")
    story.subscription("BILLING.SUBSCRIPTION.PAYMENT.FAILED", outstanding="10.00",
                       failed="2025-01-02T10:30:00Z")
    stub.put("subscriptions", story.sub_id, story.subscription_object(
        outstanding="10.00", failed="2025-01-02T10:30:00Z"))
    for event in story.events:
        body, headers = stub.sign(event, webhook_id)
        r = app_client.http.post(f"/webhooks/paypal/{staff_shop.account_id}", body=body,
                                 headers=headers)
        assert r.status_code == 200, r.body
    from chalicelib.records.service import normalize_email
    from chalicelib.store.customers import find_by_email

    customer_id = find_by_email(staff_shop.account_id, normalize_email(story.email))
    c = PortalClient(app_client.http)
    staff_sign_in(c, staff_shop.root, staff_shop.owner, sent_emails)
    page = c.get(f"{staff_shop.root}/customers/{customer_id}")
    assert page.status_code == 200, text(page)
    html = text(page)
    assert "Cancel at period end" in html and "Pause collection" in html
    assert "Change plan" not in html
    # Retry: no card to choose; the outstanding balance is captured at PayPal.
    from chalicelib.records.service import get_record

    [missed] = [p for p in get_record(staff_shop.account_id, customer_id)["payments"]
                if p["status"] == "failed"]
    form = c.get(f"{staff_shop.root}/customers/{customer_id}/payments/{missed['id']}/retry")
    assert form.status_code == 200, text(form)
    assert "chose in PayPal" in text(form) and "The card on file" not in text(form)
    action_id = re.search(r'name="action_id" value="([^"]+)"', text(form)).group(1)
    done = c.post(f"{staff_shop.root}/customers/{customer_id}/payments/{missed['id']}/retry",
                  {"action_id": action_id, "card": "default"})
    assert done.status_code == 200 and "Paid: the payment" in text(done), text(done)
    captures = [r for r in stub.served()
                if r["path"] == f"/v1/billing/subscriptions/{story.sub_id}/capture"]
    assert len(captures) == 1
    # A lost PayPal dispute: repayments are recorded; no repayment link is offered.
    [sale_id] = [e["resource"]["id"] for e in stub.call("GET", "/_stub/events")
                 if e["event_type"] == "PAYMENT.SALE.COMPLETED"
                 and e["resource"].get("billing_agreement_id") == story.sub_id]
    dispute_id = "PP-D-" + secrets.token_hex(4).upper()
    for change in ({"stage": "CHARGEBACK"}, {"stage": "CHARGEBACK", "status": "RESOLVED",
                                             "outcome": "RESOLVED_BUYER_FAVOUR"}):
        stub.call("POST", f"/_stub/disputes/{dispute_id}", {
            "transaction_id": sale_id, "amount": {"currency_code": "USD", "value": "10.00"},
            **change})
        [event] = [e for e in stub.call("GET", "/_stub/events")
                   if e["resource"].get("dispute_id") == dispute_id][-1:]
        body, headers = stub.sign(event, webhook_id)
        r = app_client.http.post(f"/webhooks/paypal/{staff_shop.account_id}", body=body,
                                 headers=headers)
        assert r.status_code == 200, r.body
    [dispute] = get_record(staff_shop.account_id, customer_id)["disputes"]
    assert dispute["status"] == "lost"
    page = c.get(f"{staff_shop.root}/customers/{customer_id}/disputes/{dispute['id']}/repayment")
    assert page.status_code == 200, text(page)
    assert "Record a repayment made elsewhere" in text(page)
    assert "Send a repayment link" not in text(page) and "repayment-link" not in text(page)


def _dispute(stub: PayPalStub, pm: PayPalMerchant, dispute_id: str, txn: str, **change) -> None:
    """The payer opens (or PayPal moves) a dispute of ``txn`` at PayPal; its webhook in."""
    stub.call("POST", f"/_stub/disputes/{dispute_id}", {
        "transaction_id": txn, "amount": {"currency_code": "USD", "value": "10.00"}, **change})
    [event] = [e for e in stub.call("GET", "/_stub/events")
               if e["resource"].get("dispute_id") == dispute_id][-1:]
    assert pm.deliver(event).status_code == 200


def test_a_disputed_paypal_sale_is_refunded_only_while_paypal_allows_and_has_no_link(
        app_client, stub):  # noqa: F811
    """actions.refunds asks the gateway's disputes_of (PayPal's Disputes API): in the
    inquiry a refund is made, with the warning; in a claim it is refused (409) before any
    refund call; a lost PayPal dispute's repayment link is 422, PayPal has none."""
    other = Shop(app_client, stub)
    dispute_id = "PP-D-" + secrets.token_hex(4).upper()
    _dispute(stub, other.pm, dispute_id, other.sale_id, stage="INQUIRY")
    record = other.record()
    [paid] = [p for p in record["payments"] if p["status"] == "succeeded"]
    assert [d["status"] for d in paid["disputes"]] == ["waiting_for_seller_response"]
    path = f"/api/v1/customers/{record['id']}/payments/{paid['id']}/refunds"
    status, body = other.post(path, {"amount": 300, "reason": "requested_by_customer"})
    assert status == 201 and body["warning"], body
    lists = [r for r in stub.served() if r["path"] == "/v1/customer/disputes"
             and r["query"] == f"disputed_transaction_id={other.sale_id}"]
    assert len(lists) == 1
    _dispute(stub, other.pm, dispute_id, other.sale_id, stage="CHARGEBACK", status="UNDER_REVIEW")
    refunds = len([r for r in stub.served() if r["path"].endswith(f"/{other.sale_id}/refund")])
    status, body = other.post(path, {"amount": 300, "reason": "requested_by_customer"})
    assert status == 409 and body["error"] == "charge_disputed", body
    assert len([r for r in stub.served()
                if r["path"].endswith(f"/{other.sale_id}/refund")]) == refunds
    # Lost: repaid only by a repayment recorded elsewhere; PayPal has no payment links.
    _dispute(stub, other.pm, dispute_id, other.sale_id, stage="CHARGEBACK", status="RESOLVED",
             outcome="RESOLVED_BUYER_FAVOUR")
    [dispute] = other.record()["disputes"]
    assert (dispute["status"], dispute["processor_ref"]) == ("lost", f"paypal:dispute_{dispute_id}")
    served = len(stub.served())
    status, body = other.post(
        f"/api/v1/customers/{record['id']}/disputes/{dispute['id']}/repayment-link")
    assert status == 422 and body["error"] == "not_supported_by_processor", body
    assert body["message"].startswith("PayPal does not support")
    assert len(stub.served()) == served
    from chalicelib.store import repayments

    assert repayments.list_for(other.pm.m.account_id, dispute["id"]) == []
