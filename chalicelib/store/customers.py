"""Customer records: the item collection under ``CUST#<id>`` and its lookups.

A record is read with one consistent Query of its collection and written with one
TransactWriteItems that also marks the processor event as applied, so a crash leaves
nothing half done and a redelivered event is refused by the same transaction.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib import backoff
from chalicelib.store import keys
from chalicelib.store.table import (
    DeliveryItem,
    EmailClaimItem,
    EventLogItem,
    EventMarkerItem,
    FactItem,
    OrderEntryItem,
    OutboxItem,
    PointerItem,
    ProfileItem,
    SearchItem,
    SummaryItem,
    TableItem,
)
from chalicelib.timeutil import iso

# Processor id → customer id never changes once written, except when a record is folded
# into another (then the old record's tombstone redirects). Caching it per Lambda container
# saves a read per webhook on the steady path.
_pointer_cache: dict[tuple[str, str, str], str] = {}
_POINTER_CACHE_MAX = 50_000
OUTBOX_RETENTION_DAYS = 30


@dataclass
class Collection:
    customer_id: str
    profile: dict | None
    facts: dict[str, dict[str, dict]]  # kind → fact id → data
    search: dict[str, str]  # field → term
    summary: dict | None = None  # the stored overview summary (SummaryItem)
    orders: dict[str, dict] = field(default_factory=dict)  # order id → its stored entry
    from_copy: bool = False  # this container's copy (load_for_write), not a read


@dataclass
class RecordWrite:
    account_id: str
    customer_id: str
    profile: dict  # ProfileItem attributes
    expected_rev: int | None  # None: the record is new
    facts: list[tuple[str, str, dict]] = field(default_factory=list)  # (kind, fact id, data)
    # (processor, ext id) → this record. Conditional: a pointer never silently moves from
    # another record, so two events racing to start a record for one customer collide.
    pointers: list[tuple[str, str]] = field(default_factory=list)
    # (processor, ext id, from customer id): pointers moved here from a folded record.
    repoint: list[tuple[str, str, str]] = field(default_factory=list)
    order_pointers: list[str] = field(default_factory=list)
    claim_email: str | None = None
    release_email: str | None = None
    search_put: dict[str, str] = field(default_factory=dict)
    search_delete: list[str] = field(default_factory=list)
    delete_facts: list[tuple[str, str]] = field(default_factory=list)
    summary: dict | None = None  # None: unchanged
    delete_summary: bool = False
    # Order entries (records.view.order_entries) to write, and stored ones to delete.
    order_puts: list[dict] = field(default_factory=list)
    order_deletes: list[dict] = field(default_factory=list)


@dataclass
class EventMark:
    account_id: str
    processor: str
    event_id: str
    event_type: str
    applied_at: str
    ttl_seconds: int


class Conflict(Exception):
    """Someone else wrote first (a new e-mail, a pointer, a newer revision): read again."""


class AlreadyApplied(Exception):
    """The event marker exists: this delivery is a duplicate."""


def _connection():
    return TableItem._get_connection().connection


def find_pointer(account_id: str, processor: str, ext_id: str) -> str | None:
    cache_key = (account_id, processor, ext_id)
    if cache_key in _pointer_cache:
        return _pointer_cache[cache_key]
    pk, sk = keys.ext_pointer(account_id, processor, ext_id)
    try:
        customer_id = PointerItem.get(pk, sk, consistent_read=True).customer_id
    except DoesNotExist:
        return None
    remember_pointer(account_id, processor, ext_id, customer_id)
    return customer_id


def remember_pointer(account_id: str, processor: str, ext_id: str, customer_id: str) -> None:
    if len(_pointer_cache) >= _POINTER_CACHE_MAX:
        _pointer_cache.clear()
    _pointer_cache[(account_id, processor, ext_id)] = customer_id


def forget_pointer(account_id: str, processor: str, ext_id: str) -> None:
    _pointer_cache.pop((account_id, processor, ext_id), None)


def forget_pointers_to(customer_id: str) -> None:
    for key in [k for k, v in _pointer_cache.items() if v == customer_id]:
        del _pointer_cache[key]


def find_by_email(account_id: str, normalized_email: str) -> str | None:
    pk, sk = keys.email_claim(account_id, normalized_email)
    try:
        return EmailClaimItem.get(pk, sk, consistent_read=True).customer_id
    except DoesNotExist:
        return None


def event_applied(mark: EventMark) -> bool:
    """Whether the event was applied already (its marker exists); for work done before
    the applying transaction, which itself refuses a duplicate."""
    pk, sk = keys.event_marker(mark.account_id, mark.processor, mark.event_id)
    try:
        EventMarkerItem.get(pk, sk, consistent_read=True, attributes_to_get=["PK"])
    except DoesNotExist:
        return False
    return True


def owner_of(customer_id: str) -> tuple[str, str | None] | None:
    """The account of a record and where it was folded to (None when live), from one
    GetItem of its profile's two attributes; None when there is no such record."""
    try:
        item = ProfileItem.get(keys.customer_pk(customer_id), keys.PROFILE_SK,
                               attributes_to_get=["account_id", "merged_into"])
    except DoesNotExist:
        return None
    return item.account_id, item.merged_into


