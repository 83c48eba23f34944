"""The portal in a real browser: Debian's Chromium, headless, driven by Playwright, against
the app under `chalice local` (app_server), with mail read back from moto's SES."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from app_fixtures import app_client  # noqa: F401
from portal_helpers import latest_link_and_code, make_shop, seed_customer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--no-proxy-server"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, app_server):
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


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(p.extract_text() for p in PdfReader(str(path)).pages)


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
    pdf = _pdf_text(Path(download.path()))
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
