"""What follows a cancel of a PayPal subscription: a payment PayPal takes after it is
refunded in full automatically (selfservice.late_payments: a reaction plans the step, the
step refunds through the refund action), whichever of the payment's and the cancel's
news comes first and however often; and a period-end cancel, carried out at PayPal 48 h
early, shows as canceling until the end of the period paid for (records.view), even after
PayPal's own CANCELLED webhook, with no renewal notice planned for the ended cycle."""
from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import dashboard_settings  # noqa: F401 - a fixture
from test_paypal_actions import Shop
from test_paypal_webhooks import PayPalStub


@pytest.fixture(scope="module")
def stub(stack) -> PayPalStub:
    return PayPalStub(stack.paypal.url)


def _run(step, now: datetime | None = None):
    """Claim and run a due step, and write its outcome, as the sweep does."""
    from chalicelib.scheduler import kinds
    from chalicelib.scheduler import service as scheduler
    from chalicelib.store import steps as steps_store

    now = now or datetime.now(UTC)
    claimed = steps_store.claim(step, now, 60)
    assert claimed is not None, step
    outcome = kinds.handler_for(claimed.kind)(claimed, now)
    assert scheduler.write(claimed, outcome, now)
    return claimed, outcome


def _payment_of(record: dict, txn_id: str) -> dict:
    [found] = [p for p in record["payments"] if f"paypal:txn_{txn_id}" in p["processor_refs"]]
    return found


def _sale_refunds(stub: PayPalStub, txn_id: str) -> list[dict]:
    return [r for r in stub.served() if r["path"] == f"/v1/payments/sale/{txn_id}/refund"]


def _iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_payment_paypal_takes_after_cancel_now_is_refunded_once(app_client, stub):  # noqa: F811
    from chalicelib.activity import service as activity
    from chalicelib.selfservice import late_payments
    from chalicelib.store import steps as steps_store

    shop = Shop(app_client, stub)
    account_id = shop.pm.m.account_id
    status, body = shop.post(shop.sub_path("cancel"), {"at": "now", "reason": "moved away"})
    assert status == 200 and body["subscription"]["status"] == "canceled", body
    assert shop.deliver_paypals_webhooks() == ["BILLING.SUBSCRIPTION.CANCELLED"]
    # PayPal bills a cycle it had already started, after the cancel.
    txn = stub.call("POST", f"/_stub/bill/{shop.story.sub_id}", {})
    shop.sales.add(txn["id"])
    events = [e for e in stub.call("GET", "/_stub/events")
              if e["resource"].get("id") == txn["id"]]
    assert shop.deliver_paypals_webhooks() == ["PAYMENT.SALE.COMPLETED",
                                               "BILLING.SUBSCRIPTION.UPDATED"]
    record = shop.record()
    late = _payment_of(record, txn["id"])
    assert late["status"] == "succeeded" and late["refunded"] == 0
    step = steps_store.get(account_id, late_payments.step_id(late["id"]))
    assert step is not None and step.status == "pending" and step.kind == "late_payment.refund"
    # The sale PayPal took before the cancel is the customer's: nothing planned for it.
    earlier = _payment_of(record, shop.sale_id)
    assert steps_store.get(account_id, late_payments.step_id(earlier["id"])) is None
    # PayPal delivers the sale again: nothing more is planned (the step is the same one).
    assert shop.pm.deliver(events[0]).status_code == 200

    claimed, outcome = _run(steps_store.get(account_id, late_payments.step_id(late["id"])))
    assert outcome.status == "done" and outcome.result["refunded"] is True, outcome.result
    [refund] = _sale_refunds(stub, txn["id"])
    assert refund["body"] == {"amount": {"currency": "USD", "total": "10.00"}}
    assert refund["request_id"].startswith(late_payments.refund_key(late["id"]))
    late = _payment_of(shop.record(), txn["id"])
    assert late["refunded"] == late["amount"] == 1000
    assert _payment_of(shop.record(), shop.sale_id)["refunded"] == 0
    [entry] = activity.list(account_id, limit=50, action_prefix="refund")[0]
    assert entry["actor"] == late_payments.ACTOR
    # Run again (a sweep that died before writing): nothing more at PayPal.
    again = late_payments.handle(claimed, datetime.now(UTC))
    assert again.status == "done" and again.result["refunded"] is False
    assert len(_sale_refunds(stub, txn["id"])) == 1
    # PayPal's refund webhook is the same refund, not a second.
    assert shop.deliver_paypals_webhooks() == ["PAYMENT.SALE.REFUNDED"]
    late = _payment_of(shop.record(), txn["id"])
    assert late["refunded"] == 1000 and len(late["refunds"]) == 1, late["refunds"]


