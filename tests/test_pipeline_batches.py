"""The pipeline's handlers answer Lambda's partial batch responses: a stream batch stops at
its first failed record (the shard is read again from there, never past it); an SQS
batch names exactly the messages whose attempt could not run; a malformed message is
dropped, not retried forever."""
from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.integrations import delivery, pipeline

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _stream_record(seq: str, event_id: str) -> dict:
    return {"eventName": "INSERT", "dynamodb": {"SequenceNumber": seq, "NewImage": {
        "PK": {"S": "ACCT#acct_0123456789#OUTBOX"}, "SK": {"S": f"2026-11-29T12:00:00Z#{event_id}"},
        "T": {"S": "Outbox"}, "account_id": {"S": "acct_0123456789"},
        "event_id": {"S": event_id}, "event_type": {"S": "customer.created"},
        "customer_id": {"S": "cst_x"}, "occurred_at": {"S": "2026-11-29T12:00:00Z"},
        "data": {"S": "{}"}}}}


def test_a_stream_batch_stops_at_its_first_failed_record(monkeypatch):
    seen = []

    def fan_out(event, now):
        seen.append(event["event_id"])
        if event["event_id"] == "evt_2":
            raise ConnectionError("the table did not answer")
        return []

    monkeypatch.setattr(pipeline, "fan_out_event", fan_out)
    records = [_stream_record(str(n), f"evt_{n}") for n in (1, 2, 3)]
    assert pipeline.fan_out_records(records, NOW) == {
        "batchItemFailures": [{"itemIdentifier": "2"}]}
    assert seen == ["evt_1", "evt_2"]  # the third waits for the retry from record 2
    # Other items' records (a step, a modify) are passed over.
    other = {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": "9", "NewImage": {}}}
    assert pipeline.fan_out_records([other], NOW) == {"batchItemFailures": []}


def test_an_sqs_batch_names_the_messages_to_hand_again(monkeypatch):
    attempted = []

    def attempt(account_id, delivery_id, now):
        attempted.append(delivery_id)
        if delivery_id.endswith("2"):
            raise ConnectionError("no answer from the table")
        return {"attempted": True}

    monkeypatch.setattr(delivery, "attempt", attempt)
    ok = '{"account_id": "acct_0123456789", "delivery_id": "dlv_%s"}'
    records = [{"messageId": "m1", "body": ok % ("a" * 23 + "1")},
               {"messageId": "m2", "body": ok % ("a" * 23 + "2")},
               {"messageId": "m3", "body": "not json"},
               {"messageId": "m4", "body": '{"account_id": "../x", "delivery_id": "dlv_1"}'},
               {"messageId": "m5", "body": ok % ("a" * 23 + "5")}]
    assert pipeline.send_records(records, NOW) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert attempted == ["dlv_" + "a" * 23 + "1", "dlv_" + "a" * 23 + "2", "dlv_" + "a" * 23 + "5"]
