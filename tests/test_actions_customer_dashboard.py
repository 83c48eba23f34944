"""The dashboard's customer actions (chalicelib/dashboard/action_routes_customer.py) through
Chalice's test client with real staff sessions, against a customer at localstripe: notes on
the record and on a transaction (added once per form, shown in the timeline and on the
transaction, refused to read-only); "update billing" e-mails a portal sign-in link that lands
on that subscription's card page, and a forged landing is ignored."""
from __future__ import annotations

import html
import re
from urllib.parse import quote, urlsplit

import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    dashboard_settings,
    staff_sign_in,
)
from portal_helpers import (
    TOKEN_RE,
    PortalClient,
    latest_link_and_code,
    make_stripe_shop,
    path_of,
    text,
)

pytestmark = pytest.mark.usefixtures("dashboard_settings")
NOTE_FORM_RE = re.compile(r'action="[^"]*/notes".*?name="action_id" value="([^"]+)"', re.S)


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


def _get(c, url) -> str:
    response = c.get(url)
    assert response.status_code == 200, text(response)
    return html.unescape(text(response))


def _notes(shop) -> list[dict]:
    from chalicelib.notes import service as notes

    return notes.list_for(shop.account_id, shop.customer_id())


def test_notes_on_the_record_and_a_transaction(app_client, shop, sent_emails):  # noqa: F811
    c, record = _signed_in(app_client, shop, sent_emails, "support")
    action_id = NOTE_FORM_RE.search(_get(c, record)).group(1)
    form = {"action_id": action_id, "text": "Asked for an invoice <b>copy</b>"}
    first = c.post(f"{record}/notes", form)
    assert first.status_code == 303, text(first)
    assert c.post(f"{record}/notes", form).status_code == 303  # the same form again
    assert [n["text"] for n in _notes(shop)] == ["Asked for an invoice <b>copy</b>"]
    timeline = text(c.get(urlsplit(first.headers["Location"]).path + "?source=note"))
    assert "Asked for an invoice &lt;b&gt;copy&lt;/b&gt;" in timeline  # escaped, in the timeline

    payment = shop.record()["payments"][0]
    tx_url = f"{record}/transactions/{payment['id']}"
    action_id = NOTE_FORM_RE.search(_get(c, tx_url)).group(1)
    done = c.post(f"{record}/notes", {"action_id": action_id, "object": payment["id"],
                                      "text": "Charged twice? Checked: no."})
    assert done.status_code == 303 and tx_url in done.headers["Location"]
    assert "Charged twice? Checked: no." in _get(c, tx_url)
    assert len(_notes(shop)) == 2

    # Bad input: 400, nothing written.
    for bad in ({"text": "   "}, {"text": "x" * 2001}, {"text": "ok", "object": "pay_nope"},
                {"text": "ok", "object": "javascript:alert(1)"}):
        refused = c.post(f"{record}/notes", {"action_id": "n" * 24 + str(len(bad)), **bad})
        assert refused.status_code == 400, (bad, text(refused))
    assert len(_notes(shop)) == 2


def test_read_only_sees_no_note_form_and_is_refused(app_client, shop, sent_emails):  # noqa: F811
    c, record = _signed_in(app_client, shop, sent_emails, "read_only")
    body = _get(c, record)
    assert "/notes" not in body and "update-billing" not in body
    assert c.post(f"{record}/notes", {"action_id": "r" * 24, "text": "hi"}).status_code == 403
    sub = shop.sub(shop.subscription)
    assert c.post(f"{record}/subscriptions/{sub['id']}/update-billing", {}).status_code == 403
    assert _notes(shop) == []


def _customer_signs_in_with(app_client, link: str):  # noqa: F811
    customer = PortalClient(app_client.http)
    page = customer.get(path_of(link))
    assert page.status_code == 200, text(page)
    root = path_of(link).split("/link?")[0]
    signed = customer.post(f"{root}/link", {"token": TOKEN_RE.search(text(page)).group(1)})
    assert signed.status_code == 303, text(signed)
    return customer, root, signed.headers["Location"]


def test_update_billing_lands_on_the_subscription_card_page(app_client, shop, sent_emails,  # noqa: F811
                                                             stack, app_server, stripe_client):
    c, record = _signed_in(app_client, shop, sent_emails, "support")
    sub = shop.sub(shop.subscription)
    assert f"{record}/subscriptions/{sub['id']}/update-billing" in _get(c, record)
    sent = c.post(f"{record}/subscriptions/{sub['id']}/update-billing", {})
    assert sent.status_code == 303 and "done=billing_link_sent" in sent.headers["Location"]
    assert "it opens the card page" in _get(c, urlsplit(sent.headers["Location"]).path + "?"
                                            + urlsplit(sent.headers["Location"]).query)
    link, _ = latest_link_and_code(sent_emails, shop.email)
    assert f"next=subscriptions/{sub['id']}" in link
    customer, root, location = _customer_signs_in_with(app_client, link)
    assert urlsplit(location).path == f"{root}/subscriptions/{sub['id']}"
    assert urlsplit(location).fragment == "card-h"
    assert 'id="card-h"' in text(customer.get(urlsplit(location).path))

    # Another customer's subscription or an outside address in a forged link: the overview.
    other = make_stripe_shop(app_client, stack, app_server, stripe_client)
    foreign = other.sub(other.subscription)["id"]
    assert c.post(f"{record}/subscriptions/{foreign}/update-billing", {}).status_code == 404
    for forged in (f"subscriptions/{foreign}", "//evil.example/x", "https://evil.example/",
                   "subscriptions/../../x"):
        customer = PortalClient(app_client.http)
        customer.get(f"{root}/")
        assert customer.post(f"{root}/sign-in", {"email": shop.email}).status_code == 200
        link, _ = latest_link_and_code(sent_emails, shop.email)
        _, _, location = _customer_signs_in_with(
            app_client, f"{link}&next={quote(forged, safe='')}")
        assert urlsplit(location).path == f"{root}/" and "evil" not in location, forged
