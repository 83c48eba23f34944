"""A customer's timeline: everything that happened to them, newest first, from several
sources each kept in its own place:

  processor  the processor events applied to the record (store.customers event log)
  email      the e-mails sent, refused or planned (mail.history)
  staff      staff actions on the customer (chalicelib/activity, entries whose target is
             the customer)
  note       staff notes (chalicelib/notes)

Each source reads a newest-first page of its own; the pages are merged. The cursor is
composite: for each source, the position (``<iso time>#<id>``) it has been read down to,
or that it is done. A page includes only items that no unread item of any source can
precede: an item is safe when it is at or above every unfinished source's frontier.
Ties in time are ordered by source, then id, the same way on every page.

Sources are pluggable (``SOURCES``): a function ``(account_id, customer_id, limit,
position) -> (items, next_position)`` giving items newest first, each with a
``position`` (its own sort key), and the position to continue from (None when done).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable

from chalicelib import paging
from chalicelib.errors import BadRequest, NotFound
from chalicelib.records import service as records

SOURCE_NAMES = ("processor", "email", "staff", "note")
MAX_LIMIT = 100
_MAX_ROUNDS = 3
_DONE = "-"
_CURSOR_MAX = 2000
_SUMMARY_MAX = 200

Source = Callable[[str, str, int, str | None], tuple[list[dict], str | None]]


def _processor(account_id: str, customer_id: str, limit: int, position: str | None):
    from chalicelib.store import customers as store

    events, last = store.list_events(customer_id, limit, position)
    items = []
    for e in events:
        if e["account_id"] != account_id:
            continue
        refs = [r for r in e["object_refs"] if not r.split(":", 1)[-1].startswith("cus_")]
        items.append({"at": e["occurred_at"], "source": "processor", "kind": e["event_type"],
                      "summary": e["event_type"], "object_ref": refs[0] if refs else None,
                      "object_refs": e["object_refs"], "event_id": e["event_id"],
                      "id": e["event_id"], "position": e["position"]})
    return items, last


def _email(account_id: str, customer_id: str, limit: int, position: str | None):
    from chalicelib.mail import history

    mails, cursor = history.list_for(account_id, customer_id, limit, paging.encode(position))
    items = [{"at": m["at"], "source": "email", "kind": m["kind"],
              "summary": f"{m['subject']} → {m['to']}: {m['status']}"
              + (f" ({m['error']})" if m["error"] else ""),
              "object_ref": None, "event_id": None, "id": m["id"], "status": m["status"],
              "position": f"{m['at']}#{m['id']}"} for m in mails]
    return items, paging.decode(cursor)


def _staff(account_id: str, customer_id: str, limit: int, position: str | None):
    from chalicelib.activity import service as activity

    # The activity log's cursor is the base64url of the sort key it stopped at, the same
    # encoding as chalicelib.paging; its entries' sort keys are ``<at>#<id>``.
    entries, cursor = activity.list(account_id, limit=limit, cursor=paging.encode(position),
                                    target=customer_id)
    items = []
    for e in entries:
        details = e.get("details") or {}
        who = e.get("actor_email") or e.get("actor")
        summary = f"{who}: {e['action']}" + (f" ({e['reason']})" if e.get("reason") else "")
        items.append({"at": e["at"], "source": "staff", "kind": e["action"],
                      "summary": summary[:_SUMMARY_MAX],
                      "object_ref": details.get("object_ref") if isinstance(details, dict) else None,
                      "event_id": None, "id": e["id"], "actor": e.get("actor"),
                      "position": f"{e['at']}#{e['id']}"})
    return items, paging.decode(cursor)


def _note(account_id: str, customer_id: str, limit: int, position: str | None):
    from chalicelib.notes import service as notes

    found, cursor = notes.page(account_id, customer_id, limit, paging.encode(position))
    # The record is read only for a page holding a note on one of its objects.
    record = records.get_record(account_id, customer_id) if any(
        n["object_ref"] for n in found) else None
    items = [{"at": n["at"], "source": "note", "kind": "note",
              "summary": n["text"][:_SUMMARY_MAX], "object_ref": n["object_ref"],
              "object": object_of(record, n["object_ref"]),
              "event_id": None, "id": n["id"], "staff_email": n["staff_email"],
              "position": f"{n['at']}#{n['id']}"} for n in found]
    return items, paging.decode(cursor)


def object_of(record: dict | None, ref: str | None) -> dict | None:
    """What a note is about, as the record shows it, for its label on the timeline: a
    payment (by its id or one of its processor objects), a subscription or payment plan,
    an order, a card. None when it names none of them (a processor object the record does
    not show, or one no longer in it)."""
    if not ref or record is None:
        return None
    for p in record["payments"]:
        if ref == p["id"] or ref in p["processor_refs"]:
            return {"type": "payment", "id": p["id"], "amount": p["amount"],
                    "currency": p["currency"], "at": p["paid_at"] or p["due_at"]}
    for kind, subs in (("subscription", record["subscriptions"]),
                       ("payment_plan", record["payment_plans"])):
        for s in subs:
            if ref in (s["id"], s["processor_ref"]):
                return {"type": kind, "id": s["id"], "product": s["product"]}
    for o in record["orders"]:
        if ref == o["id"]:
            return {"type": "order", "id": o["id"], "description": o["description"],
                    "amount": o["amount"], "currency": o["currency"], "at": o["created_at"]}
    for c in record["cards"]:
        if ref == c["id"]:
            return {"type": "card", "id": c["id"], "brand": c.get("brand"),
                    "last4": c.get("last4")}
    return None


SOURCES: dict[str, Source] = {"processor": _processor, "email": _email, "staff": _staff,
                              "note": _note}


def _order(source: str, position: str) -> tuple[str, str, str]:
    at, _, item_id = position.partition("#")
    return at, source, item_id


def _decode(cursor: str | None, wanted: list[str]) -> dict[str, str | None]:
    """source → position read down to (None: from the top; _DONE: finished)."""
    state: dict[str, str | None] = dict.fromkeys(wanted)
    if not cursor:
        return state
    try:
        if len(cursor) > _CURSOR_MAX or not cursor.isascii():
            raise ValueError(cursor)
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, dict) or set(raw) - set(SOURCE_NAMES):
            raise ValueError(cursor)
        for name, position in raw.items():
            if not (position == _DONE or (isinstance(position, str)
                                          and paging.HISTORY_POSITION.match(position))):
                raise ValueError(cursor)
            if name in state:
                state[name] = position
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise paging.BadCursor() from None
    return state


def _encode(state: dict[str, str | None]) -> str | None:
    if all(p == _DONE for p in state.values()):
        return None
    return base64.urlsafe_b64encode(json.dumps(
        {k: v for k, v in state.items() if v is not None}, separators=(",", ":")).encode()
    ).decode().rstrip("=")


_SOURCE_RE = re.compile(r"^[a-z]{1,20}$")


def list_for(account_id: str, customer_id: str, limit: int, cursor: str | None,
             sources: list[str] | None = None) -> tuple[list[dict], str | None]:
    """A page of the customer's timeline, newest first, and the next page's cursor (None
    on the last). Items: ``at``, ``source`` (processor, email, staff, note), ``kind``,
    ``summary``, ``object_ref``, ``event_id`` (processor events), ``id``; a note's
    ``object`` (``object_of``: what it is about, for its label).

    ``sources``: only these (default all). NotFound for a customer that is not the
    account's; BadRequest for an unknown source, a bad limit or cursor."""
    wanted = list(dict.fromkeys(sources or SOURCE_NAMES))
    if any(not isinstance(s, str) or not _SOURCE_RE.match(s) or s not in SOURCES for s in wanted):
        raise BadRequest(f"source must be one of {', '.join(SOURCE_NAMES)}", code="invalid_source")
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be from 1 to {MAX_LIMIT}", code="invalid_limit")
    state = _decode(cursor, wanted)
    if not records.customer_belongs(account_id, customer_id):
        raise NotFound("no such customer")
    page: list[dict] = []
    for _ in range(_MAX_ROUNDS):
        fetched: dict[str, tuple[list[dict], str | None]] = {}
        for name, position in state.items():
            if position != _DONE:
                fetched[name] = SOURCES[name](account_id, customer_id, limit, position)
        # An unfinished source's unread items are all below its last read position.
        frontier = max((_order(name, next_position) for name, (_, next_position)
                        in fetched.items() if next_position is not None), default=None)
        candidates = sorted(
            ((_order(name, item["position"]), name, item) for name, (items, _) in fetched.items()
             for item in items), key=lambda c: c[0], reverse=True)
        taken = [c for c in candidates if frontier is None or c[0] >= frontier][:limit - len(page)]
        for name, (items, next_position) in fetched.items():
            mine = [item for _, n, item in taken if n == name]
            if len(mine) == len(items):
                state[name] = _DONE if next_position is None else next_position
            elif mine:
                state[name] = mine[-1]["position"]
        page += [{k: v for k, v in item.items() if k != "position"} for _, _, item in taken]
        if len(page) >= limit or all(p == _DONE for p in state.values()):
            break
    return page, _encode(state)
