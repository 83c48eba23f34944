"""From the outbox to merchants' endpoints, on managed parts, at least once.

    outbox item committed (in the transaction of its change)
      → the table's DynamoDB stream (NEW_IMAGE; the event source mapping's filter passes
        only inserted outbox items; TRIM_HORIZON; bisected batches, capped retries, an
        SQS on-failure destination: infra/template.yaml)
      → ``fan_out_records`` (app.outbox_fanout): ``delivery.fan_out`` — one delivery per
        subscribed endpoint, idempotent — then one message per new delivery on the
        delivery queue, then the event's sweeper step is canceled
      → the delivery queue (SQS, with a dead-letter queue)
      → ``send_records`` (app.delivery_sender): ``delivery.attempt`` — the first attempt;
        later ones are the scheduler's steps (``delivery.attempt``), planned by each
        failed attempt in its own transaction.

Nothing here is on the webhook's path: the webhook's transaction only writes the outbox
item. A Lambda that dies anywhere loses nothing: the stream hands the batch again from its
checkpoint (the first failed record, reported as a partial batch failure), SQS hands a
message again after its visibility timeout, and every step is idempotent (a delivery's id
derives from the event and the endpoint; an attempt is claimed with a conditional write).

The safety net: each outbox item is written with a due step (``store.customers.
OUTBOX_STEP_KIND``, five minutes on) in the scheduler's sparse index. The stream's fan-out
cancels it; if the stream path missed the item (its record aged out of the stream's 24
hours, the mapping disabled, every retry failed), the scheduler's sweep runs
``handle_due_fanout``, which fans the event out the same way. And ``delivery.fan_out``
plans each delivery's first attempt a minute on as the scheduler's step too, so a lost
queue message only delays it.
"""
from __future__ import annotations

import json
import re
from datetime import datetime

from chalicelib.observability import logger
from chalicelib.settings import get_settings
from chalicelib.store import customers as customers_store
from chalicelib.store import steps as steps_store

SQS_BATCH = 10  # SendMessageBatch's limit
_DELIVERY_ID = re.compile(r"^dlv_[0-9a-z]{20,40}$")
_ACCOUNT_ID = re.compile(r"^[a-z]{2,8}_[0-9a-z]{10,40}$")

_client = None


class QueueFailed(Exception):
    """The delivery queue did not take every message."""


def _sqs():
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        _client = boto3.client("sqs", region_name=get_settings().region, config=Config(
            connect_timeout=3, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}))
    return _client


# --- the stream's fan-out ------------------------------------------------------------------

def fan_out_records(records: list[dict], now: datetime) -> dict:
    """Fan out the outbox items of a batch of stream records (the Lambda's DynamoDB
    stream event's ``Records``, oldest first). Returns the partial batch response: on the
    first record that fails, its sequence number — the stream hands that record and every
    later one of the batch again (the earlier ones are done: fanning out is idempotent, so
    a record handed twice costs reads, never a second delivery)."""
    for record in records:
        try:
            event = event_of_record(record)
            if event is not None:
                fan_out_event(event, now)
        except Exception:  # noqa: BLE001 - reported to the stream, which retries it
            logger.exception("outbox fan-out failed", extra={
                "sequence_number": record.get("dynamodb", {}).get("SequenceNumber")})
            return {"batchItemFailures": [
                {"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
    return {"batchItemFailures": []}


def event_of_record(record: dict) -> dict | None:
    """The outbox event a stream record inserts; None for any other record (the mapping's
    filter already drops them in AWS; the local worker reads the whole stream)."""
    if record.get("eventName") != "INSERT":
        return None
    return customers_store.outbox_event_of_image(record.get("dynamodb", {}).get("NewImage") or {})


def fan_out_event(event: dict, now: datetime) -> list[dict]:
    """The event's deliveries (``delivery.fan_out``), each not yet attempted put on the
    delivery queue; then the event's sweeper step is canceled (it is not needed now)."""
    from chalicelib.integrations import delivery

    deliveries = delivery.fan_out(event, now)
    enqueue(event["account_id"], [d["id"] for d in deliveries
                                  if d["status"] == "pending" and d["attempts"] == 0])
    steps_store.cancel(event["account_id"], customers_store.outbox_step_id(event["event_id"]), now)
    return deliveries


def enqueue(account_id: str, delivery_ids: list[str]) -> None:
    """One message per delivery on the delivery queue (in batches of ten). Without a
    queue (not configured) the deliveries' first attempts are the scheduler's backstop
    steps, a minute on."""
    url = get_settings().delivery_queue_url
    if not url or not delivery_ids:
        return
    for start in range(0, len(delivery_ids), SQS_BATCH):
        batch = delivery_ids[start:start + SQS_BATCH]
        answer = _sqs().send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "MessageBody": json.dumps(
                {"account_id": account_id, "delivery_id": delivery_id}, separators=(",", ":"))}
            for n, delivery_id in enumerate(batch)])
        if answer.get("Failed"):
            raise QueueFailed(f"{len(answer['Failed'])} of {len(batch)} messages refused: "
                              f"{answer['Failed'][0].get('Code')}")


# --- the sender ----------------------------------------------------------------------------

def send_records(records: list[dict], now: datetime) -> dict:
    """Attempt the delivery each SQS message names (``delivery.attempt``: it sends only if
    the delivery is still pending and due and not being attempted, so a message handed
    twice sends once). The partial batch response names the messages to hand again: those
    whose attempt raised (the store or the network failed before the attempt was
    recorded). A failed HTTP attempt is not one: it is recorded with its retry step."""
    from chalicelib.integrations import delivery

    failures = []
    for record in records:
        message = _message(record.get("body"))
        if message is None:
            # Never ours to retry: a malformed message is dropped, and said so.
            logger.error("delivery message dropped: malformed",
                         extra={"message_id": record.get("messageId")})
            continue
        try:
            delivery.attempt(message["account_id"], message["delivery_id"], now)
        except Exception:  # noqa: BLE001 - handed again by SQS, then its dead-letter queue
            logger.exception("delivery attempt failed to run", extra={
                "account_id": message["account_id"], "delivery_id": message["delivery_id"]})
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def _message(body) -> dict | None:
    try:
        message = json.loads(body)
    except (TypeError, ValueError):
        return None
    if not isinstance(message, dict):
        return None
    account_id, delivery_id = message.get("account_id"), message.get("delivery_id")
    if not (isinstance(account_id, str) and _ACCOUNT_ID.match(account_id)
            and isinstance(delivery_id, str) and _DELIVERY_ID.match(delivery_id)):
        return None
    return {"account_id": account_id, "delivery_id": delivery_id}


# --- the sweeper (scheduler.kinds: "outbox") -------------------------------------------------

def handle_due_fanout(step, now: datetime):
    """An outbox item's sweeper step came due: the stream did not fan it out in time.
    Fan it out now (idempotent: if the stream did it after all, this writes nothing)."""
    from chalicelib.scheduler.service import Outcome

    sk = (step.data or {}).get("sk")
    event = customers_store.get_outbox(step.account_id, sk) if sk else None
    if event is None:
        return Outcome.done({"missing": True})  # expired (30 days) or never written
    from chalicelib.integrations import delivery

    deliveries = delivery.fan_out(event, now)
    enqueue(event["account_id"], [d["id"] for d in deliveries
                                  if d["status"] == "pending" and d["attempts"] == 0])
    logger.warning("outbox event fanned out by the sweeper", extra={
        "account_id": step.account_id, "event_id": event["event_id"],
        "deliveries": len(deliveries)})
    return Outcome.done({"deliveries": len(deliveries)})
