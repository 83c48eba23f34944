"""Blocked customer details of an account: ``ACCT#<acct>#BLOCKS`` / ``<kind>#<value>``.

kind ``email`` (the normalized address), ``card`` (the processor's card fingerprint),
``customer`` (a processor customer, ``stripe:cus_…``). One item per detail, kept after an
unblock (``status`` unblocked) for its log; the log keeps the newest ``LOG_KEPT`` entries.

Access patterns:
  is_blocked    GetItem (the portal's sign-in request, per e-mail).
  get_many      BatchGetItem of named details (a customer's own: self-service's check,
                an action reading the states it changes).
  list_all      Query of the partition (the record page: one read per request for every
                detail of the record, matched in memory).
  state_write   the item as an action writes it, for the action's transaction
                (``actions.service.Result.writes``): a Put on the condition that the item
                is as it was read (absent, or the same ``changed_at``), so two racing
                actions on one detail never lose a log entry (the loser's transaction is
                cancelled and the action can be sent again).
  index_write   ``ACCT#<acct>#BLOCKINDEX`` / ``INDEX``: how many cards and processor
                customers (the details a payment is blocked by) are blocked now, raised
                or lowered by the same action's transaction (an update; an account whose
                blocks predate the index starts from its blocks as read).
  payment_blocks_possible  whether a payment's webhook need read its block items
                (``chalicelib.blocks.service.blocked_for_payments``): GetItem of the index,
                kept by this container for ``INDEX_CACHE_SECONDS`` (an account that blocks
                nothing costs its payment webhooks no read, only one GetItem a minute);
                the container that runs a block or unblock drops its copy at once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from pynamodb.exceptions import DoesNotExist

from chalicelib.store import keys
from chalicelib.store.table import BlockIndexItem, BlockItem, TableItem

KINDS = ("email", "card", "customer")
PAYMENT_KINDS = ("card", "customer")  # the details a payment can be blocked by
INDEX_CACHE_SECONDS = 60
# account id → (time.monotonic() when read, whether it blocks a card or customer)
_index_cache: dict[str, tuple[float, bool]] = {}
LOG_KEPT = 50
BATCH = 100  # BatchGetItem's limit


@dataclass(frozen=True)
class Block:
    account_id: str
    kind: str
    value: str
    status: str  # blocked, unblocked
    label: str | None
    customer_id: str | None
    card_ids: tuple[str, ...]
    changed_at: str
    log: list[dict] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return self.status == "blocked"


def _block(item: BlockItem) -> Block:
    return Block(item.account_id, item.kind, item.value, item.status, item.label,
                 item.customer_id, tuple(item.card_ids or ()), item.changed_at,
                 list(item.log or []))


def get(account_id: str, kind: str, value: str) -> Block | None:
    try:
        item = BlockItem.get(keys.blocks_pk(account_id), keys.block_sk(kind, value),
                             consistent_read=True)
    except DoesNotExist:
        return None
    return _block(item) if item.account_id == account_id else None


def is_blocked(account_id: str, kind: str, value: str) -> bool:
    found = get(account_id, kind, value)
    return found is not None and found.blocked


def get_many(account_id: str, details: list[tuple[str, str]],
             consistent: bool = False) -> dict[tuple[str, str], Block]:
    """The stored blocks of ``details`` ((kind, value) pairs), by detail."""
    wanted = list(dict.fromkeys(details))
    out: dict[tuple[str, str], Block] = {}
    pk = keys.blocks_pk(account_id)
    for start in range(0, len(wanted), BATCH):
        for item in BlockItem.batch_get([(pk, keys.block_sk(k, v))
                                         for k, v in wanted[start:start + BATCH]],
                                        consistent_read=consistent):
            if item.account_id == account_id:
                out[(item.kind, item.value)] = _block(item)
    return out


def list_all(account_id: str) -> list[Block]:
    """Every detail the account blocks or once blocked (one paged Query)."""
    return [_block(item) for item in BlockItem.query(keys.blocks_pk(account_id))
            if item.account_id == account_id]


def state_write(account_id: str, kind: str, value: str, *, blocked: bool, at: str,
                entry: dict, previous: Block | None, label: str | None = None,
                customer_id: str | None = None,
                card_ids: tuple[str, ...] = ()) -> tuple[str, TableItem, object]:
    """The detail's new state with ``entry`` appended to its log, as a write of an
    action's transaction (see the module's docstring). A log entry whose ``key`` (the
    action's key hash) is there already is not added twice (an action run again)."""
    if kind not in KINDS:
        raise ValueError(f"unknown block kind {kind!r}")
    log = list(previous.log) if previous else []
    if not any(e.get("key") and e.get("key") == entry.get("key") for e in log):
        log.append(entry)
    item = BlockItem(keys.blocks_pk(account_id), keys.block_sk(kind, value),
                     account_id=account_id, kind=kind, value=value,
                     status="blocked" if blocked else "unblocked",
                     label=label or (previous.label if previous else None),
                     customer_id=customer_id or (previous.customer_id if previous else None),
                     card_ids=sorted(set(card_ids) | set(previous.card_ids if previous else ())),
                     changed_at=at, log=log[-LOG_KEPT:])
    condition = (BlockItem.changed_at == previous.changed_at) if previous \
        else TableItem.PK.does_not_exist()
    return ("block", item, condition)


def _payment_blocks_now(account_id: str) -> int:
    return sum(1 for b in list_all(account_id) if b.blocked and b.kind in PAYMENT_KINDS)


def index_write(account_id: str, delta: int) -> tuple[str, TableItem, tuple]:
    """``payment_blocks += delta`` (the action's cards and processor customers blocked,
    less those unblocked), as an ``update`` op of the action's transaction."""
    pk, sk = keys.blocks_index(account_id)
    try:
        BlockIndexItem.get(pk, sk, consistent_read=True)
        base = 0
    except DoesNotExist:
        # Blocks made before the index was kept: count them once (a concurrent first
        # write makes the item, and this one then adds to what it holds).
        base = _payment_blocks_now(account_id)
    _index_cache.pop(account_id, None)
    return ("update", BlockIndexItem(pk, sk), (
        [BlockIndexItem.T.set(BlockIndexItem), BlockIndexItem.account_id.set(account_id),
         BlockIndexItem.payment_blocks.set((BlockIndexItem.payment_blocks | base) + delta)],
        None))


def payment_blocks_possible(account_id: str) -> bool:
    """Whether the account blocks any card or processor customer (see the module's
    docstring for the container's copy)."""
    now = time.monotonic()
    hit = _index_cache.get(account_id)
    if hit is not None and now - hit[0] < INDEX_CACHE_SECONDS:
        return hit[1]
    pk, sk = keys.blocks_index(account_id)
    try:
        item = BlockIndexItem.get(pk, sk)
        possible = item.account_id == account_id and int(item.payment_blocks or 0) > 0
    except DoesNotExist:
        possible = _payment_blocks_now(account_id) > 0
    if len(_index_cache) > 10_000:
        _index_cache.clear()
    _index_cache[account_id] = (now, possible)
    return possible
