"""Editing a customer's details from the dashboard (chalicelib/dashboard/action_routes_customer.py)
through Chalice's test client with real staff sessions, against a customer at localstripe:
support changes the name and phone (pushed to Stripe, shown on the record, a double
submission acts once) but not the e-mail (403, nothing changed); an admin's new e-mail that
already has a record re-renders the form (409) with a link to it; read-only is refused."""
from __future__ import annotations

import html
import re
import secrets

import pytest
import stripe
from app_fixtures import app_client  # noqa: F401
from customer_action_helpers import another_customer, seeded_shop
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    dashboard_settings,
    staff_sign_in,
)
from portal_helpers import PortalClient, text

pytestmark = pytest.mark.usefixtures("dashboard_settings")
HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@pytest.fixture(scope="module")
def shop(app_client, stack):  # noqa: F811
    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_url})
    return seeded_shop(app_client, stack, client)


def _signed_in(app_client, shop, sent_emails, role: str):  # noqa: F811
    from chalicelib.staff import service as staff

    email = f"{role.replace('_', '-')}-{secrets.token_hex(3)}@shop.test"
    staff.add_staff(shop.account_id, email, role)
    c = PortalClient(app_client.http)
    root = f"/dashboard/{shop.shop.slug}"
    staff_sign_in(c, root, email, sent_emails)
    return c, f"{root}/customers/{shop.customer_id()}"


def _form(c, record: str) -> dict:
    """The edit form's fields as the page fills them (hidden ones included)."""
    page = html.unescape(text(c.get(f"{record}/edit")))
    fields = dict(HIDDEN_RE.findall(page))
    for name in ("name", "phone", "address_line1", "address_line2", "address_postal_code",
                 "address_city", "address_state", "address_country"):
        found = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page)
        fields[name] = found.group(1) if found else ""
    fields.pop("csrf", None)
    return fields


def test_support_edits_name_and_phone_but_not_the_e_mail(app_client, shop, sent_emails):  # noqa: F811
    c, record = _signed_in(app_client, shop, sent_emails, "support")
    assert "Edit customer details" in text(c.get(record))
    form = _form(c, record)
    assert form["email"] == shop.email  # a hidden copy: support cannot change it
    done = c.post(f"{record}/edit", {**form, "name": "Zofia Kowalska", "phone": "+48 500 600 700"})
    assert done.status_code == 303, text(done)
    again = c.post(f"{record}/edit", {**form, "name": "Zofia Kowalska",
                                      "phone": "+48 500 600 700"})  # a double submission
    assert again.status_code == 303
    found = shop.client.v1.customers.retrieve(shop.customer)
    assert found.name == "Zofia Kowalska" and found.phone == "+48 500 600 700"
    page = html.unescape(text(c.get(record)))
    assert "Zofia Kowalska" in page and "+48 500 600 700" in page
    from chalicelib.activity import service as activity

    assert len(activity.list(shop.account_id, limit=50, action_prefix="customer.edit")[0]) == 1

    refused = c.post(f"{record}/edit", {**_form(c, record), "email": "else@example.com"})
    assert refused.status_code == 403
    assert shop.client.v1.customers.retrieve(shop.customer).email == shop.email


def test_admin_e_mail_of_another_record_is_409_with_a_link(app_client, shop, sent_emails):  # noqa: F811
    other = another_customer(shop, "Other Person")
    c, record = _signed_in(app_client, shop, sent_emails, "admin")
    answer = c.post(f"{record}/edit", {**_form(c, record), "email": other.email})
    assert answer.status_code == 409
    body = html.unescape(text(answer))
    assert "already has this e-mail address" in body
    assert f'/customers/{other.customer_id()}" id="taken-link"' in body
    assert shop.client.v1.customers.retrieve(shop.customer).email == shop.email


def test_read_only_cannot_edit(app_client, shop, sent_emails):  # noqa: F811
    c, record = _signed_in(app_client, shop, sent_emails, "read_only")
    assert "Edit customer details" not in text(c.get(record))
    assert c.get(f"{record}/edit").status_code == 403
    assert c.post(f"{record}/edit", {"action_id": "a" * 24, "name": "X"}).status_code == 403
