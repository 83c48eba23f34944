"""A lost dispute's repayments on the dashboard (chalicelib/dashboard/action_routes_customer.py)
through Chalice's test client with real staff sessions: the record's disputes link a lost
one's page; support records a repayment made elsewhere (once per form, never above what
remains; one recorded while a link is open deactivates it and offers a new link for what
remains); read-only is refused and nothing is written."""
from __future__ import annotations

import html
import re

import pytest
from app_fixtures import app_client  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    add_member,
    dashboard_settings,
    make_staff_shop,
    staff_sign_in,
)
from portal_helpers import PortalClient, text
from stripe_events import Stream

pytestmark = pytest.mark.usefixtures("dashboard_settings")
ACTION_RE = re.compile(r'name="action_id" value="([^"]+)"')


@pytest.fixture(scope="module")
def world(app_client, stack):  # noqa: F811
    staff_shop = make_staff_shop(app_client, stack)
    s = Stream("rpd")
    cus = s.customer("lost-dispute@example.com", "Lost Dispute")
    pi, charge = s.one_time(cus, 4000, currency="eur", email="lost-dispute@example.com")
    s.dispute(pi, charge, 4000, status="lost", type_="charge.dispute.closed", currency="eur")
    staff_shop.shop.merchant.deliver_until_applied(s.events)
    customer_id = staff_shop.shop.merchant.customers()[0]["id"]
    return staff_shop, customer_id


def _signed_in(app_client, staff_shop, sent_emails, role: str) -> PortalClient:  # noqa: F811
    email, _ = add_member(staff_shop, role)
    c = PortalClient(app_client.http)
    staff_sign_in(c, staff_shop.root, email, sent_emails)
    return c


def test_support_records_a_repayment_once(app_client, world, sent_emails):  # noqa: F811
    staff_shop, customer_id = world
    c = _signed_in(app_client, staff_shop, sent_emails, "support")
    record = f"{staff_shop.root}/customers/{customer_id}"
    page = html.unescape(text(c.get(record)))
    found = re.search(r'href="([^"]+/disputes/[^"]+/repayment)"', page)
    assert found, "the lost dispute links its repayments"
    url = found.group(1)
    form_page = text(c.get(url))
    assert "Record a repayment made elsewhere" in form_page
    action_id = ACTION_RE.search(form_page).group(1)
    too_much = c.post(url, {"action_id": action_id, "amount": "40.01"})
    assert too_much.status_code == 400 and "more than remains" in text(too_much)
    form = {"action_id": action_id, "amount": "15.00", "method": "bank transfer"}
    first = c.post(url, form)
    assert first.status_code == 303, text(first)
    assert c.post(url, form).status_code == 303  # a double submission: once
    done = html.unescape(text(c.get(url + "?done=recorded")))
    assert "The repayment is recorded." in done
    assert re.search(r'id="repaid">€15\.00<', done) and re.search(r'id="remaining">€25\.00<', done)
    assert "bank transfer" in done


def test_read_only_cannot_open_or_record(app_client, world, sent_emails):  # noqa: F811
    from chalicelib.records import service as records
    from chalicelib.store import repayments

    staff_shop, customer_id = world
    c = _signed_in(app_client, staff_shop, sent_emails, "read_only")
    dispute = records.get_record(staff_shop.account_id, customer_id)["disputes"][0]
    url = f"{staff_shop.root}/customers/{customer_id}/disputes/{dispute['id']}/repayment"
    before = repayments.list_for(staff_shop.account_id, dispute["id"])
    assert c.get(url).status_code == 403
    assert c.post(url, {"action_id": "a" * 24, "amount": "1.00"}).status_code == 403
    assert repayments.list_for(staff_shop.account_id, dispute["id"]) == before


