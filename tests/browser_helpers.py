"""Headless Chromium for the browser tests (portal, dashboard): where it is, how it is
started, and the module-scoped ``browser`` fixture (import it into the test module)."""
from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--no-proxy-server"]

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def new_context(browser, base_url: str, **kwargs):
    """A fresh browser context (its own cookies) on the app, with a 15 s default timeout."""
    context = browser.new_context(base_url=base_url, **kwargs)
    context.set_default_timeout(15_000)
    return context


def staff_sign_in(page, root: str, email: str, sent_emails) -> None:
    """Sign a staff member in to the dashboard at ``root`` through the e-mailed link."""
    from dashboard_helpers import staff_mail
    from playwright.sync_api import expect

    page.goto(f"{root}/sign-in")
    page.get_by_label("Work e-mail address").fill(email)
    page.get_by_role("button", name="E-mail me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    link, _ = staff_mail(sent_emails, email)
    page.goto(link)
    page.get_by_role("button", name="Continue to the dashboard").click()
    expect(page.get_by_role("heading", name="Customers", exact=True)).to_be_visible()
