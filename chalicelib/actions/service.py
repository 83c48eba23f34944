"""The one mechanism every merchant action runs through (refunds, cancellations, blocks, …),
from the dashboard and from the merchant API alike.

    result = actions.run(ctx, spec, perform)

``run``:

1. checks the staff member's role on the server (``roles.allows``): a refusal is 403
   ``Forbidden``, written to the activity log (``staff.forbidden``) and nothing else;
2. claims the idempotency key (the dashboard form's one-time action id, the API's
   ``Idempotency-Key``) with the SHA-256 of the canonical request. The same key with the
   same request answers the stored result (a second request while the first still runs
   waits up to ``WAIT_SECONDS`` for it, then gets 409 ``action_in_progress``: send it again
   later); the same key with another request is 422 ``idempotency_key_reused``. Keys,
   hashes and answers are kept ``RETENTION_DAYS`` (7; the processor forgets its own keys
   after 24 hours);
3. calls ``perform(step)``; each processor call uses ``step.key("<step>")`` =
   ``<key>:<step>`` as its idempotency key, so a retry of the action repeats no call;
4. records what ``perform`` returns (only what the processor confirmed) in ONE
   transaction: the record's change (``records.record_confirmed``), the outbox product
   events, the activity-log entry (who, when, what, reason, note, before/after) and the
   action's stored answer.

A refusal that changed nothing (any ``AppError`` below 500 from ``perform``: bad input, the
processor declined) answers as raised and frees the key: the request can be corrected and
sent again. A failure of unknown outcome (the processor did not answer, a 5xx) leaves the
action running with its lease ended, so the next request with the same key runs
``perform`` again with the same processor keys.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chalicelib import ids, timeutil
from chalicelib.activity import service as activity
from chalicelib.errors import AppError, Conflict, Forbidden, NotFound
from chalicelib.observability import logger
from chalicelib.records import service as records
from chalicelib.settings import get_settings
from chalicelib.staff import roles
from chalicelib.store import accounts as account_store
from chalicelib.store import actions as store
from chalicelib.store import activity as activity_store

RETENTION_DAYS = 7
# A run holds its key this long (longer than any processor call with its retries); after
# that a request with the same key may take it over (the process running it was cut off).
LEASE_SECONDS = 120
# A second request while the first runs waits this long for its answer, then gets 409.
WAIT_SECONDS = 8.0
POLL_SECONDS = 0.2
SOURCES = ("dashboard", "api")

FORBIDDEN = "Your role does not allow this. Ask an owner of the account if you need it."


class KeyReused(AppError):
    status = 422
    code = "idempotency_key_reused"


class InProgress(Conflict):
    code = "action_in_progress"


@dataclass(frozen=True)
class ActionContext:
    account_id: str
    actor_id: str  # a staff id, or "api:<key prefix>"
    actor_email: str | None
    role: str  # the staff member's role; the merchant API acts as "admin"
    ip: str | None
    source: str  # dashboard, api
    idempotency_key: str


@dataclass(frozen=True)
class ActionSpec:
    name: str  # refund, subscription.cancel_now, … (the activity log's action)
    customer_id: str | None
    permission: str  # staff.roles permission
    request: dict  # canonical: what makes two requests the same
    reason: str | None = None
    note: str | None = None


@dataclass
class Result:
    """What ``perform`` did, as the processor confirmed it."""

    body: dict  # the answer (stored; the same request gets it again)
    status: int = 200
    events: list = field(default_factory=list)  # domain events for the record
    outbox: list[dict] = field(default_factory=list)  # {"type", "data"}
    before: dict | None = None
    after: dict | None = None
    target: str | None = None  # the activity entry's target (default: the customer)
    # More writes of the action, in its one transaction: (name, item, condition) as
    # store.actions.finish_ops gives (e.g. store.blocks.state_write).
    writes: list = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    """Idempotency keys for one action's processor calls."""

    base: str
    key_hash: str

    def key(self, step_name: str) -> str:
        return f"{self.base}:{step_name}"


