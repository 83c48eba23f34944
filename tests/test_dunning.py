"""Dunning on a fake clock against localstripe's failing card (4000000000000341: attaches,
then every charge fails): a failed renewal starts it (a webhook fact → the reaction's
step), the sweep retries on the schedule and mails, a new card in the portal pays every
open invoice, the recovered e-mail goes; the other branch reaches the final action; the
"processor" mode never charges; a sweep that dies after the charge charges nothing more.

Charges are counted at devstack's Stripe proxy (every invoice payment that reached
localstripe), e-mails in moto's SES. Webhooks are delivered in-process (Chalice's test
client), signed as Stripe signs them; the clock of the sweeps is an argument.
"""
from __future__ import annotations

import contextlib
import json
import secrets
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from app_fixtures import Merchant, app_client  # noqa: F401
from portal_helpers import CARD_DECLINES, CARD_OK, attach_card
from stripe_events import Stream

from chalicelib.accounts.service import create_account
from chalicelib.domain.events import Ref
from chalicelib.dunning import settings as dunning_settings
from chalicelib.processors.stripe.gateway import StripeGateway
from chalicelib.scheduler import service as scheduler
from chalicelib.selfservice.service import SelfService, card_id
from chalicelib.store import customers as customers_store
from chalicelib.store import dunning as dunning_store
from chalicelib.store import steps as steps_store
from chalicelib.timeutil import iso

pytestmark = pytest.mark.usefixtures("table_of_its_own")
KEY = "sk_test_dunning"


