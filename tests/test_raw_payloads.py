"""Raw webhook payloads kept with the delivery audit trail (inline, or in S3 when large),
the customer's event log, and an object's raw payloads (records.raw_events)."""
from __future__ import annotations

import base64
import json
import os
import secrets

import boto3
import pytest
from app_fixtures import app_client, make_merchant, merchant, raw_item  # noqa: F401
from stripe_events import Stream


def _customer_id(m) -> str:
    [customer] = m.customers()
    return customer["id"]


def _story(prefix: str):
    s = Stream(prefix)
    cus = s.customer(f"{prefix}@example.com", "Raw Payload")
    pi, charge = s.one_time(cus, 2500)
    s.refund(cus, pi, charge, 500)
    return s, cus, pi, charge


def test_an_objects_raw_payloads_are_listed_newest_first(merchant):  # noqa: F811
    from chalicelib.records import service as records

    s, cus, pi, charge = _story("raw" + secrets.token_hex(3))
    merchant.deliver_until_applied(s.events)
    cid = _customer_id(merchant)
    account = merchant.account_id

    by_intent = records.raw_events(account, cid, f"stripe:{pi}")
    # The payment and the refund name the intent; the customer event does not.
    assert [e["type"] for e in by_intent] == ["refund.created", "payment_intent.succeeded"]
    assert [e["payload"] for e in by_intent] == [s.events[2], s.events[1]]
    assert by_intent[0]["at"] > by_intent[1]["at"]
    assert f"stripe:{charge}" in by_intent[0]["object_refs"]
    assert [e["event_id"] for e in records.raw_events(account, cid, f"stripe:{cus}")] == \
        [e["id"] for e in reversed(s.events)]
    # By the record's own payment id: the payment's processor objects.
    record = records.get_record(account, cid)
    [payment] = record["payments"]
    assert [e["event_id"] for e in records.raw_events(account, cid, payment["id"])] == \
        [s.events[2]["id"], s.events[1]["id"]]
    order_id = record["orders"][0]["id"]
    assert len(records.raw_events(account, cid, order_id)) == 2
    assert records.raw_events(account, cid, "stripe:pi_unknown") == []


def test_isolation_and_bad_object_refs(app_client):  # noqa: F811
    from chalicelib.errors import BadRequest, NotFound
    from chalicelib.records import service as records

    a, b = make_merchant(app_client), make_merchant(app_client)
    s, _, pi, _ = _story("rawiso" + secrets.token_hex(3))
    a.deliver_until_applied(s.events)
    cid = _customer_id(a)
    with pytest.raises(NotFound):
        records.raw_events(b.account_id, cid, f"stripe:{pi}")
    with pytest.raises(NotFound):
        records.raw_events(a.account_id, "cst_01m7000000000000000000000x", f"stripe:{pi}")
    for bad in ("", "pi_1", "stripe:", "stripe:pi 1", "x" * 300, "pay_short", "<script>"):
        with pytest.raises(BadRequest):
            records.raw_events(a.account_id, cid, bad)
    with pytest.raises(NotFound):
        records.raw_events(a.account_id, cid, "pay_" + "a" * 24)


def test_a_body_over_dynamodbs_item_limit_is_kept_in_s3(merchant):  # noqa: F811
    """A 450 KB body that does not compress (DynamoDB's item limit is 400 KB): the object
    goes to the bucket before the transaction, the audit entry holds its key."""
    from chalicelib.records import service as records
    from chalicelib.webhooks import deliveries

    s = Stream("big" + secrets.token_hex(3))
    cus = s.customer("big@example.com", "Big Body")
    s.events[0]["request"] = {"id": None, "idempotency_key": base64.b64encode(
        secrets.token_bytes(340_000)).decode()}
    body = json.dumps(s.events[0]).encode()
    assert 400_000 < len(body) < 512 * 1024
    response = merchant.deliver(None, body=body)
    assert response.status_code == 200 and json.loads(response.body)["outcome"] == "applied"

    [entry], _ = deliveries.list_page(merchant.account_id, 10, None)
    assert entry["payload_bytes"] == len(body)
    delivery = deliveries.get(merchant.account_id, entry["id"])
    assert delivery["payload"] == s.events[0]
    key = raw_item(f"ACCT#{merchant.account_id}#DELIVERIES", base64.urlsafe_b64decode(
        entry["id"] + "==").decode())["payload_key"]["S"]
    assert key.startswith(f"payloads/{merchant.account_id}/dlv_") and key.endswith(".json.gz")
    s3 = boto3.client("s3")
    head = s3.head_object(Bucket=os.environ["RECEIPTS_BUCKET"], Key=key)
    assert head["ContentEncoding"] == "gzip"
    [event] = records.raw_events(merchant.account_id, _customer_id(merchant), f"stripe:{cus}")
    assert event["payload"] == s.events[0]