def find_order(account_id: str, order_id: str) -> str | None:
    pk, sk = keys.order_pointer(account_id, order_id)
    try:
        return PointerItem.get(pk, sk).customer_id
    except DoesNotExist:
        return None


def load(customer_id: str, consistent: bool = True) -> Collection:
    profile = None
    facts: dict[str, dict[str, dict]] = {}
    search: dict[str, str] = {}
    summary = None
    orders: dict[str, dict] = {}
    for item in TableItem.query(keys.customer_pk(customer_id), consistent_read=consistent):
        if isinstance(item, ProfileItem):
            profile = _profile(item)
        elif isinstance(item, FactItem):
            facts.setdefault(item.kind, {})[item.fact_id] = item.data or {}
        elif isinstance(item, SearchItem):
            search[item.SK.split("#", 1)[1]] = item.GSI2SK.rsplit("#", 1)[0]
        elif isinstance(item, SummaryItem):
            summary = item.data or {}
        elif isinstance(item, OrderEntryItem):
            orders[item.order_id] = item.data or {}
    return Collection(customer_id=customer_id, profile=profile, facts=facts, search=search,
                      summary=summary, orders=orders)


# A record's collection as this container last wrote (or read, to write) it, for the write
# paths only. A write built on it checks the profile's ``rev`` in its transaction, so a
# stale copy (another container wrote since) costs one refused transaction and a fresh
# read, never a lost update. Readers (pages, the API) never use it. It spares the steady
# webhook path its read: a renewal's events (invoice, payment, charge, subscription) come
# in a burst for one customer. Bounded by records and by facts and order entries, in
# all and per record (memory: a few KB per item in Python); the objects in it are never
# changed in place (records.service builds new ones from them).
_collection_cache: OrderedDict[str, tuple[int, Collection]] = OrderedDict()  # id → (items, copy)
_collection_items = 0
_collection_lock = threading.Lock()
COLLECTION_CACHE_RECORDS = 1000
COLLECTION_CACHE_ITEMS = 20_000
COLLECTION_CACHE_ITEMS_PER_RECORD = 2_000


def load_for_write(customer_id: str) -> Collection:
    """The collection to build a write on: this container's copy if it has one, else a
    consistent read. The write must check the profile's ``rev`` (``commit`` does)."""
    with _collection_lock:
        hit = _collection_cache.get(customer_id)
        if hit is not None:
            _collection_cache.move_to_end(customer_id)
            return replace(hit[1], from_copy=True)
    collection = load(customer_id)
    remember_collection(collection)
    return collection


def remember_collection(collection: Collection) -> None:
    """Keep a collection as written (or just read) for the next write to this record."""
    global _collection_items
    profile = collection.profile
    size = 1 + sum(len(by_id) for by_id in collection.facts.values()) + len(collection.orders)
    forget_collection(collection.customer_id)
    if not profile or profile.get("merged_into") or size > COLLECTION_CACHE_ITEMS_PER_RECORD:
        return
    with _collection_lock:
        _collection_cache[collection.customer_id] = (size, collection)
        _collection_items += size
        while _collection_cache and (len(_collection_cache) > COLLECTION_CACHE_RECORDS
                                     or _collection_items > COLLECTION_CACHE_ITEMS):
            _, (dropped, _) = _collection_cache.popitem(last=False)
            _collection_items -= dropped


