"""Cancel at period end, then recover, in a real browser (headless Chromium, Playwright)
against the app under `chalice local`, on a customer seeded through localstripe's own
webhooks: the record page's subscription actions lead to the confirmation pages; afterwards
the record page, the customer's portal and localstripe's subscription agree."""
from __future__ import annotations

import secrets

import pytest
import requests
from app_fixtures import app_client  # noqa: F401
from browser_helpers import browser, needs_chromium, staff_sign_in  # noqa: F401
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    make_stripe_shop,
    portal_settings,
    sign_in,
    text,
)
from test_dashboard_browser import _axe

pytestmark = [needs_chromium, pytest.mark.usefixtures("portal_settings")]


def _at_stripe(stack, sub_id: str) -> dict:
    return requests.get(f"{stack.stripe_api_url}/v1/subscriptions/{sub_id}", timeout=10,
                        headers={"Authorization": "Bearer sk_test_portal"}).json()


def _portal_page(app_client, shop, sent_emails, sub_id: str) -> str:  # noqa: F811
    c = PortalClient(app_client.http)
    sign_in(c, shop.shop, shop.email, sent_emails)
    return text(c.get(f"{shop.shop.root}/subscriptions/{sub_id}"))


def test_cancel_at_period_end_then_recover_on_the_record_page(
        browser, app_client, stack, app_server, stripe_client, sent_emails):  # noqa: F811
    from playwright.sync_api import expect

    from chalicelib.staff import service as staff

    shop = make_stripe_shop(app_client, stack, app_server, stripe_client)
    support = f"support-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(shop.account_id, support, "support")
    root = f"/dashboard/{shop.shop.slug}"
    sub = shop.sub(shop.subscription)
    record_url = f"{root}/customers/{shop.customer_id()}"
    context = browser.new_context(base_url=app_server)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        staff_sign_in(page, root, support, sent_emails)
        page.goto(record_url)
        actions = page.locator(f"#sub-actions-{sub['id']}")
        expect(actions.get_by_role("link", name="Cancel now")).to_have_count(0)  # support
        actions.get_by_role("link", name="Cancel at period end").click()
        expect(page.locator("h1")).to_contain_text("Cancel at period end")
        expect(page.locator("#what")).to_contain_text("Keep active until the next rebill date")
        assert _axe(page) == [], "cancel page"
        page.get_by_label("Reason (kept in the activity log; optional)").fill("moving abroad")
        page.get_by_role("button", name="Cancel at period end").click()
        expect(page.locator(".alert-ok")).to_contain_text(
            "stays active until the next rebill date")
        expect(page.locator(f"#sub-{sub['id']}")).to_contain_text("Canceling")
        assert _axe(page) == [], "record page with the actions"
        assert _at_stripe(stack, shop.subscription)["cancel_at_period_end"] is True
        assert "This subscription ends" in _portal_page(app_client, shop, sent_emails, sub["id"])

        page.locator(f"#sub-actions-{sub['id']}").get_by_role("link", name="Recover").click()
        expect(page.locator("#what")).to_contain_text("is taken back")
        assert _axe(page) == [], "recover page"
        page.get_by_role("button", name="Recover the subscription").click()
        expect(page.locator(".alert-ok")).to_contain_text("scheduled cancellation is taken back")
        expect(page.locator(f"#sub-{sub['id']}")).to_contain_text("Active")
    finally:
        context.close()
    assert _at_stripe(stack, shop.subscription)["cancel_at_period_end"] is False
    assert shop.sub(shop.subscription)["status"] == "active"
    portal = _portal_page(app_client, shop, sent_emails, sub["id"])
    assert "This subscription ends" not in portal and "Cancel subscription" in portal
