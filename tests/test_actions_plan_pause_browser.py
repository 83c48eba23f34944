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
    wait_for,
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


@pytest.fixture(scope="module")
def world(app_client, stack, app_server):  # noqa: F811
    """One Stripe shop (Coffee, the course) for the module; each test acts on objects of
    its own (the Coffee subscription, a Tea subscription, the settings)."""
    import stripe

    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_url})
    shop = make_stripe_shop(app_client, stack, app_server, client)
    root = f"/dashboard/{shop.shop.slug}"
    return {"shop": shop, "client": client, "root": root,
            "record_url": f"{root}/customers/{shop.customer_id()}"}


@pytest.fixture(scope="module")
def admin_page(browser, app_server, world, stack):  # noqa: F811
    """A page of an admin's signed-in browser context (kept for the module)."""
    context = new_context(browser, app_server)
    page = context.new_page()
    staff_sign_in(page, world["root"], _staff(world["shop"].account_id, "admin"),
                  stack.sent_emails)
    yield page
    context.close()


def _subscribe(shop, product: str) -> dict:
    """One more monthly EUR subscription of the customer at localstripe; the record's copy."""
    plan = shop.client.v1.plans.create(params={
        "amount": 800, "currency": "eur", "interval": "month", "nickname": product,
        "product": {"name": product}})
    sub_id = shop.client.v1.subscriptions.create(params={
        "customer": shop.customer, "items": [{"plan": plan.id}]}).id
    wait_for(shop.record, lambda r: any(s["processor_ref"] == f"stripe:{sub_id}"
                                        for s in r["subscriptions"]), what=product)
    return {"stripe_id": sub_id, **shop.sub(sub_id)}


def test_change_plan_through_the_price_picker(world, admin_page, app_client, stack,  # noqa: F811
                                              sent_emails):
    from playwright.sync_api import expect

    shop, page = world["shop"], admin_page
    name = f"Espresso {secrets.token_hex(3)}"
    espresso = world["client"].v1.plans.create(params={
        "amount": 1500, "currency": "eur", "interval": "month", "product": {"name": name}})
    dollars = world["client"].v1.plans.create(params={
        "amount": 1500, "currency": "usd", "interval": "month",
        "product": {"name": "Espresso in dollars"}})
    current = _at_stripe(stack, shop.subscription)["items"]["data"][0]["plan"]["id"]
    sub = shop.sub(shop.subscription)
    page.goto(world["record_url"])
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
    assert _at_stripe(stack, shop.subscription)["items"]["data"][0]["plan"]["id"] == espresso.id
    assert "€15.00" in _portal_page(app_client, shop, sent_emails, sub["id"])


def test_pause_until_a_date_then_resume(world, admin_page, app_client, stack,  # noqa: F811
                                        sent_emails):
    from playwright.sync_api import expect

    shop, page = world["shop"], admin_page
    sub = _subscribe(shop, f"Tea {secrets.token_hex(3)}")
    today = dt.datetime.now(dt.UTC).date()  # the account's time zone: UTC (not set)
    resume_day = today + dt.timedelta(days=10)
    page.goto(world["record_url"])
    page.locator(f"#sub-actions-{sub['id']}").get_by_role("link", name="Pause collection").click()
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
    assert _at_stripe(stack, sub["stripe_id"])["pause_collection"] is None

    page.get_by_label("Resume automatically on (optional)").fill(resume_day.isoformat())
    page.get_by_label("Keep the invoices as drafts to collect later").check()
    page.get_by_role("button", name="Pause collection").click()
    expect(page.locator(".alert-ok")).to_contain_text("resumes by itself on the date")
    expect(page.locator(f"#sub-{sub['id']}")).to_contain_text("Paused")
    midnight = dt.datetime.combine(resume_day, dt.time(0), tzinfo=dt.UTC)
    assert _at_stripe(stack, sub["stripe_id"])["pause_collection"] == {
        "behavior": "keep_as_draft", "resumes_at": int(midnight.timestamp())}
    assert "Paused" in _portal_page(app_client, shop, sent_emails, sub["id"])

    page.locator(f"#sub-actions-{sub['id']}").get_by_role("link", name="Resume collection").click()
    page.get_by_role("button", name="Resume collection").click()
    expect(page.locator(".alert-ok")).to_contain_text("Collection of the subscription is "
                                                      "resumed")
    expect(page.locator(f"#sub-{sub['id']}")).not_to_contain_text("Paused")
    assert _at_stripe(stack, sub["stripe_id"])["pause_collection"] is None
    assert "Paused" not in _portal_page(app_client, shop, sent_emails, sub["id"])


