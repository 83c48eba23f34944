"""The portal for a PayPal subscription, against devstack's PayPal stand-in: status, price,
next billing and the missed payment; "Pay now" captures the outstanding balance at PayPal
(no card to choose); the card section is "Manage your payment method in PayPal" (PayPal's
automatic payments page); cancel at period end is kept by us and "Keep my subscription"
takes it back, PayPal's subscription running all along; receipts of PayPal payments."""
from __future__ import annotations

import io
import re
import secrets

import pytest
from app_fixtures import app_client  # noqa: F401
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    make_shop,
    portal_settings,
    sign_in,
    text,
)
from test_paypal_webhooks import PayPalStory, PayPalStub

ATTEMPT_RE = re.compile(r'name="attempt" value="([^"]+)"')

pytestmark = pytest.mark.usefixtures("portal_settings")


@pytest.fixture(scope="module")
def stub(stack) -> PayPalStub:
    return PayPalStub(stack.paypal.url)


class PayPalShop:
    """A shop whose customer pays a subscription with PayPal: active, one sale paid, one
    payment missed (USD 10 outstanding at PayPal)."""

    def __init__(self, client, stack, stub: PayPalStub):
        from chalicelib.accounts.service import set_paypal

        self.shop = make_shop(client, stack)
        self.stub = stub
        self.webhook_id = "WH" + secrets.token_hex(8).upper()
        set_paypal(self.shop.merchant.account_id, client_id="AZportal" + secrets.token_hex(6),
                   client_secret="EJportal" + secrets.token_hex(10),
                   webhook_id=self.webhook_id, mode="sandbox")
        self.email = f"pp.portal.{secrets.token_hex(4)}@example.com"
        story = self.story = PayPalStory(self.email)
        story.subscription("BILLING.SUBSCRIPTION.ACTIVATED")
        self.sale_id = story.sale("10.00")
        story.subscription("BILLING.SUBSCRIPTION.PAYMENT.FAILED", outstanding="10.00",
                           failed="2025-01-02T10:30:00Z")
        stub.put("subscriptions", story.sub_id, story.subscription_object(
            outstanding="10.00", failed="2025-01-02T10:30:00Z"))
        for event in story.events:
            assert self.deliver(event).status_code == 200

    def deliver(self, event: dict):
        body, headers = self.stub.sign(event, self.webhook_id)
        return self.shop.merchant.client.http.post(
            f"/webhooks/paypal/{self.shop.merchant.account_id}", body=body, headers=headers)

    def record(self) -> dict:
        from chalicelib.records.service import get_record, normalize_email
        from chalicelib.store.customers import find_by_email

        customer = find_by_email(self.shop.merchant.account_id, normalize_email(self.email))
        return get_record(self.shop.merchant.account_id, customer, consistent=True)

    def at_paypal(self) -> dict:
        from chalicelib.processors.registry import gateway_for
        from chalicelib.store import accounts

        return gateway_for(accounts.get(self.shop.merchant.account_id), "paypal").subscription(
            self.story.sub_id)


@pytest.fixture(scope="module")
def paypal_shop(app_client, stack, stub) -> PayPalShop:  # noqa: F811
    return PayPalShop(app_client, stack, stub)


