"""The webhook endpoint: signatures, bad input, idempotency, ordering, the audit trail."""
from __future__ import annotations

import json
import time

from app_fixtures import app_client, make_merchant, merchant  # noqa: F401
from stripe_events import Stream, sign


def _nothing_written(m) -> None:
    assert m.get_json("/api/v1/customers")["data"] == []
    assert m.get_json("/api/v1/webhook-deliveries")["data"] == []


def _customer_event(prefix="sig"):
    s = Stream(prefix)
    s.customer("sig@example.com", "Sig Nature")
    return s.events[0]


def test_valid_signature_applies(merchant):  # noqa: F811
    r = merchant.deliver(_customer_event())
    assert r.status_code == 200
    assert json.loads(r.body)["outcome"] == "applied"
    assert [c["email"] for c in merchant.customers()] == ["sig@example.com"]


def test_rotated_secret_old_and_new_both_verify(app_client):  # noqa: F811
    m = make_merchant(app_client, secrets_count=2)
    new, old = m.webhook_secrets
    s = Stream("rot")
    s.customer("a@example.com", "A")
    s.customer("b@example.com", "B")
    assert m.deliver(s.events[0], secret=old).status_code == 200
    assert m.deliver(s.events[1], secret=new).status_code == 200
    assert len(m.customers()) == 2


def test_tampered_body_is_rejected_and_writes_nothing(merchant):  # noqa: F811
    event = _customer_event()
    body = json.dumps(event).encode()
    header = sign(body, merchant.webhook_secrets[0])
    tampered = body.replace(b"sig@example.com", b"evil@example.com")
    r = merchant.deliver(event, body=tampered, headers={"Stripe-Signature": header})
    assert r.status_code == 400
    assert json.loads(r.body)["error"] == "invalid_signature"
    _nothing_written(merchant)


def test_stale_timestamp_is_rejected(merchant):  # noqa: F811
    body = json.dumps(_customer_event()).encode()
    header = sign(body, merchant.webhook_secrets[0], timestamp=int(time.time()) - 3600)
    r = merchant.deliver(None, body=body, headers={"Stripe-Signature": header})
    assert r.status_code == 400
    _nothing_written(merchant)


