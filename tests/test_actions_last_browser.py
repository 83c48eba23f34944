"""Update billing, a lost dispute's repayments (record one, send a link for the rest, paid
through the Stripe stand-in) and merging two records, in a real browser (headless
Chromium, Playwright) against the app under `chalice local` (issue 11). Customers are
seeded at localstripe, their events delivered in process (customer_action_helpers); the
dispute's customer by signed events as Stripe sends them. After each action the record
page, the customer's portal (or mail) and the processor's state agree.

One shop and an owner's signed-in browser context serve the whole module (each test acts
on objects of its own: Coffee, the dispute's customer, a second customer to merge)."""
from __future__ import annotations

import re
import secrets
from urllib.parse import urlencode, urlsplit

import pytest
import requests
import stripe
from app_fixtures import app_client  # noqa: F401
from browser_helpers import browser, needs_chromium, new_context, staff_sign_in  # noqa: F401
from customer_action_helpers import another_customer, deliver_events, seeded_shop
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    PortalClient,
    ask_link,
    link_and_code,
    mails_to,
    path_of,
    portal_settings,
    sign_in,
    text,
    wait_for,
)
from test_dashboard_browser import _axe

pytestmark = [needs_chromium, pytest.mark.usefixtures("portal_settings")]


@pytest.fixture(scope="module")
def world(app_client, stack):  # noqa: F811
    from chalicelib.staff import service as staff

    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_url})
    shop = seeded_shop(app_client, stack, client)
    owner = f"owner-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(shop.account_id, owner, "owner")
    root = f"/dashboard/{shop.shop.slug}"
    return {"shop": shop, "owner": owner, "root": root,
            "record_url": f"{root}/customers/{shop.customer_id()}"}


@pytest.fixture(scope="module")
def owner_page(browser, app_server, world, stack):  # noqa: F811
    """A page of the owner's signed-in browser context (kept for the module)."""
    context = new_context(browser, app_server)
    page = context.new_page()
    staff_sign_in(page, world["root"], world["owner"], stack.sent_emails)
    yield page
    context.close()


def _at_stripe(stack, path: str) -> dict:
    """An object as the Stripe stand-in (devstack's shim in front of localstripe) holds it."""
    return requests.get(f"{stack.stripe_api_url}{path}", timeout=10,
                        headers={"Authorization": "Bearer sk_test_portal"}).json()


# --- update billing ------------------------------------------------------------------------

def test_update_billing_mails_a_link_to_the_subscriptions_card_page(
        owner_page, world, browser, app_server, stack, sent_emails):  # noqa: F811
    from playwright.sync_api import expect

    from chalicelib.activity import service as activity

    shop, page = world["shop"], owner_page
    coffee = shop.sub(shop.subscription)
    card_before = _at_stripe(stack, f"/v1/subscriptions/{shop.subscription}")
    before = len(mails_to(sent_emails, shop.email))
    page.goto(world["record_url"])
    page.locator(f"#sub-actions-{coffee['id']}").get_by_role(
        "button", name=re.compile("^Update billing")).click()
    expect(page.locator(".alert-ok")).to_contain_text("A sign-in link is on its way")
    expect(page.locator(".alert-ok")).to_contain_text("card page of this subscription")
    mails = wait_for(lambda: mails_to(sent_emails, shop.email), lambda m: len(m) > before,
                     what="the update billing mail")
    assert len(mails) == before + 1  # once
    link, _ = link_and_code(mails[-1])
    assert f"next=subscriptions/{coffee['id']}" in link

    # The customer follows it in a browser of their own: signed in, on that card page.
    context = new_context(browser, app_server)
    customer = context.new_page()
    try:
        customer.goto(path_of(link))
        customer.get_by_role("button", name="Continue to your account").click()
        expect(customer).to_have_url(re.compile(
            rf"{re.escape(shop.root)}/subscriptions/{coffee['id']}#card-h$"))
        expect(customer.locator("#card-h")).to_have_text("Card for this subscription")
        expect(customer.locator("h1")).to_contain_text("Coffee")
        assert _axe(customer) == [], "the portal's card page the link lands on"
        # The link works once.
        assert customer.goto(path_of(link)).status == 410
    finally:
        context.close()
    # Staff typed no card: the processor's subscription is as it was; the log says who sent it.
    after = _at_stripe(stack, f"/v1/subscriptions/{shop.subscription}")
    assert (after["status"], after.get("default_payment_method")) == (
        card_before["status"], card_before.get("default_payment_method"))
    sent, _ = activity.list(shop.account_id, limit=20,
                            action_prefix="customer.update_billing_link_sent")
    assert [(e["actor_email"], e["details"]["subscription_id"]) for e in sent] == [
        (world["owner"], coffee["id"])]


