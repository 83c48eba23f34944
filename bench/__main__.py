"""``make bench`` / ``.venv/bin/python -m bench``: run every benchmark on a local stack of
its own and rewrite docs/benchmarks.md from this one run.

  python -m bench                 everything (about 10 minutes on 2 cores)
  python -m bench --quick         small sizes, a smoke run (docs not rewritten unless --doc)
  python -m bench --only search   one part: webhooks, search, coldstart, signin, portal,
                                  dashboard, exports (or python -m bench.exports: that part
                                  alone, rewriting its own section of docs/benchmarks.md)
  python -m bench --no-doc        leave docs/benchmarks.md alone
  python -m bench --render        rewrite docs/benchmarks.md from the last results only

Raw results land in build/bench/results.json (the doc is rendered from them).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARTS = ("coldstart", "webhooks", "search", "signin", "portal", "dashboard", "exports")
QUICK_ENV = {"BENCH_STEADY_CUSTOMERS": "30", "BENCH_STEADY_ROUNDS": "2", "BENCH_FIRST_SIGHT": "40",
             "BENCH_FLOOR_N": "100", "BENCH_HTTP_EVENTS": "20", "BENCH_SEARCH_SMALL": "200",
             "BENCH_SEARCH_LARGE": "5000", "BENCH_SEARCH_REPEAT": "10", "BENCH_COLD_ROUNDS": "3",
             "BENCH_PORTAL_ORDERS": "1,100,300", "BENCH_PORTAL_REPEAT": "5", "BENCH_PORTAL_PDF_N": "5",
             "BENCH_DASHBOARD_ORDERS": "1,100,300", "BENCH_DASHBOARD_REPEAT": "5",
             "BENCH_DASHBOARD_SEARCH": "200", "BENCH_EXPORT_SMALL": "200",
             "BENCH_EXPORT_LARGE": "3000", "BENCH_PAYPAL_CUSTOMERS": "10",
             "BENCH_PAYPAL_ROUNDS": "2", "BENCH_PAYPAL_COLD_CERT": "3"}


def machine() -> dict:
    def first(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return None

    cpu = None
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                   .splitlines() if line.startswith("model name"))
    mem = None
    try:
        kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
        mem = f"{kb / 1048576:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "memory": mem, "os": platform.platform(),
            "python": platform.python_version(), "java": first(["java", "-version"]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--doc", action="store_true", help="rewrite the doc even with --quick")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite docs/benchmarks.md from build/bench/results.json")
    args = parser.parse_args(argv)
    if args.render:
        sys.path.insert(0, str(REPO))
        from bench import report

        results = json.loads((REPO / "build" / "bench" / "results.json").read_text())
        (REPO / "docs" / "benchmarks.md").write_text(report.render(results))
        print(report.summary(results))
        return 0
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {sorted(unknown)}")
    if args.quick:
        for k, v in QUICK_ENV.items():
            os.environ.setdefault(k, v)

    sys.path.insert(0, str(REPO))
    from bench import coldstart
    from bench.util import log

    results: dict = {"machine": machine(), "quick": args.quick, "parts": parts}
    t0 = time.monotonic()
    if "coldstart" in parts:  # subprocesses only: before the stack, on a quiet machine
        results["coldstart"] = coldstart.run()

    needs_stack = [p for p in parts if p != "coldstart"]
    if needs_stack:
        from bench import stack as bench_stack

        log("starting DynamoDB Local, moto and localstripe")
        stack = bench_stack.start()
        try:
            from chalice.test import Client

            from app import app
            from bench import dashboard, exports, portal, search, signin, webhooks

            with Client(app) as client:
                if "webhooks" in parts:
                    results["webhooks"] = webhooks.run(stack, client)
                if "search" in parts:
                    results["search"] = search.run(stack, client)
                if "signin" in parts:
                    results["signin"] = signin.run(stack, client)
                if "portal" in parts:
                    results["portal"] = portal.run(stack, client)
                if "dashboard" in parts:
                    results["dashboard"] = dashboard.run(stack, client)
                if "exports" in parts:
                    results["exports"] = exports.run(stack, client)
        finally:
            stack.stop()

    from bench import cost

    if "webhooks" in results:
        results["cost_webhooks"] = cost.webhook_cost(results["webhooks"], results.get("coldstart"))
    if "signin" in parts:
        results["cost_signin"] = cost.signin_cost(results.get("signin"))
    results["seconds"] = time.monotonic() - t0

    out = REPO / "build" / "bench" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    log(f"results: {out.relative_to(REPO)} ({results['seconds']:.0f} s)")

    from bench import report

    print(report.summary(results))
    if (not args.quick or args.doc) and not args.no_doc and set(parts) == set(PARTS):
        doc = REPO / "docs" / "benchmarks.md"
        doc.write_text(report.render(results))
        log(f"rewrote {doc.relative_to(REPO)}")
    elif not args.no_doc:
        log("docs/benchmarks.md left alone (rewritten only by a full run of every part)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
