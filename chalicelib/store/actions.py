"""Merchant actions by idempotency key, and each payment's refund ledger.

Action: ``ACCT#<acct>#ACTION#<sha256(source, key)>`` / ``ACTION`` (chalicelib/actions).
  claim      PutItem (``attribute_not_exists``): the first request with a key runs it;
             any other reads the item (consistent GetItem) and gets its hash, state and
             stored answer.
  take_over  UpdateItem ``SET lease_until`` on the condition that the action is still
             running, its lease has run out (the process running it was cut off, or the
             processor's answer was unknown) and the request is the same.
  finish     written in the transaction that records what the action did (the record's,
             through ``records.record_confirmed(also=…)``, or ``finish`` alone): status
             ``done`` and the answer, on the condition that it is still this run's.
  release    DeleteItem on a definite refusal (nothing happened: the key may be used again).

Refund ledger: ``ACCT#<acct>#REFUNDS#<payment>`` holds ``LEDGER`` (``available = paid -
refunded - reserved``, only ever changed by atomic ADDs), ``RESV#<action key hash>`` (an
amount held for one refund action) and ``REFUND#<processor ref>`` (a processor refund
counted once). See docs/data-model.md.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib.store import activity, keys
from chalicelib.store.customers import outbox_ops
from chalicelib.store.table import (
    ActionItem,
    RefundLedgerItem,
    RefundReservationItem,
    RefundSeenItem,
    TableItem,
)


class Conflict(Exception):
    """A condition did not hold (someone else changed the item first)."""


class NotEnough(Exception):
    """A reservation larger than what is still available."""


def _connection() -> Connection:
    return ActionItem._get_connection().connection


def _ttl(expires_at: int) -> datetime:
    return datetime.fromtimestamp(expires_at, UTC)


def _conditional_failed(exc: Exception) -> bool:
    cause = getattr(exc, "cause_response_code", None)
    return cause == "ConditionalCheckFailedException"


# --- actions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    account_id: str
    key_hash: str
    name: str
    customer_id: str | None
    request_hash: str
    actor: str
    source: str
    status: str  # running, done
    lease_until: int
    result: dict | None
    result_status: int | None
    created_at: str
    expires_at: int


def _action(item: ActionItem, key_hash: str) -> Action:
    return Action(item.account_id, key_hash, item.name, item.customer_id, item.request_hash,
                  item.actor, item.source, item.status, int(item.lease_until), item.result,
                  int(item.result_status) if item.result_status is not None else None,
                  item.created_at, int(item.expires_at))


def claim(action: Action) -> Action | None:
    """Claim the key for ``action`` (status running). Returns None when claimed, else the
    action already stored under the key (read consistently)."""
    pk, sk = keys.action(action.account_id, action.key_hash)
    item = ActionItem(pk, sk, account_id=action.account_id, name=action.name,
                      customer_id=action.customer_id, request_hash=action.request_hash,
                      actor=action.actor, source=action.source, status="running",
                      lease_until=action.lease_until, created_at=action.created_at,
                      expires_at=action.expires_at, ttl=_ttl(action.expires_at))
    try:
        item.save(condition=TableItem.PK.does_not_exist())
        return None
    except PutError as exc:
        if not _conditional_failed(exc):
            raise
    found = get(action.account_id, action.key_hash)
    if found is None:  # released between the two requests: claim it again
        return claim(action)
    return found


def get(account_id: str, key_hash: str) -> Action | None:
    pk, sk = keys.action(account_id, key_hash)
    try:
        item = ActionItem.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None
    if item.account_id != account_id:
        return None
    return _action(item, key_hash)


def take_over(account_id: str, key_hash: str, request_hash: str, now: int,
              lease_until: int) -> bool:
    """Run a cut-off action again (same key, same request): True if this caller got it."""
    pk, sk = keys.action(account_id, key_hash)
    try:
        ActionItem(pk, sk).update(
            actions=[ActionItem.lease_until.set(lease_until)],
            condition=(ActionItem.status == "running") & (ActionItem.lease_until < now) &
                      (ActionItem.request_hash == request_hash))
        return True
    except UpdateError as exc:
        if _conditional_failed(exc):
            return False
        raise


def end_lease(account_id: str, key_hash: str, request_hash: str) -> None:
    """The run stopped with an unknown outcome: the next request with the key may take it
    over at once (and repeat the processor calls with the same keys)."""
    pk, sk = keys.action(account_id, key_hash)
    try:
        ActionItem(pk, sk).update(
            actions=[ActionItem.lease_until.set(0)],
            condition=(ActionItem.status == "running") & (ActionItem.request_hash == request_hash))
    except UpdateError as exc:
        if not _conditional_failed(exc):
            raise


def release(account_id: str, key_hash: str, request_hash: str) -> None:
    """Forget a running action that did nothing (a definite refusal)."""
    pk, sk = keys.action(account_id, key_hash)
    try:
        ActionItem(pk, sk).delete(condition=(ActionItem.status == "running") &
                                  (ActionItem.request_hash == request_hash))
    except DeleteError as exc:  # a lost race leaves it as it is
        if not _conditional_failed(exc):
            raise


def finish_ops(action: Action, result: dict, result_status: int, finished_at: str,
               entry: activity.Entry, entry_expires_at: int,
               outbox: list[dict]) -> list[tuple[str, TableItem, object]]:
    """The writes that mark ``action`` done, in the transaction of what it changed: the
    action's answer (on the condition it is still this run's), the activity entry and the
    outbox events (each ``{"account_id", "customer_id", "event_id", "type",
    "occurred_at", "data"}``). Items for ``store.customers.commit(also=…)``."""
    pk, sk = keys.action(action.account_id, action.key_hash)
    done = ActionItem(pk, sk, account_id=action.account_id, name=action.name,
                      customer_id=action.customer_id, request_hash=action.request_hash,
                      actor=action.actor, source=action.source, status="done", lease_until=0,
                      result=result, result_status=result_status, created_at=action.created_at,
                      finished_at=finished_at, expires_at=action.expires_at,
                      ttl=_ttl(action.expires_at))
    ops: list[tuple[str, TableItem, object]] = [
        ("action", done, (ActionItem.status == "running") &
         (ActionItem.request_hash == action.request_hash))]
    ops.append(("activity", activity.item_of(entry, entry_expires_at),
                TableItem.PK.does_not_exist()))
    for event in outbox:
        ops.extend(outbox_ops(event))
    return ops


def commit_ops(ops: list[tuple[str, TableItem, object]]) -> None:
    """Write ``finish_ops`` alone (an action that changed no record), with the action's
    own writes (kind ``"update"``: an update whose condition is ``(update actions,
    condition)``, as in store.customers.commit; kind ``"delete"``: the item deleted on the
    condition). Conflict if the action is no longer
    this run's or a condition of its writes failed."""
    try:
        with TransactWrite(connection=_connection()) as tx:
            for op, item, condition in ops:
                if op == "update":
                    tx.update(item, actions=condition[0], condition=condition[1])
                elif op == "delete":
                    tx.delete(item, condition=condition)
                else:
                    tx.save(item, condition=condition)
    except TransactWriteError as exc:
        if any(r is not None and r.code in ("ConditionalCheckFailed", "TransactionConflict")
               for r in exc.cancellation_reasons or []):
            raise Conflict(str(exc)) from exc
        raise


