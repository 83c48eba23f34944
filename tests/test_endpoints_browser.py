"""The dashboard's endpoints pages in a real browser (headless Chromium, Playwright) against
the app under `chalice local`, with axe on each page (issue 13): an owner adds a webhook
endpoint (its secret shown once), finds it listed, opens it, watches a delivery to
devstack's receiver (which verifies it with the `standardwebhooks` library) fail and then,
sent again from the delivery's page, succeed under the same `webhook-id`; rotates the
secret (the old one shown no more, the new one signing), disables and deletes it. A
read-only member is refused the pages and every change, a POST without the session's CSRF
token too.

Deliveries are attempted in this process (`delivery.attempt`), as the pipeline's sender
would: the receiver listens on loopback http, which only the development setting
`ALLOW_HTTP_LOOPBACK_ENDPOINTS` allows (set here, as make dev sets it; the app server runs
without it, so the owner types an https URL and this process points it at the receiver)."""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

import pytest
from app_fixtures import app_client  # noqa: F401
from browser_helpers import browser, needs_chromium, new_context, staff_sign_in  # noqa: F401
from dashboard_helpers import add_member, make_staff_shop
from test_dashboard_browser import _axe

from devstack.receiver import Receiver

pytestmark = [needs_chromium]


@pytest.fixture(scope="module")
def shop(app_client, stack):  # noqa: F811
    return make_staff_shop(app_client, stack)


@pytest.fixture(scope="module")
def receiver(app_server):
    """devstack's receiver, and loopback http endpoints allowed in this process only (the
    app server, asked for first, started without the setting)."""
    from chalicelib.settings import get_settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALLOW_HTTP_LOOPBACK_ENDPOINTS", "1")
        get_settings.cache_clear()
        server = Receiver()
        try:
            yield server
        finally:
            server.close()
    get_settings.cache_clear()


