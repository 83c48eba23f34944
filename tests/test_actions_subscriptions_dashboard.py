"""The dashboard's subscription action forms (chalicelib/dashboard/action_routes_subscriptions.py)
through Chalice's test client with real staff sessions, against a customer at localstripe: each
confirmation page says what will happen; a form posted twice with the same action id acts once;
read-only and support get 403 where they must and change nothing; a refusal re-renders the form."""
from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import pytest
import requests
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    dashboard_settings,
    staff_sign_in,
)
from portal_helpers import CARD_OTHER, PortalClient, fail_an_invoice, make_stripe_shop, text

pytestmark = pytest.mark.usefixtures("dashboard_settings")
ACTION_RE = re.compile(r'name="action_id" value="([^"]+)"')
PRORATION_RE = re.compile(r'name="proration_date" value="(\d+)"')


@pytest.fixture
def shop(app_client, stack, app_server, stripe_client):  # noqa: F811
    return make_stripe_shop(app_client, stack, app_server, stripe_client)


def _signed_in(app_client, shop, sent_emails, role: str):  # noqa: F811
    from chalicelib.staff import service as staff

    email = f"{role.replace('_', '-')}-{shop.customer[-6:].lower()}@shop.test"
    staff.add_staff(shop.account_id, email, role)
    c = PortalClient(app_client.http)
    root = f"/dashboard/{shop.shop.slug}"
    staff_sign_in(c, root, email, sent_emails)
    return c, f"{root}/customers/{shop.customer_id()}"


def _at_stripe(stack, sub_id: str) -> dict:
    return requests.get(f"{stack.stripe_api_url}/v1/subscriptions/{sub_id}", timeout=10,
                        headers={"Authorization": "Bearer sk_test_portal"}).json()


def _outbox(shop, kind: str) -> list[dict]:
    from chalicelib.store.customers import list_outbox

    # The events the actions wrote (their data names the source), not those the shop's
    # webhooks derived (integrations.reactions).
    return [o for o in list_outbox(shop.account_id) if o["type"] == kind
            and "source" in o["data"]]


def _page(c, url):
    response = c.get(url)
    assert response.status_code == 200, text(response)
    body = html.unescape(text(response))
    return body, ACTION_RE.search(body).group(1) if ACTION_RE.search(body) else None


def _location(response) -> str:
    parts = urlsplit(response.headers["Location"])
    return f"{parts.path}?{parts.query}"


def test_cancel_at_period_end_twice_acts_once_then_recover(app_client, shop, stack,  # noqa: F811
                                                           sent_emails):
    c, record = _signed_in(app_client, shop, sent_emails, "support")
    sub = shop.sub(shop.subscription)
    body, _ = _page(c, record)
    assert f"{record}/subscriptions/{sub['id']}/cancel?at=period_end" in body
    assert "cancel?at=now" not in body  # support may not cancel now
    assert "/plan" not in body.split('id="plans-h"')[0].split('id="subs-h"')[1]

    body, action_id = _page(c, f"{record}/subscriptions/{sub['id']}/cancel?at=period_end")
    assert "Keep active until the next rebill date" in body
    form = {"action_id": action_id, "at": "period_end", "reason": "moving abroad",
            "note": "phoned"}
    url = f"{record}/subscriptions/{sub['id']}/cancel"
    first = c.post(url, form)
    assert first.status_code == 303, text(first)
    second = c.post(url, form)
    assert second.status_code == 303 and second.headers["Location"] == first.headers["Location"]
    assert "done=canceling" in first.headers["Location"]
    assert _at_stripe(stack, shop.subscription)["cancel_at_period_end"] is True
    assert len(_outbox(shop, "subscription.canceling")) == 1
    body, _ = _page(c, _location(first))
    assert "stays active until the next rebill date" in body
    assert f"{record}/subscriptions/{sub['id']}/recover" in body

    # Already set to end: the form again with the message, 409, nothing changed.
    _, action_id = _page(c, f"{record}/subscriptions/{sub['id']}/cancel?at=period_end")
    again = c.post(url, {"action_id": action_id, "at": "period_end"})
    assert again.status_code == 409 and "already set to end" in html.unescape(text(again))

    body, action_id = _page(c, f"{record}/subscriptions/{sub['id']}/recover")
    assert "is taken back" in body
    done = c.post(f"{record}/subscriptions/{sub['id']}/recover", {"action_id": action_id})
    assert done.status_code == 303 and "done=recovered" in done.headers["Location"]
    assert _at_stripe(stack, shop.subscription)["cancel_at_period_end"] is False
    assert shop.sub(shop.subscription)["status"] == "active"