def forget_all_collections() -> None:
    global _collection_items
    with _collection_lock:
        _collection_cache.clear()
        _collection_items = 0


def forget_collection(customer_id: str) -> None:
    global _collection_items
    with _collection_lock:
        hit = _collection_cache.pop(customer_id, None)
        if hit is not None:
            _collection_items -= hit[0]


def _profile(item: ProfileItem) -> dict:
    return {
        "account_id": item.account_id, "customer_id": item.customer_id,
        "email": item.email, "created_at": item.created_at, "data": item.data or {},
        "stats": item.stats or {}, "processor_ids": list(item.processor_ids or []),
        "rev": int(item.rev or 0), "merged_into": item.merged_into, "move": item.move,
    }


@dataclass
class Overview:
    profile: dict | None
    summary: dict | None
    orders: list[dict]  # newest first
    more_orders: bool


# Items above the orders in a collection (SUMMARY, SUB#, SEARCH#, PROFILE, PM#): a few
# per customer; read in the same Query page as the newest orders.
_OVERVIEW_PAGE_SLACK = 30


def load_overview(customer_id: str, orders: int, consistent: bool = True) -> Overview:
    """The profile, the summary and the ``orders`` newest orders of a customer, without
    reading the history: one descending Query from the top of the collection down to the
    orders (keys.py explains the layout), one page as a rule, whatever the history's length."""
    profile = summary = None
    entries: list[dict] = []
    more = False
    query = TableItem.query(
        keys.customer_pk(customer_id), TableItem.SK >= keys.ORDER_PREFIX, scan_index_forward=False,
        consistent_read=consistent, page_size=orders + 1 + _OVERVIEW_PAGE_SLACK)
    for item in query:
        if isinstance(item, ProfileItem):
            profile = _profile(item)
        elif isinstance(item, SummaryItem):
            summary = item.data or {}
        elif isinstance(item, OrderEntryItem):
            if len(entries) == orders:
                more = True
                break
            entries.append(item.data or {})
    return Overview(profile=profile, summary=summary, orders=entries, more_orders=more)


def _order_sk(entry: dict) -> str:
    return keys.order_sk(entry.get("created_at"), entry["id"])


class BadCursor(ValueError):
    """A paging cursor this store never handed out."""


_CURSOR_MAX = 200


def list_orders(customer_id: str, limit: int, after: str | None,
                consistent: bool = True) -> tuple[list[dict], str | None]:
    """A page of a customer's order entries, newest first, and the cursor of the next page
    (None on the last). The cursor is the last entry's sort key: it only ever names a place
    among this customer's entries, since the Query is bound to their collection."""
    if after is not None and not (after.startswith(keys.ORDER_PREFIX) and len(after) <= _CURSOR_MAX):
        raise BadCursor("not an order cursor")
    # One key condition only: BETWEEN is inclusive, so the cursor's own entry comes back
    # first and is skipped.
    condition = (TableItem.SK.between(keys.ORDER_PREFIX, after) if after
                 else TableItem.SK.startswith(keys.ORDER_PREFIX))
    entries, last = [], None
    for item in OrderEntryItem.query(keys.customer_pk(customer_id), condition,
                                     scan_index_forward=False, consistent_read=consistent,
                                     limit=limit + 2):
        sk = item.SK
        if sk == after:
            continue
        if len(entries) == limit:
            return entries, last
        entries.append(item.data or {})
        last = sk
    return entries, None


def _profile_item(w: RecordWrite) -> ProfileItem:
    p = w.profile
    item = ProfileItem(
        keys.customer_pk(w.customer_id), keys.PROFILE_SK,
        account_id=w.account_id, customer_id=w.customer_id, email=p.get("email"),
        created_at=p["created_at"], data=p.get("data") or {}, stats=p.get("stats") or {},
        processor_ids=p.get("processor_ids") or [], rev=(w.expected_rev or 0) + 1,
        merged_into=p.get("merged_into"), move=p.get("move"),
    )
    if not p.get("merged_into"):
        item.GSI1PK = keys.customers_index_pk(w.account_id)
        item.GSI1SK = keys.customers_index_sk(p["created_at"], w.customer_id)
    return item


