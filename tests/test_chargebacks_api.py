"""Recording a repayment of a lost dispute made elsewhere, through the merchant API: a
customer, a payment and its disputes delivered as Stripe's webhooks through the app's
webhook route; the repayment never above what the dispute took, once per key, only on a
lost dispute, and only the account's own."""
from __future__ import annotations

import json
import secrets

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream


@pytest.fixture(scope="module")
def world(app_client):  # noqa: F811
    merchant = make_merchant(app_client)
    s = Stream("rpy")
    cus = s.customer("disputed@example.com", "Disputed Person")
    pi, charge = s.one_time(cus, 5000, currency="eur", email="disputed@example.com")
    s.dispute(pi, charge, 5000, status="lost", type_="charge.dispute.closed", currency="eur")
    pi2, charge2 = s.one_time(cus, 1500, currency="eur", email="disputed@example.com")
    s.dispute(pi2, charge2, 1500, status="needs_response", currency="eur")
    merchant.deliver_until_applied(s.events)
    customer_id = merchant.customers()[0]["id"]
    record = merchant.get_json(f"/api/v1/customers/{customer_id}")
    lost = next(d for d in record["disputes"] if d["status"] == "lost")
    open_ = next(d for d in record["disputes"] if d["status"] != "lost")
    return {"merchant": merchant, "customer_id": customer_id, "lost": lost["id"],
            "open": open_["id"]}


def _post(merchant, customer_id: str, dispute_id: str, body: dict, key: str | None = None):
    response = merchant.client.http.post(
        f"/api/v1/customers/{customer_id}/disputes/{dispute_id}/repayments",
        body=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {merchant.api_key}",
                 "Content-Type": "application/json",
                 "Idempotency-Key": key or secrets.token_hex(12)})
    return response.status_code, json.loads(response.body or b"{}")


def test_record_repayments_of_a_lost_dispute_up_to_its_amount(world, app_client):  # noqa: F811
    from chalicelib.activity import service as activity

    m, cid, lost = world["merchant"], world["customer_id"], world["lost"]
    for bad in ({"amount": 0}, {"amount": -5}, {"amount": "10"}, {"amount": 1.5},
                {"amount": True}, {"amount": 100, "method": "x" * 101}, {"amount": 1, "x": 1}):
        assert _post(m, cid, lost, bad)[0] == 400, bad
    assert _post(m, cid, lost, {"amount": 5001})[0] == 400  # above the dispute
    assert _post(m, cid, world["open"], {"amount": 100})[0] == 409  # not lost
    assert _post(m, cid, "dsp_nope", {"amount": 100})[0] == 404
    other = make_merchant(app_client)
    assert _post(other, cid, lost, {"amount": 100})[0] == 404  # another account's

    key = secrets.token_hex(12)
    status, body = _post(m, cid, lost, {"amount": 2000, "method": "bank transfer",
                                        "note": "paid after our letter"}, key=key)
    assert status == 200, body
    assert body["dispute"] == {"id": lost, "amount": 5000, "repaid": 2000, "remaining": 3000}
    assert body["repayment"]["currency"] == "eur" and body["repayment"]["kind"] == "recorded"
    assert _post(m, cid, lost, {"amount": 2000, "method": "bank transfer",
                                "note": "paid after our letter"}, key=key) == (200, body)
    assert _post(m, cid, lost, {"amount": 3001})[0] == 400  # above what remains
    status, body = _post(m, cid, lost, {"amount": 3000})
    assert status == 200 and body["dispute"]["remaining"] == 0
    entries = activity.list(m.account_id, limit=50, action_prefix="dispute.record_repayment")[0]
    assert len(entries) == 2
