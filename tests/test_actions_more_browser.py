"""Cancel now (also a scheduled cancellation), retry a failed payment, and staff notes, in a
real browser (headless Chromium, Playwright) against the app under `chalice local`, on a
customer seeded through localstripe's own webhooks (issue 11). After each action the record
page, the customer's portal and localstripe's state agree; a note is shown as typed (markup
as text), and a read-only member's forged note is refused and writes nothing.

One shop, its customer and an owner's signed-in browser context serve the whole module
(each test acts on objects of its own: a subscription, the failed invoice, the notes)."""
from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

import pytest
import requests
import stripe
from app_fixtures import app_client, make_merchant  # noqa: F401
from browser_helpers import browser, needs_chromium, new_context, staff_sign_in  # noqa: F401
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    CARD_OTHER,
    TOKEN_RE,
    PortalClient,
    fail_an_invoice,
    link_and_code,
    mails_to,
    make_stripe_shop,
    path_of,
    portal_settings,
    sign_in,
    text,
    wait_for,
)
from test_actions_subscriptions_browser import _at_stripe
from test_dashboard_browser import _axe

pytestmark = [needs_chromium, pytest.mark.usefixtures("portal_settings")]
CARD_NEEDS_AUTHENTICATION = "4000002500003155"  # Stripe's 3D Secure test card


@pytest.fixture(scope="module")
def world(app_client, stack, app_server):  # noqa: F811
    """The shop (Coffee, the course, a Tea subscription whose invoice failed) and its
    owner and read-only staff members."""
    from chalicelib.staff import service as staff

    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_url})
    shop = make_stripe_shop(app_client, stack, app_server, client)
    failed = fail_an_invoice(shop)
    owner = f"owner-{secrets.token_hex(4)}@shop.test"
    reader = f"reader-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(shop.account_id, owner, "owner")
    staff.add_staff(shop.account_id, reader, "read_only")
    root = f"/dashboard/{shop.shop.slug}"
    return {"shop": shop, "failed": failed, "owner": owner, "reader": reader, "root": root,
            "record_url": f"{root}/customers/{shop.customer_id()}"}


@pytest.fixture(scope="module")
def owner_page(browser, app_server, world, stack):  # noqa: F811
    """A page of the owner's signed-in browser context (kept for the module)."""
    context = new_context(browser, app_server)
    page = context.new_page()
    staff_sign_in(page, world["root"], world["owner"], stack.sent_emails)
    yield page
    context.close()


def _subscribe(shop, product: str) -> dict:
    """One more monthly subscription of the customer at localstripe; the record's copy."""
    plan = shop.client.v1.plans.create(params={
        "amount": 500, "currency": "eur", "interval": "month", "nickname": product,
        "product": {"name": product}})
    sub_id = shop.client.v1.subscriptions.create(params={
        "customer": shop.customer, "items": [{"plan": plan.id}]}).id
    wait_for(shop.record, lambda r: any(s["processor_ref"] == f"stripe:{sub_id}"
                                        for s in r["subscriptions"]), what=product)
    return shop.sub(sub_id)


def _another_customer_payment(shop) -> str:
    """The payment id of another customer of the same shop (seeded by signed webhooks)."""
    from stripe_events import Stream

    from chalicelib.records.service import get_record, normalize_email
    from chalicelib.store.customers import find_by_email

    email = f"other-{secrets.token_hex(4)}@example.com"
    stream = Stream("oth" + secrets.token_hex(4))
    stream.one_time(stream.customer(email, "Other Customer"), 700)
    shop.shop.merchant.deliver_until_applied(stream.events)
    other = find_by_email(shop.account_id, normalize_email(email))
    return get_record(shop.account_id, other)["payments"][0]["id"]


def _invoice_at_stripe(stack, invoice_id: str) -> dict:
    return requests.get(f"{stack.stripe_api_url}/v1/invoices/{invoice_id}", timeout=10,
                        headers={"Authorization": "Bearer sk_test_portal"}).json()


# --- cancel now ----------------------------------------------------------------------------