def test_the_payment_news_before_the_cancels_own_webhook_is_refunded_too(app_client, stub):  # noqa: F811
    """The subscription is cancelled at PayPal (say by the payer, or an action whose answer
    was lost); the sale PayPal took after it comes first, the cancel's webhook after."""
    from chalicelib.domain.events import Ref
    from chalicelib.processors.registry import gateway_for
    from chalicelib.selfservice import late_payments
    from chalicelib.store import accounts
    from chalicelib.store import steps as steps_store

    shop = Shop(app_client, stub)
    account_id = shop.pm.m.account_id
    gateway_for(accounts.get(account_id), "paypal").cancel_now(
        Ref("paypal", shop.story.sub_id), prorate=False, invoice_now=False, reason="gone",
        idempotency_key=secrets.token_hex(8))
    txn = stub.call("POST", f"/_stub/bill/{shop.story.sub_id}", {})
    shop.sales.add(txn["id"])
    queued = {e["event_type"]: e for e in stub.call("GET", "/_stub/events")
              if shop.story.sub_id in (e["resource"].get("id"),
                                       e["resource"].get("billing_agreement_id"))}
    assert shop.pm.deliver(queued["PAYMENT.SALE.COMPLETED"]).status_code == 200
    late = _payment_of(shop.record(), txn["id"])
    assert shop.record()["subscriptions"][0]["status"] != "canceled"
    assert steps_store.get(account_id, late_payments.step_id(late["id"])) is None
    assert shop.pm.deliver(queued["BILLING.SUBSCRIPTION.CANCELLED"]).status_code == 200
    assert shop.record()["subscriptions"][0]["status"] == "canceled"
    step = steps_store.get(account_id, late_payments.step_id(late["id"]))
    assert step is not None and step.status == "pending"
    _, outcome = _run(step)
    assert outcome.status == "done" and outcome.result["refunded"] is True, outcome.result
    assert len(_sale_refunds(stub, txn["id"])) == 1
    assert _payment_of(shop.record(), txn["id"])["refunded"] == 1000


