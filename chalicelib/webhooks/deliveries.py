"""The webhook deliveries audit trail as the merchant reads it: the list, and one delivery
with the raw payload it kept (store.payloads)."""
from __future__ import annotations

import json
import re

from chalicelib import paging
from chalicelib.store import customers as store
from chalicelib.store import payloads

# The sort key of a Delivery item: ``<received iso>#<delivery id>`` (store.customers).
_DELIVERY_POSITION = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z#dlv_[0-9a-z]{26}$")


def _public(d: dict) -> dict:
    return {"id": paging.encode(d["key"]), "event_id": d["event_id"],
            "event_type": d["event_type"], "received_at": d["received_at"],
            "outcome": d["outcome"], "error": d["error"], "customer_id": d["customer_id"],
            "object_refs": d.get("object_refs") or [],
            "payload_bytes": d.get("payload_bytes")}


def list_page(account_id: str, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
    """Newest first; ``cursor`` as the previous page's ``next_cursor``."""
    items, last = store.list_deliveries(account_id, limit, paging.decode(cursor, _DELIVERY_POSITION))
    return [_public(d) for d in items], paging.encode(last)


def get(account_id: str, delivery_key: str) -> dict | None:
    """One delivery of the account by the ``id`` its listing gave, with ``payload`` (the
    raw body parsed; None with ``payload_error`` when none was kept or it cannot be read).
    None for an id that is not this account's; ``paging.BadCursor`` (400) for a malformed one."""
    position = paging.decode(delivery_key, _DELIVERY_POSITION)
    found = store.get_delivery(account_id, position) if position else None
    if found is None:
        return None
    out = _public(found)
    try:
        body = payloads.read(found["payload_z"], found["payload_key"])
    except payloads.PayloadUnavailable as exc:
        return {**out, "payload": None, "payload_error": f"the kept payload could not be read ({exc})"}
    if body is None:
        return {**out, "payload": None, "payload_error": "no payload kept for this delivery"}
    return {**out, "payload": json.loads(body)}