# --- the refund ledger ----------------------------------------------------------------

@dataclass(frozen=True)
class Ledger:
    account_id: str
    customer_id: str
    payment_id: str
    currency: str
    paid: int
    refunded: int
    reserved: int
    available: int


@dataclass(frozen=True)
class Reservation:
    key_hash: str
    payment_id: str
    amount: int
    status: str  # pending, confirmed, released
    processor_key: str
    request: dict
    refund_ref: str | None
    created_at: str


def _ledger(item: RefundLedgerItem) -> Ledger:
    return Ledger(item.account_id, item.customer_id, item.payment_id, item.currency,
                  int(item.paid), int(item.refunded), int(item.reserved), int(item.available))


def _reservation(item: RefundReservationItem) -> Reservation:
    return Reservation(item.SK.removeprefix("RESV#"), item.payment_id, int(item.amount),
                       item.status, item.processor_key, item.request or {}, item.refund_ref,
                       item.created_at)


def read_ledger(account_id: str, payment_id: str) -> tuple[Ledger | None, list[Reservation],
                                                            dict[str, int]]:
    """The ledger, its reservations and the refunds it counted (ref → amount): one Query."""
    ledger, reservations, seen = None, [], {}
    for item in TableItem.query(keys.refund_ledger_pk(account_id, payment_id),
                                consistent_read=True):
        if isinstance(item, RefundLedgerItem):
            if item.account_id == account_id:
                ledger = _ledger(item)
        elif isinstance(item, RefundReservationItem):
            reservations.append(_reservation(item))
        elif isinstance(item, RefundSeenItem):
            seen[item.SK.removeprefix("REFUND#")] = int(item.amount)
    return ledger, reservations, seen