def commit(writes: list[RecordWrite], mark: EventMark | None, delivery: dict | None,
           outbox: list[dict] | None = None, also: list[tuple] | None = None) -> None:
    """Write one or more records, the event marker, the delivery audit and outbox events
    atomically. ``also``: more ``(kind, item, condition)`` puts for the same transaction
    (a merchant action's answer and activity entry: store.actions.finish_ops); kind
    ``"update"`` is an update whose ``condition`` is ``(update actions, condition)``.

    Raises AlreadyApplied if the marker exists, Conflict on any other lost race.
    """
    ops = []  # (kind, item, condition) kept in order to map cancellation reasons back
    if mark is not None:
        pk, sk = keys.event_marker(mark.account_id, mark.processor, mark.event_id)
        ops.append(("marker", EventMarkerItem(pk, sk, event_type=mark.event_type,
                                              applied_at=mark.applied_at,
                                              ttl=timedelta(seconds=mark.ttl_seconds)),
                    TableItem.PK.does_not_exist()))
    for w in writes:
        pk = keys.customer_pk(w.customer_id)
        condition = (TableItem.PK.does_not_exist() if w.expected_rev is None
                     else ProfileItem.rev == w.expected_rev)
        ops.append(("profile", _profile_item(w), condition))
        for kind, fact_id, data in w.facts:
            ops.append(("fact", FactItem(pk, keys.fact_sk(kind, fact_id), kind=kind,
                                         fact_id=fact_id, data=data), None))
        mine = TableItem.PK.does_not_exist() | (PointerItem.customer_id == w.customer_id)
        for processor, ext_id in w.pointers:
            ppk, psk = keys.ext_pointer(w.account_id, processor, ext_id)
            ops.append(("pointer", PointerItem(ppk, psk, customer_id=w.customer_id), mine))
        for processor, ext_id, from_id in w.repoint:
            ppk, psk = keys.ext_pointer(w.account_id, processor, ext_id)
            ops.append(("pointer", PointerItem(ppk, psk, customer_id=w.customer_id),
                        mine | (PointerItem.customer_id == from_id)))
        for order_id in w.order_pointers:
            ppk, psk = keys.order_pointer(w.account_id, order_id)
            ops.append(("pointer", PointerItem(ppk, psk, customer_id=w.customer_id), None))
        if w.claim_email:
            epk, esk = keys.email_claim(w.account_id, w.claim_email)
            ops.append(("email", EmailClaimItem(epk, esk, customer_id=w.customer_id),
                        TableItem.PK.does_not_exist()))
        if w.release_email:
            epk, esk = keys.email_claim(w.account_id, w.release_email)
            ops.append(("delete", EmailClaimItem(epk, esk), EmailClaimItem.customer_id == w.customer_id))
        for name, term in w.search_put.items():
            ops.append(("search", SearchItem(
                pk, keys.search_sk(name), customer_id=w.customer_id,
                email=w.profile.get("email"), name=(w.profile.get("data") or {}).get(
                    "values", {}).get("name"),
                GSI2PK=keys.search_index_pk(w.account_id, term),
                GSI2SK=keys.search_index_sk(term, w.customer_id)), None))
        for name in w.search_delete:
            ops.append(("delete", SearchItem(pk, keys.search_sk(name)), None))
        for kind, fact_id in w.delete_facts:
            ops.append(("delete", FactItem(pk, keys.fact_sk(kind, fact_id)), None))
        if w.summary is not None:
            ops.append(("summary", SummaryItem(pk, keys.SUMMARY_SK, data=w.summary), None))
        if w.delete_summary:
            ops.append(("delete", SummaryItem(pk, keys.SUMMARY_SK), None))
        # Deletes first: an entry whose date changed is deleted under its old key and put
        # under its new one (two keys, so no conflict within the transaction).
        for entry in w.order_deletes:
            ops.append(("delete", OrderEntryItem(pk, _order_sk(entry)), None))
        for entry in w.order_puts:
            ops.append(("order", OrderEntryItem(pk, _order_sk(entry), order_id=entry["id"],
                                                data=entry), None))
    if delivery is not None:
        ops.append(("delivery", delivery_item(delivery), None))
        if delivery.get("outcome") == "applied" and delivery.get("customer_id"):
            # The customer's event log (their timeline's processor events, and the way to an
            # object's raw payloads): one small item in the same transaction.
            ops.append(("event", event_log_item(delivery), None))
    for event in outbox or []:
        ops.extend(outbox_ops(event))
    ops.extend(also or [])
    if len(ops) > 100:
        raise ValueError(f"a record write of {len(ops)} items exceeds one transaction")
    # Shared counters (``update`` ops: the recovery report's monthly totals) are touched by
    # many unrelated writes at once; a write cancelled only because another transaction
    # held one of its items (TransactionConflict, no condition failed) did not apply, and
    # is sent again as it was, its conditions checked anew.
    tries = 4 if any(op == "update" for op, _, _ in ops) else 1
    for attempt in range(tries):
        try:
            _transact(ops)
            return
        except TransactWriteError as exc:
            codes = {r.code for r in exc.cancellation_reasons or [] if r is not None}
            if attempt + 1 < tries and codes == {"TransactionConflict"}:
                backoff.pause(attempt)
                continue
            _raise_for(exc, mark)