def test_missing_signature_header_is_rejected(merchant):  # noqa: F811
    body = json.dumps(_customer_event()).encode()
    r = merchant.client.http.post(f"/webhooks/stripe/{merchant.account_id}", body=body,
                                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    _nothing_written(merchant)


def test_wrong_secret_is_rejected(merchant):  # noqa: F811
    r = merchant.deliver(_customer_event(), secret="whsec_not_the_one")
    assert r.status_code == 400
    _nothing_written(merchant)


def test_unknown_account_and_processor_answer_404(merchant):  # noqa: F811
    body = json.dumps(_customer_event()).encode()
    headers = {"Content-Type": "application/json", "Stripe-Signature": sign(body, "x")}
    for path in ("/webhooks/stripe/acct_01m7000000000000000000000x",
                 "/webhooks/stripe/not-an-account",
                 f"/webhooks/paypal/{merchant.account_id}"):
        r = merchant.client.http.post(path, body=body, headers=headers)
        assert r.status_code == 404, path
        assert "Traceback" not in r.body.decode()


def test_signed_malformed_json_is_400_and_writes_nothing(merchant):  # noqa: F811
    for body in (b"{not json", b"[]", b'{"id": "evt_1"}', b'{"id": 5, "type": "x", "data": {}}',
                 "\u00ff".encode("latin-1")):
        r = merchant.deliver(None, body=body)
        assert r.status_code == 400, body
        assert json.loads(r.body)["error"] == "malformed_payload"
    _nothing_written(merchant)


def test_other_event_types_are_recorded_and_ignored(merchant):  # noqa: F811
    s = Stream("ign")
    s.event("plan.created", {"id": "plan_1", "object": "plan"})
    r = merchant.deliver(s.events[0])
    assert r.status_code == 200 and json.loads(r.body)["outcome"] == "ignored"
    deliveries = merchant.get_json("/api/v1/webhook-deliveries")["data"]
    assert [(d["event_type"], d["outcome"]) for d in deliveries] == [("plan.created", "ignored")]
    assert merchant.customers() == []


def test_redelivery_is_applied_once_and_audited_each_time(merchant):  # noqa: F811
    s = Stream("dup")
    cus = s.customer("dup@example.com", "Dup")
    s.one_time(cus, 1234)
    for event in s.events + s.events:
        assert merchant.deliver(event).status_code == 200
    record = merchant.records_by_email()["dup@example.com"]
    assert record["stats"]["orders"] == 1
    assert record["stats"]["lifetime_value"] == {"usd": 1234}
    outcomes = sorted(d["outcome"] for d in merchant.get_json("/api/v1/webhook-deliveries")["data"])
    assert outcomes == ["applied", "applied", "duplicate", "duplicate"]


def test_stale_subscription_update_never_overwrites_newer_state(merchant):  # noqa: F811
    s = Stream("stale")
    cus = s.customer("stale@example.com", "Stale")
    sub = s.subscription(cus, 1000)
    s.update_subscription(sub, cus, 1000, event_type="customer.subscription.deleted",
                          status="canceled", canceled_at=s.t, ended_at=s.t)
    s.update_subscription(sub, cus, 3000, status="past_due")  # later time, but canceled sticks
    created, deleted, later = s.events[1], s.events[2], s.events[3]
    later["created"] = created["created"] + 1  # an old update, arriving last
    for event in (s.events[0], deleted, created, later):
        assert merchant.deliver(event).status_code == 200
    sub_view = merchant.records_by_email()["stale@example.com"]["subscriptions"][0]
    assert sub_view["status"] == "canceled"
    assert sub_view["amount"] == 1000


def test_events_before_the_customer_are_kept_and_merged(merchant):  # noqa: F811
    """A subscription and its invoice arrive before customer.created; another record with
    the e-mail already exists from a second Stripe customer: all ends in one record."""
    s = Stream("early")
    other = s.customer("early@example.com", "Early Bird")
    s.one_time(other, 700)
    cus = "cus_earlylater"
    sub = s.subscription(cus, 2500)
    s.invoice(cus, sub, 2500, type_="invoice.payment_failed")
    s.customer("EARLY@example.com", "Early Bird", cid=cus)
    for event in s.events:
        assert merchant.deliver(event).status_code == 200
    customers = merchant.customers()
    assert len(customers) == 1
    record = merchant.get_json(f"/api/v1/customers/{customers[0]['id']}")
    assert record["subscriptions"][0]["amount"] == 2500
    assert record["stats"]["subscriptions_with_missed_payment"] == 1
    assert record["stats"]["lifetime_value"] == {"usd": 700}


def test_dispute_before_its_payment_is_retried_not_lost(merchant):  # noqa: F811
    s = Stream("disp")
    cus = s.customer("disp@example.com", "Disp")
    pi, charge = s.one_time(cus, 4200)
    s.dispute(pi, charge, 4200)
    customer_created, payment, dispute = s.events
    r = merchant.deliver(dispute)
    # Stripe is asked who owns the charge; localstripe never saw this made-up one, as a
    # key of another account would not: deferred, and Stripe delivers it again later.
    assert r.status_code == 503
    assert merchant.customers() == []
    for event in (customer_created, payment, dispute):
        assert merchant.deliver(event).status_code == 200
    record = merchant.records_by_email()["disp@example.com"]
    assert record["disputes"][0]["amount"] == 4200
    outcomes = [d["outcome"] for d in merchant.get_json("/api/v1/webhook-deliveries")["data"]]
    assert "deferred" in outcomes


def test_partial_and_full_refunds_net_out_of_lifetime_value(merchant):  # noqa: F811
    s = Stream("ref")
    cus = s.customer("ref@example.com", "Ref")
    pi, charge = s.one_time(cus, 10000, currency="eur")
    s.refund(cus, pi, charge, 2500, currency="eur")
    for event in s.events:
        merchant.deliver(event)
    record = merchant.records_by_email()["ref@example.com"]
    assert record["stats"]["lifetime_value"] == {"eur": 7500}
    assert record["orders"][0]["status"] == "partially_refunded"
    s.charge_refunded(cus, pi, charge, 10000, 10000, currency="eur")  # now refunded in full
    merchant.deliver(s.events[-1])
    record = merchant.records_by_email()["ref@example.com"]
    assert record["stats"]["lifetime_value"] == {"eur": 0}
    assert record["orders"][0]["status"] == "refunded"


def test_payment_plan_from_cancel_at_at_creation(merchant):  # noqa: F811
    s = Stream("cancelat")
    cus = s.customer("plan@example.com", "Plan")
    sid = "sub_cancelatplan"
    obj = s._subscription_obj(sid, cus, 3000, "usd", None, "active", False, "Course", None)
    obj["cancel_at"] = obj["start_date"] + 4 * 30 * 86400
    s.event("customer.subscription.created", obj)
    s.invoice(cus, sid, 3000)
    for event in s.events:
        merchant.deliver(event)
    record = merchant.records_by_email()["plan@example.com"]
    assert record["subscriptions"] == []
    plan = record["payment_plans"][0]
    assert plan["installments_total"] == 4 and plan["remaining_balance"] == 9000


def test_payment_plan_from_a_subscription_schedule(merchant):  # noqa: F811
    from stripe_events import fixture

    s = Stream("sched")
    cus = s.customer("sched@example.com", "Sched")
    sid = s.subscription(cus, 4000, nickname="Kitchen")
    schedule = fixture("subscription_schedule", subscription=sid, customer=cus,
                       end_behavior="cancel")
    schedule["phases"] = [{**schedule["phases"][0], "iterations": 6}]
    s.event("subscription_schedule.created", schedule)
    # Today's shape: a phase's dates instead of iterations (two monthly phases of 3).
    later = fixture("subscription_schedule", subscription=sid, customer=cus, end_behavior="cancel")
    phase = later["phases"][0]
    phase["items"][0]["plan"] = {**phase["items"][0]["plan"], "interval": "month", "interval_count": 1}
    later["phases"] = [{**phase, "start_date": 0, "end_date": 3 * 30 * 86400},
                       {**phase, "start_date": 3 * 30 * 86400, "end_date": 6 * 30 * 86400}]
    s.event("subscription_schedule.updated", later)
    for event in s.events:
        assert merchant.deliver(event).status_code == 200
    plan = merchant.records_by_email()["sched@example.com"]["payment_plans"][0]
    assert plan["installments_total"] == 6 and plan["remaining_balance"] == 24000


def test_forged_signatures_read_the_account_again_at_most_once_a_minute(merchant):  # noqa: F811
    """A failed signature re-reads the account (a secret may have just been rolled), but
    a flood of forgeries costs one table read a minute, not one each."""
    from app_fixtures import DynamoCalls

    assert merchant.deliver(_customer_event()).status_code == 200  # the account is cached
    with DynamoCalls() as ddb:
        for _ in range(5):
            assert merchant.deliver(_customer_event(), secret="whsec_forged").status_code == 400
    assert ddb.calls == ["GetItem"]
