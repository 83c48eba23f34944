"""Edit a customer's details, then block all of them, in a real browser (headless Chromium,
Playwright) against the app under `chalice local`, on a customer seeded through localstripe:
the record page's links lead to the forms; afterwards the record page, localstripe's
customer (its name; the Radar value list of blocked e-mails) and the customer's portal (no
sign-in link for the blocked address) agree."""
from __future__ import annotations

import secrets

import pytest
import stripe
from app_fixtures import app_client  # noqa: F401
from browser_helpers import browser, needs_chromium, new_context, staff_sign_in  # noqa: F401
from customer_action_helpers import seeded_shop
from dashboard_helpers import STAFF_CODE_RE
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    ask_link,
    mails_to,
    portal_settings,
)
from test_dashboard_browser import _axe

pytestmark = [needs_chromium, pytest.mark.usefixtures("portal_settings")]


def _radar_emails(stack) -> list[str]:
    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_api_url})
    found = client.v1.radar.value_lists.list(params={"alias": "bp_blocked_emails"}).data
    return [i.value for i in client.v1.radar.value_list_items.list(
        params={"value_list": found[0].id}).data] if found else []


def test_edit_then_block_all_details_on_the_record_page(browser, app_client, stack,  # noqa: F811
                                                        app_server, sent_emails):
    from playwright.sync_api import expect

    from chalicelib.staff import service as staff
    from chalicelib.store import accounts

    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_url})
    shop = seeded_shop(app_client, stack, client)
    account = accounts.get(shop.account_id)
    accounts.update_settings(shop.account_id, {**(account.get("settings") or {}),
                                               "blocks": {"push_to_radar": True}})
    admin = f"admin-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(shop.account_id, admin, "admin")
    root = f"/dashboard/{shop.shop.slug}"
    record_url = f"{root}/customers/{shop.customer_id()}"
    context = new_context(browser, app_server)
    page = context.new_page()
    try:
        staff_sign_in(page, root, admin, sent_emails)
        page.goto(record_url)
        page.get_by_role("link", name="Edit customer details").click()
        expect(page.locator("h1")).to_contain_text("Edit details of")
        assert _axe(page) == [], "edit page"
        page.get_by_label("Name", exact=True).fill("Zofia Przeglądarka")
        page.get_by_label("Phone").fill("+48 111 222 333")
        page.get_by_role("button", name="Save the details").click()
        expect(page.locator(".alert-ok")).to_contain_text("changed at the processor and here")
        page.goto(record_url)
        expect(page.locator("#customer-h")).to_contain_text("Zofia Przeglądarka")
        assert client.v1.customers.retrieve(shop.customer).name == "Zofia Przeglądarka"

        page.get_by_role("link", name="Block or unblock customer details").click()
        assert _axe(page) == [], "block page"
        page.locator("#block-all").check()
        page.get_by_label("Reason (required; kept in the log)").fill("card testing")
        page.get_by_role("button", name="Block the chosen details", exact=True).click()
        expect(page.get_by_label("Confirmation code")).to_be_visible()
        mail = [m for m in mails_to(sent_emails, admin) if "Confirm a change" in m["body"]][-1]
        page.get_by_label("Confirmation code").fill(STAFF_CODE_RE.search(mail["body"]).group(1))
        page.get_by_role("button", name="Confirm: block the chosen details").click()
        expect(page.locator(".alert-ok")).to_contain_text("The chosen details are blocked.")
        page.goto(record_url)
        expect(page.locator(".record-head")).to_contain_text("Blocked customer details")
        expect(page.locator("#details-h + dl")).to_contain_text("Blocked")
        assert _axe(page) == [], "record page with blocks"
    finally:
        context.close()
    assert _radar_emails(stack) == [shop.email]
    before = len(mails_to(sent_emails, shop.email))
    assert ask_link(PortalClient(app_client.http), shop.shop, shop.email).status_code == 200
    assert len(mails_to(sent_emails, shop.email)) == before  # no sign-in link for it