def _transact(ops: list[tuple]) -> None:
    with TransactWrite(connection=_connection()) as tx:
        for op, item, condition in ops:
            if op == "delete":
                tx.delete(item, condition=condition)
            elif op == "update":  # condition: (update actions, condition)
                tx.update(item, actions=condition[0], condition=condition[1])
            else:
                tx.save(item, condition=condition)


def _raise_for(exc: TransactWriteError, mark: EventMark | None) -> None:
    reasons = exc.cancellation_reasons or []
    if mark is not None and reasons and reasons[0] is not None and \
            reasons[0].code == "ConditionalCheckFailed":
        raise AlreadyApplied(mark.event_id) from exc
    if any(r is not None and r.code in ("ConditionalCheckFailed", "TransactionConflict")
           for r in reasons):
        raise Conflict(str(exc)) from exc
    raise exc


def delivery_sk(d: dict) -> str:
    return f"{d['received_at']}#{d['delivery_id']}"


def delivery_item(d: dict) -> DeliveryItem:
    """``d`` may hold the raw body's fields (store.payloads.prepare): kept unless the
    delivery is a duplicate (its applied delivery keeps the same body)."""
    payload = {} if d["outcome"] == "duplicate" else {
        k: d.get(k) for k in ("payload_z", "payload_key", "payload_bytes")}
    return DeliveryItem(
        keys.deliveries_pk(d["account_id"]), delivery_sk(d),
        account_id=d["account_id"], event_id=d["event_id"], event_type=d["event_type"],
        received_at=d["received_at"], outcome=d["outcome"], error=d.get("error"),
        customer_id=d.get("customer_id"), ttl=timedelta(seconds=d["retention_seconds"]),
        object_refs=d.get("object_refs") or None, **payload,
    )


def event_log_item(d: dict) -> EventLogItem:
    """An applied delivery in its customer's event log, kept as long as the delivery."""
    return EventLogItem(
        keys.customer_events_pk(d["customer_id"]), keys.history_sk(d["occurred_at"], d["event_id"]),
        account_id=d["account_id"], customer_id=d["customer_id"], event_id=d["event_id"],
        event_type=d["event_type"], occurred_at=d["occurred_at"],
        object_refs=d.get("object_refs") or [], delivery_sk=delivery_sk(d),
        ttl=timedelta(seconds=d["retention_seconds"]))


def list_events(customer_id: str, limit: int, before: str | None
                ) -> tuple[list[dict], str | None]:
    """A page of a customer's event log, newest first, and the position of the next page
    (None on the last)."""
    condition = before > EventLogItem.SK if before else None
    out, last = [], None
    for item in EventLogItem.query(keys.customer_events_pk(customer_id), condition,
                                   scan_index_forward=False, limit=limit + 1):
        if len(out) == limit:
            return out, last
        out.append({"account_id": item.account_id, "event_id": item.event_id,
                    "event_type": item.event_type, "occurred_at": item.occurred_at,
                    "object_refs": list(item.object_refs or []),
                    "delivery_sk": item.delivery_sk, "position": item.SK})
        last = item.SK
    return out, None


def _delivery(item: DeliveryItem) -> dict:
    return {"key": item.SK, "event_id": item.event_id, "event_type": item.event_type,
            "received_at": item.received_at, "outcome": item.outcome, "error": item.error,
            "customer_id": item.customer_id, "object_refs": list(item.object_refs or []),
            "payload_bytes": item.payload_bytes, "payload_z": item.payload_z,
            "payload_key": item.payload_key}


