"""Raw webhook bodies kept with their delivery audit entry for the retention period.

A body is kept in the Delivery item, zlib-compressed, when it fits comfortably
(``INLINE_MAX`` compressed: a DynamoDB item holds at most 400 KB, and a transaction's
write units grow with every KB); else gzip-compressed in the receipts bucket under
``payloads/<account>/<delivery id>.json.gz`` (expired by the bucket's lifecycle rule
after the same retention, infra/template.yaml), the item holding the key. The S3 object
is written before the transaction that writes the item, so an item never names a
missing object (an object whose transaction failed is only an orphan until it expires).
"""
from __future__ import annotations

import gzip
import zlib

from chalicelib.settings import get_settings
from chalicelib.store import receipts_blob

INLINE_MAX = 100 * 1024
PREFIX = "payloads/"


class PayloadUnavailable(Exception):
    """The bucket could not be written or read."""


def object_key(account_id: str, delivery_id: str) -> str:
    return f"{PREFIX}{account_id}/{delivery_id}.json.gz"


def prepare(account_id: str, delivery_id: str, body: bytes) -> dict:
    """The Delivery item's payload fields for ``body``: ``payload_z`` (inline) or
    ``payload_key`` (put to S3 now), and ``payload_bytes``. Raises PayloadUnavailable."""
    compressed = zlib.compress(body, 6)
    if len(compressed) <= INLINE_MAX:
        return {"payload_z": compressed, "payload_bytes": len(body)}
    key = object_key(account_id, delivery_id)
    try:
        receipts_blob.client().put_object(
            Bucket=get_settings().receipts_bucket, Key=key, Body=gzip.compress(body, 6),
            ContentType="application/json", ContentEncoding="gzip")
    except Exception as exc:
        raise PayloadUnavailable(type(exc).__name__) from exc
    return {"payload_key": key, "payload_bytes": len(body)}


def read(payload_z: bytes | None, payload_key: str | None) -> bytes | None:
    """The raw body a Delivery item keeps, or None when it keeps none. Raises
    PayloadUnavailable when the bucket cannot be read (or the object expired)."""
    if payload_z is not None:
        return zlib.decompress(payload_z)
    if not payload_key:
        return None
    try:
        stored = receipts_blob.client().get_object(
            Bucket=get_settings().receipts_bucket, Key=payload_key)["Body"].read()
    except Exception as exc:
        raise PayloadUnavailable(type(exc).__name__) from exc
    return gzip.decompress(stored)
