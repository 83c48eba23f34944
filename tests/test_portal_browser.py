"""The portal in a real browser: Debian's Chromium, headless, driven by Playwright, against
the app under `chalice local` (app_server), with mail read back from moto's SES."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from app_fixtures import app_client  # noqa: F401
from browser_helpers import browser, needs_chromium  # noqa: F401 - browser is a fixture
from portal_helpers import latest_link_and_code, make_shop, pdf_text, seed_customer

pytestmark = needs_chromium


@pytest.fixture
def page(browser, app_server):  # noqa: F811
    context = browser.new_context(base_url=app_server, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.csp_violations = []
    page.on("console", lambda m: page.csp_violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    try:
        yield page
    finally:
        context.close()




def _ask_for_link(page, shop, email: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{shop.root}/")
    expect(page.get_by_role("heading", name=f"Sign in to {shop.name}")).to_be_visible()
    page.get_by_label("E-mail address").fill(email)
    page.get_by_role("button", name="E-mail me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()


def test_sign_in_see_account_download_receipt_sign_out(page, app_client, stack, sent_emails):  # noqa: F811
    from playwright.sync_api import expect

    shop = make_shop(app_client, stack)
    seeded = seed_customer(shop)

    page.goto(f"{shop.root}/")
    # Keyboard first: the skip link is the first stop, and focus is visible.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"

    _ask_for_link(page, shop, seeded.email)
    link, _ = latest_link_and_code(sent_emails, seeded.email)

    page.goto(link)
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()
    page.get_by_role("button", name="Continue to your account").click()
    expect(page.get_by_role("heading", name="Hello, Zoë Łukasiewicz")).to_be_visible()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("A payment did not go through")
    expect(alert).to_contain_text("Photography course")
    subscriptions = page.locator("section[aria-labelledby=subs-h]")
    expect(subscriptions).to_contain_text("Pro membership")
    expect(subscriptions).to_contain_text("€15.00 / month")
    expect(subscriptions).to_contain_text("Visa •••• 4242")
    plans = page.locator("section[aria-labelledby=plans-h]")
    expect(plans).to_contain_text("1 of 3 instalments paid")
    expect(plans).to_contain_text("€198.00")
    expect(plans.get_by_role("button")).to_have_count(0)
    expect(page.get_by_role("progressbar", name="1 of 3 instalments paid")).to_be_visible()

    page.get_by_role("link", name="Ebook: Pierogi").click()
    expect(page.get_by_role("heading", name="Ebook: Pierogi")).to_be_visible()
    page.get_by_role("link", name=re.compile(r"^Receipt")).click()
    expect(page.get_by_role("heading", name="Receipt", exact=True)).to_be_visible()
    expect(page.locator("article")).to_contain_text("€49.00")
    expect(page.locator("article")).to_contain_text("Visa •••• 4242")

    started = time.perf_counter()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download PDF").click()
    download = download_info.value
    assert download.suggested_filename.startswith("receipt-") and download.suggested_filename.endswith(".pdf")
    pdf = pdf_text(Path(download.path()).read_bytes())
    print(f"receipt PDF: first download {time.perf_counter() - started:.2f}s")
    assert "€49.00" in pdf and shop.name in pdf and "Zoë Łukasiewicz" in pdf and "Kraków" in pdf

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name=f"Sign in to {shop.name}")).to_be_visible()
    page.goto(f"{shop.root}/")
    expect(page.get_by_role("heading", name=f"Sign in to {shop.name}")).to_be_visible()

    # The link was spent: opening it again is refused.
    response = page.goto(link)
    assert response.status == 410
    expect(page.get_by_role("alert")).to_contain_text("expired or has already been used")
    assert page.csp_violations == []


def test_expired_link_is_refused_in_the_browser(page, app_client, stack, sent_emails):  # noqa: F811
    from playwright.sync_api import expect

    from chalicelib.store.table import LoginTokenItem

    shop = make_shop(app_client, stack)
    seeded = seed_customer(shop)
    _ask_for_link(page, shop, seeded.email)
    link, _ = latest_link_and_code(sent_emails, seeded.email)
    page.goto(link)
    expect(page.get_by_role("button", name="Continue to your account")).to_be_visible()
    # Fifteen minutes pass while the page is open: the token's expiry is now behind us.
    import hashlib

    token = link.rsplit("token=", 1)[1]
    from chalicelib.store import keys

    item = LoginTokenItem.get(*keys.login_token(hashlib.sha256(token.encode()).hexdigest()))
    item.update(actions=[LoginTokenItem.expires_at.set(int(time.time()) - 1)])
    page.get_by_role("button", name="Continue to your account").click()
    expect(page.get_by_role("alert")).to_contain_text("expired or has already been used")
    expect(page.get_by_role("heading", name=f"Sign in to {shop.name}")).to_be_visible()
    assert page.goto(link).status == 410


def test_code_on_another_device_and_small_screen(browser, app_server, app_client, stack, sent_emails):  # noqa: F811
    from playwright.sync_api import expect

    shop = make_shop(app_client, stack)
    seeded = seed_customer(shop)
    phone = browser.new_context(base_url=app_server, viewport={"width": 375, "height": 740},
                                is_mobile=True, has_touch=True)
    try:
        page = phone.new_page()
        _ask_for_link(page, shop, seeded.email)
        _, code = latest_link_and_code(sent_emails, seeded.email)
        page.get_by_label("Code").fill(code)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Hello, Zoë Łukasiewicz")).to_be_visible()
        # Nothing wider than the screen: tables stack on small screens.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, width
    finally:
        phone.close()


# --- self-service through Stripe.js (localstripe's stand-in, behind devstack's proxy) -----------

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".devstack" / "screenshots"


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _type_card(page, number: str, month: str = "12", year: str = "34") -> None:
    """Type into the Card Element. localstripe's stand-in renders plain inputs named by
    their placeholders (number, exp_month, exp_year as two digits, cvc, postal_code)."""
    element = page.locator("#card-element")
    for field, value in (("number", number), ("exp_month", month), ("exp_year", year),
                         ("cvc", "123"), ("postal_code", "31147")):
        element.locator(f"input[placeholder={field}]").fill(value)


def test_self_service_journey_with_stripe_js(page, app_client, stack, app_server,  # noqa: F811
                                             stripe_client, sent_emails):
    from playwright.sync_api import expect
    from portal_helpers import CARD_OTHER, fail_an_invoice, make_stripe_shop, wait_for

    shop = make_stripe_shop(app_client, stack, app_server, stripe_client)
    failed = fail_an_invoice(shop)


    _ask_for_link(page, shop.shop, shop.email)
    link, _ = latest_link_and_code(sent_emails, shop.email)
    page.goto(link)
    page.get_by_role("button", name="Continue to your account").click()
    expect(page.get_by_role("heading", name="Hello, Zoë Łukasiewicz")).to_be_visible()
    expect(page.get_by_role("alert").first).to_contain_text("A payment did not go through")

    # Open the subscription and add a card with the Card Element.
    page.locator("section[aria-labelledby=subs-h]").get_by_role("link", name="Coffee").click()
    expect(page.get_by_role("heading", name="Coffee", exact=True)).to_be_visible()
    page.get_by_role("link", name="Add a card").click()
    expect(page.get_by_role("heading", name="Add a card")).to_be_visible()
    expect(page.locator("#card-element input")).to_have_count(5)  # Stripe.js mounted it

    # A card the bank refuses at once: the decline shows, nothing is saved.
    _type_card(page, "4000000000000002")
    page.get_by_role("button", name="Save card").click()
    expect(page.locator("#card-errors")).to_have_text("Your card was declined.")
    expect(page.get_by_role("heading", name="Add a card")).to_be_visible()

    # A good one, for this subscription only (the default choice).
    page.reload()
    _type_card(page, CARD_OTHER)
    expect(page.get_by_label("This subscription only (Coffee)")).to_be_checked()
    _shot(page, "add-card")
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Your new card is saved and now pays for this subscription.")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("Visa •••• 4444")
    card_form = page.locator("section[aria-labelledby=card-h]")
    expect(card_form.get_by_role("group", name="Charge this subscription to")).to_be_visible()
    expect(card_form.get_by_label("Visa •••• 4444")).to_be_checked()
    _shot(page, "subscription-new-card")
    # The payment plan kept its card.
    page.get_by_role("link", name="Your account").click()
    page.locator("section[aria-labelledby=plans-h]").get_by_role(
        "link", name="Photography course").click()
    expect(page.locator("dl.facts")).to_contain_text("Visa •••• 4242")

    # Pay the failed invoice from the overview's alert: first with the declining card.
    page.get_by_role("link", name="Your account").click()
    page.set_viewport_size({"width": 375, "height": 740})  # a phone: nothing wider
    for path in (page.url, f"{page.url.rstrip('/')}/subscriptions/{shop.sub(shop.subscription)['id']}"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
    _shot(page, "subscription-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("link", name="Your account").click()
    alert = page.locator("section[aria-labelledby=failed-h]")
    pay_form = alert.locator("form.pay-form")
    expect(pay_form.get_by_role("group")).to_contain_text("Pay €8.00 for Tea")
    pay_form.get_by_label("Visa •••• 0341").check()
    pay_form.get_by_role("button", name="Pay now").click()
    problem = page.locator("form.pay-form [role=alert]")
    expect(problem).to_contain_text("Your card was declined.")
    expect(problem).to_contain_text("Nothing was charged")
    assert page.evaluate("document.activeElement.getAttribute('role')") == "alert"
    _shot(page, "overview-declined")
    assert shop.client.v1.invoices.retrieve(failed["invoice"]).status == "open"
    # Then with the new card: paid, and the alert is gone at once.
    page.locator("form.pay-form").get_by_label("Visa •••• 4444").check()
    page.locator("form.pay-form").get_by_role("button", name="Pay now").click()
    expect(page.get_by_role("status")).to_contain_text("Thank you! Your payment went through.")
    expect(page.locator("section[aria-labelledby=failed-h]")).to_have_count(0)
    assert shop.client.v1.invoices.retrieve(failed["invoice"]).status == "paid"
    assert shop.record()["stats"]["missed_payments"] == 0

    # Cancel with a reason, then keep it.
    page.locator("section[aria-labelledby=subs-h]").get_by_role("link", name="Coffee").click()
    page.get_by_role("link", name="Cancel subscription").click()
    expect(page.get_by_role("heading", name="Cancel Coffee?")).to_be_visible()
    page.get_by_label("Why are you leaving?").fill("Moving abroad")
    _shot(page, "cancel-confirm")
    page.get_by_role("button", name="Cancel subscription").click()
    expect(page.get_by_role("status")).to_contain_text("Your subscription is canceled. It stays "
                                                       "active until")
    expect(page.locator("dl.facts")).to_contain_text("Canceling")
    expect(page.locator("dl.facts")).to_contain_text("Ends")
    assert shop.client.v1.subscriptions.retrieve(shop.subscription).cancel_at_period_end is True
    _shot(page, "subscription-canceling")
    page.get_by_role("button", name="Keep my subscription").click()
    expect(page.get_by_role("status")).to_contain_text("Your subscription continues.")
    expect(page.locator("dl.facts")).to_contain_text("Active")
    expect(page.get_by_role("link", name="Cancel subscription")).to_be_visible()
    assert shop.client.v1.subscriptions.retrieve(shop.subscription).cancel_at_period_end is False
    # Paying with a card did not make it the card of everything else.
    wait_for(lambda: shop.sub(shop.plan_subscription)["card_id"],
             lambda card: card == shop.card_id(shop.first_card), what="the plan's own card")
    page.reload()
    expect(page.locator("ul.saved-cards")).to_contain_text("Pays for Photography course")
    assert page.csp_violations == []


def test_a_payment_the_bank_must_confirm_is_confirmed_with_stripe_js(page, app_client, stack,  # noqa: F811
                                                                      app_server, stripe_client,
                                                                      sent_emails):
    from playwright.sync_api import expect
    from portal_helpers import fail_an_invoice, make_stripe_shop, wait_for

    shop = make_stripe_shop(app_client, stack, app_server, stripe_client)
    failed = fail_an_invoice(shop)
    shop.add_card("4000002500003155")  # every payment needs the bank's confirmation (3-D Secure)

    _ask_for_link(page, shop.shop, shop.email)
    link, _ = latest_link_and_code(sent_emails, shop.email)
    page.goto(link)
    page.get_by_role("button", name="Continue to your account").click()
    page.locator("section[aria-labelledby=failed-h]").get_by_role("link", name="Tea").click()
    expect(page.get_by_role("heading", name="Tea", exact=True)).to_be_visible()
    pay_form = page.locator("form.pay-form")
    pay_form.get_by_label("Visa •••• 3155").check()
    pay_form.get_by_role("button", name="Pay now").click()
    expect(page.locator("form.pay-form [role=alert]").first).to_contain_text(
        "Your bank asks you to confirm this payment.")
    assert shop.client.v1.invoices.retrieve(failed["invoice"]).status == "open"
    _shot(page, "payment-needs-bank")
    # Stripe.js shows the bank's page (localstripe's stand-in: a two-button dialog).
    page.get_by_role("button", name="Confirm with your bank").click()
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_role("status")).to_contain_text("Your bank confirmed the payment")
    assert shop.client.v1.invoices.retrieve(failed["invoice"]).status == "paid"
    # The processor's own webhook brings the payment to the record.
    wait_for(shop.record, lambda r: r["stats"]["missed_payments"] == 0, what="the paid invoice")
    page.reload()
    expect(page.locator("section[aria-labelledby=missed-h]")).to_have_count(0)
    assert page.csp_violations == []