def test_a_paypal_subscription_in_the_portal(paypal_shop, app_client, sent_emails):  # noqa: F811
    shop = paypal_shop.shop
    c = PortalClient(app_client.http)
    sign_in(c, shop, paypal_shop.email, sent_emails)
    sub = paypal_shop.record()["subscriptions"][0]
    page = c.get(f"{shop.root}/subscriptions/{sub['id']}")
    assert page.status_code == 200, text(page)
    html = text(page)
    assert "Gold plan" in html and "Past due" in html and "A payment did not go through" in html
    assert "https://www.sandbox.paypal.com/myaccount/autopay/" in html
    assert "Manage your payment method in PayPal" in html
    assert "/cards/new" not in html and "Add a card" not in html  # no card forms
    assert "Pay the outstanding" in html and 'type="radio"' not in html
    # Nothing read from Stripe for a PayPal-only customer.
    overview = c.get(f"{shop.root}/")
    assert overview.status_code == 200 and "Pay the outstanding" in text(overview)
    assert "your payment method in PayPal can be charged" in text(overview)

    # Pay now: PayPal captures the outstanding balance; the missed payment is recovered.
    [attempt] = ATTEMPT_RE.findall(html)
    [missed] = [p for p in paypal_shop.record()["payments"] if p["status"] == "failed"]
    paid = c.post(f"{shop.root}/payments/{missed['id']}/pay", {"attempt": attempt,
                                                                "from": "subscription"})
    assert paid.status_code == 303 and paid.headers["Location"].endswith("?done=paid"), text(paid)
    assert paypal_shop.at_paypal()["billing_info"]["outstanding_balance"]["value"] == "0.00"
    captures = [r for r in paypal_shop.stub.served()
                if r["path"] == f"/v1/billing/subscriptions/{paypal_shop.story.sub_id}/capture"]
    assert len(captures) == 1
    # The same form sent again pays nothing twice (PayPal-Request-Id, then nothing owed).
    again = c.post(f"{shop.root}/payments/{missed['id']}/pay", {"attempt": attempt,
                                                                 "from": "subscription"})
    assert again.status_code == 303, text(again)
    assert len([r for r in paypal_shop.stub.served() if r["path"] == captures[0]["path"]]) <= 2
    assert paypal_shop.at_paypal()["billing_info"]["outstanding_balance"]["value"] == "0.00"
    record = paypal_shop.record()
    assert [p["status"] for p in record["payments"] if p["id"] == missed["id"]] == ["recovered"]

    # Cancel at period end: kept by us, PayPal still bills until the due step; keep it.
    form = c.get(f"{shop.root}/subscriptions/{sub['id']}/cancel")
    assert form.status_code == 200, text(form)
    r = c.post(f"{shop.root}/subscriptions/{sub['id']}/cancel", {"reason": "too dear"})
    assert r.status_code == 303 and r.headers["Location"].endswith("?done=canceling"), text(r)
    assert paypal_shop.record()["subscriptions"][0]["status"] == "canceling"
    assert paypal_shop.at_paypal()["status"] == "ACTIVE"
    page = c.get(f"{shop.root}/subscriptions/{sub['id']}")
    assert "Keep my subscription" in text(page)
    r = c.post(f"{shop.root}/subscriptions/{sub['id']}/keep", {})
    assert r.status_code == 303 and r.headers["Location"].endswith("?done=kept"), text(r)
    assert paypal_shop.record()["subscriptions"][0]["status"] != "canceling"

    # A receipt for the PayPal sale.
    [sale] = [p for p in paypal_shop.record()["payments"] if p["status"] == "succeeded"]
    receipt = c.get(f"{shop.root}/receipts/{sale['id']}")
    assert receipt.status_code == 200, text(receipt)
    assert "10.00" in text(receipt)


def test_make_devs_paypal_customer(app_client, app_server, stack):  # noqa: F811
    """devstack.seed.seed_paypal against the app under `chalice local`: the stand-in signs
    and sends the events, and its refund API sends PayPal's refund webhook itself."""
    from app_fixtures import make_merchant
    from portal_helpers import wait_for

    from devstack import seed, servers

    merchant = make_merchant(app_client)
    ids = seed.seed_paypal(stack.paypal.url, app_server, merchant.account_id,
                           servers.paypal_dev_ca(), out=io.StringIO())

    def record():
        found = [c for c in merchant.customers() if c["email"] == "frida@example.com"]
        return merchant.get_json(f"/api/v1/customers/{found[0]['id']}") if found else None

    found = wait_for(record, lambda r: r and any(p.get("refunded") for p in r["payments"]),
                     what="the PayPal customer with the refund")
    assert found["name"] == "Frida Kahlo"
    [sub] = found["subscriptions"]
    assert sub["processor_ref"] == f"paypal:{ids['paypal_subscription']}"
    assert (sub["status"], sub["missed_payments"], sub["amount"]) == ("past_due", 1, 1500)
    [order] = [p for p in found["payments"] if p["amount"] == 3000]
    assert order["status"] == "succeeded" and order["refunded"] == 500
    assert found["stats"]["lifetime_value"] == {"usd": 1500 + 3000 - 500}
