"""Sending a repayment link for a lost dispute, through the merchant API: a Stripe Payment
Link (devstack's shim answers Stripe's Payment Link calls) for what remains, e-mailed to the
customer; paid through the shim, whose ``checkout.session.completed`` marks it paid on the
dispute, once whatever the redeliveries; one open link per dispute; any repayment recorded
elsewhere deactivates it (and a new link asks for what then remains); only a lost dispute
of the account's own customer."""
from __future__ import annotations

import json
import secrets
import urllib.parse
import urllib.request

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream


def _customer_with_lost_dispute(merchant, tag: str, email: str, amount: int = 5000) -> tuple:
    s = Stream(tag)
    cus = s.customer(email, "Disputed Person")
    pi, charge = s.one_time(cus, amount, currency="eur", email=email)
    s.dispute(pi, charge, amount, status="lost", type_="charge.dispute.closed", currency="eur")
    pi2, charge2 = s.one_time(cus, 1500, currency="eur", email=email)
    s.dispute(pi2, charge2, 1500, status="needs_response", currency="eur")
    merchant.deliver_until_applied(s.events)
    customer_id = merchant.records_by_email()[email]["id"]
    record = merchant.get_json(f"/api/v1/customers/{customer_id}")
    lost = next(d for d in record["disputes"] if d["status"] == "lost")
    open_ = next(d for d in record["disputes"] if d["status"] != "lost")
    return customer_id, lost["id"], open_["id"]


@pytest.fixture(scope="module")
def world(app_client, stack):  # noqa: F811
    stack.verify_sender("shop.test")  # make_merchant's support address sends the mail
    merchant = make_merchant(app_client)
    customer_id, lost, open_ = _customer_with_lost_dispute(merchant, "rpl",
                                                           "repay-link@example.com")
    return {"merchant": merchant, "customer_id": customer_id, "lost": lost, "open": open_}


def _post(merchant, path: str, body: dict | None = None, key: str | None = None):
    response = merchant.client.http.post(
        path, body=json.dumps(body or {}).encode(),
        headers={"Authorization": f"Bearer {merchant.api_key}",
                 "Content-Type": "application/json",
                 "Idempotency-Key": key or secrets.token_hex(12)})
    return response.status_code, json.loads(response.body or b"{}")


def _link(merchant, customer_id: str, dispute_id: str, key: str | None = None):
    return _post(merchant, f"/api/v1/customers/{customer_id}/disputes/{dispute_id}/"
                           "repayment-link", key=key)