def get_deliveries(account_id: str, sks: list[str]) -> dict[str, dict]:
    """Delivery items of an account by sort key (BatchGetItem, 100 keys a request)."""
    pk = keys.deliveries_pk(account_id)
    found = {}
    for item in DeliveryItem.batch_get([(pk, sk) for sk in dict.fromkeys(sks)]):
        if item.account_id == account_id:
            found[item.SK] = _delivery(item)
    return found


def get_delivery(account_id: str, sk: str) -> dict | None:
    try:
        item = DeliveryItem.get(keys.deliveries_pk(account_id), sk)
    except DoesNotExist:
        return None
    return _delivery(item) if item.account_id == account_id else None


def outbox_item(event: dict) -> OutboxItem:
    """An event for the integrations (Zapier, merchants' webhooks) to send out."""
    return OutboxItem(
        keys.outbox_pk(event["account_id"]), f"{event['occurred_at']}#{event['event_id']}",
        account_id=event["account_id"], event_id=event["event_id"], event_type=event["type"],
        customer_id=event["customer_id"], occurred_at=event["occurred_at"],
        data=event.get("data") or {}, ttl=timedelta(days=OUTBOX_RETENTION_DAYS))


# The pipeline's safety net (integrations.pipeline): every outbox item is written with a due
# step that fans it out this long after, should the table's stream not have done it by
# then (the stream's fan-out cancels the step).
OUTBOX_SWEEP_AFTER = timedelta(minutes=5)
OUTBOX_STEP_KIND = "outbox.fanout"


def outbox_step_id(event_id: str) -> str:
    return f"outbox:{event_id}"


def outbox_ops(event: dict) -> list[tuple]:
    """The transaction ops that write one outbox event: its item (new only) and its
    sweeper step (``OUTBOX_STEP_KIND``)."""
    from chalicelib.store import steps

    item = outbox_item(event)
    due = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")) + \
        OUTBOX_SWEEP_AFTER
    step = steps.Step(account_id=event["account_id"], step_id=outbox_step_id(event["event_id"]),
                      kind=OUTBOX_STEP_KIND, due_at=iso(due.astimezone(UTC)),
                      customer_id=event.get("customer_id") or None, data={"sk": item.SK})
    return [("outbox", item, TableItem.PK.does_not_exist()), steps.plan_op(step)]


def get_outbox(account_id: str, sk: str) -> dict | None:
    """One outbox event by its sort key (``<occurred at>#<event id>``)."""
    try:
        item = OutboxItem.get(keys.outbox_pk(account_id), sk)
    except DoesNotExist:
        return None
    return _outbox_event(item) if item.account_id == account_id else None


def outbox_event_of_image(image: dict) -> dict | None:
    """The outbox event in a stream record's NewImage (DynamoDB JSON); None for any other
    item type."""
    if (image.get("T") or {}).get("S") != "Outbox":
        return None
    return _outbox_event(OutboxItem.from_raw_data(image))


def _outbox_event(item: OutboxItem) -> dict:
    return {"event_id": item.event_id, "type": item.event_type, "account_id": item.account_id,
            "customer_id": item.customer_id, "occurred_at": item.occurred_at,
            "data": item.data or {}}


def list_outbox(account_id: str, limit: int = 100) -> list[dict]:
    return [{"event_id": i.event_id, "type": i.event_type, "customer_id": i.customer_id,
             "occurred_at": i.occurred_at, "data": i.data}
            for i in OutboxItem.query(keys.outbox_pk(account_id), scan_index_forward=False,
                                      limit=limit)]


def save_delivery(d: dict) -> None:
    delivery_item(d).save()


_DELIVERY_LISTED = ["PK", "SK", "T", "event_id", "event_type", "received_at", "outcome", "error",
                    "customer_id", "object_refs", "payload_bytes"]


