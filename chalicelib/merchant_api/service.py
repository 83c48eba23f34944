"""The merchant's read API over customer records. Every read starts from the account."""
from __future__ import annotations

import base64
import binascii
import re
import unicodedata

from chalicelib.errors import BadRequest, NotFound
from chalicelib.records import service as records
from chalicelib.store import customers as store
from chalicelib.webhooks import deliveries

MAX_LIMIT = 100
_CUSTOMER_ID = re.compile(r"^cst_[0-9a-z]{26}$")
_ORDER_ID = re.compile(r"^ord_[a-z2-7]{24}$")


def parse_limit(raw: str | None, default: int = 25) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdecimal() and len(raw) <= 3) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", code="invalid_limit")
    return int(raw)


def _encode_cursor(position: str | None) -> str | None:
    return base64.urlsafe_b64encode(position.encode()).decode() if position else None


def _decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        position = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("invalid cursor", code="invalid_cursor") from None
    if len(position) > 200 or "#" not in position:
        raise BadRequest("invalid cursor", code="invalid_cursor")
    return position


def list_customers(account_id: str, limit: int, cursor: str | None, query: str | None) -> dict:
    if query is not None:
        term = unicodedata.normalize("NFKC", query).strip().casefold()
        if not term or len(term) > 100:
            raise BadRequest("q must be 1 to 100 characters", code="invalid_query")
        return {"data": store.search_customers(account_id, term, limit), "next_cursor": None}
    items, last = store.list_customers(account_id, limit, _decode_cursor(cursor))
    return {"data": items, "next_cursor": _encode_cursor(last)}


def get_customer(account_id: str, customer_id: str) -> dict:
    if not _CUSTOMER_ID.match(customer_id):
        raise NotFound("no such customer")
    record = records.get_record(account_id, customer_id)
    if record is None:
        raise NotFound("no such customer")
    return record


def get_order(account_id: str, order_id: str) -> dict:
    if not _ORDER_ID.match(order_id):
        raise NotFound("no such order")
    customer_id = store.find_order(account_id, order_id)
    record = records.get_record(account_id, customer_id) if customer_id else None
    order = next((o for o in (record or {}).get("orders", []) if o["id"] == order_id), None)
    if order is None:
        raise NotFound("no such order")
    payments = [p for p in record["payments"] if p["id"] in set(order["payment_ids"])]
    return {**order, "customer": {"id": record["id"], "email": record["email"],
                                  "name": record["name"]}, "payments": payments}


def list_deliveries(account_id: str, limit: int, cursor: str | None) -> dict:
    items, next_cursor = deliveries.list_page(account_id, limit, cursor)
    return {"data": items, "next_cursor": next_cursor}


# --- what the dashboard's record page shows beside the record -------------------------------

def _own_customer(account_id: str, customer_id: str) -> None:
    if not _CUSTOMER_ID.match(customer_id) or not records.customer_belongs(account_id, customer_id):
        raise NotFound("no such customer")


def list_emails(account_id: str, customer_id: str, limit: int, cursor: str | None) -> dict:
    from chalicelib.mail import history

    _own_customer(account_id, customer_id)
    items, next_cursor = history.list_for(account_id, customer_id, limit, cursor)
    return {"data": items, "next_cursor": next_cursor}


def list_timeline(account_id: str, customer_id: str, limit: int, cursor: str | None,
                  source: str | None) -> dict:
    from chalicelib.timeline import service as timeline

    sources = None
    if source is not None:
        sources = source.split(",")
        if len(source) > 100 or not all(sources):
            raise BadRequest("source must be a comma-separated list of processor, email, "
                             "staff, note", code="invalid_source")
    _own_customer(account_id, customer_id)
    items, next_cursor = timeline.list_for(account_id, customer_id, limit, cursor, sources)
    return {"data": items, "next_cursor": next_cursor}


def list_raw_events(account_id: str, customer_id: str, object_ref: str | None) -> dict:
    if not object_ref:
        raise BadRequest("object is required (stripe:pi_… or pay_…, sub_…, ord_…)",
                         code="invalid_object")
    if not _CUSTOMER_ID.match(customer_id):
        raise NotFound("no such customer")
    return {"data": records.raw_events(account_id, customer_id, object_ref)}


def list_notes(account_id: str, customer_id: str, limit: int, cursor: str | None,
               object_ref: str | None) -> dict:
    from chalicelib.notes import service as notes

    _own_customer(account_id, customer_id)
    items, next_cursor = notes.page(account_id, customer_id, limit, cursor, object_ref)
    return {"data": items, "next_cursor": next_cursor}
