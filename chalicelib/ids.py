"""Identifiers: random ULIDs for what we create, stable hashes for what a processor owns.

A subscription, payment or order id is derived from the processor's id so that every
delivery of every event names the same record item, whatever order they arrive in.
"""
from __future__ import annotations

import base64
import hashlib

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{str(ULID()).lower()}"


def stable_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()[:15]
    return f"{prefix}_{base64.b32encode(digest).decode().lower()}"
