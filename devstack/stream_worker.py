"""The delivery pipeline locally: DynamoDB Local's stream and moto's SQS stand in for the
table's stream, its event source mapping and the delivery queue; these workers for the
Lambda functions ``app.outbox_fanout`` and ``app.delivery_sender`` (the same handlers, given
the same events Lambda gives them).

  StreamWorker   reads every shard of the table's stream (enabled here with NEW_IMAGE, as
                 infra/template.yaml does), hands batches to the fan-out handler, and, as
                 the mapping does with partial batch responses, reads a shard again from the
                 first failed record (a handler that raises: from the batch's first).
  SenderWorker   receives from the delivery queue, hands up to ten messages to the sender,
                 deletes the ones it did not report failed; the failed ones come back after
                 ``retry_after`` seconds and, past ``MAX_RECEIVES``, go to the dead-letter
                 queue (the queue's redrive policy, as in the template).

  make dev     runs both in threads beside the app (``start_threads``).
  tests        call ``poll_once`` / ``drain`` in the test's process.
"""
from __future__ import annotations

import json
import os
import threading

DELIVERY_QUEUE_NAME = "billing-portal-deliveries"
DELIVERY_DLQ_NAME = "billing-portal-deliveries-dlq"
MAX_RECEIVES = 5  # infra/template.yaml DeliveryQueue RedrivePolicy maxReceiveCount


def _client(name: str):
    import boto3

    return boto3.client(name)


# --- the table's stream --------------------------------------------------------------------

def ensure_stream(table_name: str | None = None) -> str:
    """Enable the table's stream (NEW_IMAGE) if it is not; its ARN."""
    ddb = _client("dynamodb")
    table_name = table_name or os.environ["TABLE_NAME"]
    table = ddb.describe_table(TableName=table_name)["Table"]
    spec = table.get("StreamSpecification") or {}
    if not spec.get("StreamEnabled"):
        ddb.update_table(TableName=table_name, StreamSpecification={
            "StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
        table = ddb.describe_table(TableName=table_name)["Table"]
    return table["LatestStreamArn"]


class StreamWorker:
    """Reads the stream from ``start`` (TRIM_HORIZON as in the template; a test that shares
    the session's table starts at LATEST, taken when the worker is made)."""

    def __init__(self, start: str = "TRIM_HORIZON", handler=None, batch_size: int = 100):
        self.streams = _client("dynamodbstreams")
        self.arn = ensure_stream()
        self.start = start
        self.batch_size = batch_size
        self.handler = handler or _fanout_handler()
        self.iterators: dict[str, str | None] = {}
        self.failures = 0
        self._refresh()
        # A shard that opens later (DynamoDB rolls shards over) is read from its start, as
        # the mapping reads a child shard after its parent: nothing written to it is skipped.
        self.start = "TRIM_HORIZON"

    def _shards(self) -> list[dict]:
        shards, start = [], None
        while True:
            kwargs = {"ExclusiveStartShardId": start} if start else {}
            desc = self.streams.describe_stream(StreamArn=self.arn, **kwargs)["StreamDescription"]
            shards += desc.get("Shards", [])
            start = desc.get("LastEvaluatedShardId")
            if not start:
                return shards

    def _refresh(self) -> None:
        for shard in self._shards():
            if shard["ShardId"] not in self.iterators:
                self.iterators[shard["ShardId"]] = self._iterator(shard["ShardId"], self.start)

    def _iterator(self, shard_id: str, kind: str, sequence: str | None = None) -> str:
        kwargs = {"SequenceNumber": sequence} if sequence else {}
        return self.streams.get_shard_iterator(StreamArn=self.arn, ShardId=shard_id,
                                               ShardIteratorType=kind, **kwargs)["ShardIterator"]

    def poll_once(self) -> int:
        """One read of every open shard, each batch through the handler: records read."""
        self._refresh()
        read = 0
        for shard_id, iterator in list(self.iterators.items()):
            if iterator is None:
                continue  # a closed shard, read to its end
            answer = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
            records = answer.get("Records", [])
            read += len(records)
            if records:
                try:
                    response = self.handler({"Records": records}, None) or {}
                    failed = [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]
                except Exception as exc:  # noqa: BLE001 - as Lambda: the whole batch again
                    print(f"stream worker: {type(exc).__name__}: {exc}; read again", flush=True)
                    failed = [records[0]["dynamodb"]["SequenceNumber"]]
                if failed:
                    self.failures += 1
                    self.iterators[shard_id] = self._iterator(shard_id, "AT_SEQUENCE_NUMBER",
                                                              min(failed, key=int))
                    continue
            self.iterators[shard_id] = answer.get("NextShardIterator")
        return read

    def drain(self, max_rounds: int = 50) -> int:
        """Read until a round reads nothing (tests): records read."""
        total = 0
        for _ in range(max_rounds):
            read = self.poll_once()
            total += read
            if not read:
                break
        return total


def _fanout_handler():
    from app import outbox_fanout

    return outbox_fanout


# --- the delivery queue ----------------------------------------------------------------------

def delivery_queue_url(moto_url: str | None = None) -> str:
    return os.environ["DELIVERY_QUEUE_URL"]


def ensure_delivery_queues(visibility_timeout: int = 30) -> str:
    """Create the delivery queue and its dead-letter queue (kept if they exist)."""
    sqs = _client("sqs")
    dlq = sqs.create_queue(QueueName=DELIVERY_DLQ_NAME)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    return sqs.create_queue(QueueName=DELIVERY_QUEUE_NAME, Attributes={
        "VisibilityTimeout": str(visibility_timeout),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(MAX_RECEIVES)})})["QueueUrl"]


