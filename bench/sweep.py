"""The scheduler's sweep (chalicelib/scheduler): DynamoDB requests and time of an idle
sweep and of a sweep of ``BENCH_SWEEP_STEPS`` (1,000) due steps, per step against a bare
PutItem, as ratios taken in one run.

  python -m bench.sweep            prints the figures as JSON
  python -m bench.sweep --doc      and rewrites its section of docs/benchmarks.md

Its own stack (DynamoDB Local, moto, localstripe); the sweep in process, as the scheduled
function runs it (``scheduler.service.sweep`` with the clock as its argument). The steps
are of a no-op kind registered here for the bench only (``bench.noop``: done at once, no
store operation of its own), so what is measured is the scheduler's own cost: the Query
per shard of the due-steps index, the conditional claim and the outcome's write. A real
step adds its handler's reads and writes (a dunning retry: the processor call, the state).

The baseline is a bare PutItem of an item of the same size (a step's item, unconditional,
through the same PynamoDB connection), timed in rounds interleaved with the sweeps'.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench import ddbhooks
from bench import stack as bench_stack
from bench.util import log

STEPS = int(os.environ.get("BENCH_SWEEP_STEPS", "1000"))
IDLE_ROUNDS = int(os.environ.get("BENCH_SWEEP_IDLE_ROUNDS", "20"))
PUT_ROUNDS = int(os.environ.get("BENCH_SWEEP_PUTS", "200"))
ACCOUNT = "acct_benchsweep"
HEADING = "## Scheduler sweep"


def noop(step, now):
    from chalicelib.scheduler.service import Outcome

    return Outcome.done({"bench": True})


def _bare_puts(n: int, tag: str) -> list[float]:
    from chalicelib.store import steps as steps_store
    from chalicelib.store.steps import Step

    out = []
    for i in range(n):
        step = Step(ACCOUNT, f"put:{tag}:{i}", "bench.put", "2000-01-01T00:00:00.000000Z")
        # Out of the due-steps index (index_at None): a plain item of a step's size.
        bare = steps_store._item(steps_store._pending(step), None)
        t0 = time.perf_counter()
        bare.save()
        out.append(time.perf_counter() - t0)
    return out


def main() -> dict:
    bench_stack.start()
    from chalicelib.scheduler import kinds
    from chalicelib.scheduler import service as scheduler
    from chalicelib.settings import get_settings
    from chalicelib.store import steps as steps_store
    from chalicelib.store.steps import Step
    from chalicelib.timeutil import iso

    ddbhooks.install()
    kinds._HANDLERS["bench"] = "bench.sweep:noop"  # this process only
    shards = get_settings().scheduler_shards
    now = datetime(2031, 1, 1, tzinfo=UTC)

    puts = _bare_puts(20, "warm")  # the connection and the JIT-less paths warmed
    log(f"sweep: {IDLE_ROUNDS} idle sweeps")
    idle_times, idle_calls = [], []
    for _ in range(IDLE_ROUNDS):
        with ddbhooks.recording() as rec:
            t0 = time.perf_counter()
            counts = scheduler.sweep(now)
            idle_times.append(time.perf_counter() - t0)
        assert counts["due"] == 0, counts
        idle_calls.append(dict(rec.calls))
    puts = _bare_puts(PUT_ROUNDS // 2, "a")

    log(f"sweep: {STEPS:,} due steps planned")
    due = iso(now - timedelta(minutes=1))
    for i in range(STEPS):
        steps_store.plan(Step(ACCOUNT, f"bench:{i:06d}", "bench.noop", due))
    log("sweep: sweeping them")
    sweeps, claimed = [], 0
    with ddbhooks.recording() as rec:
        t0 = time.perf_counter()
        while True:
            counts = scheduler.sweep(now)
            sweeps.append(counts)
            claimed += counts["claimed"]
            if not counts["due"]:
                break
        seconds = time.perf_counter() - t0
    assert claimed == STEPS and sum(c["done"] for c in sweeps) == STEPS, sweeps
    puts += _bare_puts(PUT_ROUNDS - PUT_ROUNDS // 2, "b")
    left = [s for s in range(shards) if steps_store.due(s, now + timedelta(days=1))]
    assert not left, left

    put_ms = statistics.median(puts) * 1000
    idle_ms = statistics.median(idle_times) * 1000
    per_step_ms = seconds * 1000 / STEPS
    return {
        "shards": shards, "per_shard_limit": scheduler.PER_SHARD_LIMIT,
        "bare_put": {"n": len(puts), "median_ms": round(put_ms, 3)},
        "idle": {"rounds": IDLE_ROUNDS, "median_ms": round(idle_ms, 2),
                 "requests": idle_calls[0], "same_every_round": all(
                     c == idle_calls[0] for c in idle_calls),
                 "ratio_to_put": round(idle_ms / put_ms, 2)},
        "due": {"steps": STEPS, "sweeps": len(sweeps), "seconds": round(seconds, 2),
                "requests": dict(rec.calls), "requests_per_step": round(rec.total / STEPS, 3),
                "per_step_ms": round(per_step_ms, 3),
                "per_step_ratio_to_put": round(per_step_ms / put_ms, 2),
                "steps_per_second": round(STEPS / seconds, 1)},
    }


def render(r: dict) -> str:
    idle, due, put = r["idle"], r["due"], r["bare_put"]
    idle_ops = ", ".join(f"{k} {v}" for k, v in sorted(idle["requests"].items()))
    due_ops = ", ".join(f"{k} {v}" for k, v in sorted(due["requests"].items()))
    rows = [
        ("bare PutItem of a step-sized item (the baseline), median",
         f"{put['median_ms']} ms ({put['n']} puts, interleaved with the sweeps)"),
        ("idle sweep (nothing due): DynamoDB requests",
         f"{sum(idle['requests'].values())} ({idle_ops}): one Query per shard, "
         f"{r['shards']} shards; the same in each of {idle['rounds']} rounds: "
         f"{idle['same_every_round']}"),
        ("idle sweep, median time", f"{idle['median_ms']} ms = "
         f"{idle['ratio_to_put']} × a bare PutItem"),
        (f"sweep of {due['steps']:,} due no-op steps: DynamoDB requests",
         f"{sum(due['requests'].values())} ({due_ops}) in {due['sweeps']} sweeps "
         f"(at most {r['per_shard_limit']} steps per shard and sweep): "
         f"{due['requests_per_step']} per step"),
        ("the same, time", f"{due['seconds']} s: {due['per_step_ms']} ms per step = "
         f"{due['per_step_ratio_to_put']} × a bare PutItem ({due['steps_per_second']} "
         f"steps/s, one process)"),
    ]
    table = "\n".join(["| figure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])
    return f"""{HEADING}

