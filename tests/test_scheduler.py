"""The scheduler of due steps (chalicelib/store/steps.py, chalicelib/scheduler): planning is
idempotent, a claim is won once, a dead sweep's step comes back when its lease ends, an idle
sweep makes one Query per shard, and finished steps leave the due index.

The module has a table of its own: a sweep reads every account's due steps.
"""
from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bench import ddbhooks
from chalicelib.scheduler import service as scheduler
from chalicelib.scheduler.service import Outcome
from chalicelib.settings import get_settings
from chalicelib.store import customers as customers_store
from chalicelib.store import keys
from chalicelib.store import steps as steps_store
from chalicelib.store.steps import Step
from chalicelib.store.table import StepItem
from chalicelib.timeutil import iso

pytestmark = pytest.mark.usefixtures("table_of_its_own")

T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


def _step(step_id: str | None = None, due: datetime = T0, kind: str = "t.echo",
          account: str = "acct_sched", **data) -> Step:
    return Step(account_id=account, step_id=step_id or f"t:{uuid.uuid4().hex[:10]}",
                kind=kind, due_at=iso(due), customer_id="cus_1", data=data)


def _index_entries(step: Step) -> list[StepItem]:
    shard = steps_store.shard_of(step.account_id, step.step_id)
    return [i for i in StepItem.due_steps_index.query(keys.due_index_pk(shard))
            if i.step_id == step.step_id and i.account_id == step.account_id]


@pytest.fixture
def handled(monkeypatch):
    """Steps of kind ``t.*`` run by a recording handler: ``t.echo`` is done, ``t.boom``
    raises, ``t.later`` asks to run again an hour later (once)."""
    runs: list[tuple[str, int]] = []

    def handle(step: Step, now: datetime) -> Outcome:
        runs.append((step.step_id, step.attempts))
        if step.kind == "t.boom":
            raise RuntimeError("the sweep died here")
        if step.kind == "t.later" and not step.data.get("again"):
            return Outcome.later(iso(now + timedelta(hours=1)), {"again": True})
        return Outcome.done({"ran_at": iso(now)})

    monkeypatch.setattr(scheduler, "handler_for",
                        lambda kind: handle if kind.startswith("t.") else None)
    return runs


def _sweep_all_done(now: datetime) -> None:
    """Leave no due step behind for the next test (every sweep reads every shard)."""
    for _ in range(5):
        if not scheduler.sweep(now)["due"]:
            return


def test_plan_is_idempotent_and_moves_only_a_pending_step(handled):
    step = _step(n=1)
    assert steps_store.plan(step)
    assert steps_store.plan(step)  # the same step again: one item, still pending
    later = Step(**{**step.__dict__, "due_at": iso(T0 + timedelta(days=1)), "data": {"n": 2}})
    assert steps_store.plan(later)
    stored = steps_store.get(step.account_id, step.step_id)
    assert (stored.status, stored.due_at, stored.data) == ("pending", later.due_at, {"n": 2})
    assert len(_index_entries(step)) == 1

    # Run it: done. Planning it again changes nothing (the e-mail is not sent twice).
    assert scheduler.sweep(T0 + timedelta(days=1))["done"] >= 1
    assert not steps_store.plan(step)
    stored = steps_store.get(step.account_id, step.step_id)
    assert stored.status == "done" and stored.outcome["ran_at"] == iso(T0 + timedelta(days=1))
    assert handled.count((step.step_id, 1)) == 1


def test_plan_op_in_a_record_transaction_never_aborts_it(handled):
    step = _step()
    # Twice in a row (a second fact change planning the same still-pending step): no abort.
    customers_store.commit([], None, None, also=[steps_store.plan_op(step)])
    customers_store.commit([], None, None, also=[steps_store.plan_op(step)])
    assert steps_store.get(step.account_id, step.step_id).status == "pending"
    # cancel_op drops it, also when it is not there any more.
    customers_store.commit([], None, None, also=[steps_store.cancel_op(step.account_id,
                                                                       step.step_id)])
    customers_store.commit([], None, None, also=[steps_store.cancel_op(step.account_id,
                                                                       step.step_id)])
    assert steps_store.get(step.account_id, step.step_id) is None
    assert _index_entries(step) == []


def test_a_step_is_not_run_before_it_is_due_and_cancel_takes_only_pending_ones(handled):
    step = _step(due=T0 + timedelta(hours=2))
    steps_store.plan(step)
    scheduler.sweep(T0 + timedelta(hours=1))
    assert steps_store.get(step.account_id, step.step_id).status == "pending"
    assert steps_store.cancel(step.account_id, step.step_id, T0)
    assert not steps_store.cancel(step.account_id, step.step_id, T0)  # already canceled
    assert not steps_store.plan(step)  # a canceled step is never planned again
    scheduler.sweep(T0 + timedelta(hours=3))
    stored = steps_store.get(step.account_id, step.step_id)
    assert stored.status == "canceled" and _index_entries(step) == []
    assert all(sid != step.step_id for sid, _ in handled)