def test_radar_toggle_on_the_settings_page(world, admin_page, app_server):
    from playwright.sync_api import expect

    from chalicelib.activity import service as activity
    from chalicelib.blocks import service as blocks
    from chalicelib.store import accounts

    account_id, page = world["shop"].account_id, admin_page
    page.goto(world["root"] + "/customers")
    page.get_by_role("link", name="Settings").click()
    toggle = page.get_by_label("Also put blocked customer details on Stripe Radar's block lists")
    expect(toggle).not_to_be_checked()
    expect(page.locator("#radar-hint")).to_contain_text("Radar value list")
    expect(page.locator("#color")).to_have_count(0)  # branding stays the owner's
    assert _axe(page) == [], "settings page of an admin"
    toggle.check()
    page.get_by_role("button", name="Save the Radar setting").click()
    expect(page.get_by_role("status")).to_contain_text("Blocks and unblocks made from now")
    expect(page.get_by_label("Also put blocked customer details on Stripe Radar's block "
                             "lists")).to_be_checked()
    assert blocks.push_to_radar(accounts.get(account_id)) is True
    # A forged form (no CSRF token) changes nothing.
    forged = page.request.post(f"{app_server}{world['root']}/settings/radar", form={})
    assert forged.status == 403
    assert blocks.push_to_radar(accounts.get(account_id)) is True
    logged, _ = activity.list(account_id, action_prefix="settings.updated")
    assert logged[0]["details"] == {"changed": {"blocks.push_to_radar": True}}


def test_a_paypal_subscription_is_offered_only_what_paypal_does(browser, app_client,  # noqa: F811
                                                                 stack, app_server,
                                                                 sent_emails):
    from playwright.sync_api import expect
    from test_paypal_portal import PayPalShop
    from test_paypal_webhooks import PayPalStub

    from chalicelib.records.service import normalize_email
    from chalicelib.store.customers import find_by_email

    shop = PayPalShop(app_client, stack, PayPalStub(stack.paypal.url))
    account_id = shop.shop.merchant.account_id
    record = shop.record()
    sub = record["subscriptions"][0]
    failed = next(p for p in record["payments"] if p["status"] == "failed")
    root = f"/dashboard/{shop.shop.slug}"
    customer_id = find_by_email(account_id, normalize_email(shop.email))
    record_url = f"{root}/customers/{customer_id}"
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


