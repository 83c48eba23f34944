"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright,
against the app under `chalice local` (app_server). The customer is built by localstripe's
own signed webhooks (a card, a subscription, a payment plan, a failed invoice); staff sign
in by the e-mailed link read back from moto's SES. axe-core (axe-playwright-python, run in
this Chromium) checks the sign-in, customers and record pages."""
from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from app_fixtures import app_client  # noqa: F401
from browser_helpers import (  # noqa: F401 - browser is a fixture
    browser,
    needs_chromium,
    new_context,
    staff_sign_in,
)
from dashboard_helpers import staff_mail

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".devstack" / "screenshots"

pytestmark = needs_chromium


@pytest.fixture
def world(app_client, stack, app_server, stripe_client):  # noqa: F811
    """One shop on localstripe with an owner, and its customer with a failed invoice."""
    from portal_helpers import fail_an_invoice, make_stripe_shop

    from chalicelib.staff import service as staff

    shop = make_stripe_shop(app_client, stack, app_server, stripe_client)
    failed = fail_an_invoice(shop)
    owner = f"owner-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(shop.account_id, owner, "owner")
    return {"shop": shop, "owner": owner, "failed": failed,
            "root": f"/dashboard/{shop.shop.slug}", "customer_id": shop.customer_id()}


def _axe(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def _numbers(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_record_page_search_keyboard_and_axe(browser, app_server, world, sent_emails):  # noqa: F811
    from playwright.sync_api import expect

    shop, root, cid = world["shop"], world["root"], world["customer_id"]
    api = shop.shop.merchant.get_json(f"/api/v1/customers/{cid}")
    context = new_context(browser, app_server)
    page = context.new_page()
    csp = []
    page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto(f"{root}/sign-in")
        assert _axe(page) == [], "sign-in page"
        staff_sign_in(page, root, world["owner"], sent_emails)
        assert _axe(page) == [], "customers page"
        expect(page.get_by_role("table", name="Customers, newest first")).to_contain_text(shop.email)

        # Keyboard: "/" and Ctrl/⌘+K focus the search; "/" typed in a field stays text;
        # Ctrl/⌘+F is left to the browser.
        search = page.locator("#global-search")
        page.locator("h1").click()
        page.keyboard.press("/")
        expect(search).to_be_focused()
        assert search.input_value() == ""
        page.locator("h1").click()
        page.keyboard.press("Control+k")
        expect(search).to_be_focused()
        page.locator("h1").click()
        page.keyboard.press("Meta+k")
        expect(search).to_be_focused()
        page.keyboard.type("a/b")
        assert search.input_value() == "a/b"
        search.fill("")
        page.evaluate("""() => { window.__findTaken = null;
            window.addEventListener('keydown', e => { if (e.key.toLowerCase() === 'f')
              window.__findTaken = e.defaultPrevented; }); }""")
        page.locator("h1").click()
        page.keyboard.press("Control+f")
        assert page.evaluate("window.__findTaken") is False
        expect(search).not_to_be_focused()

        # Search by each key, Enter in the header's field: one hit opens the record.
        order_id = api["orders"][0]["id"]
        for query in (shop.email, shop.customer, order_id, "Zoë Łuk"):
            page.keyboard.press("Control+k")
            page.keyboard.type(query)
            page.keyboard.press("Enter")
            expect(page).to_have_url(re.compile(rf"{re.escape(root)}/customers/{cid}$"))
            expect(page.get_by_role("heading", level=1)).to_have_text(shop.name)

        # Every section, with the numbers of the merchant API.
        stats = page.get_by_label("Customer at a glance")
        text = _numbers(stats.inner_text())
        assert f"Orders\n{api['stats']['orders']}".replace("\n", " ") in text, text
        ltv = api["stats"]["lifetime_value"]["eur"]
        assert f"€{ltv / 100:,.2f}" in text, text
        assert f"Active subscriptions {api['stats']['active_subscriptions']}" in text, text
        assert f"Active payment plans {api['stats']['active_payment_plans']}" in text, text
        assert f"{api['stats']['missed_payments']} missed payment" in text, text
        assert "Open disputes 0" in text, text
        for name in ("Missed payments", "Subscriptions", "Payment plans", "Purchases",
                     "Payment history", "Orders", "Customer details", "E-mail history",
                     "Timeline"):
            expect(page.get_by_role("heading", name=name, level=2)).to_be_visible()
        subs = page.get_by_role("table", name=re.compile(r"^Subscriptions"))
        for s in api["subscriptions"]:
            expect(subs).to_contain_text(s["product"])
        expect(subs).to_contain_text("€12.00 / month")
        plans = page.get_by_role("table", name=re.compile(r"^Payment plans"))
        plan = api["payment_plans"][0]
        expect(plans).to_contain_text(f"{plan['installments_paid']} of {plan['installments_total']}")
        expect(plans).to_contain_text(f"€{plan['remaining_balance'] / 100:,.2f}")
        missed = page.get_by_role("table", name="Invoices whose last payment attempt failed")
        expect(missed).to_contain_text("€8.00")
        payments = page.get_by_role("table", name=re.compile(r"^Payments, newest first"))
        expect(payments.locator("tbody tr")).to_have_count(min(len(api["payments"]), 25))
        orders = page.get_by_role("table", name=re.compile(r"^Newest orders"))
        for o in api["orders"]:
            expect(orders).to_contain_text(o["id"])
        details = page.locator("section[aria-labelledby=details-h]")
        expect(details).to_contain_text(shop.customer)
        expect(details).to_contain_text(shop.email)
        mail = page.locator("section[aria-labelledby=mail-h]")
        expect(mail).to_be_visible()
        assert _axe(page) == [], "record page"

        # Copy the portal link; e-mail a sign-in link (it shows in the e-mail history).
        expect(page.get_by_label("Customer portal link")).to_have_value(
            f"{app_server}/portal/{shop.shop.slug}/")
        page.get_by_role("button", name="Copy customer portal link").click()
        expect(page.locator("[data-copied]")).not_to_be_empty()
        page.get_by_role("button", name="E-mail a sign-in link to this customer").click()
        expect(page.get_by_role("status").first).to_contain_text(
            f"A sign-in link is on its way to {shop.email}")
        assert any("/portal/" in m["body"] for m in _mails(sent_emails, shop.email))

        # A transaction's details: its raw webhooks and notes.
        page.locator("section[aria-labelledby=payments-h]").get_by_role(
            "link", name=re.compile("^Details")).first.click()
        expect(page.get_by_role("heading", name="Processor webhooks")).to_be_visible()
        expect(page.get_by_role("heading", name="Staff notes")).to_be_visible()
        page.go_back()

        # The timeline filters without script too (a plain GET form).
        page.get_by_label("Show").select_option("processor")
        page.get_by_role("button", name="Filter the timeline").click()
        expect(page).to_have_url(re.compile(r"source=processor"))

        # Keyboard alone reaches every link, button and field of the record page.
        _every_control_reachable_by_tab(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.goto(f"{root}/customers/{cid}")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / "dashboard-record.png"), full_page=True)
        assert csp == []

        # JavaScript off: the search is a plain form; one hit opens the record.
        state = context.storage_state()
        plain = new_context(browser, app_server, java_script_enabled=False, storage_state=state)
        try:
            p2 = plain.new_page()
            p2.goto(f"{root}/customers")
            p2.get_by_role("searchbox").fill(shop.customer)
            p2.get_by_role("searchbox").press("Enter")
            expect(p2).to_have_url(re.compile(rf"/customers/{cid}$"))
            p2.goto(f"{root}/customers?q={order_id}")
            expect(p2).to_have_url(re.compile(rf"/customers/{cid}$"))
            p2.goto(f"{root}/customers?q=nobody-{secrets.token_hex(3)}")
            expect(p2.locator("#search-summary")).to_contain_text("No customer found")
        finally:
            plain.close()
    finally:
        context.close()


def _mails(sent_emails, address):
    from portal_helpers import mails_to

    return mails_to(sent_emails, address)


def _every_control_reachable_by_tab(page) -> None:
    """Tab from the top of the page: every visible link, button, field and summary gets
    the focus, in turn, without the mouse."""
    wanted = page.evaluate("""() => {
        const all = [...document.querySelectorAll(
          'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex="0"]')];
        const shown = all.filter(e => !e.disabled && !e.hidden && e.getClientRects().length
                                      && getComputedStyle(e).visibility !== 'hidden');
        shown.forEach((e, i) => e.dataset.tabCheck = String(i));
        return shown.length; }""")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("body").focus()
    reached = set()
    for _ in range(wanted * 2 + 10):
        page.keyboard.press("Tab")
        mark = page.evaluate("document.activeElement && document.activeElement.dataset.tabCheck")
        if mark is not None:
            reached.add(mark)
        if len(reached) == wanted:
            break
    missing = page.evaluate("""(reached) => [...document.querySelectorAll('[data-tab-check]')]
        .filter(e => !reached.includes(e.dataset.tabCheck)).map(e => e.outerHTML.slice(0, 120))""",
                            sorted(reached))
    assert missing == [], missing



def test_read_only_signs_in_by_pasted_code_sees_no_action_and_a_forged_post_is_refused(
        browser, app_server, world, sent_emails):  # noqa: F811
    """A read-only member pastes the e-mailed code (as copied from a mail client, with a
    space), reaches the record page, finds no form that changes anything, and a POST made
    from their signed-in browser anyway answers 403 and changes nothing."""
    from playwright.sync_api import expect

    from chalicelib.accounts.service import get_account
    from chalicelib.staff import service as staff

    shop, root, cid = world["shop"], world["root"], world["customer_id"]
    viewer = f"viewer-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(shop.account_id, viewer, "read_only")
    context = new_context(browser, app_server)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    try:
        page.goto(f"{root}/sign-in")
        page.get_by_label("Work e-mail address").fill(viewer)
        page.get_by_role("button", name="E-mail me a sign-in link").click()
        expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
        _, code = staff_mail(sent_emails, viewer)
        page.goto(f"{root}/code")
        page.locator("#email").fill(viewer)
        field = page.locator("#code")
        assert field.get_attribute("autocomplete") == "one-time-code"
        page.evaluate("code => navigator.clipboard.writeText(code)", f"{code[:3]} {code[3:]}")
        field.focus()
        page.keyboard.press("Control+v")
        assert field.input_value().replace(" ", "") == code
        field.press("Enter")
        expect(page.get_by_role("heading", name="Customers", exact=True)).to_be_visible()

        page.goto(f"{root}/customers/{cid}")
        expect(page.locator("main")).to_contain_text(shop.email)
        # Nothing on the page changes anything: the only forms are the header's search
        # (GET) and signing out.
        actions = page.locator("main form[method='post'], main form[method='POST']")
        assert actions.count() == 0, [actions.nth(i).get_attribute("action")
                                      for i in range(actions.count())]
        expect(page.get_by_role("link", name="Settings")).to_have_count(0)

        before = get_account(shop.account_id)["settings"]
        csrf = page.evaluate("() => (document.querySelector('input[name=csrf]') || {}).value")
        forged = page.request.post(f"{app_server}{root}/settings", form={
            "csrf": csrf or "", "color": "#000000", "company_address": "Forged 1"})
        assert forged.status == 403
        assert get_account(shop.account_id)["settings"] == before
    finally:
        context.close()
