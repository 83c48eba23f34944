"""The ``eventbridge`` endpoint kind: events put on the merchant's own EventBridge bus.

An endpoint of this kind has an event bus ARN for its target (in ``url``), and it must
be a bus of the deployment's own AWS account and region (``DEPLOYMENT_ACCOUNT_ID``,
``AWS_REGION``): the functions' roles may put events on ``event-bus/*`` of that account
and region only, and putting on another account's bus would need that account's bus
policy to name our roles, which is not offered. IAM authenticates the call, so such an
endpoint has no signing secret.

Each delivery attempt is one ``PutEvents`` entry:
  Source      ``billing-portal.<account id>`` (a rule can match one merchant's events)
  DetailType  the event's type (``payment.succeeded``)
  Detail      ``catalogue.payload(event)`` as JSON (the catalogue keeps it under 20 KB,
              far below PutEvents' 256 KB)
  Time        the time the event happened
It answers like an HTTP attempt (``PutResult``): status 200 when the entry was accepted,
else no status and an error text (a failed entry's code, throttling, access denied, a bus
that does not exist), which ``delivery.attempt`` retries on the schedule of every
endpoint and counts in the endpoint's failure streak.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from chalicelib.errors import BadRequest
from chalicelib.integrations import catalogue
from chalicelib.settings import get_settings

KIND = "eventbridge"
SOURCE_PREFIX = "billing-portal."
MAX_ENTRY_BYTES = 256 * 1024
# arn:<partition>:events:<region>:<account>:event-bus/<name>; a bus name is 1 to 256 of
# letters, digits and . - _ / (partner buses' names hold slashes).
_BUS_ARN = re.compile(r"arn:(aws[-a-z]*):events:([a-z0-9-]{1,30}):(\d{12}):"
                      r"event-bus/([A-Za-z0-9._/-]{1,256})")

_client = None


def client():
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        # Short timeouts and one botocore retry of throttling (standard mode), within an
        # HTTP attempt's 15 s; what still fails is a failed attempt, retried on the
        # delivery schedule.
        _client = boto3.client("events", region_name=get_settings().region, config=Config(
            connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}))
    return _client


def set_client(new_client) -> None:
    """Replace the cached client (tests: one pointed elsewhere)."""
    global _client
    _client = new_client


def source_of(account_id: str) -> str:
    return SOURCE_PREFIX + account_id


def check_bus_arn(value) -> str:
    """The ARN of an event bus in the deployment's account and region, else a 400."""
    settings = get_settings()
    if not settings.deployment_account_id:
        raise BadRequest("url: EventBridge destinations are not available in this "
                         "deployment (DEPLOYMENT_ACCOUNT_ID is not set)",
                         code="eventbridge_unavailable")
    found = _BUS_ARN.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise BadRequest("url: an event bus ARN such as arn:aws:events:"
                         f"{settings.region}:{settings.deployment_account_id}:event-bus/"
                         "my-bus", code="invalid_url")
    _, region, account, _ = found.groups()
    if account != settings.deployment_account_id or region != settings.region:
        raise BadRequest(f"url: the event bus must be in this deployment's AWS account "
                         f"({settings.deployment_account_id}) and region ({settings.region}); "
                         "a bus of another account is not supported", code="invalid_url")
    return value


@dataclass(frozen=True)
class PutResult:
    status: int | None  # 200 when the entry was accepted
    response: str | None  # the event id EventBridge gave, or the failed entry as text
    error: str | None


def entry_of(bus_arn: str, event: dict) -> dict:
    payload = catalogue.payload(event)
    occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    return {"EventBusName": bus_arn, "Source": source_of(event["account_id"]),
            "DetailType": payload["type"], "Time": occurred,
            "Detail": json.dumps(payload, separators=(",", ":"), ensure_ascii=False)}


def put(bus_arn: str, event: dict) -> PutResult:
    """Put the event on the bus; never raises for what AWS answers."""
    from botocore.exceptions import BotoCoreError, ClientError

    entry = entry_of(bus_arn, event)
    if len(entry["Detail"].encode()) + len(entry["DetailType"]) + len(entry["Source"]) \
            > MAX_ENTRY_BYTES:
        return PutResult(None, None, "the event is larger than PutEvents' 256 KB")
    try:
        answer = client().put_events(Entries=[entry])
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code") or "error"
        hint = {"AccessDeniedException": " (the function's role may not put events on "
                                         "this bus)",
                "ResourceNotFoundException": " (no such event bus: create it, or change "
                                             "the endpoint's ARN)"}.get(code, "")
        return PutResult(None, None, f"PutEvents failed: {code}: "
                                     f"{(error.get('Message') or '')[:300]}{hint}")
    except BotoCoreError as exc:
        return PutResult(None, None, f"no answer: {type(exc).__name__}")
    entries = answer.get("Entries") or [{}]
    if answer.get("FailedEntryCount", 0) or not entries[0].get("EventId"):
        failed = entries[0]
        return PutResult(None, json.dumps(failed)[:1000],
                         f"PutEvents refused the entry: {failed.get('ErrorCode', 'unknown')}: "
                         f"{(failed.get('ErrorMessage') or '')[:300]}")
    return PutResult(200, json.dumps({"EventId": entries[0]["EventId"]}), None)