def test_the_stripe_gateway_lists_prices_as_stripe_documents(stack):
    """``GET /v1/prices?active=true&type=recurring&currency=…&expand[]=data.product`` at
    the Stripe stand-in, page by page (``starting_after``), newest first; archived prices
    and other currencies left out."""
    import stripe

    from chalicelib.processors.stripe.gateway import StripeGateway

    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_url})
    tag = secrets.token_hex(3)
    made = [client.v1.plans.create(params={
        "amount": 1000 + i, "currency": "sek", "interval": "month",
        "product": {"name": f"Box {tag} {i}"}}) for i in range(3)]
    client.v1.plans.update(made[1].id, params={"active": False})
    client.v1.plans.create(params={"amount": 5, "currency": "nok", "interval": "month",
                                   "product": {"name": f"Box {tag} nok"}})
    listed = [p for p in StripeGateway("sk_test_portal", api_base=stack.stripe_api_url)
              .list_prices("SEK") if p.product and tag in p.product]
    assert [(p.price, p.product, p.amount, p.currency, p.interval, p.interval_count)
            for p in listed] == [(made[i].id, f"Box {tag} {i}", 1000 + i, "sek", "month", 1)
                                 for i in (2, 0)]

    headers = {"Authorization": "Bearer sk_test_portal"}
    url = f"{stack.stripe_api_url}/v1/prices"
    first = requests.get(url, params={"currency": "sek", "limit": 1, "expand[]": "data.product"},
                         headers=headers, timeout=10).json()
    assert first["object"] == "list" and first["has_more"] is True
    price = first["data"][0]
    assert price["object"] == "price" and price["type"] == "recurring"
    assert price["product"]["object"] == "product" and price["recurring"]["interval"] == "month"
    second = requests.get(url, params={"currency": "sek", "limit": 1,
                                       "starting_after": price["id"]},
                          headers=headers, timeout=10).json()
    assert second["data"][0]["id"] != price["id"]
    assert isinstance(second["data"][0]["product"], str)  # not expanded
    bad = requests.get(url, params={"colour": "red"}, headers=headers, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "colour"
    assert requests.get(url, params={"limit": 101}, headers=headers, timeout=10).status_code == 400
    assert requests.get(f"{url}/{made[0].id}", headers=headers, timeout=10).json()["unit_amount"] \
        == 1000


def test_the_radar_toggle_needs_stripe_and_an_admin(app_client, stack, sent_emails):  # noqa: F811
    """No Stripe, no toggle (and its POST is 409, nothing saved); support may not use it
    (403, logged as forbidden)."""
    from dashboard_helpers import signed_in_csrf
    from dashboard_helpers import staff_sign_in as sign_in_over_http

    from chalicelib.accounts.service import create_account
    from chalicelib.activity import service as activity
    from chalicelib.blocks import service as blocks
    from chalicelib.staff import service as staff
    from chalicelib.store import accounts

    stack.verify_sender("shop.test")
    account = create_account(name=f"Shop {secrets.token_hex(4)}", support_email="s@shop.test",
                             stripe_secret_key=None, stripe_webhook_secrets=[]).account
    root = f"/dashboard/{account['slug']}"
    admin, support = (f"{role}-{secrets.token_hex(4)}@shop.test" for role in ("a", "s"))
    staff.add_staff(account["account_id"], admin, "admin")
    staff.add_staff(account["account_id"], support, "support")
    c = PortalClient(app_client.http)
    sign_in_over_http(c, root, admin, sent_emails)
    page = c.get(f"{root}/settings")
    assert page.status_code == 200 and "push_to_radar" not in text(page)
    refused = c.post(f"{root}/settings/radar", {"push_to_radar": "1"}, csrf=signed_in_csrf(c))
    assert refused.status_code == 409, text(refused)
    assert blocks.push_to_radar(accounts.get(account["account_id"])) is False

    s = PortalClient(app_client.http)
    sign_in_over_http(s, root, support, sent_emails)
    assert s.get(f"{root}/settings").status_code == 403
    assert s.post(f"{root}/settings/radar", {"push_to_radar": "1"},
                  csrf=signed_in_csrf(s)).status_code == 403
    forbidden, _ = activity.list(account["account_id"], action_prefix="staff.forbidden")
    assert {i["details"]["permission"] for i in forbidden} == {"block"}


def test_the_resume_date_is_the_start_of_that_day_in_the_account_zone():
    from chalicelib.dashboard.action_routes_subscriptions import _resumes_at
    from chalicelib.errors import BadRequest

    today = dt.date(2026, 11, 29)
    berlin_midnight = dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.UTC)  # CET is UTC+1
    assert _resumes_at({"resumes_on": "2026-12-01"}, "Europe/Berlin", today) == \
        int(berlin_midnight.timestamp())
    assert _resumes_at({"resumes_on": " "}, "UTC", today) is None
    for bad in ("2026-11-29", "2026-11-01", "2026-02-30", "1.12.2026", "2026-12-01T00:00",
                "２０２６-12-01", "2028-11-29"):
        with pytest.raises(BadRequest):
            _resumes_at({"resumes_on": bad}, "UTC", today)


def test_the_price_id_is_typed_only_when_the_prices_cannot_be_loaded(world, app_client,  # noqa: F811
                                                                     sent_emails, monkeypatch):
    from dashboard_helpers import staff_sign_in as sign_in_over_http

    from chalicelib.processors.gateway import ProcessorUnavailable
    from chalicelib.processors.stripe.gateway import StripeGateway

    shop = world["shop"]
    url = f"{world['record_url']}/subscriptions/{shop.sub(shop.subscription)['id']}/plan"
    c = PortalClient(app_client.http)
    sign_in_over_http(c, world["root"], _staff(shop.account_id, "admin"), sent_emails)
    listed = text(c.get(url))
    assert '<select id="plan-price" name="price"' in listed and "prices-problem" not in listed

    def unavailable(self, currency):
        raise ProcessorUnavailable("The payment service did not answer.")

    monkeypatch.setattr(StripeGateway, "list_prices", unavailable)
    typed = c.get(url)
    assert typed.status_code == 200
    body = text(typed)
    assert '<input id="plan-price" name="price" required' in body and "<select" not in body
    assert "could not be loaded from the payment processor: enter the new price&#39;s id" in body
