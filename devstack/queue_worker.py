"""The export queue locally: moto's SQS stands in for the queue, and this worker for the
Lambda event source mapping that feeds ``app.export_worker`` in AWS.

It does what the mapping does: receive a message, hand the handler the same event a
Lambda function gets (``{"Records": [...]}``), delete the message when the handler
returns, and leave it on the queue when the handler raises, so that it is delivered
again after ``retry_after`` seconds; after ``MAX_RECEIVES`` deliveries the queue's
redrive policy moves it to the dead-letter queue, as in infra/template.yaml.

  make dev     runs ``run_forever`` in a thread beside the app.
  tests        call ``drain`` to run what is queued, in the test's process.
"""
from __future__ import annotations

import json
import os
import threading

DLQ_NAME = "billing-portal-exports-dlq"
MAX_RECEIVES = 3  # infra/template.yaml ExportQueue RedrivePolicy maxReceiveCount


def _sqs():
    import boto3

    return boto3.client("sqs")


def queue_url() -> str:
    return os.environ["EXPORT_QUEUE_URL"]


def dead_letter_url() -> str:
    return queue_url().rsplit("/", 1)[0] + "/" + DLQ_NAME


def ensure_queues(visibility_timeout: int = 30) -> str:
    """Create the export queue and its dead-letter queue (kept if they exist)."""
    from devstack.servers import EXPORT_QUEUE_NAME

    sqs = _sqs()
    dlq = sqs.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    return sqs.create_queue(QueueName=EXPORT_QUEUE_NAME, Attributes={
        "VisibilityTimeout": str(visibility_timeout),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(MAX_RECEIVES)})})["QueueUrl"]


def _lambda_event(message: dict, url: str) -> dict:
    """The event Lambda's SQS event source hands the function (one record)."""
    region = os.environ.get("AWS_REGION", "us-east-1")
    account, name = url.rstrip("/").rsplit("/", 2)[-2:]
    return {"Records": [{
        "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"], "attributes": message.get("Attributes", {}),
        "messageAttributes": {}, "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs", "awsRegion": region,
        "eventSourceARN": f"arn:aws:sqs:{region}:{account}:{name}"}]}


def _handler():
    from app import export_worker

    return export_worker


def poll_once(wait_seconds: int = 0, retry_after: int = 0) -> tuple[int, int]:
    """Receive up to 10 messages and run each through the handler: (handled, failed)."""
    sqs, url = _sqs(), queue_url()
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                 WaitTimeSeconds=wait_seconds,
                                 AttributeNames=["ApproximateReceiveCount"])
    handled = failed = 0
    for message in answer.get("Messages", []):
        try:
            _handler()(_lambda_event(message, url), None)
        except Exception as exc:  # noqa: BLE001 - as Lambda: the message goes back
            failed += 1
            print(f"export worker: {type(exc).__name__}: {exc}; delivered again later",
                  flush=True)
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=retry_after)
            continue
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        handled += 1
    return handled, failed


def drain(max_rounds: int = 20) -> tuple[int, int]:
    """Run what is queued until the queue is empty (tests): (handled, failed)."""
    handled = failed = 0
    for _ in range(max_rounds):
        h, f = poll_once()
        handled, failed = handled + h, failed + f
        if not h and not f:
            break
    return handled, failed


def run_forever(stop: threading.Event, retry_after: int = 10) -> None:
    """Poll until ``stop`` is set (make dev)."""
    while not stop.is_set():
        try:
            poll_once(wait_seconds=2, retry_after=retry_after)
        except Exception as exc:  # noqa: BLE001 - moto restarting, say: try again
            print(f"export worker: {type(exc).__name__}: {exc}", flush=True)
            stop.wait(2)


def start_thread() -> threading.Event:
    """Run the worker in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(target=run_forever, args=(stop,), name="export-worker",
                     daemon=True).start()
    return stop