def test_roles_read_only_and_support_are_refused(app_client, shop, stack, sent_emails):  # noqa: F811
    sub = shop.sub(shop.subscription)
    c, record = _signed_in(app_client, shop, sent_emails, "read_only")
    body, _ = _page(c, record)
    assert "/subscriptions/" not in body and "/retry" not in body
    url = f"{record}/subscriptions/{sub['id']}"
    assert c.get(f"{url}/cancel?at=period_end").status_code == 403
    assert c.post(f"{url}/cancel", {"action_id": "a" * 24, "at": "period_end"}).status_code == 403

    s, record = _signed_in(app_client, shop, sent_emails, "support")
    assert s.get(f"{url}/cancel?at=now").status_code == 403
    _page(s, record)  # the session's CSRF token, as the record page's forms carry it
    for action, form in (("cancel", {"at": "now"}), ("pause", {"behavior": "void"}),
                         ("plan", {"price": "price_x"}), ("resume", {})):
        refused = s.post(f"{url}/{action}", {"action_id": "b" * 24, **form})
        assert refused.status_code == 403, (action, text(refused))
    at_stripe = _at_stripe(stack, shop.subscription)
    assert at_stripe["status"] == "active" and not at_stripe["cancel_at_period_end"]
    assert at_stripe["pause_collection"] is None
    assert shop.sub(shop.subscription)["status"] == "active"
    # The refusals are the role's (logged), not a missing CSRF token.
    from chalicelib.activity import service as activity

    forbidden = activity.list(shop.account_id, limit=200, action_prefix="staff.forbidden")[0]
    assert {e["details"]["permission"] for e in forbidden} >= {
        "cancel_at_period_end", "cancel_now", "change_subscription"}
    # With a wrong CSRF token even an allowed action is refused.
    assert s.post(f"{url}/cancel", {"action_id": "c" * 24, "at": "period_end"},
                  csrf="x").status_code == 403
    assert not _at_stripe(stack, shop.subscription)["cancel_at_period_end"]


def test_admin_cancels_a_payment_plan_now_with_the_balance_warning(app_client, shop, stack,  # noqa: F811
                                                                   sent_emails):
    c, record = _signed_in(app_client, shop, sent_emails, "admin")
    plan = shop.sub(shop.plan_subscription)
    body, action_id = _page(c, f"{record}/subscriptions/{plan['id']}/cancel?at=now")
    assert "leaves the balance" in body and "unpaid" in body
    url = f"{record}/subscriptions/{plan['id']}/cancel"
    for _ in range(2):
        done = c.post(url, {"action_id": action_id, "at": "now"})
        assert done.status_code == 303 and "done=canceled" in done.headers["Location"]
    assert _at_stripe(stack, shop.plan_subscription)["status"] == "canceled"
    assert len(_outbox(shop, "subscription.canceled")) == 1