def test_two_claims_of_one_step_one_wins(handled):
    step = _step()
    steps_store.plan(step)
    winners = []
    barrier = threading.Barrier(4)

    def claim():
        barrier.wait()
        winners.append(steps_store.claim(step, T0, 600))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [w for w in winners if w is not None]
    assert len(won) == 1 and won[0].attempts == 1 and won[0].status == "claimed"
    # Only the winner's claim finishes it.
    stale = Step(**{**won[0].__dict__, "claim_token": "someone-else"})
    assert not steps_store.finish(stale, "done", {})
    assert steps_store.finish(won[0], "done", {"by": "winner"})
    assert steps_store.get(step.account_id, step.step_id).outcome == {"by": "winner"}


def test_a_dead_sweeps_step_is_run_again_when_its_lease_ends(handled):
    lease = get_settings().scheduler_lease_seconds
    step = _step(kind="t.boom")
    steps_store.plan(step)
    first = scheduler.sweep(T0)
    assert first["errors"] == 1
    stored = steps_store.get(step.account_id, step.step_id)
    assert stored.status == "claimed" and stored.attempts == 1
    # While the lease lasts no other sweep touches it.
    assert scheduler.sweep(T0 + timedelta(seconds=lease - 1))["claimed"] == 0
    # After it, the next sweep finds it (its index entry moved to the lease's end).
    again = scheduler.sweep(T0 + timedelta(seconds=lease + 1))
    assert again["claimed"] == 1 and again["errors"] == 1
    assert steps_store.get(step.account_id, step.step_id).attempts == 2
    assert [a for sid, a in handled if sid == step.step_id] == [1, 2]
    # A step that never gets an outcome is given up, not retried forever.
    at = T0
    for _ in range(scheduler.MAX_ATTEMPTS + 1):
        at += timedelta(seconds=lease + 1)
        scheduler.sweep(at)
    stored = steps_store.get(step.account_id, step.step_id)
    assert stored.status == "failed" and stored.outcome == {"error": "too many attempts"}
    assert _index_entries(step) == []


def test_reschedule_keeps_the_step_and_its_attempts(handled):
    step = _step(kind="t.later")
    steps_store.plan(step)
    assert scheduler.sweep(T0)["rescheduled"] == 1
    stored = steps_store.get(step.account_id, step.step_id)
    assert (stored.status, stored.due_at, stored.data) == (
        "pending", iso(T0 + timedelta(hours=1)), {"again": True})
    assert scheduler.sweep(T0 + timedelta(minutes=59))["claimed"] == 0
    assert scheduler.sweep(T0 + timedelta(hours=1))["done"] == 1
    stored = steps_store.get(step.account_id, step.step_id)
    assert stored.status == "done" and stored.attempts == 2


def test_unknown_kind_fails_with_a_logged_error(handled):
    step = _step(kind="nobody.owns_this")
    steps_store.plan(step)
    assert scheduler.sweep(T0)["failed"] == 1
    stored = steps_store.get(step.account_id, step.step_id)
    assert stored.status == "failed" and stored.outcome == {"error": "unknown step kind"}


def test_finished_steps_leave_the_index_and_get_a_ttl(handled):
    planned = [_step(account=f"acct_{i}") for i in range(12)]
    for step in planned:
        steps_store.plan(step)
    assert all(len(_index_entries(s)) == 1 for s in planned)
    shards = {steps_store.shard_of(s.account_id, s.step_id) for s in planned}
    assert len(shards) > 1  # spread over the shards
    scheduler.sweep(T0)
    for step in planned:
        assert _index_entries(step) == []
        pk, sk = keys.step(step.account_id, step.step_id)
        item = StepItem.get(pk, sk, consistent_read=True)
        assert item.status == "done" and item.ttl is not None
        assert item.GSI3PK is None and item.GSI3SK is None


def test_an_idle_sweep_makes_one_query_per_shard(handled):
    _sweep_all_done(T0 + timedelta(days=30))
    future = _step(due=T0 + timedelta(days=400))  # planned, not due: still idle
    steps_store.plan(future)
    with ddbhooks.recording(this_thread_only=True) as rec:
        counts = scheduler.sweep(T0 + timedelta(days=30))
    assert counts["due"] == 0
    assert dict(rec.calls) == {"Query": get_settings().scheduler_shards}
    steps_store.cancel(future.account_id, future.step_id)


def test_overlapping_sweeps_run_each_step_once(handled):
    planned = [_step() for _ in range(30)]
    for step in planned:
        steps_store.plan(step)
    results = []

    def sweep():
        results.append(scheduler.sweep(T0))

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = {s.step_id for s in planned}
    ran = [sid for sid, _ in handled if sid in ids]
    assert sorted(ran) == sorted(ids)  # each once
    assert sum(r["done"] for r in results) >= len(ids)
    assert all(steps_store.get(s.account_id, s.step_id).status == "done" for s in planned)


def test_a_sweep_out_of_time_claims_nothing_more(handled):
    step = _step()
    steps_store.plan(step)
    counts = scheduler.sweep(T0, budget_seconds=-1)  # its time is up before the first step
    assert counts["claimed"] == 0 and counts["left"] >= 1
    assert steps_store.get(step.account_id, step.step_id).status == "pending"
    assert scheduler.sweep(T0)["done"] >= 1