def test_a_small_body_stays_in_the_item_compressed(merchant):  # noqa: F811
    import zlib

    from chalicelib.webhooks import deliveries

    s = Stream("small" + secrets.token_hex(3))
    s.customer("small@example.com", "Small Body")
    body = json.dumps(s.events[0]).encode()
    assert merchant.deliver(None, body=body).status_code == 200
    [entry], _ = deliveries.list_page(merchant.account_id, 10, None)
    sk = base64.urlsafe_b64decode(entry["id"] + "==").decode()
    item = raw_item(f"ACCT#{merchant.account_id}#DELIVERIES", sk)
    assert zlib.decompress(item["payload_z"]["B"]) == body and "payload_key" not in item
    assert deliveries.get(merchant.account_id, entry["id"])["payload"] == s.events[0]


def test_s3_down_for_a_large_body_answers_503_and_applies_nothing(merchant, monkeypatch):  # noqa: F811
    from chalicelib.store import receipts_blob

    class Broken:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise ConnectionError("S3 is down")
            return fail

    s = Stream("s3down" + secrets.token_hex(3))
    s.customer("s3down@example.com", "S3 Down")
    s.events[0]["request"] = {"id": None, "idempotency_key": base64.b64encode(
        secrets.token_bytes(200_000)).decode()}
    monkeypatch.setattr(receipts_blob, "_client", Broken())
    response = merchant.deliver(s.events[0])
    assert response.status_code == 503
    assert merchant.customers() == []
    [failed] = merchant.get_json("/api/v1/webhook-deliveries")["data"]
    assert failed["outcome"] == "failed" and "payload store failed" in failed["error"]
    monkeypatch.undo()
    assert json.loads(merchant.deliver(s.events[0]).body)["outcome"] == "applied"


def test_duplicates_keep_no_second_copy_and_the_event_log_has_one_entry(merchant):  # noqa: F811
    from chalicelib.records import service as records
    from chalicelib.webhooks import deliveries

    s = Stream("rawdup" + secrets.token_hex(3))
    cus = s.customer("rawdup@example.com", "Dup Licate")
    for _ in range(3):
        assert merchant.deliver(s.events[0]).status_code == 200
    listed, _ = deliveries.list_page(merchant.account_id, 10, None)
    kept = {d["outcome"]: deliveries.get(merchant.account_id, d["id"]) for d in listed}
    assert kept["applied"]["payload"] == s.events[0]
    assert kept["duplicate"]["payload"] is None and kept["duplicate"]["payload_bytes"] is None
    assert len(records.raw_events(merchant.account_id, _customer_id(merchant), f"stripe:{cus}")) == 1


def test_the_event_log_item_expires_with_the_delivery(merchant):  # noqa: F811
    s = Stream("rawttl" + secrets.token_hex(3))
    s.customer("rawttl@example.com", "T T L")
    assert merchant.deliver(s.events[0]).status_code == 200
    cid = _customer_id(merchant)
    items = boto3.client("dynamodb").query(
        TableName=os.environ["TABLE_NAME"], KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"EVENTS#{cid}"}})["Items"]
    [item] = items
    delivery_sk = item["delivery_sk"]["S"]
    delivery = raw_item(f"ACCT#{merchant.account_id}#DELIVERIES", delivery_sk)
    assert item["ttl"] == delivery["ttl"]
    assert item["event_type"]["S"] == "customer.created"


def test_a_foreign_or_malformed_delivery_id_finds_nothing(app_client):  # noqa: F811
    from chalicelib import paging
    from chalicelib.webhooks import deliveries

    a, b = make_merchant(app_client), make_merchant(app_client)
    s = Stream("rawfor" + secrets.token_hex(3))
    s.customer("rawfor@example.com", "For Eign")
    assert a.deliver(s.events[0]).status_code == 200
    [entry], _ = deliveries.list_page(a.account_id, 10, None)
    assert deliveries.get(b.account_id, entry["id"]) is None
    assert deliveries.get(a.account_id, entry["id"])["payload"] == s.events[0]
    for bad in ("%%", "bm9oYXNo", paging.encode("2026-01-01T00:00:00.000000Z#evt_1")):
        with pytest.raises(paging.BadCursor):
            deliveries.get(a.account_id, bad)