def test_cancel_now_and_a_scheduled_cancellation_now(owner_page, world, app_client, stack,  # noqa: F811
                                                     sent_emails):
    from playwright.sync_api import expect

    shop, page = world["shop"], owner_page
    coffee = shop.sub(shop.subscription)
    page.goto(world["record_url"])
    page.locator(f"#sub-actions-{coffee['id']}").get_by_role("link", name="Cancel now").click()
    expect(page.locator("h1")).to_contain_text("Cancel now")
    expect(page.locator("#what")).to_contain_text("ends now")
    expect(page.locator("#what")).not_to_contain_text("scheduled cancellation")
    assert _axe(page) == [], "cancel now page"
    page.get_by_label("Reason (kept in the activity log; optional)").fill("asked by phone")
    page.get_by_role("button", name="Cancel now").click()
    expect(page.locator(".alert-ok")).to_contain_text("The subscription is cancelled.")
    expect(page.locator(f"#sub-{coffee['id']}")).to_contain_text("Canceled")
    expect(page.locator(f"#sub-actions-{coffee['id']}")).to_have_count(0)
    assert _at_stripe(stack, shop.subscription)["status"] == "canceled"
    customer = PortalClient(app_client.http)
    sign_in(customer, shop.shop, shop.email, sent_emails)
    portal = text(customer.get(f"{shop.root}/subscriptions/{coffee['id']}"))
    assert "Canceled" in portal and "Cancel subscription" not in portal

    # A scheduled cancellation made now: at period end first, then "Cancel now".
    magazine = _subscribe(shop, "Magazine")
    page.goto(world["record_url"])
    actions = page.locator(f"#sub-actions-{magazine['id']}")
    actions.get_by_role("link", name="Cancel at period end").click()
    page.get_by_role("button", name="Cancel at period end").click()
    expect(page.locator(f"#sub-{magazine['id']}")).to_contain_text("Canceling")
    magazine_at_stripe = magazine["processor_ref"].split(":", 1)[1]
    assert _at_stripe(stack, magazine_at_stripe)["cancel_at_period_end"] is True
    actions.get_by_role("link", name="Cancel now").click()
    expect(page.locator("#what")).to_contain_text("its scheduled cancellation is made now")
    page.get_by_role("button", name="Cancel now").click()
    expect(page.locator(".alert-ok")).to_contain_text("The subscription is cancelled.")
    expect(page.locator(f"#sub-{magazine['id']}")).to_contain_text("Canceled")
    assert _at_stripe(stack, magazine_at_stripe)["status"] == "canceled"
    assert shop.sub(magazine_at_stripe)["status"] == "canceled"
    portal = text(customer.get(f"{shop.root}/subscriptions/{magazine['id']}"))
    assert "Canceled" in portal and "This subscription ends" not in portal


# --- retry a failed payment ------------------------------------------------------------------

def test_retry_declined_then_authentication_then_paid_with_another_card(
        owner_page, world, app_client, stack, sent_emails):  # noqa: F811
    from playwright.sync_api import expect

    shop, page, failed = world["shop"], owner_page, world["failed"]
    payment = failed["payment"]
    # The card on file is the one that failed (fail_an_invoice put the good one back).
    shop.client.v1.customers.update(shop.customer, params={
        "invoice_settings": {"default_payment_method": failed["bad_card"]}})
    c = PortalClient(app_client.http)
    sign_in(c, shop.shop, shop.email, sent_emails)
    assert "A payment did not go through" in text(c.get(f"{shop.root}/"))

    page.goto(world["record_url"])
    page.get_by_role("link", name=re.compile(r"^Retry the payment of €8\.00")).click()
    expect(page.locator("h1")).to_contain_text("Retry the payment of €8.00")
    assert _axe(page) == [], "retry page"
    expect(page.get_by_label("The card on file")).to_be_checked()
    page.get_by_role("button", name="Retry the payment now").click()
    # The processor's reason (localstripe's, as Stripe words it).
    expect(page.locator("#outcome")).to_have_text("Declined: Your card was declined.")
    assert _invoice_at_stripe(stack, failed["invoice"])["status"] == "open"

    # A card whose bank asks for the customer's authentication: offer the payment link.
    shop.add_card(CARD_NEEDS_AUTHENTICATION)
    page.reload()
    page.get_by_label(re.compile("ending 3155")).check()
    page.get_by_role("button", name="Retry the payment now").click()
    expect(page.locator("#outcome")).to_contain_text("Needs the customer's authentication")
    assert _invoice_at_stripe(stack, failed["invoice"])["status"] == "open"
    before = len(mails_to(sent_emails, shop.email))
    page.get_by_role("button", name="E-mail the customer a link to pay it").click()
    expect(page.locator(".alert-ok")).to_contain_text("A sign-in link is on its way")
    tea = next(s for s in shop.record()["subscriptions"]
               if s["processor_ref"] == payment["subscription"])
    mails = wait_for(lambda: mails_to(sent_emails, shop.email), lambda m: len(m) > before,
                     what="the payment link mail")
    # The link lands the customer on that subscription, where they can pay it themselves
    # (their bank's confirmation runs in their own browser there).
    link, _ = link_and_code(mails[-1])
    assert f"next=subscriptions/{tea['id']}" in link
    follower = PortalClient(app_client.http)
    landing = follower.get(path_of(link))
    signed = follower.post(f"{shop.root}/link",
                           {"token": TOKEN_RE.search(text(landing)).group(1)})
    assert signed.status_code == 303, text(signed)
    assert urlsplit(signed.headers["Location"]).path == f"{shop.root}/subscriptions/{tea['id']}"
    pay_here = text(follower.get(f"{shop.root}/subscriptions/{tea['id']}"))
    assert "A payment did not go through" in pay_here and "Pay now" in pay_here

    # Another card of the customer's: paid.
    shop.add_card(CARD_OTHER)
    page.goto(f"{world['record_url']}/payments/{payment['id']}/retry")
    page.get_by_label(re.compile("ending 4444")).check()
    page.get_by_label("Note (for your team; optional)").fill("paid with the new card")
    page.get_by_role("button", name="Retry the payment now").click()
    expect(page.locator("#outcome")).to_contain_text("Paid: the payment of €8.00 went through.")
    expect(page.get_by_role("button", name="Retry the payment now")).to_have_count(0)
    assert _invoice_at_stripe(stack, failed["invoice"])["status"] == "paid"
    page.goto(world["record_url"])
    expect(page.get_by_role("link", name=re.compile(r"^Retry the payment of €8\.00"))) \
        .to_have_count(0)
    wait_for(shop.record, lambda r: r["stats"]["missed_payments"] == 0, what="paid on the record")
    assert "A payment did not go through" not in text(c.get(f"{shop.root}/"))


