"""The catalogue of product events sent to integrations, and each event's JSON payload.

An outbox item (``store.customers.outbox_item``) is the stored form; ``payload`` is what
every destination receives (the body a merchant's endpoint verifies, a Zapier sample).
"""
from __future__ import annotations

# The payload's version: a breaking change of any event's shape gets a new one.
API_VERSION = "2026-11-01"


def payload(event: dict) -> dict:
    """The versioned JSON payload of one outbox event (``{"event_id", "type",
    "occurred_at", "account_id", "customer_id", "data"}``)."""
    data = dict(event.get("data") or {})
    if event.get("customer_id"):
        data.setdefault("customer_id", event["customer_id"])
    return {
        "id": event["event_id"],
        "type": event["type"],
        "created": event["occurred_at"],
        "api_version": API_VERSION,
        "account_id": event["account_id"],
        "data": data,
    }
