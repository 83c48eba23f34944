"""Change plan through the price picker, pause until a date and resume, the Radar toggle of
the settings page, and a PayPal subscription's record page offering only what PayPal can
do, in a real browser (headless Chromium, Playwright) against the app under `chalice
local`: customers seeded through localstripe's own webhooks (and devstack's PayPal
stand-in); afterwards the record page, the customer's portal and the processor agree."""
from __future__ import annotations

import datetime as dt
import secrets

import pytest
import requests
from app_fixtures import app_client  # noqa: F401
from browser_helpers import browser, needs_chromium, new_context, staff_sign_in  # noqa: F401
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


def _staff(account_id: str, role: str) -> str:
    from chalicelib.staff import service as staff

    email = f"{role}-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(account_id, email, role)
    return email


def test_change_plan_through_the_price_picker(browser, app_client, stack, app_server,  # noqa: F811
                                              stripe_client, sent_emails):
    from playwright.sync_api import expect

    shop = make_stripe_shop(app_client, stack, app_server, stripe_client)
    name = f"Espresso {secrets.token_hex(3)}"
    espresso = stripe_client.v1.plans.create(params={
        "amount": 1500, "currency": "eur", "interval": "month", "product": {"name": name}})
    dollars = stripe_client.v1.plans.create(params={
        "amount": 1500, "currency": "usd", "interval": "month",
        "product": {"name": "Espresso in dollars"}})
    current = _at_stripe(stack, shop.subscription)["items"]["data"][0]["plan"]["id"]
    root = f"/dashboard/{shop.shop.slug}"
    sub = shop.sub(shop.subscription)
    context = new_context(browser, app_server)
    page = context.new_page()
    try:
        staff_sign_in(page, root, _staff(shop.account_id, "admin"), sent_emails)
        page.goto(f"{root}/customers/{shop.customer_id()}")
        page.locator(f"#sub-actions-{sub['id']}").get_by_role("link", name="Change plan").click()
        picker = page.get_by_label("New price")
        expect(picker.locator(f"option[value='{espresso.id}']")).to_have_text(
            f"{name} – €15.00 / month")
        mine = picker.locator(f"option[value='{current}']")
        expect(mine).to_contain_text("(current price)")
        expect(mine).to_be_disabled()
        expect(picker.locator(f"option[value='{dollars.id}']")).to_have_count(0)  # not EUR
        expect(page.locator("#prices-problem")).to_have_count(0)
        assert _axe(page) == [], "plan page"

        picker.select_option(espresso.id)
        expect(page.get_by_label("Prorate: charge or credit the difference for the rest of "
                                 "the current period")).to_be_checked()
        page.get_by_role("button", name="Preview").click()
        expect(page.locator("#what")).to_contain_text("The processor will charge")
        expect(page.get_by_label("New price")).to_have_value(espresso.id)  # kept
        assert _axe(page) == [], "plan page with the preview"
        page.get_by_role("button", name="Change the plan").click()
        expect(page.locator(".alert-ok")).to_contain_text("plan is changed")
        expect(page.locator(f"#sub-{sub['id']}")).to_contain_text("€15.00")
    finally:
        context.close()
    assert _at_stripe(stack, shop.subscription)["items"]["data"][0]["plan"]["id"] == espresso.id
    assert "€15.00" in _portal_page(app_client, shop, sent_emails, sub["id"])


def test_pause_until_a_date_then_resume(browser, app_client, stack, app_server,  # noqa: F811
                                        stripe_client, sent_emails):
    from playwright.sync_api import expect

    shop = make_stripe_shop(app_client, stack, app_server, stripe_client)
    root = f"/dashboard/{shop.shop.slug}"
    sub = shop.sub(shop.subscription)
    record_url = f"{root}/customers/{shop.customer_id()}"
    today = dt.datetime.now(dt.UTC).date()  # the account's time zone: UTC (not set)
    resume_day = today + dt.timedelta(days=10)
    context = new_context(browser, app_server)
    page = context.new_page()
    try:
        staff_sign_in(page, root, _staff(shop.account_id, "admin"), sent_emails)
        page.goto(record_url)
        page.locator(f"#sub-actions-{sub['id']}").get_by_role(
            "link", name="Pause collection").click()
        date_field = page.get_by_label("Resume automatically on (optional)")
        expect(date_field).to_have_attribute("min", (today + dt.timedelta(days=1)).isoformat())
        expect(page.locator("#resumes-on-hint")).to_contain_text("(UTC)")
        assert _axe(page) == [], "pause page"

        # Today is refused on the server too (the browser's own check taken away).
        date_field.evaluate("e => e.removeAttribute('min')")
        date_field.fill(today.isoformat())
        page.get_by_role("button", name="Pause collection").click()
        expect(page.get_by_role("alert")).to_contain_text(
            f"The resume date must be after today ({today.isoformat()} in UTC)")
        assert _at_stripe(stack, shop.subscription)["pause_collection"] is None

        page.get_by_label("Resume automatically on (optional)").fill(resume_day.isoformat())
        page.get_by_label("Keep the invoices as drafts to collect later").check()
        page.get_by_role("button", name="Pause collection").click()
        expect(page.locator(".alert-ok")).to_contain_text("resumes by itself on the date")
        expect(page.locator(f"#sub-{sub['id']}")).to_contain_text("Paused")
        midnight = dt.datetime.combine(resume_day, dt.time(0), tzinfo=dt.UTC)
        assert _at_stripe(stack, shop.subscription)["pause_collection"] == {
            "behavior": "keep_as_draft", "resumes_at": int(midnight.timestamp())}
        assert "Paused" in _portal_page(app_client, shop, sent_emails, sub["id"])

        page.locator(f"#sub-actions-{sub['id']}").get_by_role(
            "link", name="Resume collection").click()
        page.get_by_role("button", name="Resume collection").click()
        expect(page.locator(".alert-ok")).to_contain_text("Collection of the subscription is "
                                                          "resumed")
        expect(page.locator(f"#sub-{sub['id']}")).to_contain_text("Active")
    finally:
        context.close()
    assert _at_stripe(stack, shop.subscription)["pause_collection"] is None
    assert "Paused" not in _portal_page(app_client, shop, sent_emails, sub["id"])