def open_ledger(account_id: str, customer_id: str, payment_id: str, currency: str,
                paid: int) -> None:
    """Start a payment's ledger (nothing refunded yet; ``count_refund`` adds what the
    record already knows). A ledger that exists is left as it is."""
    item = RefundLedgerItem(keys.refund_ledger_pk(account_id, payment_id), keys.REFUND_LEDGER_SK,
                            account_id=account_id, customer_id=customer_id,
                            payment_id=payment_id, currency=currency, paid=paid, refunded=0,
                            reserved=0, available=paid)
    try:
        item.save(condition=TableItem.PK.does_not_exist())
    except PutError as exc:
        if not _conditional_failed(exc):
            raise


def _ledger_key(account_id: str, payment_id: str) -> RefundLedgerItem:
    return RefundLedgerItem(keys.refund_ledger_pk(account_id, payment_id), keys.REFUND_LEDGER_SK)


def _transact(build, attempts: int = 40) -> list:
    """Run a transaction built by ``build(tx)``; retry on TransactionConflict; returns
    the cancellation reasons' codes when a condition failed (else [])."""
    for attempt in range(attempts):
        try:
            with TransactWrite(connection=_connection()) as tx:
                build(tx)
            return []
        except TransactWriteError as exc:
            codes = [r.code if r is not None else None for r in exc.cancellation_reasons or []]
            if "ConditionalCheckFailed" in codes:
                return codes
            if "TransactionConflict" in codes or not codes:
                time.sleep(min(0.5, 0.01 * (attempt + 1)))
                continue
            raise
    raise Conflict("too many concurrent changes to this payment's refunds")


def count_refund(account_id: str, payment_id: str, refund_ref: str, amount: int) -> bool:
    """Count a processor refund the ledger has not counted (the record learnt it from the
    processor's webhooks, or it was made elsewhere): ``refunded += amount, available -=
    amount``. False if it was counted already."""
    pk = keys.refund_ledger_pk(account_id, payment_id)

    def build(tx):
        tx.save(RefundSeenItem(pk, keys.refund_seen_sk(refund_ref), amount=amount),
                condition=TableItem.PK.does_not_exist())
        tx.update(_ledger_key(account_id, payment_id),
                  actions=[RefundLedgerItem.refunded.add(amount),
                           RefundLedgerItem.available.add(-amount)],
                  condition=RefundLedgerItem.account_id == account_id)

    return not _transact(build)


