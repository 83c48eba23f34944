"""The refund form on the dashboard (chalicelib/dashboard/action_routes_money.py) through
Chalice's test client with real staff sessions, against localstripe: the form shows what
remains; a double submission of one form refunds once; support above the limit is 403 and
writes nothing; an admin above it confirms with a step-up code; bad amounts re-render the
form with a 4xx and change nothing."""
from __future__ import annotations

import re
import secrets

import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    STAFF_CODE_RE,
    add_member,
    dashboard_settings,
    staff_sign_in,
)
from portal_helpers import PortalClient, mails_to, make_stripe_shop, text
from test_refunds import World, unchanged_world  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("dashboard_settings")
ACTION_RE = re.compile(r'name="action_id" value="([^"]+)"')


@pytest.fixture
def world(app_client, stack, app_server, stripe_client):  # noqa: F811
    return World(make_stripe_shop(app_client, stack, app_server, stripe_client), stripe_client)


def _signed_in(app_client, world, sent_emails, role: str) -> tuple[PortalClient, str, str]:  # noqa: F811
    from chalicelib.staff import service as staff

    # A member of their own per call: a module's shared world signs in more than once.
    email = f"{role}-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(world.account_id, email, role)
    c = PortalClient(app_client.http)
    root = f"/dashboard/{world.shop.shop.slug}"
    staff_sign_in(c, root, email, sent_emails)
    return c, root, email


def _form_url(root, world) -> str:
    return f"{root}/customers/{world.customer_id}/payments/{world.payment['id']}/refund"


def test_refund_form_double_submit_refunds_once(app_client, world, sent_emails):  # noqa: F811
    c, root, _ = _signed_in(app_client, world, sent_emails, "support")
    page = c.get(_form_url(root, world))
    assert page.status_code == 200
    body = text(page)
    assert "Remaining refundable" in body and "€100.00" in body
    assert "Stripe&#39;s block lists" in body or "Stripe's block lists" in body
    action_id = ACTION_RE.search(body).group(1)
    form = {"action_id": action_id, "amount": "12.50", "reason": "requested_by_customer",
            "note": "double"}
    first = c.post(_form_url(root, world), form)
    assert first.status_code == 303, text(first)
    second = c.post(_form_url(root, world), form)
    assert second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    done = c.get(first.headers["Location"].split("127.0.0.1")[-1].split(":", 1)[-1]
                 if "://" in first.headers["Location"] else first.headers["Location"])
    assert "Refund of €12.50 made" in text(done) and "€87.50" in text(done)
    assert [r["amount"] for r in world.localstripe_refunds()] == [1250]
    # The transaction page links the form and shows what remains.
    tx = text(c.get(f"{root}/customers/{world.customer_id}/transactions/{world.payment['id']}"))
    assert "Remaining refundable" in tx and "€87.50" in tx and "/refund" in tx


def _limit(world, amount: int) -> None:
    from chalicelib.store import accounts as account_store

    account = account_store.get(world.account_id)
    account_store.update_settings(world.account_id, {
        **(account.get("settings") or {}), "staff": {"support_refund_limit": {"eur": amount}}})


def test_support_above_limit_is_403_and_writes_nothing(app_client, world, sent_emails):  # noqa: F811
    _limit(world, 5000)
    c, root, _ = _signed_in(app_client, world, sent_emails, "support")
    page = text(c.get(_form_url(root, world)))
    assert "up to €50.00" in page
    action_id = ACTION_RE.search(page).group(1)
    r = c.post(_form_url(root, world), {"action_id": action_id, "amount": "50.01",
                                         "reason": "duplicate"})
    assert r.status_code == 403
    assert world.localstripe_refunds() == []
    from chalicelib.store import actions as store

    assert store.read_ledger(world.account_id, world.payment["id"])[1] == []


def test_read_only_cannot_open_or_post_the_form(app_client, world, sent_emails):  # noqa: F811
    c, root, _ = _signed_in(app_client, world, sent_emails, "read_only")
    assert c.get(_form_url(root, world)).status_code == 403
    r = c.post(_form_url(root, world), {"action_id": "x" * 20, "amount": "1.00",
                                         "reason": "duplicate"})
    assert r.status_code == 403
    assert world.localstripe_refunds() == []


def test_admin_above_limit_confirms_with_a_step_up_code(app_client, world, sent_emails):  # noqa: F811
    _limit(world, 5000)
    c, root, email = _signed_in(app_client, world, sent_emails, "admin")
    action_id = ACTION_RE.search(text(c.get(_form_url(root, world)))).group(1)
    form = {"action_id": action_id, "amount": "", "reason": "other"}
    asked = c.post(_form_url(root, world), form)
    assert asked.status_code == 200 and "Confirmation code" in text(asked)
    assert world.localstripe_refunds() == []
    wrong = c.post(_form_url(root, world), {**form, "step_up_code": "000000"})
    assert wrong.status_code == 403 and world.localstripe_refunds() == []
    c.post(_form_url(root, world), form)  # a new code
    mail = [m for m in mails_to(sent_emails, email) if "Confirm a change" in m["body"]][-1]
    code = STAFF_CODE_RE.search(mail["body"]).group(1)
    done = c.post(_form_url(root, world), {**form, "step_up_code": code})
    assert done.status_code == 303, text(done)
    assert [r["amount"] for r in world.localstripe_refunds()] == [10000]


@pytest.mark.parametrize("amount,status", [("0", 400), ("-5", 400), ("abc", 400),
                                           ("12.345", 400), ("100.01", 400)])
def test_bad_amounts_rerender_the_form_and_change_nothing(app_client, unchanged_world,  # noqa: F811
                                                          sent_emails, amount, status):
    world = unchanged_world
    c, root, _ = _signed_in(app_client, world, sent_emails, "admin")
    action_id = ACTION_RE.search(text(c.get(_form_url(root, world)))).group(1)
    r = c.post(_form_url(root, world), {"action_id": action_id, "amount": amount,
                                         "reason": "duplicate"})
    assert r.status_code == status and 'role="alert"' in text(r)
    assert world.localstripe_refunds() == []