def test_radar_toggle_on_the_settings_page(browser, app_client, stack, app_server,  # noqa: F811
                                           sent_emails):
    from playwright.sync_api import expect
    from portal_helpers import make_shop

    from chalicelib.activity import service as activity
    from chalicelib.blocks import service as blocks
    from chalicelib.store import accounts

    merchant = make_shop(app_client, stack).merchant
    account = accounts.get(merchant.account_id)
    root = f"/dashboard/{account['slug']}"
    context = new_context(browser, app_server)
    page = context.new_page()
    try:
        staff_sign_in(page, root, _staff(merchant.account_id, "admin"), sent_emails)
        page.get_by_role("link", name="Settings").click()
        toggle = page.get_by_label("Also put blocked customer details on Stripe Radar's "
                                   "block lists")
        expect(toggle).not_to_be_checked()
        expect(page.locator("#radar-hint")).to_contain_text("Radar value list")
        expect(page.locator("#color")).to_have_count(0)  # branding stays the owner's
        assert _axe(page) == [], "settings page of an admin"
        toggle.check()
        page.get_by_role("button", name="Save the Radar setting").click()
        expect(page.get_by_role("status")).to_contain_text("Blocks and unblocks made from now")
        expect(page.get_by_label("Also put blocked customer details on Stripe Radar's "
                                 "block lists")).to_be_checked()
        assert blocks.push_to_radar(accounts.get(merchant.account_id)) is True
        # A forged form (no CSRF token) changes nothing.
        forged = page.request.post(f"{app_server}{root}/settings/radar", form={})
        assert forged.status == 403
        assert blocks.push_to_radar(accounts.get(merchant.account_id)) is True
    finally:
        context.close()
    logged, _ = activity.list(merchant.account_id, action_prefix="settings.updated")
    assert logged[0]["details"] == {"changed": {"blocks.push_to_radar": True}}


def test_a_paypal_subscription_is_offered_only_what_paypal_does(browser, app_client,  # noqa: F811
                                                                 stack, app_server,
                                                                 sent_emails):
    from playwright.sync_api import expect
    from test_paypal_portal import PayPalShop
    from test_paypal_webhooks import PayPalStub

    shop = PayPalShop(app_client, stack, PayPalStub(stack.paypal.url))
    account_id = shop.shop.merchant.account_id
    record = shop.record()
    sub = record["subscriptions"][0]
    failed = next(p for p in record["payments"] if p["status"] == "failed")
    root = f"/dashboard/{shop.shop.slug}"
    record_url = f"{root}/customers/{record['customer_id']}"
    context = new_context(browser, app_server)
    page = context.new_page()
    try:
        staff_sign_in(page, root, _staff(account_id, "owner"), sent_emails)
        page.goto(record_url)
        actions = page.locator(f"#sub-actions-{sub['id']}")
        expect(actions.get_by_role("link", name="Cancel now")).to_be_visible()
        expect(actions.get_by_role("link", name="Pause collection")).to_be_visible()
        expect(actions.get_by_role("link", name="Change plan")).to_have_count(0)
        assert page.request.get(f"{app_server}{record_url}/subscriptions/{sub['id']}/plan"
                                ).status == 422

        actions.get_by_role("link", name="Cancel now").click()
        expect(page.locator("h1")).to_contain_text("Cancel now")
        expect(page.locator("#prorate")).to_have_count(0)
        expect(page.get_by_role("checkbox")).to_have_count(0)

        page.goto(f"{record_url}/subscriptions/{sub['id']}/pause")
        expect(page.locator("#while-paused")).to_contain_text("Nothing is billed")
        expect(page.get_by_role("radio")).to_have_count(0)
        expect(page.locator("input[name=resumes_on]")).to_have_count(0)
        expect(page.locator("input[name=behavior]")).to_have_value("void")
        assert _axe(page) == [], "PayPal pause page"

        page.goto(f"{record_url}/payments/{failed['id']}/retry")
        expect(page.get_by_text("The outstanding balance is captured from the payment "
                                "method the customer chose in PayPal.")).to_be_visible()
        expect(page.get_by_role("radio")).to_have_count(0)
    finally:
        context.close()
    assert shop.at_paypal()["status"] == "ACTIVE"  # nothing was sent