# --- chargeback repayment ------------------------------------------------------------------

def _lost_dispute(shop, email: str, amount: int) -> tuple[str, str]:
    """A customer of the shop whose payment's dispute was lost, by signed events."""
    from stripe_events import Stream

    s = Stream("lst" + secrets.token_hex(4))
    cus = s.customer(email, "Disputed Person")
    pi, charge = s.one_time(cus, amount, currency="eur", email=email)
    s.dispute(pi, charge, amount, status="lost", type_="charge.dispute.closed", currency="eur")
    merchant = shop.shop.merchant
    merchant.deliver_until_applied(s.events)
    customer_id = merchant.records_by_email()[email]["id"]
    [dispute] = merchant.get_json(f"/api/v1/customers/{customer_id}")["disputes"]
    assert dispute["status"] == "lost"
    return customer_id, dispute["id"]


def test_record_part_of_a_lost_dispute_then_a_link_for_the_rest_paid(
        owner_page, world, stack, sent_emails):
    from playwright.sync_api import expect

    from chalicelib.store import repayments

    shop, page = world["shop"], owner_page
    email = f"disputed-{secrets.token_hex(4)}@example.com"
    customer_id, dispute_id = _lost_dispute(shop, email, 4000)
    page.goto(f"{world['root']}/customers/{customer_id}/history")
    page.get_by_role("link", name="Repayments of the dispute of €40.00").click()
    expect(page.locator("h1")).to_have_text("Repayments of a lost dispute")
    expect(page.locator("#remaining")).to_have_text("€40.00")
    assert _axe(page) == [], "the dispute's repayments page"

    page.get_by_label("Amount (EUR), at most €40.00").fill("15.00")
    page.get_by_label("How it was paid (optional)").fill("bank transfer")
    page.get_by_role("button", name="Record the repayment").click()
    expect(page.locator(".alert-ok")).to_contain_text("The repayment is recorded.")
    expect(page.locator("#repaid")).to_have_text("€15.00")
    expect(page.locator("#remaining")).to_have_text("€25.00")
    expect(page.locator("table")).to_contain_text("bank transfer")

    before = len(mails_to(sent_emails, email))
    expect(page.locator("#send-h")).to_have_text("Send a repayment link")
    page.get_by_role("button", name="Send the repayment link").click()
    expect(page.locator(".alert-ok")).to_contain_text(
        "The repayment link was e-mailed to the customer.")
    url = page.locator("#repayment-link-url").get_attribute("href")
    expect(page.locator("#link-h + p")).to_contain_text("for €25.00; not paid yet")
    expect(page.locator("tr.repayment-link")).to_have_attribute("data-status", "open")
    expect(page.get_by_role("button", name="Send the repayment link")).to_have_count(0)

    # At the Stripe stand-in: an active link for what remains, the one the customer got.
    [row] = [r for r in repayments.list_for(shop.account_id, dispute_id) if r["kind"] == "link"]
    plink = row["link_id"].partition(":")[2]
    at_stripe = _at_stripe(stack, f"/v1/payment_links/{plink}")
    assert at_stripe["active"] is True and at_stripe["url"] == url
    assert at_stripe["metadata"]["dispute_id"] == dispute_id
    items = _at_stripe(stack, f"/v1/payment_links/{plink}/line_items")
    assert [(i["amount_total"], i["currency"]) for i in items["data"]] == [(2500, "eur")]
    mails = mails_to(sent_emails, email)
    assert len(mails) == before + 1 and url in mails[-1]["body"]

    # The customer pays it at the stand-in; its checkout.session.completed reaches the app.
    paid = requests.post(f"{stack.stripe_api_url}/_shim/payment_links/{plink}/pay",
                         data={"email": email, "name": "Disputed Person"}, timeout=10)
    assert paid.status_code == 200, paid.text
    assert shop.shop.merchant.deliver(paid.json()).status_code == 200
    page.reload()
    expect(page.locator("#repaid")).to_have_text("€40.00")
    expect(page.locator("#remaining")).to_have_text("€0.00")
    expect(page.locator("tr.repayment-link")).to_have_attribute("data-status", "paid")
    expect(page.locator("#link-h")).to_have_count(0)
    expect(page.locator("#record-h, #send-h")).to_have_count(0)
    # Paid once: the stand-in takes no second payment on it.
    assert requests.post(f"{stack.stripe_api_url}/_shim/payment_links/{plink}/pay",
                         data={"email": email}, timeout=10).status_code == 400


