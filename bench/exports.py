"""The dashboard's customer search at 1,000 and 100,000 customers, and the customers CSV
export of 100,000 customers (time and peak memory).

Both accounts are written straight into the table with BatchWriteItem (bench/search.py's
``_seed_directly``: the store's own models, keys and search terms, the shapes checked by
bench/search.py against items the app wrote), ``BENCH_EXPORT_SMALL`` (1,000) and
``BENCH_EXPORT_LARGE`` (100,000) customers.

Search: a staff owner signed in through the real flow opens
``GET /dashboard/<slug>/customers?q=<prefix>`` in each account, ``BENCH_DASHBOARD_REPEAT``
rounds each after a bare replay of its search-index Query (bench/portal.py ``_repeat``),
the two accounts interleaved; ratio large ÷ small of the medians.

Export: ``exports.service.run`` (what the queue's handler runs) for the large account into
moto's S3 by multipart upload: once untraced (time, DynamoDB requests, the process's peak
RSS before and after), once under tracemalloc (the peak of Python allocations during the
run). The file is read back and its rows counted.

  python -m bench.exports          run this part alone; rewrites its section of
                                   docs/benchmarks.md (report.render_exports)
"""
from __future__ import annotations

import csv
import io
import json
import os
import resource
import time
import tracemalloc

from bench import ddbhooks
from bench.util import log

SMALL = int(os.environ.get("BENCH_EXPORT_SMALL", "1000"))
LARGE = int(os.environ.get("BENCH_EXPORT_LARGE", "100000"))
PREFIXES = ["ma", "an", "ko", "w"]


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _export(shop, staff_id: str, email: str, traced: bool) -> dict:
    from chalicelib.exports import service as exports
    from chalicelib.store import exports as store

    export = exports.request_export(shop.merchant.account_id, staff_id, email)
    rss_before = _maxrss_mb()
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    with ddbhooks.recording() as rec:
        outcome = exports.run(shop.merchant.account_id, export["id"])
    seconds = time.perf_counter() - t0
    peak = None
    if traced:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert outcome == "done", outcome
    done = exports.get_export(shop.merchant.account_id, export["id"])
    assert done["status"] == "ready", done
    return {"id": export["id"], "seconds": seconds, "rows": done["rows"],
            "truncated": done["truncated"], "ddb_requests": dict(rec.calls),
            "tracemalloc_peak_mb": peak / 2**20 if peak is not None else None,
            "maxrss_before_mb": rss_before, "maxrss_after_mb": _maxrss_mb(),
            "part_size_mb": store.PART_SIZE / 2**20}


def _read_back(account_id: str, export_id: str) -> dict:
    from chalicelib.settings import get_settings
    from chalicelib.store import exports as store
    from chalicelib.store import receipts_blob

    body = receipts_blob.client().get_object(
        Bucket=get_settings().receipts_bucket,
        Key=store.object_key(account_id, export_id))["Body"].read()
    rows = list(csv.reader(io.StringIO(body.decode("utf-8").lstrip("\ufeff"))))
    ids = {r[0] for r in rows[1:]}
    return {"bytes": len(body), "rows": len(rows) - 1, "distinct_ids": len(ids)}


def run(stack=None, client=None) -> dict | None:
    if stack is None or client is None:
        print("run through `python -m bench.exports` (it starts the stack)")
        return None
    from bench import portal

    ddbhooks.install()
    from bench import dashboard

    portal_repeat, portal.REPEAT = portal.REPEAT, dashboard.REPEAT
    try:
        return _run(stack, client)
    finally:
        portal.REPEAT = portal_repeat


def _run(stack, client) -> dict:
    from portal_helpers import make_shop

    from bench import portal
    from bench.__main__ import machine
    from bench.dashboard import _search_checked, _staff_browser
    from bench.search import _seed_directly
    from chalicelib.staff import service as staff

    out: dict = {"machine": machine(), "repeat": portal.REPEAT}
    shops, seeded = {}, {}
    for label, n in (("small", SMALL), ("large", LARGE)):
        log(f"exports: {n:,} customers straight into the table (BatchWriteItem)")
        shops[label] = make_shop(client, stack)
        seeded[label] = _seed_directly(shops[label].merchant.account_id, n)
    out["seed"] = {label: {"customers": n, **seeded[label]}
                   for label, n in (("small", SMALL), ("large", LARGE))}

    log("exports: dashboard search in both accounts, interleaved")
    targets, checks = {}, {}
    for label, shop in shops.items():
        browser = _staff_browser(client, stack, shop)
        for p in PREFIXES:
            c = _search_checked(browser, shop, p)
            targets[f"{label}:{p}"] = c.pop("target")
            checks[f"{label}:{p}"] = c
    timed = portal._repeat(targets)
    search = {p: {label: {**checks[f"{label}:{p}"], **timed[f"{label}:{p}"]}
                  for label in shops} for p in PREFIXES}
    for both in search.values():
        both["ratio"] = both["large"]["time"]["median_ms"] / both["small"]["time"]["median_ms"]
    out["search"] = {"small": SMALL, "large": LARGE, "prefixes": search,
                     "ratio": sum(v["ratio"] for v in search.values()) / len(search)}

    log(f"exports: the CSV export of {LARGE:,} customers (untraced, then under tracemalloc)")
    large = shops["large"]
    member = staff.add_staff(large.merchant.account_id, "bench-export@shop.test", "owner")
    plain = _export(large, member.staff_id, "bench-export@shop.test", traced=False)
    traced = _export(large, member.staff_id, "bench-export@shop.test", traced=True)
    check = _read_back(large.merchant.account_id, plain["id"])
    assert check["rows"] == check["distinct_ids"] == min(LARGE, plain["rows"]), check
    out["export"] = {"customers": LARGE, "untraced": plain, "traced": traced, "file": check}
    return out


def main() -> int:
    from bench import stack as bench_stack

    log("starting DynamoDB Local, moto and localstripe")
    stack = bench_stack.start()
    try:
        from chalice.test import Client

        from app import app

        with Client(app) as client:
            results = run(stack, client)
    finally:
        stack.stop()
    from pathlib import Path

    from bench import report

    path = Path(__file__).resolve().parents[1] / "build" / "bench" / "exports.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    log(f"results: {path}")
    report.write_section(report.render_exports(results))
    log("docs/benchmarks.md: the section 'Dashboard search and CSV export' rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