`python -m bench.sweep --doc` (bench/sweep.py): the scheduler's sweep
(`scheduler.service.sweep`, as `app.sweep_due_steps` runs it every two minutes) against
DynamoDB Local, in process, over HTTP. The steps are of a no-op kind registered by the
bench only, so the figures are the scheduler's own cost: per shard of the sparse due-steps
index (GSI3) one Query, per step its conditional claim (UpdateItem) and the write of its
outcome under the claim (PutItem). Times are ratios to a bare PutItem taken in the same
run (local DynamoDB's absolute times say little about AWS's); the request counts are what
AWS would bill.

{table}

DynamoDB Local answers a Query of the index much more slowly than a PutItem (it is
SQLite underneath): the idle sweep's time ratio is the stand-in's, not AWS's, where a
Query of an empty index partition costs about what a GetItem does. The request counts
hold everywhere. Taken on the shared 2-core machine while other work ran: compare the
ratios of one run, not times across runs.

An idle sweep costs {sum(idle['requests'].values())} reads (one Query per shard, whatever the
number of accounts), so a sweep every two minutes costs about
{sum(idle['requests'].values()) * 30 * 24 * 30:,} Query requests a month before any step is
due. A real step adds its handler's work: a dunning retry reads its state and the invoice,
calls the processor and writes its outcome with the state (and the recovery report's
aggregate) in one TransactWriteItems instead of the PutItem.
"""


if __name__ == "__main__":
    import sys

    results = main()
    print(json.dumps(results, indent=2))
    if "--doc" in sys.argv:
        from bench import report

        report.write_section(render(results))