def request_hash(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


def key_hash(source: str, key: str) -> str:
    return hashlib.sha256(f"action\x1f{source}\x1f{key}".encode()).hexdigest()


def forbidden(ctx: ActionContext, spec: ActionSpec, permission: str | None = None) -> Forbidden:
    """Log a refused action (activity log ``staff.forbidden``) and return the 403 to raise."""
    permission = permission or spec.permission
    logger.warning("action forbidden", extra={"account_id": ctx.account_id, "actor": ctx.actor_id,
                                              "action": spec.name, "permission": permission})
    try:
        activity.record(ctx.account_id, actor=ctx.actor_id, actor_email=ctx.actor_email,
                        action="staff.forbidden", target=spec.customer_id,
                        details={"permission": permission, "action": spec.name,
                                 "source": ctx.source}, ip=ctx.ip)
    except Exception:  # noqa: BLE001 - refused whether or not it was logged
        logger.exception("could not log a forbidden action")
    return Forbidden(FORBIDDEN, code="forbidden")


def _stored(found: store.Action) -> Result:
    return Result(body=found.result or {}, status=found.result_status or 200)


def run(ctx: ActionContext, spec: ActionSpec, perform: Callable[[Step], Result], *,
        before_perform: Callable[[], None] | None = None) -> Result:
    """Run ``spec`` once per idempotency key (see the module's docstring). ``before_perform``
    runs only when this request really acts (not for a stored answer): a step-up code is
    spent there."""
    if ctx.source not in SOURCES:
        raise ValueError(f"unknown source {ctx.source!r}")
    if not roles.allows(ctx.role, spec.permission):
        raise forbidden(ctx, spec)
    hashed = request_hash({"name": spec.name, "customer_id": spec.customer_id, **spec.request})
    khash = key_hash(ctx.source, ctx.idempotency_key)
    now = int(time.time())
    action = store.Action(
        account_id=ctx.account_id, key_hash=khash, name=spec.name,
        customer_id=spec.customer_id, request_hash=hashed, actor=ctx.actor_id,
        source=ctx.source, status="running", lease_until=now + LEASE_SECONDS, result=None,
        result_status=None, created_at=timeutil.now_iso(),
        expires_at=now + RETENTION_DAYS * 86400)
    found = store.claim(action)
    deadline = time.monotonic() + WAIT_SECONDS
    while found is not None:
        if found.request_hash != hashed:
            raise KeyReused("This idempotency key was used for a different request. Use a new "
                            "key for a new request.")
        if found.status == "done":
            return _stored(found)
        now = int(time.time())
        if found.lease_until < now and store.take_over(ctx.account_id, khash, hashed, now,
                                                       now + LEASE_SECONDS):
            action = store.Action(**{**found.__dict__, "lease_until": now + LEASE_SECONDS})
            break
        if time.monotonic() > deadline:
            raise InProgress("This action is still being carried out. Send the same request "
                             "again in a moment for its result.")
        time.sleep(POLL_SECONDS)
        found = store.get(ctx.account_id, khash)
        if found is None:  # the first run was refused and freed the key: this one runs
            found = store.claim(action)
    try:
        if before_perform is not None:
            before_perform()
        result = perform(Step(ctx.idempotency_key, khash))
    except AppError as exc:
        if exc.status < 500:
            store.release(ctx.account_id, khash, hashed)
        else:
            store.end_lease(ctx.account_id, khash, hashed)
        raise
    except BaseException:
        store.end_lease(ctx.account_id, khash, hashed)
        raise
    try:
        _finish(ctx, spec, action, result)
    except Exception:
        store.end_lease(ctx.account_id, khash, hashed)
        raise
    return result


def _finish(ctx: ActionContext, spec: ActionSpec, action: store.Action, result: Result) -> None:
    at = timeutil.now_iso()
    entry = activity_store.Entry(
        account_id=ctx.account_id, entry_id=ids.new_id("act"), at=at, actor=ctx.actor_id,
        actor_email=ctx.actor_email, action=spec.name[:100],
        target=(result.target or spec.customer_id or "")[:200] or None,
        details={"source": ctx.source, "before": result.before, "after": result.after,
                 "note": spec.note, "result": result.body},
        reason=spec.reason[:2000] if spec.reason else None, ip=(ctx.ip or "")[:64] or None)
    entry_expires_at = int(time.time()) + get_settings().activity_retention_days * 86400
    outbox = [{"account_id": ctx.account_id, "customer_id": spec.customer_id or "",
               "event_id": ids.new_id("evt"), "type": item["type"], "occurred_at": at,
               "data": {**item.get("data", {}), "source": ctx.source}}
              for item in result.outbox]
    also = store.finish_ops(action, result.body, result.status, at, entry, entry_expires_at,
                            [] if result.events else outbox) + list(result.writes)
    if result.events:
        records.record_confirmed(ctx.account_id, spec.customer_id, result.events,
                                 outbox=[{k: v for k, v in o.items()
                                          if k not in ("account_id", "customer_id")}
                                         for o in outbox], also=also, source="staff")
    else:
        store.commit_ops(also)


def account_of(account_id: str) -> dict:
    """The account an action runs in (its settings, its processor keys)."""
    account = account_store.get(account_id)
    if account is None:
        raise NotFound("no such account")
    return account


def customer_record(account_id: str, customer_id: str) -> dict:
    """The customer's record as an action acts on it (read consistently); 404 for a
    customer that is not the account's."""
    record = records.get_record(account_id, customer_id, consistent=True)
    if record is None or not records.customer_belongs(account_id, customer_id):
        raise NotFound("No such customer.")
    return record