def _event(account_id: str, event_type: str = "order.created") -> dict:
    return {"account_id": account_id, "event_id": f"evt_{secrets.token_hex(12)}",
            "type": event_type, "occurred_at": datetime.now(UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"), "customer_id": "cst_" + "0" * 26,
            "data": {"order_id": "ord_browser"}}


def _deliver(account_id: str, endpoint_id: str) -> dict:
    """An event fanned out to the endpoint and its first attempt made, as the pipeline's
    sender does."""
    from chalicelib.integrations import delivery

    now = datetime.now(UTC)
    [made] = [d for d in delivery.fan_out(_event(account_id), now)
              if d["endpoint_id"] == endpoint_id]
    assert delivery.attempt(account_id, made["id"], now)["attempted"]
    return made


def _csrf_of(context) -> str:
    """The CSRF token of the context's staff session (what its pages' forms carry)."""
    from chalicelib.store import signin as store

    [cookie] = [c["value"] for c in context.cookies() if c["name"] == "bp_staff"]
    return store.get_session(hashlib.sha256(cookie.encode()).hexdigest()).csrf_token


def test_an_owner_adds_watches_replays_rotates_disables_and_deletes_an_endpoint(
        browser, app_server, shop, receiver, sent_emails):  # noqa: F811
    from playwright.sync_api import expect

    from chalicelib.integrations import delivery, endpoints

    context = new_context(browser, app_server)
    page = context.new_page()
    base = f"{shop.root}/settings/endpoints"
    name = f"shop-{secrets.token_hex(4)}"
    try:
        staff_sign_in(page, shop.root, shop.owner, sent_emails)
        page.get_by_role("link", name="Endpoints", exact=True).click()
        expect(page.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()
        expect(page.get_by_text("No endpoints yet.")).to_be_visible()
        assert _axe(page) == [], "the endpoints page, empty"

        # Add one: the secret is on the answer page, this once.
        page.get_by_label("URL (https), or the event bus ARN for EventBridge").fill(
            f"https://hooks.example.com/in/{name}")
        page.get_by_label(re.compile("^Events")).fill("order.created, payment.succeeded")
        page.get_by_label("Description (optional)").fill("Fulfilment")
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.get_by_role("heading", name="Endpoint added")).to_be_visible()
        secret = page.get_by_label("Signing secret").input_value()
        assert secret.startswith("whsec_")
        assert _axe(page) == [], "the new endpoint's secret page"
        page.get_by_role("link", name="Continue to the endpoint").click()
        endpoint_id = re.search(r"/settings/endpoints/(ep_[0-9a-z]{26})$", page.url).group(1)
        expect(page.get_by_text("No deliveries yet.")).to_be_visible()
        assert secret not in page.content()
        page.get_by_role("link", name="All endpoints").click()
        row = page.get_by_role("row").filter(has_text=f"hooks.example.com/in/{name}")
        expect(row).to_contain_text("Fulfilment")
        expect(row).to_contain_text("order.created, payment.succeeded")
        expect(row).to_contain_text("Enabled")
        assert secret not in page.content()
        assert _axe(page) == [], "the endpoints page, listing one"

        # A delivery the receiver refuses (it has not the secret yet), then sent again
        # from its page once it has: the same webhook-id, verified.
        endpoints.update(shop.account_id, endpoint_id, url=receiver.url(name))
        made = _deliver(shop.account_id, endpoint_id)
        assert receiver.received(name) == [] and len(receiver.received(name, False)) == 1
        row.get_by_role("link").click()
        deliveries = page.get_by_role("table", name="Latest deliveries")
        first = deliveries.get_by_role("row").filter(has_text="order.created")
        expect(first).to_contain_text("pending")
        expect(first).to_contain_text("400")
        assert _axe(page) == [], "the endpoint's page, with a delivery"
        first.get_by_role("link").click()
        expect(page.get_by_role("heading", name="Delivery of order.created")).to_be_visible()
        expect(page.get_by_text(made["webhook_id"])).to_be_visible()
        attempts = page.get_by_role("table", name=re.compile("^Attempts"))
        expect(attempts.get_by_role("cell", name="400", exact=True)).to_have_count(1)
        expect(attempts.get_by_role("cell", name="200", exact=True)).to_have_count(0)
        assert _axe(page) == [], "a delivery's page"
        receiver.register(name, secret)
        page.get_by_role("button", name="Send again").click()
        expect(page.get_by_role("heading", name="Delivery of order.created")).to_be_visible()
        assert delivery.attempt(shop.account_id, made["id"], datetime.now(UTC))["attempted"]
        [received] = receiver.received(name)
        assert received["webhook_id"] == made["webhook_id"]
        page.reload()
        expect(page.locator("dl.stats")).to_contain_text("succeeded")
        expect(attempts.get_by_role("cell", name="400", exact=True)).to_have_count(1)
        expect(attempts.get_by_role("cell", name="200", exact=True)).to_have_count(1)

        # Rotate: the new secret shown once, the old one nowhere; the new one signs.
        page.get_by_role("link", name=re.compile("^Back to")).click()
        page.get_by_role("button", name="Rotate the secret").click()
        expect(page.get_by_role("heading", name="New signing secret")).to_be_visible()
        new_secret = page.get_by_label("Signing secret").input_value()
        assert new_secret.startswith("whsec_") and new_secret != secret
        assert secret not in page.content()
        assert _axe(page) == [], "the rotated secret's page"
        page.get_by_role("link", name="Continue to the endpoint").click()
        expect(page.get_by_text("signs until")).to_be_visible()  # the old one, for its grace
        assert secret not in page.content() and new_secret not in page.content()
        receiver.register(name, new_secret)
        assert len(receiver.received(name)) == 1
        _deliver(shop.account_id, endpoint_id)
        assert len(receiver.received(name)) == 2

        # A POST without the session's CSRF token changes nothing.
        forged = context.request.post(f"{app_server}{base}/{endpoint_id}/delete", form={},
                                      max_redirects=0)
        assert forged.status == 403
        assert endpoints.get(shop.account_id, endpoint_id) is not None

        # Disable, then delete.
        page.get_by_role("button", name="Disable", exact=True).click()
        expect(page.locator("dl.stats")).to_contain_text("Disabled")
        assert endpoints.get(shop.account_id, endpoint_id)["enabled"] is False
        page.get_by_role("button", name="Delete", exact=True).click()
        expect(page.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()
        expect(page.get_by_text("No endpoints yet.")).to_be_visible()
        assert endpoints.get(shop.account_id, endpoint_id) is None
        assert page.goto(f"{base}/{endpoint_id}").status == 404
    finally:
        context.close()


def test_a_read_only_member_is_refused_the_pages_and_every_change(
        browser, app_server, shop, sent_emails):  # noqa: F811
    """Endpoint URLs can be secrets themselves (a Slack or Zapier hook URL posts to whoever
    holds it), so the pages are for the roles that manage them (owner, admin): a read-only
    member finds no menu entry, a 403 on the pages, and a 403 on a POST even with the
    session's own CSRF token."""
    from playwright.sync_api import expect

    from chalicelib.integrations import endpoints

    kept = endpoints.create(shop.account_id, url="https://hooks.example.com/kept",
                            event_types=["*"], description="Kept")
    email, _ = add_member(shop, "read_only")
    base = f"{shop.root}/settings/endpoints"
    context = new_context(browser, app_server)
    page = context.new_page()
    try:
        staff_sign_in(page, shop.root, email, sent_emails)
        expect(page.get_by_role("link", name="Endpoints", exact=True)).to_have_count(0)
        for path in (base, f"{base}/{kept['id']}"):
            answer = page.goto(path)
            assert answer.status == 403, path
            assert "hooks.example.com/kept" not in page.content()
        assert _axe(page) == [], "the refusal page"
        csrf = _csrf_of(context)
        for path, form in [
                (base, {"url": "https://hooks.example.com/theirs", "event_types": "*"}),
                (f"{base}/{kept['id']}/rotate", {}), (f"{base}/{kept['id']}/delete", {}),
                (f"{base}/{kept['id']}/disable", {})]:
            answer = context.request.post(f"{app_server}{path}", form={**form, "csrf": csrf},
                                          max_redirects=0)
            assert answer.status == 403, path
        assert [e["id"] for e in endpoints.list_for(shop.account_id)] == [kept["id"]]
        assert endpoints.get(shop.account_id, kept["id"])["enabled"] is True
    finally:
        context.close()
        endpoints.delete(shop.account_id, kept["id"])