class SenderWorker:
    def __init__(self, url: str | None = None, handler=None, retry_after: int = 0):
        self.sqs = _client("sqs")
        self.url = url or delivery_queue_url()
        self.handler = handler or _sender_handler()
        self.retry_after = retry_after
        self.failures = 0

    def _event(self, messages: list[dict]) -> dict:
        region = os.environ.get("AWS_REGION", "us-east-1")
        account, name = self.url.rstrip("/").rsplit("/", 2)[-2:]
        return {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": {},
            "md5OfBody": m.get("MD5OfBody", ""), "eventSource": "aws:sqs", "awsRegion": region,
            "eventSourceARN": f"arn:aws:sqs:{region}:{account}:{name}"} for m in messages]}

    def poll_once(self, wait_seconds: int = 0) -> int:
        """Receive up to ten messages and hand them to the sender: messages received."""
        answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=wait_seconds,
                                          AttributeNames=["ApproximateReceiveCount"])
        messages = answer.get("Messages", [])
        if not messages:
            return 0
        try:
            response = self.handler(self._event(messages), None) or {}
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        except Exception as exc:  # noqa: BLE001 - as Lambda: the whole batch again
            print(f"sender worker: {type(exc).__name__}: {exc}; delivered again", flush=True)
            failed = {m["MessageId"] for m in messages}
        for m in messages:
            if m["MessageId"] in failed:
                self.failures += 1
                self.sqs.change_message_visibility(QueueUrl=self.url,
                                                   ReceiptHandle=m["ReceiptHandle"],
                                                   VisibilityTimeout=self.retry_after)
            else:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return len(messages)

    def drain(self, max_rounds: int = 50) -> int:
        total = 0
        for _ in range(max_rounds):
            got = self.poll_once()
            total += got
            if not got:
                break
        return total


def _sender_handler():
    from app import delivery_sender

    return delivery_sender


# --- make dev ----------------------------------------------------------------------------------

def run_forever(stop: threading.Event, make, interval: float = 1.0) -> None:
    worker = None
    while not stop.is_set():
        try:
            worker = worker or make()
            if not worker.poll_once():
                stop.wait(interval)
        except Exception as exc:  # noqa: BLE001 - a stand-in restarting, say: try again
            print(f"{type(exc).__name__} in the delivery pipeline worker: {exc}", flush=True)
            stop.wait(2)


def start_threads() -> threading.Event:
    """The stream and sender workers in daemon threads; set the returned event to stop."""
    stop = threading.Event()
    ensure_delivery_queues()
    for name, make in (("stream-worker", StreamWorker),
                       ("sender-worker", lambda: SenderWorker(retry_after=10))):
        threading.Thread(target=run_forever, args=(stop, make), name=name, daemon=True).start()
    return stop
