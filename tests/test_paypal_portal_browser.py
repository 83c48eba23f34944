"""A PayPal subscription in the portal, in headless Chromium against the app under `chalice
local` and devstack's PayPal stand-in: the customer sees the missed payment and PayPal as
the payment method (a link to PayPal's automatic payments page, no card forms), pays the
outstanding balance with "Pay now", cancels at the end of the period and keeps the
subscription after all; PayPal's own state agrees at each step."""
from __future__ import annotations

import pytest
from app_fixtures import app_client  # noqa: F401
from browser_helpers import browser, needs_chromium, new_context  # noqa: F401 - browser is a fixture
from portal_helpers import latest_link_and_code
from test_paypal_portal import PayPalShop
from test_paypal_webhooks import PayPalStub

pytestmark = needs_chromium


@pytest.fixture
def page(browser, app_server):  # noqa: F811
    context = new_context(browser, app_server)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def test_pay_now_cancel_and_keep_a_paypal_subscription(page, app_client, stack, sent_emails):  # noqa: F811
    from playwright.sync_api import expect

    shop = PayPalShop(app_client, stack, PayPalStub(stack.paypal.url))
    root = shop.shop.root
    page.goto(f"{root}/")
    page.get_by_label("E-mail address").fill(shop.email)
    page.get_by_role("button", name="E-mail me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    link, _ = latest_link_and_code(sent_emails, shop.email)
    page.goto(link)
    page.get_by_role("button", name="Continue to your account").click()

    page.get_by_role("link", name="Gold plan").first.click()
    expect(page.get_by_role("heading", name="Gold plan")).to_be_visible()
    manage = page.get_by_role("link", name="Manage your payment method in PayPal")
    expect(manage).to_have_attribute("href", "https://www.sandbox.paypal.com/myaccount/autopay/")
    expect(page.get_by_role("link", name="Add a card")).to_have_count(0)
    expect(page.get_by_role("radio")).to_have_count(0)
    alert = page.locator("section[aria-labelledby=missed-h]")
    expect(alert).to_contain_text("Pay the outstanding $10.00")

    page.get_by_role("button", name="Pay now").click()
    expect(page.get_by_role("status")).to_contain_text("Your payment went through")
    expect(page.locator("section[aria-labelledby=missed-h]")).to_have_count(0)
    assert shop.at_paypal()["billing_info"]["outstanding_balance"]["value"] == "0.00"

    page.get_by_role("link", name="Cancel subscription").click()
    page.get_by_role("button", name="Cancel subscription").click()
    expect(page.get_by_role("status")).to_contain_text("Your subscription is canceled")
    assert shop.at_paypal()["status"] == "ACTIVE"  # kept by us until 48 h before billing

    page.get_by_role("button", name="Keep my subscription").click()
    expect(page.get_by_role("status")).to_contain_text("Your subscription continues")
    assert shop.record()["subscriptions"][0]["status"] != "canceling"
