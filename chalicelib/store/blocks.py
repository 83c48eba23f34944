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
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pynamodb.exceptions import DoesNotExist

from chalicelib.store import keys
from chalicelib.store.table import BlockItem, TableItem

KINDS = ("email", "card", "customer")
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
