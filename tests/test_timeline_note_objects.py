"""A note on one of the customer's objects says on the timeline which one it is about (issue 11):
the timeline's note items carry the object as the record shows it (timeline.object_of), the
merchant API's timeline gives it, and the dashboard's record page labels the note ("on payment
€12.00 of 3 Mar 2026") with a link to the transaction's page, escaped as all text is."""
from __future__ import annotations

import html
import re
import secrets

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    dashboard_settings,
    staff_sign_in,
)
from portal_helpers import PortalClient, make_stripe_shop, text
from stripe_events import Stream

NOTE_FORM_RE = re.compile(r'action="[^"]*/notes".*?name="action_id" value="([^"]+)"', re.S)


def test_note_items_name_their_object_in_the_service_and_the_api(app_client):  # noqa: F811
    from chalicelib.notes import service as notes
    from chalicelib.timeline import service as timeline

    merchant = make_merchant(app_client)
    prefix = "nobj" + secrets.token_hex(3)
    s = Stream(prefix)
    cus = s.customer(f"{prefix}@example.com", "Note Objects")
    pi, _ = s.one_time(cus, 1200, currency="eur")
    sid = s.subscription(cus, 900, nickname="Tea")
    merchant.deliver_until_applied(s.events)
    [customer] = merchant.customers()
    cid, account = customer["id"], merchant.account_id
    record = merchant.get_json(f"/api/v1/customers/{cid}")
    [payment] = record["payments"]
    [sub] = record["subscriptions"]

    on_payment = notes.add(account, cid, "stf_1", "ann@shop.test", "Wants a copy", object_ref=payment["id"])
    on_intent = notes.add(account, cid, "stf_1", "ann@shop.test", "By processor ref",
                          object_ref=f"stripe:{pi}")
    on_sub = notes.add(account, cid, "stf_1", "ann@shop.test", "Tea lover", object_ref=sub["id"])
    unknown = notes.add(account, cid, "stf_1", "ann@shop.test", "Elsewhere",
                        object_ref="stripe:pi_notthisrecord")
    plain = notes.add(account, cid, "stf_1", "ann@shop.test", "On the customer")

    items, _ = timeline.list_for(account, cid, 20, None, sources=["note"])
    objects = {i["id"]: i["object"] for i in items}
    paid = {"type": "payment", "id": payment["id"], "amount": 1200, "currency": "eur",
            "at": payment["paid_at"]}
    assert payment["paid_at"]
    assert objects == {on_payment["id"]: paid, on_intent["id"]: paid,
                       on_sub["id"]: {"type": "subscription", "id": sub["id"], "product": "Tea"},
                       unknown["id"]: None, plain["id"]: None}
    assert sid in sub["processor_ref"]

    # The merchant API's timeline says the same.
    api = merchant.get_json(f"/api/v1/customers/{cid}/timeline?source=note")["data"]
    assert {i["id"]: i["object"] for i in api} == objects

    # Pure: every kind the record shows, and nothing for an object it does not.
    whole = merchant.get_json(f"/api/v1/customers/{cid}")
    [order] = [o for o in whole["orders"] if o["kind"] == "one_time"]
    assert timeline.object_of(whole, order["id"])["type"] == "order"
    assert timeline.object_of(whole, None) is None
    assert timeline.object_of(None, payment["id"]) is None


@pytest.fixture
def shop(app_client, stack, app_server, stripe_client):  # noqa: F811
    return make_stripe_shop(app_client, stack, app_server, stripe_client)


@pytest.mark.usefixtures("dashboard_settings")
def test_record_timeline_labels_a_note_with_its_payment_and_links_it(app_client, shop,  # noqa: F811
                                                                     sent_emails):
    from chalicelib.formatting import date, money
    from chalicelib.staff import service as staff

    email = f"support-{shop.customer[-6:].lower()}@shop.test"
    staff.add_staff(shop.account_id, email, "support")
    c = PortalClient(app_client.http)
    root = f"/dashboard/{shop.shop.slug}"
    staff_sign_in(c, root, email, sent_emails)
    record = f"{root}/customers/{shop.customer_id()}"
    payment = next(p for p in shop.record()["payments"] if p["status"] == "succeeded")
    tx_url = f"{record}/transactions/{payment['id']}"
    page = c.get(tx_url)
    assert page.status_code == 200, text(page)
    done = c.post(f"{record}/notes", {"action_id": NOTE_FORM_RE.search(text(page)).group(1),
                                      "object": payment["id"],
                                      "text": "Charged <b>twice</b>? Checked: no."})
    assert done.status_code == 303, text(done)

    timeline = text(c.get(f"{record}?source=note"))
    entry = timeline.split('<ol class="timeline">')[1].split("</li>")[0]
    label = f"payment {money(payment['amount'], payment['currency'])} of {date(payment['paid_at'])}"
    assert f'on <a href="{tx_url}">{html.escape(label)}</a>' in entry, entry
    assert "Charged &lt;b&gt;twice&lt;/b&gt;? Checked: no." in entry  # escaped, as before
    assert c.get(tx_url).status_code == 200  # the link opens the transaction's page