# --- merge ---------------------------------------------------------------------------------

def test_changing_the_e_mail_to_anothers_offers_merge_into_one_record(
        owner_page, world, app_client, sent_emails):  # noqa: F811
    from playwright.sync_api import expect

    from chalicelib.records import service as records
    from chalicelib.store.customers import find_by_email

    shop, page = world["shop"], owner_page
    other = another_customer(shop, "Second Record")
    other_id, kept_id = other.customer_id(), shop.customer_id()
    assert other_id != kept_id
    subscriptions = {s["processor_ref"] for s in shop.record()["subscriptions"]} | {
        s["processor_ref"] for s in other.record()["subscriptions"]}
    payments = {p["id"] for p in shop.record()["payments"]} | {
        p["id"] for p in other.record()["payments"]}

    page.goto(world["record_url"])
    page.get_by_role("link", name="Edit customer details").click()
    page.get_by_label("E-mail address").fill(other.email)
    page.get_by_role("button", name="Save the details").click()
    problem = page.locator(".alert-bad")
    expect(problem).to_contain_text("Another customer record already has this e-mail address")
    expect(page.locator("#taken-link")).to_have_attribute(
        "href", f"{world['root']}/customers/{other_id}")
    assert _axe(page) == [], "the edit page's e-mail conflict offering the merge"
    # Nothing changed yet: at the processor or here.
    assert shop.client.v1.customers.retrieve(shop.customer).email == shop.email
    assert find_by_email(shop.account_id, records.normalize_email(other.email)) == other_id

    page.get_by_role("button", name="Merge that record into this one").click()
    # (No step-up code: merging is for owners and admins, as changing the e-mail is.)
    expect(page.locator(".alert-ok")).to_contain_text("The other record is merged into this one.")
    expect(page).to_have_url(re.compile(rf"/customers/{kept_id}/edit\?done=merged$"))

    # One record holds both customers' subscriptions and payments.
    merged = shop.record()
    assert {s["processor_ref"] for s in merged["subscriptions"]} >= subscriptions
    assert {p["id"] for p in merged["payments"]} >= payments
    assert merged["email"] == shop.email
    assert records.get_record(shop.account_id, other_id) is None
    # The other e-mail finds no record, here or in the dashboard's search.
    assert find_by_email(shop.account_id, records.normalize_email(other.email)) is None
    page.goto(f"{world['root']}/customers?{urlencode({'q': other.email})}")
    expect(page.locator("#search-summary")).to_have_text(f"No customer found for “{other.email}”.")
    # Its Stripe customer's id opens the kept record.
    page.goto(f"{world['root']}/customers?{urlencode({'q': other.customer})}")
    expect(page).to_have_url(re.compile(rf"/customers/{kept_id}$"))
    # localstripe's customers carry the kept e-mail; their next events reach this record.
    for cus in (shop.customer, other.customer):
        assert shop.client.v1.customers.retrieve(cus).email == shop.email
    deliver_events(shop)
    assert records.find_by_processor_id(shop.account_id, "stripe", other.customer) == kept_id
    page.goto(world["record_url"])
    for ref in subscriptions:
        sub = next(s for s in merged["subscriptions"] if s["processor_ref"] == ref)
        expect(page.locator(f"#sub-{sub['id']}")).to_be_visible()
    # The portal: the kept e-mail signs in to both customers' subscriptions; the other's
    # address gets no sign-in link.
    c = PortalClient(app_client.http)
    sign_in(c, shop.shop, shop.email, sent_emails)
    portal = text(c.get(f"{shop.root}/"))
    for ref in subscriptions:
        sub = next(s for s in merged["subscriptions"] if s["processor_ref"] == ref)
        assert f"/subscriptions/{sub['id']}" in portal, ref
    before = len(mails_to(sent_emails, other.email))
    assert ask_link(PortalClient(app_client.http), shop.shop, other.email).status_code == 200
    assert len(mails_to(sent_emails, other.email)) == before
    assert urlsplit(page.url).path == world["record_url"]