def shim_payments(stripe_shim: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{stripe_shim}/_shim/invoice_payments", timeout=10) as r:
        return json.load(r)


def mails_to(sent_emails, address: str) -> list[dict]:
    return [m for m in sent_emails() if address in (m.get("destinations") or {}).get(
        "ToAddresses", m.get("destinations") or [])]


def sweep_until_idle(at: datetime) -> list[dict]:
    """Sweep at ``at`` until nothing more is due (steps a sweep plans for now run too)."""
    out = []
    for _ in range(6):
        counts = scheduler.sweep(at)
        out.append(counts)
        if not counts["claimed"]:
            break
    return out


class Failing:
    """One merchant and a customer at localstripe whose renewal failed: an open invoice,
    its subscription, and the webhooks (customer, subscription, invoice.payment_failed)
    delivered to the app."""

    def __init__(self, app_client, stripe_client, stripe_shim, mode: str,  # noqa: F811
                 schedule: list[int], **settings):
        secret = f"whsec_{secrets.token_hex(12)}"
        created = create_account(name=f"Dun {secrets.token_hex(3)}",
                                 support_email="billing@example.com", stripe_secret_key=KEY,
                                 stripe_webhook_secrets=[secret])
        self.account = created.account
        self.account_id = self.account["account_id"]
        dunning_settings.update(self.account_id, {"mode": mode, "schedule_days": schedule,
                                                  **settings}, iso(datetime.now(UTC)))
        self.merchant = Merchant(app_client, self.account_id, created.api_key, [secret])
        self.client = stripe_client
        self.shim = stripe_shim
        self.email = f"dun-{secrets.token_hex(4)}@example.com"
        customer = stripe_client.v1.customers.create(params={"email": self.email,
                                                             "name": "Dana Dunning"})
        self.customer = customer.id
        bad = attach_card(stripe_client, customer.id, CARD_DECLINES)
        stripe_client.v1.customers.update(customer.id, params={
            "invoice_settings": {"default_payment_method": bad}})
        plan = stripe_client.v1.plans.create(params={
            "amount": 1500, "currency": "eur", "interval": "month",
            "product": {"name": "Coffee"}})
        with contextlib.suppress(stripe.CardError):
            stripe_client.v1.subscriptions.create(params={
                "customer": customer.id, "items": [{"plan": plan.id}]})
        self.invoice = next(i for i in stripe_client.v1.invoices.list(
            params={"customer": customer.id}).data if i.status == "open")
        self.subscription = self.invoice.subscription
        stream = Stream(secrets.token_hex(3), start=int(time.time()) - 600)
        stream.customer(self.email, "Dana Dunning", cid=customer.id)
        stream.subscription(customer.id, 1500, currency="eur", status="past_due",
                            sid=self.subscription, nickname="Coffee")
        stream.invoice(customer.id, self.subscription, 1500, type_="invoice.payment_failed",
                       currency="eur", email=self.email, inv=self.invoice.id)
        self.events = stream.events
        self.merchant.deliver_until_applied(self.events)
        self.customer_id = customers_store.find_by_email(self.account_id, self.email)
        assert self.customer_id
        self.invoice_ref = f"stripe:{self.invoice.id}"

    def state(self) -> dict:
        found = dunning_store.get_state(self.account_id, self.invoice_ref)
        return found.data if found else {}

    def paid_at_stripe(self) -> bool:
        return self.client.v1.invoices.retrieve(self.invoice.id).status == "paid"

    def auto_advance(self):
        """As Stripe reports it (through devstack's proxy, which keeps it for localstripe)."""
        via_proxy = stripe.StripeClient(KEY, base_addresses={"api": self.shim})
        return via_proxy.v1.invoices.retrieve(self.invoice.id).to_dict().get("auto_advance")

    def charges(self) -> int:
        return shim_payments(self.shim).get(self.invoice.id, 0)


def test_a_failed_renewal_is_retried_and_a_new_card_in_the_portal_pays_it(
        app_client, stripe_client, stripe_shim, sent_emails):  # noqa: F811
    shop = Failing(app_client, stripe_client, stripe_shim, "ours", [1, 3, 7, 14])
    # Stripe delivers the failure again: no second dunning, no second e-mail.
    shop.merchant.deliver_until_applied(shop.events[-1:])
    t0 = datetime.now(UTC) + timedelta(seconds=5)

    sweep_until_idle(t0)
    state = shop.state()
    assert state["status"] == "active" and state["mode"] == "ours"
    assert state["next_attempt_at"] == iso(t0 + timedelta(days=1))
    assert shop.charges() == 0  # nothing charged before the first retry is due
    failed = mails_to(sent_emails, shop.email)
    assert [m["subject"] for m in failed] == [
        f"Your payment to {shop.account['name']} did not go through"]
    assert "try again on" in failed[0]["body"] and "/portal/" in failed[0]["body"]
    # We retry, so Stripe must not: its automatic collection of the invoice is off.
    assert shop.auto_advance() is False

    # Not before it is due.
    sweep_until_idle(t0 + timedelta(hours=23))
    assert shop.charges() == 0
    # Attempt 1, on day 1: declined; the next on day 3; an e-mail says so.
    sweep_until_idle(t0 + timedelta(days=1, minutes=1))
    assert shop.charges() == 1
    state = shop.state()
    assert [(a["n"], a["outcome"]) for a in state["attempts"]] == [(1, "declined")]
    assert state["next_attempt_at"] == iso(t0 + timedelta(days=3))
    assert len(mails_to(sent_emails, shop.email)) == 2
    # The record page shows the attempts and the pending retry.
    from chalicelib.dashboard.service import record_page

    shown = record_page(shop.account_id, shop.customer_id)["dunning"][shop.invoice_ref]
    assert [a["outcome"] for a in shown["attempts"]] == ["declined"]
    assert shown["next_attempt_at"] == iso(t0 + timedelta(days=3))
    # So does the customer's portal, beside "Pay now".
    from chalicelib.portal import service as portal
    from chalicelib.records import service as records

    who = portal.SignedIn(portal.Portal(shop.account_id, shop.account["slug"],
                                        portal.brand_of(shop.account), "en", shop.account),
                          shop.customer_id, "csrf", "session")
    sub_id = records.get_record(shop.account_id, shop.customer_id)["subscriptions"][0]["id"]
    page = portal.subscription(who, sub_id, with_cards=False)
    assert page["dunning"][shop.invoice_ref]["next_attempt_at"] == shown["next_attempt_at"]

    # The customer adds a card in the portal and picks it: every open invoice is paid.
    good = attach_card(stripe_client, shop.customer, CARD_OK)
    service = SelfService(shop.account, shop.customer_id,
                          StripeGateway(KEY, api_base=stripe_shim))
    sub = next(s for s in service.record()["subscriptions"])
    service.set_card(sub["id"], card_id(shop.account_id, Ref("stripe", good)), for_all=False)
    assert shop.paid_at_stripe() and shop.charges() == 2

    # The payment's fact (recorded by the portal) closes the dunning: recovered e-mail,
    # and the retry of day 3 never runs.
    sweep_until_idle(t0 + timedelta(days=1, minutes=2))
    state = shop.state()
    assert state["status"] == "recovered" and state["channel"] == "customer"
    subjects = [m["subject"] for m in mails_to(sent_emails, shop.email)]
    assert subjects[-1] == f"Your payment to {shop.account['name']} went through"
    assert len(subjects) == 3
    sweep_until_idle(t0 + timedelta(days=20))
    assert shop.charges() == 2 and len(mails_to(sent_emails, shop.email)) == 3


def test_the_schedule_runs_out_into_the_final_action(
        app_client, stripe_client, stripe_shim, sent_emails):  # noqa: F811
    shop = Failing(app_client, stripe_client, stripe_shim, "ours", [1, 2],
                   final_action="cancel")
    t0 = datetime.now(UTC) + timedelta(seconds=5)
    sweep_until_idle(t0)
    sweep_until_idle(t0 + timedelta(days=1, minutes=1))  # attempt 1 fails: final warning
    subjects = [m["subject"] for m in mails_to(sent_emails, shop.email)]
    assert subjects[-1] == f"Last attempt: your payment to {shop.account['name']}"
    sweep_until_idle(t0 + timedelta(days=2, minutes=1))  # attempt 2 fails: the end
    assert shop.charges() == 2
    state = shop.state()
    assert state["status"] == "exhausted"
    assert [a["outcome"] for a in state["attempts"]] == ["declined", "declined"]
    assert stripe_client.v1.subscriptions.retrieve(shop.subscription).status == "canceled"
    subjects = [m["subject"] for m in mails_to(sent_emails, shop.email)]
    assert subjects[-1] == f"Your subscription to {shop.account['name']} has ended"
    assert len(subjects) == 3  # failed, final warning, ended
    alerts = [m for m in mails_to(sent_emails, "billing@example.com")
              if shop.email in m["body"]]
    assert len(alerts) == 1
    events = [e for e in customers_store.list_outbox(shop.account_id)
              if e["type"] == "dunning.exhausted"]
    assert len(events) == 1 and events[0]["data"]["final_action"] == "cancel"
    # Nothing more happens afterwards.
    sweep_until_idle(t0 + timedelta(days=40))
    assert shop.charges() == 2 and len(mails_to(sent_emails, shop.email)) == 3


def test_processor_mode_only_notifies_and_never_charges(
        app_client, stripe_client, stripe_shim, sent_emails):  # noqa: F811
    shop = Failing(app_client, stripe_client, stripe_shim, "processor", [1, 3, 7, 14])
    t0 = datetime.now(UTC) + timedelta(seconds=5)
    for days in (0, 1, 3, 7, 14, 30):
        sweep_until_idle(t0 + timedelta(days=days, minutes=1))
    assert shop.charges() == 0
    assert shop.state()["mode"] == "processor"
    assert steps_store.get(shop.account_id, f"dunning:{shop.invoice_ref}:retry") is None
    assert len(mails_to(sent_emails, shop.email)) == 1
    assert shop.auto_advance() is not False


def test_a_sweep_that_dies_after_the_charge_does_not_charge_again(
        app_client, stripe_client, stripe_shim, sent_emails, monkeypatch):  # noqa: F811
    shop = Failing(app_client, stripe_client, stripe_shim, "ours", [1, 3])
    t0 = datetime.now(UTC) + timedelta(seconds=5)
    sweep_until_idle(t0)
    real_write = scheduler.write

    def dies_once(step, outcome, now):
        if step.kind == "dunning.retry":
            monkeypatch.setattr(scheduler, "write", real_write)
            raise RuntimeError("the Lambda timed out here")
        return real_write(step, outcome, now)

    monkeypatch.setattr(scheduler, "write", dies_once)
    at = t0 + timedelta(days=1, minutes=1)
    with pytest.raises(RuntimeError):
        scheduler.sweep(at)
    assert shop.charges() == 1 and shop.state()["attempts"] == []
    # The next sweeps, after the claim's lease: same attempt, same key, no new charge.
    sweep_until_idle(at + timedelta(minutes=11))
    assert shop.charges() == 1
    state = shop.state()
    assert [(a["n"], a["outcome"]) for a in state["attempts"]] == [(1, "declined")]


def test_settings_through_the_merchant_api(app_client):  # noqa: F811
    created = create_account(name=f"Dun {secrets.token_hex(3)}",
                             support_email="billing@example.com", stripe_secret_key=KEY,
                             stripe_webhook_secrets=["whsec_x"])
    merchant = Merchant(app_client, created.account["account_id"], created.api_key, ["whsec_x"])
    assert merchant.get_json("/api/v1/settings/dunning")["mode"] == "processor"
    headers = {"Authorization": f"Bearer {created.api_key}", "Content-Type": "application/json"}

    def put(body: dict):
        return app_client.http.put("/api/v1/settings/dunning", headers=headers,
                                   body=json.dumps(body))

    answer = put({"mode": "ours", "schedule_days": [2, 5, 9], "final_action": "unpaid"})
    assert answer.status_code == 200, answer.body
    assert json.loads(answer.body)["schedule_days"] == [2, 5, 9]
    for bad in ({"mode": "both"}, {"schedule_days": [3, 1]}, {"schedule_days": [0]},
                {"schedule_days": list(range(1, 11))}, {"final_action": "delete"},
                {"emails": {"recovered": "yes"}}, {"alert_email": "not-an-address"},
                {"unknown": 1}):
        assert put(bad).status_code == 400, bad
    settings = merchant.get_json("/api/v1/settings/dunning")
    assert (settings["mode"], settings["schedule_days"], settings["final_action"]) == (
        "ours", [2, 5, 9], "unpaid")
    # The change is on the account's record; the refused ones wrote nothing there.
    from chalicelib.activity import service as activity

    logged, _ = activity.list(merchant.account_id, action_prefix="settings.")
    assert [(e["action"], e["actor"], e["details"]["changed"]) for e in logged] == [
        ("settings.dunning_updated", "api", ["final_action", "mode", "schedule_days"])]
    other = create_account(name="Other", support_email="b@example.com",
                           stripe_secret_key=KEY, stripe_webhook_secrets=["whsec_y"])
    assert Merchant(app_client, other.account["account_id"], other.api_key, []).get_json(
        "/api/v1/settings/dunning")["mode"] == "processor"


def test_card_network_caps_hold_under_any_schedule():
    """Property: whatever the times and attempts asked for, a card is never counted more
    than 2 times in any 24 hours nor 8 in any 30 days (the counter's own answer)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = datetime(2031, 1, 1, tzinfo=UTC)

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.integers(min_value=0, max_value=60 * 24 * 45), min_size=1,
                    max_size=30))
    def check(minutes):
        card = f"card_{secrets.token_hex(6)}"
        counted = []
        for i, m in enumerate(sorted(minutes)):
            at = base + timedelta(minutes=m)
            if dunning_store.count_retry("acct_caps", card, f"in_{i}:1", at, 2, 8) is None:
                counted.append(at)
                # The same attempt again (a run after a dead sweep): never counted twice.
                assert dunning_store.count_retry("acct_caps", card, f"in_{i}:1", at, 2,
                                                 8) is None
        for at in counted:
            assert sum(1 for c in counted if at <= c < at + timedelta(days=1)) <= 2
            assert sum(1 for c in counted if at <= c < at + timedelta(days=30)) <= 8
        assert len(dunning_store.card_retries("acct_caps", card)) <= 8

    check()