def reserve(account_id: str, customer_id: str, payment_id: str, key_hash: str, amount: int,
            processor_key: str, request: dict, created_at: str) -> Reservation:
    """Hold ``amount`` for the action ``key_hash``: ``available -= amount`` on the
    condition ``available >= amount``, with the reservation item, in one transaction.
    The action's reservation if it has one already (a retry); NotEnough otherwise."""
    pk = keys.refund_ledger_pk(account_id, payment_id)
    sk = keys.refund_reservation_sk(key_hash)
    item = RefundReservationItem(pk, sk, account_id=account_id, customer_id=customer_id,
                                 payment_id=payment_id, amount=amount, status="pending",
                                 processor_key=processor_key, request=request,
                                 created_at=created_at)

    def build(tx):
        tx.save(item, condition=TableItem.PK.does_not_exist())
        tx.update(_ledger_key(account_id, payment_id),
                  actions=[RefundLedgerItem.available.add(-amount),
                           RefundLedgerItem.reserved.add(amount)],
                  condition=(RefundLedgerItem.available >= amount) &
                            (RefundLedgerItem.account_id == account_id))

    codes = _transact(build)
    if not codes:
        return _reservation(item)
    if codes[0] == "ConditionalCheckFailed":
        found = get_reservation(account_id, payment_id, key_hash)
        if found is not None:
            return found
    raise NotEnough(payment_id)


def get_reservation(account_id: str, payment_id: str, key_hash: str) -> Reservation | None:
    try:
        item = RefundReservationItem.get(keys.refund_ledger_pk(account_id, payment_id),
                                         keys.refund_reservation_sk(key_hash),
                                         consistent_read=True)
    except DoesNotExist:
        return None
    return _reservation(item) if item.account_id == account_id else None


def confirm(account_id: str, payment_id: str, key_hash: str, amount: int, refund_ref: str,
            refunded_amount: int) -> None:
    """The processor made the refund ``refund_ref`` of ``refunded_amount`` for the
    reservation: ``reserved -= amount, refunded += refunded_amount, available += amount -
    refunded_amount``, counting the refund once. If the ledger counted it already (a
    webhook came first), only the hold is given back. Idempotent."""
    pk = keys.refund_ledger_pk(account_id, payment_id)
    resv = RefundReservationItem(pk, keys.refund_reservation_sk(key_hash))
    pending = RefundReservationItem.status == "pending"

    def counted_now(tx):
        tx.update(resv, actions=[RefundReservationItem.status.set("confirmed"),
                                 RefundReservationItem.refund_ref.set(refund_ref)],
                  condition=pending)
        tx.save(RefundSeenItem(pk, keys.refund_seen_sk(refund_ref), amount=refunded_amount),
                condition=TableItem.PK.does_not_exist())
        tx.update(_ledger_key(account_id, payment_id),
                  actions=[RefundLedgerItem.reserved.add(-amount),
                           RefundLedgerItem.refunded.add(refunded_amount),
                           RefundLedgerItem.available.add(amount - refunded_amount)])

    def counted_before(tx):
        tx.update(resv, actions=[RefundReservationItem.status.set("confirmed"),
                                 RefundReservationItem.refund_ref.set(refund_ref)],
                  condition=pending)
        tx.condition_check(RefundSeenItem(pk, keys.refund_seen_sk(refund_ref)),
                           condition=TableItem.PK.exists())
        tx.update(_ledger_key(account_id, payment_id),
                  actions=[RefundLedgerItem.reserved.add(-amount),
                           RefundLedgerItem.available.add(amount)])

    codes = _transact(counted_now)
    if not codes or codes[0] == "ConditionalCheckFailed":
        return  # done now, or the reservation was confirmed already
    _transact(counted_before)


def release_reservation(account_id: str, payment_id: str, key_hash: str, amount: int) -> None:
    """A definite refusal: give the hold back (once)."""
    pk = keys.refund_ledger_pk(account_id, payment_id)

    def build(tx):
        tx.update(RefundReservationItem(pk, keys.refund_reservation_sk(key_hash)),
                  actions=[RefundReservationItem.status.set("released")],
                  condition=RefundReservationItem.status == "pending")
        tx.update(_ledger_key(account_id, payment_id),
                  actions=[RefundLedgerItem.reserved.add(-amount),
                           RefundLedgerItem.available.add(amount)])

    _transact(build)
