"""The refund form in a real browser (headless Chromium, Playwright) against the app under
`chalice local`, on a customer seeded through localstripe's own webhooks: the record page's
payment history leads to the form, the refund is made, and the page, the customer's
portal and localstripe agree on what was refunded and what remains."""
from __future__ import annotations

import secrets

import pytest
from app_fixtures import app_client  # noqa: F401
from browser_helpers import browser, needs_chromium, new_context, staff_sign_in  # noqa: F401
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    make_stripe_shop,
    portal_settings,
    sign_in,
    text,
)
from test_refunds import World

pytestmark = [needs_chromium, pytest.mark.usefixtures("portal_settings")]


def test_refund_on_the_record_page(browser, app_client, stack, app_server, stripe_client,  # noqa: F811
                                   sent_emails):
    from playwright.sync_api import expect

    from chalicelib.staff import service as staff

    world = World(make_stripe_shop(app_client, stack, app_server, stripe_client), stripe_client)
    owner = f"owner-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(world.account_id, owner, "owner")
    root = f"/dashboard/{world.shop.shop.slug}"
    context = new_context(browser, app_server)
    page = context.new_page()
    try:
        staff_sign_in(page, root, owner, sent_emails)
        page.goto(f"{root}/customers/{world.customer_id}/history")
        page.get_by_role("link", name="Refund €100.00").first.click()
        expect(page.locator("h1")).to_contain_text("Refund")
        expect(page.locator("#remaining")).to_have_text("€100.00")
        expect(page.get_by_text("Stripe's block lists")).to_be_visible()
        page.get_by_label("Amount (EUR)").fill("25.00")
        page.get_by_label("Duplicate payment").check()
        page.get_by_label("Note (for your team; optional)").fill("charged twice")
        page.get_by_role("button", name="Refund").click()
        expect(page.get_by_role("status")).to_contain_text("Refund of €25.00 made")
        expect(page.get_by_role("status")).to_contain_text("€75.00")
        expect(page.locator("#remaining")).to_have_text("€75.00")
        expect(page.get_by_role("table", name="Refunds of this payment")).to_contain_text("duplicate")
    finally:
        context.close()
    made = world.localstripe_refunds()
    assert [r["amount"] for r in made] == [2500]
    assert world.stripe.v1.charges.retrieve(world.charge).amount_refunded == 2500
    # The customer's portal shows the refund at once.
    c = PortalClient(app_client.http)
    sign_in(c, world.shop.shop, world.shop.email, sent_emails)
    record = world.shop.record()
    order = next(o for o in record["orders"] if world.payment["id"] in (o.get("payment_ids") or []))
    shown = text(c.get(f"{world.shop.shop.root}/orders/{order['id']}"))
    assert "refunded €25.00" in shown
