"""The activity log of a merchant account: every staff sign-in and sign-out, every staff
action, failed step-ups and refused (403) requests, with who, when, what, from where and
any reason given. Entries are kept ``activity_retention_days`` (400 by default; DynamoDB
TTL) and never changed.

``actor`` is a staff id, ``"system"`` (the product itself) or ``"operator"`` (the CLI).
"""
from __future__ import annotations

import base64
import re
import time

from chalicelib import ids, timeutil
from chalicelib.errors import BadRequest
from chalicelib.observability import logger
from chalicelib.settings import get_settings
from chalicelib.store import activity as store

MAX_LIMIT = 200
_CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_MAX_TEXT = 2000


def record(account_id: str, *, actor: str, actor_email: str | None, action: str,
           target: str | None = None, details: dict | None = None, reason: str | None = None,
           ip: str | None = None) -> str:
    """Write one entry; returns its id."""
    entry_id = ids.new_id("act")
    expires_at = int(time.time()) + get_settings().activity_retention_days * 86400
    store.put(store.Entry(
        account_id=account_id, entry_id=entry_id, at=timeutil.now_iso(), actor=actor,
        actor_email=actor_email, action=action[:100], target=target[:200] if target else None,
        details=details or None, reason=reason[:_MAX_TEXT] if reason else None,
        ip=ip[:64] if ip else None), expires_at)
    logger.info("activity", extra={"account_id": account_id, "actor": actor, "action": action,
                                   "target": target})
    return entry_id


def _encode(sk: str | None) -> str | None:
    return base64.urlsafe_b64encode(sk.encode()).decode().rstrip("=") if sk else None


def _decode(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        if not _CURSOR_RE.match(cursor):
            raise ValueError(cursor)
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("This page of the activity log does not exist.", code="bad_cursor") from None


def list(account_id: str, *, limit: int = 50, cursor: str | None = None,
         action_prefix: str | None = None, actor: str | None = None,
         target: str | None = None) -> tuple[list[dict], str | None]:
    """The account's entries, newest first, and the cursor of the next page (None: the
    end). Filters: an action prefix (``staff.``), an actor, a target."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    try:
        entries, last = store.query(account_id, limit=limit, after=_decode(cursor),
                                    action_prefix=action_prefix or None, actor=actor or None,
                                    target=target or None)
    except store.BadCursor:
        raise BadRequest("This page of the activity log does not exist.", code="bad_cursor") from None
    items = [{"id": e.entry_id, "at": e.at, "actor": e.actor, "actor_email": e.actor_email,
              "action": e.action, "target": e.target, "details": e.details or {},
              "reason": e.reason, "ip": e.ip} for e in entries]
    return items, _encode(last)
