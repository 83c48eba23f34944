"""Verify a Stripe webhook delivery and parse its envelope."""
from __future__ import annotations

import json

# Shared with the other processors' adapters (the webhook service catches these).
from chalicelib.processors.errors import InvalidSignature, MalformedPayload

__all__ = ["InvalidSignature", "MalformedPayload", "parse", "verify"]

MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z


def verify(payload: bytes, signature_header: str | None, secrets: list[str], tolerance: int) -> None:
    """Accept the payload if any of the account's secrets signed it (several while one rolls).

    Uses stripe's own verification (HMAC-SHA256 over ``t.payload``, constant-time compare,
    timestamp tolerance). Imported here, not at module top: stripe is a heavy import and
    only this path needs it.
    """
    if not signature_header or not secrets:
        raise InvalidSignature("missing signature")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("body is not UTF-8") from None
    from stripe import SignatureVerificationError, WebhookSignature

    for secret in secrets:
        try:
            WebhookSignature.verify_header(payload, signature_header, secret, tolerance)
            return
        except SignatureVerificationError:
            continue
    raise InvalidSignature("no valid signature")


def parse(payload: bytes) -> dict:
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedPayload("body is not JSON (or nested too deep)") from exc
    if not isinstance(event, dict):
        raise MalformedPayload("event is not an object")
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise MalformedPayload("event has no id or type")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedPayload("event has no data.object")
    created = event.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or not 0 <= created <= MAX_TIME:
        raise MalformedPayload("event has no valid created time")
    if len(event["id"]) > 255 or len(event["type"]) > 100:
        raise MalformedPayload("event id or type too long")
    return event
