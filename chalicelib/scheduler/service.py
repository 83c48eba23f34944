"""The sweep: run every step that is due (store/steps.py), once.

Called by the scheduled function every two minutes (app.sweep_due_steps) and by make dev's
loop every few seconds; time is its argument (tests drive a fake clock). For each shard
of the due-steps index it makes one Query (an idle sweep makes exactly one per shard),
claims each due step with a conditional write (overlapping sweeps, and a retried Lambda
invocation, run each step once), and hands it to its feature's handler (scheduler.kinds).

The handler says what became of the step (an ``Outcome``): done, failed, or to be run again
at a later time; the sweep writes that, with the outcome's outbox events and other store
operations, in one transaction held by the claim. A handler that raises leaves the claim
in place: the step is found again when its lease ends, and a step claimed
``MAX_ATTEMPTS`` times without an outcome fails (logged) rather than loop forever.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from chalicelib.observability import logger
from chalicelib.scheduler.kinds import handler_for
from chalicelib.settings import get_settings
from chalicelib.store import customers as customers_store
from chalicelib.store import steps as steps_store
from chalicelib.store.steps import Step

MAX_ATTEMPTS = 8  # claims of one step without an outcome before it fails
PER_SHARD_LIMIT = 100  # due steps read per shard and sweep; the rest wait for the next


@dataclass
class Outcome:
    """What became of a step. ``status``: done, failed, canceled, or pending (run it again
    at ``due_at``, with ``data`` when given). ``result``: kept on the step (``outcome``).
    ``outbox``: product events ({"event_id", "type", "account_id", "customer_id",
    "occurred_at", "data"}) and ``ops``: more ``(kind, item, condition)`` store operations,
    all written with the step's new state in one transaction."""

    status: str
    result: dict | None = None
    due_at: str | None = None
    data: dict | None = None
    outbox: list[dict] = field(default_factory=list)
    ops: list[tuple] = field(default_factory=list)

    @classmethod
    def done(cls, result: dict | None = None, **more) -> Outcome:
        return cls("done", result, **more)

    @classmethod
    def failed(cls, result: dict | None = None, **more) -> Outcome:
        return cls("failed", result, **more)

    @classmethod
    def later(cls, due_at: str, data: dict | None = None, **more) -> Outcome:
        return cls("pending", due_at=due_at, data=data, **more)


def sweep(now: datetime, *, shards: list[int] | None = None,
          limit: int = PER_SHARD_LIMIT, budget_seconds: float | None = None) -> dict:
    """Run the steps due at ``now``; counts of what happened. ``budget_seconds``: claim no
    new step after this long (the function's timeout must not cut a step in the middle;
    what is left is the next sweep's)."""
    settings = get_settings()
    counts = {"due": 0, "claimed": 0, "done": 0, "failed": 0, "canceled": 0,
              "rescheduled": 0, "errors": 0, "lost": 0, "left": 0}
    stop_at = time.monotonic() + budget_seconds if budget_seconds is not None else None
    for shard in shards if shards is not None else range(settings.scheduler_shards):
        for step in steps_store.due(shard, now, limit):
            counts["due"] += 1
            if stop_at is not None and time.monotonic() > stop_at:
                counts["left"] += 1
                continue
            claimed = steps_store.claim(step, now, settings.scheduler_lease_seconds)
            if claimed is None:
                continue  # another sweep has it, or it is no longer to do
            counts["claimed"] += 1
            run(claimed, now, counts)
    return counts


def run(step: Step, now: datetime, counts: dict | None = None) -> None:
    """Run one claimed step and write what became of it."""
    counts = counts if counts is not None else {}
    log = {"account_id": step.account_id, "step_id": step.step_id, "kind": step.kind,
           "attempt": step.attempts}
    handler = handler_for(step.kind)
    if handler is None:
        logger.error("scheduler: no handler for this step kind", extra=log)
        outcome = Outcome.failed({"error": "unknown step kind"})
    elif step.attempts > MAX_ATTEMPTS:
        logger.error("scheduler: step given up after repeated errors", extra=log)
        outcome = Outcome.failed({"error": "too many attempts"})
    else:
        try:
            outcome = handler(step, now)
        except Exception:  # noqa: BLE001 - one step's failure must not stop the sweep
            # The claim stays: the step is found again when its lease ends.
            logger.exception("scheduler: step handler failed", extra=log)
            counts["errors"] = counts.get("errors", 0) + 1
            return
    if write(step, outcome, now):
        key = "rescheduled" if outcome.status == "pending" else outcome.status
        counts[key] = counts.get(key, 0) + 1
    else:
        logger.warning("scheduler: the step's claim was lost before its outcome was written",
                       extra=log)
        counts["lost"] = counts.get("lost", 0) + 1


def write(step: Step, outcome: Outcome, now: datetime) -> bool:
    """Write the outcome of a claimed step (with its events and operations) on the
    condition that the claim still holds it: whether it did."""
    if outcome.status == "pending":
        op = steps_store.reschedule_op(step, outcome.due_at, outcome.data, now)
    else:
        op = steps_store.finish_op(step, outcome.status, outcome.result, now)
    if not outcome.outbox and not outcome.ops:
        _, item, condition = op
        return steps_store.save_held(item, condition)
    try:
        customers_store.commit([], None, None, outbox=outcome.outbox,
                               also=[*outcome.ops, op])
    except customers_store.Conflict:
        return False
    return True