def test_admin_pauses_resumes_and_changes_plan_with_the_preview(app_client, shop, stack,  # noqa: F811
                                                                sent_emails):
    c, record = _signed_in(app_client, shop, sent_emails, "admin")
    sub = shop.sub(shop.subscription)
    url = f"{record}/subscriptions/{sub['id']}"
    _, action_id = _page(c, f"{url}/pause")
    for _ in range(2):
        assert c.post(f"{url}/pause", {"action_id": action_id, "behavior": "keep_as_draft"}
                      ).status_code == 303
    assert _at_stripe(stack, shop.subscription)["pause_collection"]["behavior"] == "keep_as_draft"
    assert len(_outbox(shop, "subscription.paused")) == 1
    _, action_id = _page(c, f"{url}/resume")
    assert c.post(f"{url}/resume", {"action_id": action_id}).status_code == 303
    assert _at_stripe(stack, shop.subscription)["pause_collection"] is None

    bigger = shop.client.v1.plans.create(params={
        "amount": 3600, "currency": "eur", "interval": "month", "product": {"name": "Coffee+"}})
    body, action_id = _page(c, f"{url}/plan")
    assert action_id is None  # the preview first
    preview = c.post(f"{url}/plan", {"price": bigger.id, "prorate": "yes"})
    assert preview.status_code == 200, text(preview)
    body = html.unescape(text(preview))
    assert "The processor will charge" in body and "€36.00" in body
    assert _at_stripe(stack, shop.subscription)["plan"]["amount"] == 1200  # a preview only
    form = {"action_id": ACTION_RE.search(body).group(1), "price": bigger.id, "prorate": "yes",
            "proration_date": PRORATION_RE.search(body).group(1)}
    for _ in range(2):
        done = c.post(f"{url}/plan", form)
        assert done.status_code == 303 and "done=plan_changed" in done.headers["Location"]
    assert _at_stripe(stack, shop.subscription)["plan"]["id"] == bigger.id
    assert len(_outbox(shop, "subscription.updated")) == 1
    # An unknown price: the preview page again with the processor's message, nothing changed.
    refused = c.post(f"{url}/plan", {"price": "price_unknown", "prorate": "no"})
    assert 400 <= refused.status_code < 600 and 'role="alert"' in text(refused)


def test_retry_declined_with_the_reason_then_paid_with_another_card(app_client, shop,  # noqa: F811
                                                                    sent_emails):
    failed = fail_an_invoice(shop)
    payment_id = failed["payment"]["id"]
    c, record = _signed_in(app_client, shop, sent_emails, "support")
    body, _ = _page(c, record)
    assert f"{record}/payments/{payment_id}/retry" in body
    url = f"{record}/payments/{payment_id}/retry"
    body, action_id = _page(c, url)
    bad = shop.card_id(failed["bad_card"])
    assert f'value="{bad}"' in body
    form = {"action_id": action_id, "card": bad}
    first = c.post(url, form)
    assert first.status_code == 200 and "Declined" in html.unescape(text(first))
    again = c.post(url, form)  # the same form again: the stored answer, no second charge
    assert "Declined" in html.unescape(text(again))
    other = shop.add_card(CARD_OTHER)
    _, action_id = _page(c, url)
    paid = c.post(url, {"action_id": action_id, "card": shop.card_id(other)})
    assert paid.status_code == 200 and "Paid: the payment" in html.unescape(text(paid))
    assert shop.client.v1.invoices.retrieve(failed["invoice"]).status == "paid"
    from chalicelib.activity import service as activity

    assert len(activity.list(shop.account_id, limit=200, action_prefix="payment.retry")[0]) == 2


def test_retry_needing_authentication_offers_the_payment_link(app_client, shop, sent_emails,  # noqa: F811
                                                              monkeypatch):
    from chalicelib.processors.gateway import PaymentOutcome, ProcessorError
    from chalicelib.processors.stripe.gateway import StripeGateway

    failed = fail_an_invoice(shop)
    c, record = _signed_in(app_client, shop, sent_emails, "support")
    url = f"{record}/payments/{failed['payment']['id']}/retry"

    def down(*args, **kwargs):
        raise ProcessorError("The payment service did not answer. Nothing was changed.")

    monkeypatch.setattr(StripeGateway, "pay_invoice", down)
    _, action_id = _page(c, url)
    refused = c.post(url, {"action_id": action_id, "card": "default"})
    assert refused.status_code == 502 and "Nothing was changed" in text(refused)

    monkeypatch.setattr(StripeGateway, "pay_invoice", lambda *a, **k: PaymentOutcome(
        "requires_action", "Your bank asks you to confirm this payment."))
    _, action_id = _page(c, url)
    asked = c.post(url, {"action_id": action_id, "card": "default"})
    body = html.unescape(text(asked))
    assert asked.status_code == 200 and "Needs the customer's authentication" in body
    tea = next(s for s in shop.record()["subscriptions"]
               if s["processor_ref"] == failed["payment"]["subscription"])
    assert f"/subscriptions/{tea['id']}/update-billing" in body
    sent = c.post(f"{record}/subscriptions/{tea['id']}/update-billing", {})
    assert sent.status_code == 303
    from portal_helpers import latest_link_and_code

    link, _ = latest_link_and_code(sent_emails, shop.email)
    assert f"next=subscriptions/{tea['id']}" in link