# --- notes -------------------------------------------------------------------------------------

def test_notes_on_the_customer_and_a_transaction_shown_as_text(owner_page, world, app_client,  # noqa: F811
                                                              sent_emails):
    from playwright.sync_api import expect

    from chalicelib.notes import service as notes

    shop, page = world["shop"], owner_page
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    marker = secrets.token_hex(4)
    on_customer = f"Called {marker}: <script>alert('customer')</script> & <b>bold</b>"
    page.goto(world["record_url"])
    page.get_by_label("Note about this customer (for your team)").fill(on_customer)
    assert _axe(page) == [], "record page with the note form"
    page.get_by_role("button", name="Add the note").click()
    timeline = page.locator("ol.timeline")
    expect(timeline).to_contain_text(on_customer)  # the markup shows as text
    expect(timeline.locator("script, b")).to_have_count(0)

    payment = next(p for p in shop.record()["payments"] if p["status"] == "succeeded")
    on_payment = f"Refund promised {marker} <script>alert('payment')</script>"
    page.goto(f"{world['record_url']}/transactions/{payment['id']}")
    page.get_by_label("Note about this transaction (for your team)").fill(on_payment)
    assert _axe(page) == [], "transaction page with the note form"
    page.get_by_role("button", name="Add the note").click()
    expect(page).to_have_url(re.compile(f"/transactions/{payment['id']}#notes-h$"))
    listed = page.locator("ul.notes")
    expect(listed).to_contain_text(on_payment)
    expect(listed).to_contain_text(world["owner"])
    expect(listed).not_to_contain_text(on_customer)  # only this transaction's notes
    expect(listed.locator("script")).to_have_count(0)
    page.goto(world["record_url"])  # the whole timeline, not only its notes
    expect(page.locator("ol.timeline")).to_contain_text(on_payment)
    expect(page.locator("ol.timeline")).to_contain_text(on_customer)
    assert dialogs == []

    # A note on a payment that is not this customer's (unknown, or another customer's):
    # 404, nothing written (a forged form; the page only offers its own payments).
    stranger = _another_customer_payment(shop)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    for on in (stranger, "pay_" + "a" * 24):
        action_id = page.locator("form.note-form input[name=action_id]").get_attribute("value")
        forged = page.request.post(f"{world['record_url']}/notes", max_redirects=0, form={
            "csrf": csrf, "action_id": action_id, "text": f"misplaced {marker}", "object": on})
        assert forged.status == 404, forged.text()
        page.reload()
    kept = notes.list_for(shop.account_id, shop.customer_id())
    assert [(n["text"], n["object_ref"]) for n in kept if marker in n["text"]] == [
        (on_payment, payment["id"]), (on_customer, None)]
    # Staff notes are for the team: the customer's portal never shows them.
    c = PortalClient(app_client.http)
    sign_in(c, shop.shop, shop.email, sent_emails)
    order = next(o for o in shop.record()["orders"] if payment["id"] in (o.get("payment_ids") or []))
    for path in ("/", "/orders", f"/orders/{order['id']}"):
        shown = c.get(f"{shop.root}{path}")
        assert shown.status_code == 200 and marker not in text(shown), path


def test_read_only_cannot_add_a_note_even_by_a_forged_post(browser, app_server, world,  # noqa: F811
                                                           sent_emails):
    from playwright.sync_api import expect

    from chalicelib.activity import service as activity
    from chalicelib.notes import service as notes

    shop = world["shop"]
    context = new_context(browser, app_server)
    page = context.new_page()
    try:
        staff_sign_in(page, world["root"], world["reader"], sent_emails)
        page.goto(world["record_url"])
        expect(page.locator("#timeline-h")).to_be_visible()
        expect(page.get_by_role("button", name="Add the note")).to_have_count(0)
        csrf = page.locator("input[name=csrf]").first.get_attribute("value")
        payment = shop.record()["payments"][0]
        for on in ("", payment["id"]):
            forged = page.request.post(
                f"{world['record_url']}/notes", max_redirects=0,
                form={"csrf": csrf, "action_id": f"act_{secrets.token_hex(8)}",
                      "text": "forged by read-only", "object": on})
            assert forged.status == 403, forged.text()
    finally:
        context.close()
    assert not [n for n in notes.list_for(shop.account_id, shop.customer_id())
                if "forged" in n["text"]]
    refused, _ = activity.list(shop.account_id, limit=50, action_prefix="staff.forbidden")
    assert sum(1 for e in refused if (e.get("details") or {}).get("permission") == "note") >= 2
