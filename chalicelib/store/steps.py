"""Due steps: things to do at a given time (a dunning retry, an e-mail, a webhook delivery's
next attempt), found by the scheduler's sweep (chalicelib/scheduler).

Item: ``ACCT#<acct>#STEP#<step id>`` / ``STEP``. The step id is the caller's, stable for
one thing to do (``dunning:<invoice>:retry``, ``dunning:<invoice>:mail:failed:2``), so
planning the same thing twice writes one step.

Life: pending → claimed → done | failed | canceled, or claimed → pending again
(``reschedule``: the same step at a later time). Pending and claimed steps carry the
sparse, sharded index GSI3: ``GSI3PK = DUE#<shard>`` (shard: a hash of the step's key mod
``scheduler_shards``, so no index key is hot), ``GSI3SK = <due at>#<account>#<step id>``.
A claim moves GSI3SK to the lease's end, so a step whose sweep died is found again when its
lease ends; a finished step drops the index attributes (it is in no index any more) and
gets a TTL of ``RETENTION_DAYS``.

Every state change is conditional: a claim only on a pending, due step (or a claimed one
whose lease ended), and only the claim's holder (its token) finishes or reschedules it.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from chalicelib.settings import get_settings
from chalicelib.store import keys
from chalicelib.store.table import StepItem, TableItem
from chalicelib.timeutil import iso

PENDING, CLAIMED, DONE, CANCELED, FAILED = "pending", "claimed", "done", "canceled", "failed"
FINISHED = (DONE, CANCELED, FAILED)
RETENTION_DAYS = 90


@dataclass(frozen=True)
class Step:
    account_id: str
    step_id: str
    kind: str  # "<feature>.<what>"; scheduler.kinds maps the feature to its handler
    due_at: str  # ISO UTC (timeutil.iso)
    customer_id: str | None = None
    data: dict = field(default_factory=dict)
    status: str = PENDING
    attempts: int = 0  # claims so far
    outcome: dict | None = None
    lease_until: str | None = None
    claim_token: str | None = None


def shard_of(account_id: str, step_id: str, shards: int | None = None) -> int:
    digest = hashlib.sha256(f"{account_id}#{step_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (shards or get_settings().scheduler_shards)


def _step(item: StepItem) -> Step:
    return Step(account_id=item.account_id, step_id=item.step_id, kind=item.kind,
                due_at=item.due_at, customer_id=item.customer_id, data=item.data or {},
                status=item.status, attempts=int(item.attempts or 0), outcome=item.outcome,
                lease_until=item.lease_until, claim_token=item.claim_token)


def _item(step: Step, index_at: str | None, updated_at: str | None = None) -> StepItem:
    """The step's whole item; in the due index at ``index_at`` (None: not indexed, and kept
    ``RETENTION_DAYS``)."""
    pk, sk = keys.step(step.account_id, step.step_id)
    item = StepItem(pk, sk, account_id=step.account_id, step_id=step.step_id, kind=step.kind,
                    due_at=step.due_at, customer_id=step.customer_id, data=step.data or {},
                    status=step.status, attempts=step.attempts, outcome=step.outcome,
                    lease_until=step.lease_until, claim_token=step.claim_token,
                    updated_at=updated_at)
    if index_at is None:
        item.ttl = timedelta(days=RETENTION_DAYS)
    else:
        item.GSI3PK = keys.due_index_pk(shard_of(step.account_id, step.step_id))
        item.GSI3SK = keys.due_index_sk(index_at, step.account_id, step.step_id)
    return item


def _pending(step: Step) -> Step:
    return replace(step, status=PENDING, attempts=0, outcome=None, lease_until=None,
                   claim_token=None)


def _failed_condition(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


# --- planning ------------------------------------------------------------------------------

def plan(step: Step) -> bool:
    """Plan the step, or move a still-pending one to the step's time and data. A step that
    is claimed, done, failed or canceled is left alone: whether it was (re)planned."""
    item = _item(_pending(step), step.due_at)
    try:
        item.save(condition=TableItem.PK.does_not_exist() | (StepItem.status == PENDING))
    except PutError as exc:
        if _failed_condition(exc):
            return False
        raise
    return True


def plan_op(step: Step) -> tuple[str, StepItem, None]:
    """``plan`` as a ``(kind, item, condition)`` for a record's transaction
    (``store.customers.commit(also=…)``, a reaction's ``Effects.ops``). Unconditional, so
    it never aborts the record's write: it puts the step pending whatever was there. Give
    each planned occurrence its own step id (the attempt, the e-mail's kind): a reaction
    plans it once per fact change, and a redelivered event changes no fact, so the same id
    is only ever re-planned by the change that first planned it."""
    return ("step", _item(_pending(step), step.due_at), None)


def cancel(account_id: str, step_id: str, now: datetime | None = None,
           reason: str = "canceled") -> bool:
    """Cancel a pending step (not one being run, done or failed): whether it was."""
    pk, sk = keys.step(account_id, step_id)
    item = StepItem(pk, sk)
    try:
        actions = [StepItem.status.set(CANCELED), StepItem.GSI3PK.remove(),
                   StepItem.GSI3SK.remove(), StepItem.outcome.set({"reason": reason}),
                   StepItem.ttl.set(timedelta(days=RETENTION_DAYS))]
        if now is not None:
            actions.append(StepItem.updated_at.set(iso(now)))
        item.update(actions=actions,
                    condition=StepItem.PK.exists() & (StepItem.status == PENDING))
    except UpdateError as exc:
        if _failed_condition(exc):
            return False
        raise
    return True


def cancel_op(account_id: str, step_id: str) -> tuple[str, StepItem, None]:
    """Drop a step in a record's transaction, whatever its state (unconditional: it never
    aborts the record's write; a step id that was never planned deletes nothing). A
    claimed step's holder then finds its claim gone and writes nothing; use it for steps
    whose handler also checks, when it runs, that it still has something to do."""
    pk, sk = keys.step(account_id, step_id)
    return ("delete", StepItem(pk, sk), None)


def get(account_id: str, step_id: str) -> Step | None:
    pk, sk = keys.step(account_id, step_id)
    try:
        return _step(StepItem.get(pk, sk, consistent_read=True))
    except DoesNotExist:
        return None


# --- the sweep's side ------------------------------------------------------------------------

def due(shard: int, now: datetime, limit: int = 100) -> list[Step]:
    """Pending steps due by ``now`` and claimed ones whose lease ended, oldest first: one
    Query of one shard of the index (eventually consistent: ``claim`` decides)."""
    upper = iso(now) + "$"  # "$" sorts right after "#": every step due at or before now
    return [_step(i) for i in StepItem.due_steps_index.query(
        keys.due_index_pk(shard), StepItem.GSI3SK < upper, limit=limit)]  # noqa: SIM300


def claim(step: Step, now: datetime, lease_seconds: int) -> Step | None:
    """Take the step for one run (pending and due, or claimed with its lease ended); the
    claimed step (with its token, one more attempt), or None if someone else has it or it
    is no longer to do."""
    now_iso = iso(now)
    lease_until = iso(now + timedelta(seconds=lease_seconds))
    token = secrets.token_hex(8)
    pk, sk = keys.step(step.account_id, step.step_id)
    item = StepItem(pk, sk)
    try:
        item.update(
            actions=[StepItem.status.set(CLAIMED), StepItem.lease_until.set(lease_until),
                     StepItem.claim_token.set(token), StepItem.attempts.add(1),
                     StepItem.updated_at.set(now_iso),
                     StepItem.GSI3SK.set(keys.due_index_sk(lease_until, step.account_id,
                                                           step.step_id))],
            condition=StepItem.PK.exists()
            & (((StepItem.status == PENDING) & (StepItem.due_at <= now_iso))
               | ((StepItem.status == CLAIMED) & (StepItem.lease_until <= now_iso))))
    except UpdateError as exc:
        if _failed_condition(exc):
            return None
        raise
    return _step(item)


def _held(step: Step):
    return StepItem.PK.exists() & (StepItem.status == CLAIMED) & \
        (StepItem.claim_token == (step.claim_token or "-"))


def finish_op(step: Step, status: str, outcome: dict | None,
              now: datetime | None = None) -> tuple[str, StepItem, object]:
    """The claimed step finished (done, failed, canceled), as a transaction op: on the
    condition that this claim still holds it, so a run that lost its lease writes nothing."""
    if status not in FINISHED:
        raise ValueError(status)
    done = replace(step, status=status, outcome=outcome, lease_until=None, claim_token=None)
    return ("step", _item(done, None, iso(now) if now else None), _held(step))


def finish(step: Step, status: str, outcome: dict | None, now: datetime | None = None) -> bool:
    """``finish_op`` on its own: whether this claim still held the step."""
    _, item, condition = finish_op(step, status, outcome, now)
    return save_held(item, condition)


def save_held(item: StepItem, condition) -> bool:
    """Write a ``finish_op``'s or ``reschedule_op``'s item alone: whether the claim held."""
    try:
        item.save(condition=condition)
    except PutError as exc:
        if _failed_condition(exc):
            return False
        raise
    return True


def reschedule_op(step: Step, due_at: str, data: dict | None = None,
                  now: datetime | None = None) -> tuple[str, StepItem, object]:
    """The claimed step pending again at ``due_at`` (its data replaced when given), as a
    transaction op held by this claim. Its attempts are kept."""
    again = replace(step, status=PENDING, due_at=due_at,
                    data=step.data if data is None else data, lease_until=None,
                    claim_token=None)
    return ("step", _item(again, due_at, iso(now) if now else None), _held(step))


def reschedule(step: Step, due_at: str, data: dict | None = None,
               now: datetime | None = None) -> bool:
    _, item, condition = reschedule_op(step, due_at, data, now)
    return save_held(item, condition)

