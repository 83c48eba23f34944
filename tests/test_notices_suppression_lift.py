"""Lifting an e-mail suppression (chalicelib/notices/suppression.py ``lift``, routes in
chalicelib/notices/suppression_routes.py): on the one action mechanism (owners and admins;
support and read-only 403 with nothing written; idempotency key; activity log), a
complaint only with an explicit confirmation, from the merchant API and from the record
page's form (CSRF, one-time action id). The suppression is deleted on the condition that
it is the one shown: a newer report is not lifted unseen.
"""
from __future__ import annotations

import html
import json
import re
import secrets

import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    StaffShop,
    add_member,
    dashboard_settings,
    make_staff_shop,
    staff_sign_in,
)
from portal_helpers import PortalClient, seed_customer, text

from chalicelib.activity import service as activity
from chalicelib.notices import suppression
from chalicelib.store import actions as actions_store
from chalicelib.store import customers as customers_store
from chalicelib.store import notices as notices_store
from devstack import ses_feedback

pytestmark = pytest.mark.usefixtures("dashboard_settings")
ACTION_ID_RE = re.compile(r'name="action_id" value="([^"]+)"')


@pytest.fixture(scope="module")
def staff_shop(app_client, stack) -> StaffShop:  # noqa: F811
    return make_staff_shop(app_client, stack)


def _customer(staff_shop: StaffShop, report: str | None) -> tuple[str, str]:
    """A customer of the shop whose address SES reported (``Bounce``, ``Complaint``)."""
    seeded = seed_customer(staff_shop.shop)
    customer_id = customers_store.find_by_email(staff_shop.account_id, seeded.email)
    assert customer_id
    if report:
        done = suppression.handle_event(ses_feedback.ses_event(
            report, staff_shop.account_id, customer_id, f"msg-{secrets.token_hex(6)}",
            seeded.email.upper()))
        assert done["suppressed"] == [seeded.email.lower()]
    return customer_id, seeded.email