def list_deliveries(account_id: str, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
    kwargs = {}
    if cursor:
        kwargs["range_key_condition"] = cursor > DeliveryItem.SK
    items = []
    last = None
    # Without the kept bodies: a page of the list reads a few hundred bytes an entry.
    for item in DeliveryItem.query(keys.deliveries_pk(account_id), scan_index_forward=False,
                                   limit=limit, attributes_to_get=_DELIVERY_LISTED, **kwargs):
        items.append({"key": item.SK, "event_id": item.event_id,
                      "event_type": item.event_type, "received_at": item.received_at,
                      "outcome": item.outcome, "error": item.error,
                      "customer_id": item.customer_id,
                      "object_refs": list(item.object_refs or []),
                      "payload_bytes": item.payload_bytes})
        last = item.SK
    return items, (last if len(items) == limit else None)


def list_customers(account_id: str, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
    kwargs = {}
    if cursor:
        kwargs["range_key_condition"] = cursor > ProfileItem.GSI1SK
    out, last = [], None
    for item in ProfileItem.customers_index.query(
            keys.customers_index_pk(account_id), scan_index_forward=False, limit=limit, **kwargs):
        out.append(_summary(item))
        last = item.GSI1SK
    return out, (last if len(out) == limit else None)


def _summary(item: ProfileItem) -> dict:
    values = (item.data or {}).get("values", {})
    return {"id": item.customer_id, "email": item.email, "name": values.get("name"),
            "created_at": item.created_at, "stats": item.stats or {}}


def search_customers(account_id: str, term: str, limit: int) -> list[dict]:
    seen, out = set(), []
    for item in SearchItem.search_index.query(
            keys.search_index_pk(account_id, term), SearchItem.GSI2SK.startswith(term),
            limit=limit * 3):
        if item.customer_id in seen:
            continue
        seen.add(item.customer_id)
        out.append({"id": item.customer_id, "email": item.email, "name": item.name})
        if len(out) >= limit:
            break
    return out


# --- a record's histories when part of it moves (records.moves) ----------------------------

_RELOCATE_PAIRS = 50  # a delete and a put each: 100 items, one transaction


def relocate_history(source_id: str, target_id: str, refs: set[str] | None) -> int:
    """Move a customer's history items (e-mails, event log, notes: their own partitions)
    to another customer: all of them (``refs`` None: the whole record moves), or only the
    event-log entries and notes naming one of ``refs`` (a processor customer's part moves;
    e-mails stay with the address they were sent to). Each item is put under the target
    and deleted from the source in one transaction, so a crash leaves each item in one
    place and running it again moves the rest. Raises Conflict when another run moved an
    item first. Returns how many it moved."""
    client = _connection().client
    from chalicelib.settings import get_settings

    table = get_settings().table_name
    moving = []
    for pk, target_pk in ((keys.customer_events_pk(source_id), keys.customer_events_pk(target_id)),
                          (keys.customer_notes_pk(source_id), keys.customer_notes_pk(target_id)),
                          (keys.customer_mail_pk(source_id), keys.customer_mail_pk(target_id))):
        for item in _query_raw(client, table, pk):
            if refs is not None and not _names_any(item, refs):
                continue
            moved = {**item, "PK": {"S": target_pk}, "customer_id": {"S": target_id}}
            moving.append((item, moved))
    for start in range(0, len(moving), _RELOCATE_PAIRS):
        ops = []
        for old, new in moving[start:start + _RELOCATE_PAIRS]:
            ops.append({"Put": {"TableName": table, "Item": new}})
            ops.append({"Delete": {"TableName": table,
                                   "Key": {"PK": old["PK"], "SK": old["SK"]},
                                   "ConditionExpression": "attribute_exists(PK)"}})
        try:
            client.transact_write_items(TransactItems=ops)
        except client.exceptions.TransactionCanceledException as exc:
            raise Conflict(str(exc)) from exc
    return len(moving)


def _query_raw(client, table: str, pk: str) -> list[dict]:
    items, start = [], None
    while True:
        kwargs = {"TableName": table, "KeyConditionExpression": "PK = :pk",
                  "ExpressionAttributeValues": {":pk": {"S": pk}}, "ConsistentRead": True}
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = client.query(**kwargs)
        items += page.get("Items", [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def _names_any(item: dict, refs: set[str]) -> bool:
    """Whether a history item is about one of ``refs``: an event-log entry touching one, a
    note on one. E-mails name no object: they stay with the address they went to."""
    named = {v.get("S") for v in (item.get("object_refs") or {}).get("L", [])}
    named.add((item.get("object_ref") or {}).get("S"))
    return bool(named & refs)