def test_support_sends_a_repayment_link_once_and_sees_it_paid(
        app_client, world, stack, sent_emails):  # noqa: F811
    import json
    import urllib.parse
    import urllib.request

    from chalicelib.records import service as records
    from chalicelib.store import repayments

    staff_shop, customer_id = world
    c = _signed_in(app_client, staff_shop, sent_emails, "support")
    dispute = records.get_record(staff_shop.account_id, customer_id)["disputes"][0]
    url = f"{staff_shop.root}/customers/{customer_id}/disputes/{dispute['id']}/repayment"
    page = text(c.get(url))
    assert "Send a repayment link" in page
    link_action = re.search(r'repayment-link"[^>]*>.*?name="action_id" value="([^"]+)"', page,
                            re.S).group(1)
    first = c.post(url + "-link", {"action_id": link_action})
    assert first.status_code == 303, text(first)
    assert c.post(url + "-link", {"action_id": link_action}).status_code == 303  # once
    # Another form (a second tab): the open link, no second one.
    other_action = ACTION_RE.findall(text(c.get(url)))
    assert c.post(url + "-link", {"action_id": other_action[0]}).status_code == 303
    links = [r for r in repayments.list_for(staff_shop.account_id, dispute["id"])
             if r["kind"] == "link"]
    assert len(links) == 1
    link = links[0]
    mails = [e for e in sent_emails() if link["url"] in e["body"]]
    assert len(mails) == 1 and mails[0]["destinations"]["ToAddresses"] == [
        "lost-dispute@example.com"]
    shown = html.unescape(text(c.get(url + "?done=link_sent")))
    assert "The repayment link was e-mailed to the customer." in shown
    assert "Open repayment link" in shown and link["url"] in shown
    assert "waiting for the payment" in shown

    plink = link["link_id"].partition(":")[2]
    request = urllib.request.Request(
        f"{stack.stripe_api_url}/_shim/payment_links/{plink}/pay",
        data=urllib.parse.urlencode({"email": "lost-dispute@example.com"}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        event = json.load(response)
    merchant = staff_shop.shop.merchant
    assert merchant.deliver(event).status_code == 200
    assert merchant.deliver(event).status_code == 200  # redelivered: no change
    paid = html.unescape(text(c.get(url)))
    assert re.search(r'data-status="paid"', paid) and "Open repayment link" not in paid
    assert re.search(r'id="remaining">€0\.00<', paid)
    assert "Send a repayment link" not in paid and "Record a repayment" not in paid


def test_read_only_cannot_send_a_repayment_link(app_client, world, sent_emails):  # noqa: F811
    from chalicelib.records import service as records
    from chalicelib.store import repayments

    staff_shop, customer_id = world
    c = _signed_in(app_client, staff_shop, sent_emails, "read_only")
    dispute = records.get_record(staff_shop.account_id, customer_id)["disputes"][0]
    url = (f"{staff_shop.root}/customers/{customer_id}/disputes/{dispute['id']}/"
           "repayment-link")
    before = repayments.list_for(staff_shop.account_id, dispute["id"])
    assert c.post(url, {"action_id": "b" * 24}).status_code == 403
    assert repayments.list_for(staff_shop.account_id, dispute["id"]) == before


def test_a_partial_repayment_deactivates_the_open_link_and_offers_a_new_one(
        app_client, world, sent_emails):  # noqa: F811
    from chalicelib.store import repayments

    staff_shop, _ = world
    merchant = staff_shop.shop.merchant
    s = Stream("rpn")
    cus = s.customer("partly-repaid@example.com", "Partly Repaid")
    pi, charge = s.one_time(cus, 3000, currency="eur", email="partly-repaid@example.com")
    s.dispute(pi, charge, 3000, status="lost", type_="charge.dispute.closed", currency="eur")
    merchant.deliver_until_applied(s.events)
    customer_id = merchant.records_by_email()["partly-repaid@example.com"]["id"]
    record = merchant.get_json(f"/api/v1/customers/{customer_id}")
    [dispute] = [d for d in record["disputes"] if d["status"] == "lost"]
    c = _signed_in(app_client, staff_shop, sent_emails, "support")
    url = f"{staff_shop.root}/customers/{customer_id}/disputes/{dispute['id']}/repayment"
    page = text(c.get(url))
    link_action = re.search(r'repayment-link"[^>]*>.*?name="action_id" value="([^"]+)"', page,
                            re.S).group(1)
    assert c.post(url + "-link", {"action_id": link_action}).status_code == 303
    record_action = re.search(r'/repayment"[^>]*>.*?name="action_id" value="([^"]+)"',
                              text(c.get(url)), re.S).group(1)
    recorded = c.post(url, {"action_id": record_action, "amount": "10.00", "method": "cash"})
    assert recorded.status_code == 303
    assert recorded.headers["Location"].endswith("?done=recorded_link_deactivated")
    shown = html.unescape(text(c.get(url + "?done=recorded_link_deactivated")))
    assert "the open repayment link asked for more than now remains" in shown.lower()
    assert "Open repayment link" not in shown and 'data-status="deactivated"' in shown
    assert "Send a new repayment link for the remaining €20.00" in shown
    [link] = [r for r in repayments.list_for(staff_shop.account_id, dispute["id"])
              if r["kind"] == "link"]
    assert link["amount"] == 3000 and link["deactivated_at"]