def _api(staff_shop: StaffShop, method: str, customer_id: str, body=None, key: str | None = "",
         api_key: str | None = None):
    headers = {"Authorization": f"Bearer {api_key or staff_shop.shop.merchant.api_key}",
               "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key or secrets.token_hex(8)
    raw = json.dumps(body).encode() if body is not None else b""
    return staff_shop.shop.merchant.client.http.request(
        method, f"/api/v1/customers/{customer_id}/suppression", body=raw, headers=headers)


def _lifts(account_id: str, customer_id: str) -> list[dict]:
    entries, _ = activity.list(account_id, target=customer_id)
    return [e for e in entries if e["action"] == "customer.lift_suppression"]


def test_the_api_lifts_a_bounce_once(staff_shop):
    customer_id, email = _customer(staff_shop, "Bounce")
    got = json.loads(_api(staff_shop, "GET", customer_id, key=None).body)
    assert got["email"] == email and got["suppression"]["reason"] == "bounce"
    assert got["suppression"]["detail"] == "Permanent/General"

    # Bad requests: 4xx, nothing changed.
    for body, key, status in (({"reason": "fixed"}, None, 400), ({}, "", 400),
                              ({"reason": "  "}, "", 400), ({"reason": "x" * 501}, "", 400),
                              ({"reason": "ok", "confirm_complaint": "yes"}, "", 400),
                              ({"reason": "ok", "extra": 1}, "", 400)):
        answer = _api(staff_shop, "DELETE", customer_id, body, key=key)
        assert answer.status_code == status, (body, answer.body)
    assert suppression.reason_for(staff_shop.account_id, email) == "bounce"
    assert _lifts(staff_shop.account_id, customer_id) == []

    key = secrets.token_hex(8)
    first = _api(staff_shop, "DELETE", customer_id, {"reason": "Mailbox fixed"}, key=key)
    assert first.status_code == 200, first.body
    lifted = json.loads(first.body)
    assert lifted["email"] == email.lower() and lifted["lifted"]["reason"] == "bounce"
    assert suppression.reason_for(staff_shop.account_id, email) is None
    # The same request again: the same answer, nothing more done or logged.
    again = _api(staff_shop, "DELETE", customer_id, {"reason": "Mailbox fixed"}, key=key)
    assert (again.status_code, json.loads(again.body)) == (200, lifted)
    [entry] = _lifts(staff_shop.account_id, customer_id)
    assert entry["reason"] == "Mailbox fixed" and entry["actor"] == "api"
    assert entry["details"]["before"]["suppression"]["reason"] == "bounce"
    # A new request: nothing left to lift.
    nothing = _api(staff_shop, "DELETE", customer_id, {"reason": "again"})
    assert nothing.status_code == 409 and b"not_suppressed" in nothing.body
    assert json.loads(_api(staff_shop, "GET", customer_id, key=None).body)["suppression"] is None


def test_a_complaint_needs_the_confirmation(staff_shop):
    customer_id, email = _customer(staff_shop, "Complaint")
    refused = _api(staff_shop, "DELETE", customer_id, {"reason": "They called us"})
    assert refused.status_code == 400
    assert json.loads(refused.body)["error"] == "complaint_confirmation_required"
    assert b"marked one of your e-mails as spam" in refused.body
    assert suppression.reason_for(staff_shop.account_id, email) == "complaint"
    done = _api(staff_shop, "DELETE", customer_id,
                {"reason": "They called us", "confirm_complaint": True})
    assert done.status_code == 200, done.body
    assert suppression.reason_for(staff_shop.account_id, email) is None
    assert len(_lifts(staff_shop.account_id, customer_id)) == 1


def test_another_accounts_customer_is_not_found(staff_shop, app_client, stack):  # noqa: F811
    customer_id, email = _customer(staff_shop, "Bounce")
    other = make_staff_shop(app_client, stack)
    for method, body in (("GET", None), ("DELETE", {"reason": "mine now"})):
        answer = _api(staff_shop, method, customer_id, body,
                      key=None if method == "GET" else "",
                      api_key=other.shop.merchant.api_key)
        assert answer.status_code == 404, answer.body
    assert _api(staff_shop, "DELETE", "cst_nobody", {"reason": "x"}).status_code == 404
    assert suppression.reason_for(staff_shop.account_id, email) == "bounce"


def test_a_newer_report_is_not_lifted_unseen(staff_shop):
    _, email = _customer(staff_shop, "Bounce")
    seen = notices_store.suppression(staff_shop.account_id, email.lower())
    # SES reports the address again (a complaint) after the page was read.
    notices_store.suppress(staff_shop.account_id, email.lower(), "complaint", "abuse", "m2",
                           "2099-01-01T00:00:00Z")
    with pytest.raises(actions_store.Conflict):
        actions_store.commit_ops([notices_store.lift_suppression_write(
            staff_shop.account_id, email.lower(), seen["at"])])
    assert suppression.reason_for(staff_shop.account_id, email) == "complaint"


def _signed_in(app_client, staff_shop, sent_emails, role: str) -> PortalClient:  # noqa: F811
    email = staff_shop.owner if role == "owner" else add_member(staff_shop, role)[0]
    c = PortalClient(app_client.http)
    staff_sign_in(c, staff_shop.root, email, sent_emails)
    return c


@pytest.mark.parametrize("role", ["support", "read_only"])
def test_support_and_read_only_are_refused_and_nothing_is_written(
        app_client, staff_shop, sent_emails, role):  # noqa: F811
    customer_id, email = _customer(staff_shop, "Bounce")
    c = _signed_in(app_client, staff_shop, sent_emails, role)
    record = f"{staff_shop.root}/customers/{customer_id}"
    page = c.get(record)
    assert page.status_code == 200 and "/suppression" not in text(page)
    assert c.get(f"{record}/suppression").status_code == 403
    refused = c.post(f"{record}/suppression", {"action_id": "s" * 24, "reason": "please"})
    assert refused.status_code == 403
    assert suppression.reason_for(staff_shop.account_id, email) == "bounce"
    assert _lifts(staff_shop.account_id, customer_id) == []


def test_an_admin_lifts_a_complaint_from_the_record_page(app_client, staff_shop,  # noqa: F811
                                                         sent_emails):
    customer_id, email = _customer(staff_shop, "Complaint")
    c = _signed_in(app_client, staff_shop, sent_emails, "admin")
    record = f"{staff_shop.root}/customers/{customer_id}"
    assert f'href="{record}/suppression"' in text(c.get(record))
    page = text(c.get(f"{record}/suppression"))
    assert "asked not to get your mail" in html.unescape(page)
    action_id = ACTION_ID_RE.search(page).group(1)

    # Without the session's CSRF token: 403, nothing changed.
    forged = c.post(f"{record}/suppression", {"action_id": action_id, "reason": "x",
                                              "confirm_complaint": "1"}, csrf="forged")
    assert forged.status_code == 403
    # Without the confirmation: the form again, with the warning; nothing changed.
    unconfirmed = c.post(f"{record}/suppression", {"action_id": action_id,
                                                   "reason": "Asked by phone"})
    assert unconfirmed.status_code == 400 and 'value="Asked by phone"' in text(unconfirmed)
    assert suppression.reason_for(staff_shop.account_id, email) == "complaint"

    form = {"action_id": action_id, "reason": "Asked by phone", "confirm_complaint": "1"}
    done = c.post(f"{record}/suppression", form)
    assert done.status_code == 303, text(done)
    assert suppression.reason_for(staff_shop.account_id, email) is None
    assert "The suppression is lifted" in text(c.get(
        f"{record}/suppression?done=lifted"))
    # The same form sent twice: acted once.
    assert c.post(f"{record}/suppression", form).status_code == 303
    [entry] = _lifts(staff_shop.account_id, customer_id)
    assert entry["actor_email"] and entry["reason"] == "Asked by phone"
