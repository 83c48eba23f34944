"""Recording a repayment of a lost dispute made elsewhere, through the merchant API: a
customer, a payment and its disputes delivered as Stripe's webhooks through the app's
webhook route; the repayment never above what the dispute took, once per key, only on a
lost dispute, and only the account's own."""
from __future__ import annotations

import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

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
    # A second lost dispute, of its own amount, for the concurrent recordings.
    pi3, charge3 = s.one_time(cus, 4000, currency="eur", email="disputed@example.com")
    s.dispute(pi3, charge3, 4000, status="lost", type_="charge.dispute.closed", currency="eur")
    merchant.deliver_until_applied(s.events)
    customer_id = merchant.customers()[0]["id"]
    record = merchant.get_json(f"/api/v1/customers/{customer_id}")
    lost = next(d for d in record["disputes"] if d["status"] == "lost" and d["amount"] == 5000)
    lost_again = next(d for d in record["disputes"] if d["status"] == "lost"
                      and d["amount"] == 4000)
    open_ = next(d for d in record["disputes"] if d["status"] != "lost")
    return {"merchant": merchant, "customer_id": customer_id, "lost": lost["id"],
            "lost_again": lost_again["id"], "open": open_["id"]}


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


def test_concurrent_recordings_never_add_up_above_the_dispute(world, monkeypatch):
    """Eight recordings of 1,500 against a dispute of 4,000, all reading what remains
    before any writes (a barrier holds each one after its read, so the race happens
    whatever the machine's load): the conditional total lets through at most 4,000."""
    from chalicelib.actions import disputes
    from chalicelib.actions.service import ActionContext
    from chalicelib.errors import AppError
    from chalicelib.store import repayments

    m, cid, lost = world["merchant"], world["customer_id"], world["lost_again"]
    barrier = threading.Barrier(8, timeout=120)
    read_state = disputes.repayment_state

    def read_then_wait(account_id, dispute):
        state = read_state(account_id, dispute)
        barrier.wait()
        return state

    monkeypatch.setattr(disputes, "repayment_state", read_then_wait)

    def one(_):
        ctx = ActionContext(account_id=m.account_id, actor_id="stf_test",
                            actor_email="staff@shop.test", role="admin", ip=None,
                            source="api", idempotency_key=secrets.token_urlsafe(16))
        try:
            return disputes.DisputeActions(ctx, cid).record_repayment(lost, 1500, "cash")
        except AppError as exc:
            return exc.to_dict()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    monkeypatch.setattr(disputes, "repayment_state", read_state)
    accepted = [r for r in results if "repayment" in r]
    refused = [r for r in results if "error" in r]
    assert len(accepted) + len(refused) == 8
    # Every one read 4,000 remaining: without the conditional total all eight would land.
    # (Racing transactions may also all be cancelled: the ones sent again below land.)
    assert len(accepted) <= 2, results
    assert {r["error"] for r in refused} <= {"repayments_changed"}, refused
    rows = [r for r in repayments.list_for(m.account_id, lost) if r["kind"] == "recorded"]
    assert sorted(r["repayment_id"] for r in rows) == sorted(
        r["repayment"]["repayment_id"] for r in accepted)
    state = disputes.repayment_state(m.account_id, {"id": lost, "amount": 4000})
    assert state["repaid"] == 1500 * len(accepted) <= 4000
    # Sent again one by one, each gets what remains: up to the dispute's amount, no more.
    for _ in range(3):
        status, body = _post(m, cid, lost, {"amount": 1500})
        assert status in (200, 400), body
    state = disputes.repayment_state(m.account_id, {"id": lost, "amount": 4000})
    assert state["repaid"] == 3000 and state["remaining"] == 1000
    status, body = _post(m, cid, lost, {"amount": 1000})
    assert status == 200 and body["dispute"]["remaining"] == 0
