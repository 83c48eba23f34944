"""Blocking from the dashboard (chalicelib/dashboard/action_routes_customer.py) through
Chalice's test client with real staff sessions, against a customer at localstripe: the
form, the step-up code, a double submission that blocks once, the record page's state and
log next to each detail, and support / read-only refused (403) with nothing written."""
from __future__ import annotations

import html
import re

import pytest
import stripe
from app_fixtures import app_client  # noqa: F401
from customer_action_helpers import seeded_shop
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    STAFF_CODE_RE,
    dashboard_settings,
    staff_sign_in,
)
from portal_helpers import PortalClient, mails_to, text

pytestmark = pytest.mark.usefixtures("dashboard_settings")
ACTION_RE = re.compile(r'name="action_id" value="([^"]+)"')


@pytest.fixture(scope="module")
def shop(app_client, stack):  # noqa: F811
    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_url})
    return seeded_shop(app_client, stack, client)


def _signed_in(app_client, shop, sent_emails, role: str):  # noqa: F811
    from chalicelib.staff import service as staff

    email = f"{role.replace('_', '-')}-{shop.customer[-6:].lower()}@shop.test"
    staff.add_staff(shop.account_id, email, role)
    c = PortalClient(app_client.http)
    root = f"/dashboard/{shop.shop.slug}"
    staff_sign_in(c, root, email, sent_emails)
    return c, f"{root}/customers/{shop.customer_id()}", email


def _outbox(shop, kind: str) -> list[dict]:
    from chalicelib.store.customers import list_outbox

    return [o for o in list_outbox(shop.account_id) if o["type"] == kind]


def test_support_and_read_only_cannot_block(app_client, shop, sent_emails):  # noqa: F811
    for role in ("support", "read_only"):
        c, record, _ = _signed_in(app_client, shop, sent_emails, role)
        assert "Block or unblock customer details" not in text(c.get(record))
        assert c.get(f"{record}/block").status_code == 403
        posted = c.post(f"{record}/block", {"action_id": "a" * 24, "do": "block", "all": "1",
                                            "reason": "fraud"})
        assert posted.status_code == 403
    assert _outbox(shop, "customer.blocked") == []


def test_admin_blocks_all_with_a_step_up_code_once_then_unblocks(app_client, shop,  # noqa: F811
                                                                 sent_emails):
    c, record, email = _signed_in(app_client, shop, sent_emails, "admin")
    page = html.unescape(text(c.get(record)))
    assert "Block or unblock customer details" in page and "Blocked customer details" not in page
    form_page = html.unescape(text(c.get(f"{record}/block")))
    assert f"E-mail address {shop.email}" in form_page
    assert f'name="card:{shop.card_id(shop.first_card)}"' in form_page
    assert f'name="customer:stripe:{shop.customer}"' in form_page
    action_id = ACTION_RE.search(form_page).group(1)

    missing = c.post(f"{record}/block", {"action_id": action_id, "do": "block", "all": "1"})
    assert missing.status_code == 400 and "reason is required" in text(missing)
    form = {"action_id": action_id, "do": "block", "all": "1", "reason": "stolen cards"}
    asked = c.post(f"{record}/block", form)
    assert asked.status_code == 200 and "Confirmation code" in text(asked)
    assert _outbox(shop, "customer.blocked") == []
    wrong = c.post(f"{record}/block", {**form, "step_up_code": "000000"})
    assert wrong.status_code == 403 and _outbox(shop, "customer.blocked") == []
    mail = [m for m in mails_to(sent_emails, email) if "Confirm a change" in m["body"]][-1]
    code = STAFF_CODE_RE.search(mail["body"]).group(1)
    done = c.post(f"{record}/block", {**form, "step_up_code": code})
    assert done.status_code == 303, text(done)
    again = c.post(f"{record}/block", {**form, "step_up_code": code})  # a double submission
    assert again.status_code == 303
    assert len(_outbox(shop, "customer.blocked")) == 1

    page = html.unescape(text(c.get(record)))
    assert "Blocked customer details" in page
    assert page.count('<span class="status status-bad">Blocked</span>') == 3  # e-mail, cus_, card
    assert f"Blocked by {email}. Reason: stolen cards" in page
    assert "visa •••• 4242" in page  # the card, named by its block

    # Unblock the e-mail only: its log shows both entries, the others stay blocked.
    action_id = ACTION_RE.search(text(c.get(f"{record}/block"))).group(1)
    form = {"action_id": action_id, "do": "unblock", "email": shop.email, "reason": "verified"}
    assert c.post(f"{record}/block", form).status_code == 200
    mail = [m for m in mails_to(sent_emails, email) if "Confirm a change" in m["body"]][-1]
    done = c.post(f"{record}/block", {**form, "step_up_code": STAFF_CODE_RE.search(
        mail["body"]).group(1)})
    assert done.status_code == 303, text(done)
    page = html.unescape(text(c.get(record)))
    assert page.count('<span class="status status-bad">Blocked</span>') == 2
    assert f"Unblocked by {email}. Reason: verified" in page
    [event] = _outbox(shop, "customer.unblocked")
    assert event["data"]["details"] == [{"kind": "email", "value": shop.email}]
    assert event["data"]["source"] == "dashboard"