def test_a_period_end_cancel_shows_canceling_until_the_period_ends(
        app_client, stack, stub, sent_emails, dashboard_settings):  # noqa: F811
    from chalicelib.records import service as records
    from chalicelib.records.view import subscription_status
    from chalicelib.selfservice import late_payments, pending_cancel
    from chalicelib.store import steps as steps_store

    shop = Shop(app_client, stub)
    account_id = shop.pm.m.account_id
    # The period paid for ends in a day: the pending cancel is due at once (48 h before).
    period_end = int(datetime.now(UTC).timestamp()) // 60 * 60 + 86400
    updated = shop.story.subscription("BILLING.SUBSCRIPTION.UPDATED")
    updated["resource"]["billing_info"]["next_billing_time"] = \
        datetime.fromtimestamp(period_end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stub.put("subscriptions", shop.story.sub_id, updated["resource"])
    assert shop.pm.deliver(updated).status_code == 200
    sub = shop.record()["subscriptions"][0]
    assert sub["current_period_end"] == _iso(period_end)
    status, body = shop.post(shop.sub_path("cancel"), {"at": "period_end"})
    assert status == 200 and body["subscription"]["status"] == "canceling", body
    assert shop.record()["subscriptions"][0]["recoverable"] is True
    renewal = f"notice:renewal:{sub['id']}:{period_end}"
    assert steps_store.get(account_id, renewal) is None

    from chalicelib.processors.registry import gateway_for
    from chalicelib.selfservice.service import SelfService
    from chalicelib.store import accounts

    account = accounts.get(account_id)
    portal = SelfService(account, shop.record()["id"], gateway_for(account, "paypal"),
                         processor="paypal")
    assert portal.can_keep(shop.record()["subscriptions"][0])
    _, outcome = _run(steps_store.get(account_id, pending_cancel.step_id(sub["id"], period_end)))
    assert outcome.status == "done" and outcome.result["cancelled"] is True, outcome.result
    assert shop.at_paypal()["status"] == "CANCELLED"

    def shown() -> dict:
        return shop.record()["subscriptions"][0]

    for _ in ("after our cancel", "after PayPal's CANCELLED webhook"):
        sub = shown()
        assert sub["status"] == "canceling", sub
        assert sub["cancel_at"] == sub["current_period_end"] == _iso(period_end)
        assert sub["next_billing_at"] is None and sub["canceled_at"]
        # PayPal has ended it: it cannot be kept any more (the portal offers no "keep").
        assert sub["recoverable"] is False
        overview, _ = records.get_overview(account_id, shop.record()["id"], 5)
        assert overview["subscriptions"][0]["status"] == "canceling"
        assert not portal.can_keep(overview["subscriptions"][0])
        if not shop.deliver_paypals_webhooks():
            break
    # The record page offers cancelling the rest now, not recovering it.
    from dashboard_helpers import staff_sign_in
    from portal_helpers import SENDER_DOMAIN, PortalClient, text

    from chalicelib.staff import service as staff

    stack.verify_sender(SENDER_DOMAIN)  # the shop's support address sends the sign-in mail
    owner = f"owner-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(account_id, owner, "owner")
    root = f"/dashboard/{account['slug']}"
    c = PortalClient(app_client.http)
    staff_sign_in(c, root, owner, sent_emails)
    page = text(c.get(f"{root}/customers/{shop.record()['id']}"))
    assert f"/subscriptions/{sub['id']}/cancel?at=now" in page
    assert f"/subscriptions/{sub['id']}/recover" not in page
    # Once the period has ended it shows canceled, the stored overview too.
    after = datetime.fromtimestamp(period_end + 1, UTC)
    assert subscription_status(shown(), after) == "canceled"
    assert subscription_status(overview["subscriptions"][0], after) == "canceled"
    assert subscription_status(shown(), after - timedelta(seconds=2)) == "canceling"

    # PayPal bills the next cycle anyway: refunded, and no renewal notice for it.
    txn = stub.call("POST", f"/_stub/bill/{shop.story.sub_id}", {})
    shop.sales.add(txn["id"])
    assert "PAYMENT.SALE.COMPLETED" in shop.deliver_paypals_webhooks()
    late = _payment_of(shop.record(), txn["id"])
    step = steps_store.get(account_id, late_payments.step_id(late["id"]))
    assert step is not None
    _, outcome = _run(step)
    assert outcome.result["refunded"] is True, outcome.result
    assert _payment_of(shop.record(), txn["id"])["refunded"] == 1000
    assert shown()["status"] == "canceling" and shown()["cancel_at"] == _iso(period_end)
    next_end = shop.at_paypal()["billing_info"]["next_billing_time"]
    next_end = int(datetime.fromisoformat(next_end.replace("Z", "+00:00")).timestamp())
    assert steps_store.get(account_id, f"notice:renewal:{sub['id']}:{next_end}") is None


def test_a_refund_the_other_caller_is_still_making_runs_again_and_a_refusal_fails(monkeypatch):
    """The pending cancel and the late payment's step refund one payment with one key: the
    second, finding the first still at it, raises (its step runs again) rather than
    failing; a definite refusal is a False (the step fails, logged)."""
    from chalicelib.actions import refunds
    from chalicelib.actions.service import InProgress
    from chalicelib.errors import Conflict
    from chalicelib.selfservice import late_payments

    def raising(exc):
        def refund(self, *args, **kwargs):
            assert self.ctx.idempotency_key == late_payments.refund_key("pay_1")
            raise exc
        return refund

    monkeypatch.setattr(refunds.Refunds, "refund", raising(InProgress("still at it")))
    with pytest.raises(InProgress):
        late_payments.refund_in_full("acct_1", "cst_1", "pay_1", late_payments.ACTOR)
    monkeypatch.setattr(refunds.Refunds, "refund",
                        raising(Conflict("Nothing remains.", code="nothing_to_refund")))
    assert late_payments.refund_in_full("acct_1", "cst_1", "pay_1", late_payments.ACTOR) is False
