"""The export queue (SQS): a message names one export to build.

The client follows ``AWS_ENDPOINT_URL_SQS`` (moto in make dev and the tests), so the same
code sends to AWS's queue and to the local one.
"""
from __future__ import annotations

import json
import re

from chalicelib.settings import get_settings

_client = None
EXPORT_ID_RE = re.compile(r"^exp_[0-9a-z]{26}$")
ACCOUNT_ID_RE = re.compile(r"^[a-z]{2,8}_[0-9a-z]{10,40}$")


class QueueUnavailable(Exception):
    """The queue could not take the message (unreachable, throttled, not configured)."""


def client():
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        _client = boto3.client("sqs", region_name=get_settings().region, config=Config(
            connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}))
    return _client


def send(account_id: str, export_id: str) -> None:
    url = get_settings().export_queue_url
    if not url:
        raise QueueUnavailable("EXPORT_QUEUE_URL is not set")
    try:
        client().send_message(QueueUrl=url, MessageBody=json.dumps(
            {"account_id": account_id, "export_id": export_id}, separators=(",", ":")))
    except Exception as exc:
        raise QueueUnavailable(type(exc).__name__) from exc


def parse(body: str) -> tuple[str, str] | None:
    """(account id, export id) of a message body, or None for one this app never sent."""
    try:
        message = json.loads(body)
        account_id, export_id = message["account_id"], message["export_id"]
    except (ValueError, TypeError, KeyError):
        return None
    if not (isinstance(account_id, str) and isinstance(export_id, str)
            and ACCOUNT_ID_RE.match(account_id) and EXPORT_ID_RE.match(export_id)):
        return None
    return account_id, export_id
