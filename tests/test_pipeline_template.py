"""The pipeline's AWS parts in infra/template.yaml: what Chalice's decorators cannot say
about the stream's event source mapping and the delivery queue (read as data, no AWS)."""
from __future__ import annotations

import json

import pytest
from test_infra import TEMPLATE, load_template

from chalicelib.integrations import pipeline
from chalicelib.store import customers as customers_store


@pytest.fixture(scope="module")
def resources() -> dict:
    return load_template(TEMPLATE)["Resources"]


def test_the_table_streams_new_images(resources):
    assert resources["Table"]["Properties"]["StreamSpecification"] == {
        "StreamViewType": "NEW_IMAGE"}


def test_the_stream_mapping_never_lets_one_record_block_a_shard(resources):
    fanout = resources["OutboxFanout"]["Properties"]
    # The name Chalice gives @app.on_dynamodb_record(name="outbox_fanout")'s event: merged.
    source = fanout["Events"]["OutboxFanoutDynamodbEventSource"]
    assert source["Type"] == "DynamoDB"
    props = source["Properties"]
    assert props["Stream"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert 0 < props["MaximumRetryAttempts"] <= 10
    # Under the stream's 24 hours, and the sweeper's 5 minutes come first anyway.
    assert customers_store.OUTBOX_SWEEP_AFTER.total_seconds() < \
        props["MaximumRecordAgeInSeconds"] < 86400
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["OutboxFanoutFailureQueue", "Arn"]}
    assert fanout["Environment"]["Variables"]["DELIVERY_QUEUE_URL"] == {"Ref": "DeliveryQueue"}


def test_the_mapping_filter_passes_inserted_outbox_items_only(resources):
    props = resources["OutboxFanout"]["Properties"]["Events"][
        "OutboxFanoutDynamodbEventSource"]["Properties"]
    [only] = props["FilterCriteria"]["Filters"]
    pattern = json.loads(only["Pattern"])

    def passes(record: dict) -> bool:  # EventBridge-style matching of exact values
        def match(pat, value):
            if isinstance(pat, list):
                return value in pat
            return isinstance(value, dict) and all(match(p, value.get(k)) for k, p in pat.items())
        return match(pattern, record)

    outbox = {"eventName": "INSERT", "dynamodb": {"NewImage": {"T": {"S": "Outbox"}}}}
    assert passes(outbox)
    assert not passes({**outbox, "eventName": "MODIFY"})
    assert not passes({"eventName": "INSERT", "dynamodb": {"NewImage": {"T": {"S": "Step"}}}})
    # The handler applies the same rule (the local worker reads the whole stream).
    assert pipeline.event_of_record({**outbox, "eventName": "MODIFY"}) is None
    assert pipeline.event_of_record(
        {"eventName": "INSERT", "dynamodb": {"NewImage": {"T": {"S": "Step"}}}}) is None


def test_the_delivery_queue_feeds_the_sender_and_dead_letters(resources):
    queue = resources["DeliveryQueue"]["Properties"]
    sender = resources["DeliverySender"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["DeliveryDeadLetterQueue", "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * sender["Timeout"]
    [source] = sender["Events"].values()
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Properties"]["BatchSize"] <= 10
