"""The activity log of an account: ``ACCT#<acct>#ACTIVITY`` / ``<iso time>#<entry id>``.

Written once, never updated; each entry has a TTL (``activity_retention_days``).
Access patterns:
  record   PutItem.
  list     Query newest first (ScanIndexForward false), from a cursor (the last sort key
           seen), with a FilterExpression for the action prefix, the actor and the target;
           pages are read until ``limit`` entries matched or ``MAX_PAGES`` were read (a
           sparse filter then answers fewer, with a cursor to go on).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.store import keys
from chalicelib.store.table import ActivityItem

MAX_PAGES = 5


class BadCursor(Exception):
    pass


@dataclass(frozen=True)
class Entry:
    account_id: str
    entry_id: str
    at: str
    actor: str
    actor_email: str | None
    action: str
    target: str | None
    details: dict | None
    reason: str | None
    ip: str | None


def item_of(entry: Entry, expires_at: int) -> ActivityItem:
    """The entry's item (also written inside an action's own transaction)."""
    return ActivityItem(keys.activity_pk(entry.account_id), f"{entry.at}#{entry.entry_id}",
                        account_id=entry.account_id, at=entry.at, actor=entry.actor,
                        actor_email=entry.actor_email, action=entry.action,
                        target=entry.target, details=entry.details, reason=entry.reason,
                        ip=entry.ip, ttl=datetime.fromtimestamp(expires_at, UTC))


def put(entry: Entry, expires_at: int) -> str:
    """Write the entry; returns its sort key."""
    item = item_of(entry, expires_at)
    item.save()
    return item.SK


def query(account_id: str, *, limit: int, after: str | None = None,
          action_prefix: str | None = None, actor: str | None = None,
          target: str | None = None) -> tuple[list[Entry], str | None]:
    """Entries newest first; ``after``: the sort key the previous page ended at. Returns
    the entries and the sort key to continue from (None at the end)."""
    pk = keys.activity_pk(account_id)
    if after is not None and not after[:4].isdigit():
        raise BadCursor(after)
    condition = None
    for part in ((ActivityItem.action.startswith(action_prefix) if action_prefix else None),
                 (ActivityItem.actor == actor if actor else None),
                 (ActivityItem.target == target if target else None)):
        if part is not None:
            condition = part if condition is None else condition & part
    found: list[Entry] = []
    start = {"PK": {"S": pk}, "SK": {"S": after}} if after else None
    connection = ActivityItem._get_connection()
    for _ in range(MAX_PAGES):
        page = connection.query(pk, filter_condition=condition, scan_index_forward=False,
                                exclusive_start_key=start, limit=max(limit, 25))
        for raw in page.get("Items", []):
            item = ActivityItem.from_raw_data(raw)
            found.append(Entry(item.account_id, item.SK.rpartition("#")[2], item.at, item.actor,
                               item.actor_email, item.action, item.target, item.details,
                               item.reason, item.ip))
            if len(found) >= limit:
                return found, item.SK
        start = page.get("LastEvaluatedKey")
        if not start:
            return found, None
    return found, start["SK"]["S"]
