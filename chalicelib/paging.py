"""Opaque paging cursors: the position a Query stopped at (a sort key), base64url-encoded.

A cursor only ever positions a Query that is already bound to one partition (a customer's
e-mails, events, notes), so a forged one can reorder nothing it could not read anyway; it
is still checked against the shape of the keys it may name, and anything else answers 400.
"""
from __future__ import annotations

import base64
import binascii
import re

from chalicelib.errors import BadRequest

MAX_CURSOR = 600

# ``<iso time>#<id>`` (store.keys.history_sk): the sort keys of a customer's histories.
HISTORY_POSITION = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z#[A-Za-z0-9_]{1,100}$")


class BadCursor(BadRequest):
    code = "invalid_cursor"

    def __init__(self):
        super().__init__("invalid cursor")


def encode(position: str | None) -> str | None:
    if not position:
        return None
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode(cursor: str | None, shape: re.Pattern = HISTORY_POSITION) -> str | None:
    """The position a cursor names, or None for none; BadCursor unless it has ``shape``."""
    if cursor is None or cursor == "":
        return None
    if len(cursor) > MAX_CURSOR or not cursor.isascii():
        raise BadCursor()
    try:
        position = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor() from None
    if not shape.match(position):
        raise BadCursor()
    return position