def _shim(stripe_shim: str, path: str, form: dict | None = None,
          key: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": "Bearer sk_test_devstack"}
    if key:
        headers["Idempotency-Key"] = key
    request = urllib.request.Request(
        stripe_shim + path, data=urllib.parse.urlencode(form or {}).encode() if form is not None
        else None, method="POST" if form is not None else "GET", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_link_mailed_paid_through_the_shim_and_marked_paid_once(world, stripe_shim,
                                                                sent_emails):
    from chalicelib.activity import service as activity
    from chalicelib.store import outbox

    m, cid, lost = world["merchant"], world["customer_id"], world["lost"]
    key = secrets.token_hex(12)
    status, body = _link(m, cid, lost, key=key)
    assert status == 200, body
    link = body["repayment"]
    assert body["created"] is True and body["mailed"] is True
    assert link["amount"] == 5000 and link["currency"] == "eur" and link["status"] == "open"
    assert body["dispute"] == {"id": lost, "amount": 5000, "repaid": 0, "remaining": 5000}
    assert _link(m, cid, lost, key=key) == (200, body)  # the same key: the same answer
    # A double submission with another key: the open link, no second one, no second mail.
    again_status, again = _link(m, cid, lost)
    assert again_status == 200 and again["created"] is False
    assert again["repayment"]["url"] == link["url"]

    mails = [e for e in sent_emails() if "repay-link@example.com" in e["destinations"]
             .get("ToAddresses", []) and link["url"] in e["body"]]
    assert len(mails) == 1 and "Repayment" in mails[0]["subject"]

    # The link at Stripe (the shim): what remains, the metadata naming the repayment.
    from chalicelib.store import repayments

    row = next(r for r in repayments.list_for(m.account_id, lost) if r["kind"] == "link")
    plink = row["link_id"].partition(":")[2]
    status, at_stripe = _shim(stripe_shim, f"/v1/payment_links/{plink}")
    assert status == 200 and at_stripe["active"] is True and at_stripe["url"] == link["url"]
    assert at_stripe["metadata"] == {"account_id": m.account_id, "customer_id": cid,
                                     "dispute_id": lost, "repayment_id": link["repayment_id"]}
    status, items = _shim(stripe_shim, f"/v1/payment_links/{plink}/line_items")
    assert items["data"][0]["amount_total"] == 5000

    status, event = _shim(stripe_shim, f"/_shim/payment_links/{plink}/pay",
                          {"email": "repay-link@example.com", "name": "Disputed Person"})
    assert status == 200 and event["data"]["object"]["payment_link"] == plink
    # Paid once: the link takes no second payment.
    assert _shim(stripe_shim, f"/_shim/payment_links/{plink}/pay",
                 {"email": "repay-link@example.com"})[0] == 400
    assert m.deliver(event).status_code == 200
    record = m.get_json(f"/api/v1/customers/{cid}")
    from chalicelib.actions import disputes

    dispute = next(d for d in record["disputes"] if d["id"] == lost)
    state = disputes.repayment_state(m.account_id, dispute)
    assert state["repaid"] == 5000 and state["remaining"] == 0 and state["open_link"] is None
    paid = next(r for r in state["repayments"] if r["kind"] == "link")["paid"]
    assert paid["amount"] == 5000

    # Redelivered: nothing changes (no second paid marker, no second outbox event).
    before = repayments.list_for(m.account_id, lost)
    assert m.deliver(event).status_code == 200
    assert repayments.list_for(m.account_id, lost) == before

    # Nothing remains: no new link.
    assert _link(m, cid, lost)[0] == 409
    requested = [e for e in outbox.latest_of_type(m.account_id, "dispute.repayment_requested",
                                                   10) if e["customer_id"] == cid]
    assert len(requested) == 1 and requested[0]["data"]["url"] == link["url"]
    entries = activity.list(m.account_id, limit=50,
                            action_prefix="dispute.send_repayment_link")[0]
    assert len(entries) == 2  # the link, and the request that answered the open one


def test_refusals_change_nothing(world, app_client):  # noqa: F811
    from chalicelib.store import repayments

    m, cid = world["merchant"], world["customer_id"]
    before = repayments.list_for(m.account_id, world["open"])
    assert _link(m, cid, world["open"])[0] == 409  # not lost
    assert _link(m, cid, "dsp_nope")[0] == 404
    assert _post(m, f"/api/v1/customers/{cid}/disputes/{world['lost']}/repayment-link",
                 {"amount": 5})[0] == 400
    other = make_merchant(app_client)
    assert _link(other, cid, world["lost"])[0] == 404  # another account's
    assert repayments.list_for(m.account_id, world["open"]) == before


def test_any_recorded_repayment_deactivates_the_open_link(app_client, stripe_shim):  # noqa: F811
    """A link asks for what remained when it was sent: a partial repayment recorded
    elsewhere deactivates it at the processor (the customer could otherwise pay more than
    is owed) and offers a new link for the rest; one that covers the rest deactivates it
    too, and offers nothing."""
    from chalicelib.store import repayments

    m = make_merchant(app_client)
    cid, lost, _ = _customer_with_lost_dispute(m, "rpx", "repay-rest@example.com", 3000)
    repayments_path = f"/api/v1/customers/{cid}/disputes/{lost}/repayments"
    status, body = _post(m, repayments_path, {"amount": 1000})
    assert status == 200 and body["link_deactivated"] is None and body["next"] is None
    status, body = _link(m, cid, lost)
    assert status == 200 and body["repayment"]["amount"] == 2000
    first_url = body["repayment"]["url"]

    # Part of the rest, paid elsewhere while the link for 2,000 is open.
    status, body = _post(m, repayments_path, {"amount": 500, "method": "cash"})
    assert status == 200, body
    assert body["dispute"]["remaining"] == 1500
    assert body["link_deactivated"]["status"] == "deactivated"
    assert body["next"]["action"] == "send_repayment_link" and body["next"]["amount"] == 1500
    assert "€15.00" in body["next"]["message"]
    first = next(r for r in repayments.list_for(m.account_id, lost) if r["kind"] == "link")
    assert first["deactivated_at"]
    plink = first["link_id"].partition(":")[2]
    assert _shim(stripe_shim, f"/v1/payment_links/{plink}")[1]["active"] is False
    assert _shim(stripe_shim, f"/_shim/payment_links/{plink}/pay",
                 {"email": "repay-rest@example.com"})[0] == 400
    # A new link, for what remains now.
    status, body = _link(m, cid, lost)
    assert status == 200 and body["created"] is True, body
    assert body["repayment"]["amount"] == 1500 and body["repayment"]["url"] != first_url

    status, body = _post(m, repayments_path, {"amount": 1500, "method": "bank transfer"})
    assert status == 200 and body["dispute"]["remaining"] == 0 and body["next"] is None
    links = [r for r in repayments.list_for(m.account_id, lost) if r["kind"] == "link"]
    assert len(links) == 2 and all(r["deactivated_at"] for r in links)
    for row in links:
        plink = row["link_id"].partition(":")[2]
        assert _shim(stripe_shim, f"/v1/payment_links/{plink}")[1]["active"] is False


def test_the_gateway_sends_stripes_payment_link_shape():
    """The request as Stripe documents POST /v1/payment_links (price_data with product_data,
    metadata also on the payment intent, one completed session) and the answer read from
    Stripe's example object; deactivation is POST /v1/payment_links/{id} active=false."""
    from test_stripe_gateway import _fake_gateway

    from chalicelib.domain.events import Ref
    from chalicelib.processors.gateway import AmountNotAccepted

    link = {"id": "plink_1MoC3ULkdIwHu7ixZjtGpVl2", "object": "payment_link", "active": True,
            "currency": "eur", "livemode": False, "metadata": {"dispute_id": "dsp_1"},
            "url": "https://buy.stripe.com/test_cN25nr0iZ7bUa7meUY"}
    gw, fake = _fake_gateway({
        ("POST", "/v1/payment_links"): (200, link),
        ("POST", f"/v1/payment_links/{link['id']}"): (200, {**link, "active": False})})
    made = gw.create_payment_link(2500, "eur", "Repayment", {"dispute_id": "dsp_1"}, "k-1")
    assert (made.link, made.url, made.active) == (Ref("stripe", link["id"]), link["url"], True)
    method, path, form, headers = fake.calls[0]
    assert (method, path, headers["Idempotency-Key"]) == ("POST", "/v1/payment_links", "k-1")
    assert form == {"line_items[0][price_data][currency]": ["eur"],
                    "line_items[0][price_data][unit_amount]": ["2500"],
                    "line_items[0][price_data][product_data][name]": ["Repayment"],
                    "line_items[0][quantity]": ["1"],
                    "metadata[dispute_id]": ["dsp_1"],
                    "payment_intent_data[metadata][dispute_id]": ["dsp_1"],
                    "restrictions[completed_sessions][limit]": ["1"]}
    gw.deactivate_payment_link(made.link, "k-2")
    method, path, form, headers = fake.calls[1]
    assert (path, form, headers["Idempotency-Key"]) == (
        f"/v1/payment_links/{link['id']}", {"active": ["false"]}, "k-2")
    with pytest.raises(AmountNotAccepted):  # Stripe's KWD takes no last digit but 0
        gw.create_payment_link(5124, "kwd", "Repayment", {}, "k-3")


def test_the_shim_answers_payment_links_as_stripe_does(stripe_shim):
    form = {"line_items[0][price_data][currency]": "eur",
            "line_items[0][price_data][unit_amount]": "700",
            "line_items[0][price_data][product_data][name]": "Repayment",
            "line_items[0][quantity]": "1", "metadata[dispute_id]": "dsp_x"}
    key = secrets.token_hex(8)
    status, first = _shim(stripe_shim, "/v1/payment_links", form, key=key)
    assert status == 200 and first["object"] == "payment_link" and first["active"] is True
    assert first["id"].startswith("plink_") and first["url"].startswith("https://")
    assert _shim(stripe_shim, "/v1/payment_links", form, key=key) == (200, first)
    status, error = _shim(stripe_shim, "/v1/payment_links",
                          {**form, "line_items[0][price_data][unit_amount]": "800"}, key=key)
    assert status == 400 and error["error"]["type"] == "idempotency_error"
    missing = {k: v for k, v in form.items() if "unit_amount" not in k}
    status, error = _shim(stripe_shim, "/v1/payment_links", missing)
    assert status == 400 and error["error"]["code"] == "parameter_missing"
    assert _shim(stripe_shim, "/v1/payment_links/plink_nope")[0] == 404
    status, off = _shim(stripe_shim, f"/v1/payment_links/{first['id']}", {"active": "false"})
    assert status == 200 and off["active"] is False
    assert _shim(stripe_shim, f"/_shim/payment_links/{first['id']}/pay", {})[0] == 400
