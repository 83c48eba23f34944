"""Write the reliability tests' last figures into docs/reliability.md.

The tests (tests/test_reliability_*.py, tests/test_fuzz_*.py) keep their figures in
.devstack/reliability-figures.json as they run (``make test`` for the quick ones, ``make
soak`` for the long ones). This rewrites the part of docs/reliability.md between the
``<!-- figures -->`` markers from that file:

    .venv/bin/python -m bench.reliability_doc
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURES = REPO / ".devstack" / "reliability-figures.json"
DOC = REPO / "docs" / "reliability.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def _counts(d: dict | None) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in sorted((d or {}).items(), key=lambda kv: str(kv[0])))


def rows(data: dict) -> list[str]:
    out = ["| run | when | figures |", "|---|---|---|"]
    for name in sorted(data):
        f = data[name]
        if name.startswith("convergence"):
            for run in f["runs"]:
                text = (f"{f['customers']} customers, {f['events']:,} events → {run['deliveries']:,} "
                        f"deliveries ({run['first_deliveries']:,} first, the rest retries of 5xx) in "
                        f"{run['rounds']} rounds; answers {_counts(run['statuses'])}; outcomes "
                        f"{_counts(run['outcomes'])}; {run['records']} records, {run['tombstones']} "
                        f"folded; {run['markers']:,} markers, {run['applied_entries']:,} 'applied' "
                        f"audit entries; {run['items_scanned']:,} items checked; {f['seconds']} s")
        elif name.startswith("faults-portal-ses"):
            text = (f"{f['customers']} customers, {f['sign_ins']} sign-ins; fault rate "
                    f"{f['fault_rate']:.0%} of {f['send_calls']} SES SendEmail calls: "
                    f"{f['faults_injected']} faults ({_counts(f['faults_by_kind'])}); "
                    f"{f['requests']} link requests, answers {_counts(f['statuses'])}, at most "
                    f"{f['most_requests_for_one_sign_in']} for one sign-in; {f['mails_sent']} "
                    f"mails ({f['mails_after_503']} after a 503: lost responses, their link and "
                    f"code dead); {f['sessions']} sessions, one per mail answered 200; "
                    f"{f['failed_links_and_codes_refused']} failed requests' links and codes "
                    f"refused; left over: {f['leftover_login_tokens']} tokens, "
                    f"{f['leftover_login_codes']} codes")
        elif name.startswith("faults-portal-s3"):
            text = (f"{f['customers']} customers, {f['receipts']} receipts; fault rate "
                    f"{f['fault_rate']:.0%} of S3 calls ({_counts(f['s3_calls'])}): "
                    f"{f['faults_injected']} faults ({_counts(f['faults_by_kind'])}; "
                    f"{_counts(f['faults_by_operation'])}); {f['requests']} PDF requests, "
                    f"answers {_counts(f['statuses'])}, at most {f['most_requests_for_one_pdf']} "
                    f"for one PDF; {f['downloads']} downloads, each a whole PDF; "
                    f"{f['signed_out']} customers signed out; bucket: {f['bucket_objects']} "
                    f"objects, {f['bucket_versions']} versions, {f['bad_objects']} partial or empty")
        elif name.startswith("faults"):
            text = (f"{f['customers']} customers, {f['events']} events; fault rate {f['fault_rate']:.0%}"
                    f" of {f['dynamodb_calls']:,} DynamoDB calls: {f['faults_injected']} faults "
                    f"({_counts(f['faults_by_kind'])}); {f['deliveries']:,} deliveries, answers "
                    f"{_counts(f['statuses'])}"
                    + (f", at most {f['most_attempts_for_one_event']} attempts for one event"
                       if "most_attempts_for_one_event" in f else f" in {f.get('rounds')} rounds")
                    + f"; end state identical to the fault-free run; {f['markers']} markers, "
                    f"{f['applied_without_audit_entry']} applied events without their 'applied' "
                    "audit entry; no orphan item")
        elif name.startswith("fuzz-openapi"):
            text = (f"{f['cases']:,} requests: "
                    + "; ".join(f"{op} {_counts(c)}" for op, c in f["by_operation"].items()
                                if op.startswith("GET")) + "; other methods 405")
        elif name.startswith("fuzz-webhook"):
            text = f"{f['cases']:,} signed arbitrary payloads, answers {_counts(f['statuses'])}"
        elif name.startswith("concurrency-first"):
            text = (f"{f['rounds']} rounds × {f['racing_senders']} racing first events for one "
                    f"e-mail; {f['answered_503']} answered 503 and were retried; one record each round")
        elif name.startswith("concurrency-duplicates"):
            text = (f"{f['senders']} racing deliveries of one event: answers {f['outcomes']}; "
                    f"audit {f['audit']}")
        elif name == "isolation-routes":
            text = "routes: " + ", ".join(f"`{r}`" for r in f["routes"])
        else:
            text = json.dumps({k: v for k, v in f.items() if k != "at"}, default=str)[:400]
        out.append(f"| {name} | {f['at']} | {text} |")
    return out


def main() -> int:
    try:
        data = json.loads(FIGURES.read_text())
    except (OSError, ValueError):
        print(f"no figures yet: run make test (and make soak) first ({FIGURES})", file=sys.stderr)
        return 1
    doc = DOC.read_text()
    if START not in doc or END not in doc:
        print(f"{DOC} has no {START} … {END} markers", file=sys.stderr)
        return 1
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + START + "\n" + "\n".join(rows(data)) + "\n" + END + tail)
    print(f"rewrote the figures in {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
