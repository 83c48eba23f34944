"""Helpers for the reliability suite (tests/test_reliability_*.py); no tests here.

  long_story(customers, renewals)  customer_story (tests/story.py) per customer, then some
                                   months of renewals: invoice.paid for its subscription
  deliver_noisy(...)               every event 1 to 3 times, shuffled, from a few threads,
                                   retried like Stripe while the app answers 5xx
  records(merchant)                the merchant's records by e-mail, normalized
  table_invariants(account_id)     what must hold in the table whatever happened: no item
                                   without its record, no pointer or e-mail claim to a
                                   record that is not there, one marker and one "applied"
                                   audit entry per applied event
Figures the tests measure are printed (``-s`` shows them) and written to
``.devstack/reliability-figures.json`` for docs/reliability.md.
"""
from __future__ import annotations

import fcntl
import json
import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app_fixtures import normalize_record
from story import customer_story
from stripe_events import MONTH, Stream

FIGURES = Path(__file__).resolve().parent.parent / ".devstack" / "reliability-figures.json"
_figures_lock = threading.Lock()


def record_figures(name: str, figures: dict) -> None:
    """Keep a test's last figures (for docs/reliability.md) and print them."""
    print(f"\n[{name}] " + json.dumps(figures, sort_keys=True, default=str))
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    # Threads of this process, and pytest-xdist's other workers, may write at once.
    with _figures_lock, open(FIGURES.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(FIGURES.read_text())
        except (OSError, ValueError):
            data = {}
        data[name] = {**figures, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        FIGURES.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def long_story(customers: int, renewals: int, prefix: str) -> list[dict]:
    """customer_story for each customer, then ``renewals`` monthly invoices of its first
    subscription (a realistic tail: most of a store's events are renewals)."""
    stream = Stream(prefix)
    for n in range(customers):
        start = len(stream.events)
        customer_story(stream, n)
        mine = stream.events[start:]
        cus = next(e["data"]["object"]["id"] for e in mine if e["type"] == "customer.created")
        sub = next(e["data"]["object"]["id"] for e in mine
                   if e["type"] == "customer.subscription.created")
        for _ in range(renewals):
            stream.t += MONTH
            stream.invoice(cus, sub, 2000 + n)
    return stream.events


def deliver_noisy(merchant, events: list[dict], seed: int, threads: int = 4,
                  max_rounds: int = 40) -> dict:
    """At-least-once, out of order: each event 1-3 times, shuffled, several at a time;
    anything answered 5xx is delivered again in a later round. Returns figures."""
    rng = random.Random(seed)
    noisy = [e for e in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(noisy)
    statuses: Counter = Counter()
    outcomes: Counter = Counter()
    pending = noisy
    rounds = 0

    def send(event):
        response = merchant.deliver(event)
        body = json.loads(response.body or b"{}")
        # An answer with neither (a bare 500) is counted under its status.
        return (event, response.status_code,
                body.get("outcome") or body.get("error") or f"http_{response.status_code}")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        while pending and rounds < max_rounds:
            rounds += 1
            retry = []
            for event, status, outcome in pool.map(send, pending):
                statuses[status] += 1
                outcomes[outcome] += 1
                if status >= 500:
                    retry.append(event)
                else:
                    assert status == 200, (status, outcome, event.get("type") or event.get("event_type"),
                                           event["id"])
            pending = retry
            if pending:
                time.sleep(0.01)
    assert not pending, f"{len(pending)} deliveries still failing after {rounds} rounds"
    return {"events": len(events), "deliveries": sum(statuses.values()),
            "first_deliveries": len(noisy), "rounds": rounds,
            "statuses": dict(statuses), "outcomes": dict(outcomes)}


def records(merchant) -> dict[str, dict]:
    return {email: normalize_record(r) for email, r in merchant.records_by_email().items()}


def diff_records(got: dict, expected: dict) -> list[str]:
    """Readable differences between two {email: record} maps (empty if equal)."""
    out = []
    for email in sorted(set(got) | set(expected)):
        if email not in got:
            out.append(f"{email}: missing")
        elif email not in expected:
            out.append(f"{email}: unexpected record")
        elif got[email] != expected[email]:
            keys = sorted(k for k in set(got[email]) | set(expected[email])
                          if got[email].get(k) != expected[email].get(k))
            out.append(f"{email}: differs in {keys}: got "
                       f"{json.dumps({k: got[email].get(k) for k in keys}, default=str)[:600]} "
                       f"expected {json.dumps({k: expected[email].get(k) for k in keys}, default=str)[:600]}")
    return out


# ------------------------------------------------------------------------- the table


def scan_table() -> list[dict]:
    """Every item of the table, raw (DynamoDB JSON), through the app's own client."""
    from chalicelib.settings import get_settings
    from chalicelib.store.table import TableItem

    client = TableItem._get_connection().connection.client
    items, start = [], None
    for _ in range(10_000):  # bounded
        kwargs = {"TableName": get_settings().table_name}
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = client.scan(**kwargs)
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return items
    raise AssertionError("scan did not finish")


def _s(item: dict, name: str) -> str | None:
    value = item.get(name)
    return value.get("S") if value else None


def table_invariants(account_id: str, applied_events: set[str] | None = None,
                     strict_audit: bool = True) -> dict:
    """Check what must hold in the table; return counts. ``applied_events``: the event ids
    that must each have exactly one marker (and, with ``strict_audit``, exactly one
    "applied" audit entry; without it, at most one: see the xfail test
    test_an_applied_but_unacknowledged_event_keeps_its_applied_audit_entry)."""
    items = scan_table()
    by_pk: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        by_pk[_s(item, "PK")].append(item)
    profiles = {}
    for pk, group in by_pk.items():
        if pk.startswith("CUST#"):
            heads = [i for i in group if _s(i, "SK") == "PROFILE"]
            # (global) an item of a record never outlives, nor precedes, the record itself
            assert heads, f"{pk}: {len(group)} items and no PROFILE: {[_s(i, 'SK') for i in group]}"
            profile = heads[0]
            profiles[pk[len("CUST#"):]] = profile
            if profile.get("merged_into"):
                # A folded record keeps only its tombstone.
                assert len(group) == 1, f"{pk}: tombstone with {[_s(i, 'SK') for i in group]}"
            for item in group:
                if _s(item, "T") == "Search":
                    assert not profile.get("merged_into"), f"{pk}: search item on a tombstone"

    mine = {cid: p for cid, p in profiles.items() if _s(p, "account_id") == account_id}
    live = {cid: p for cid, p in mine.items() if not p.get("merged_into")}
    prefix = f"ACCT#{account_id}#"
    counts: Counter = Counter()
    markers: Counter = Counter()
    applied: Counter = Counter()
    for pk, group in by_pk.items():
        if not pk.startswith(prefix):
            continue
        rest = pk[len(prefix):]
        for item in group:
            kind = _s(item, "T")
            counts[kind] += 1
            if kind == "Pointer":
                cid = _s(item, "customer_id")
                assert cid in mine, f"{pk} points to {cid}, not a record of this account"
                if cid not in live:
                    counts["pointer_to_tombstone"] += 1
            elif kind == "EmailClaim":
                cid = _s(item, "customer_id")
                email = rest.split("EMAIL#", 1)[1]
                assert cid in live, f"e-mail claim {email} points to {cid}, not a live record"
                assert _s(live[cid], "email") == email, (email, _s(live[cid], "email"))
            elif kind == "EventMarker":
                markers[rest.split("#", 2)[2]] += 1
            elif kind == "Delivery" and _s(item, "outcome") == "applied":
                applied[_s(item, "event_id")] += 1
    for cid in live:
        projections_agree(account_id, cid, by_pk[f"CUST#{cid}"])
    claims = {rest.split("EMAIL#", 1)[1] for pk in by_pk if pk.startswith(prefix + "EMAIL#")
              for rest in [pk[len(prefix):]]}
    for cid, p in live.items():
        email = _s(p, "email")
        assert email is None or email in claims, f"record {cid} has e-mail {email} unclaimed"
    assert all(n == 1 for n in applied.values()), {k: v for k, v in applied.items() if v != 1}
    assert all(n == 1 for n in markers.values())
    assert set(applied) <= set(markers), set(applied) - set(markers)
    if strict_audit:
        assert set(markers) == set(applied), (set(markers) ^ set(applied))
    if applied_events is not None:
        assert set(markers) == set(applied_events), (
            f"applied but not expected: {sorted(set(markers) - set(applied_events))[:5]}, "
            f"expected but not applied: {sorted(set(applied_events) - set(markers))[:5]}")
    return {"records": len(live), "tombstones": len(mine) - len(live),
            "items_scanned": len(items), "pointers": counts["Pointer"],
            "pointers_to_tombstones": counts["pointer_to_tombstone"],
            "email_claims": counts["EmailClaim"], "markers": sum(markers.values()),
            "applied_entries": sum(applied.values()), "deliveries": counts["Delivery"],
            "applied_without_audit_entry": len(set(markers) - set(applied))}


def projections_agree(account_id: str, customer_id: str, items: list[dict]) -> None:
    """The overview's summary item and the order entries (what the portal reads instead of
    the whole history) say what the record derived from all its facts says."""
    from chalicelib.records.service import get_record
    from chalicelib.records.view import order_entries, summary_of
    from chalicelib.store import keys

    record = get_record(account_id, customer_id, consistent=True)
    summaries = [json.loads(_s(i, "data")) for i in items if _s(i, "T") == "Summary"]
    assert summaries == [summary_of(record)], f"{customer_id}: summary differs from the record"
    stored = {_s(i, "SK"): json.loads(_s(i, "data")) for i in items if _s(i, "T") == "OrderEntry"}
    wanted = {keys.order_sk(o["created_at"], oid): o for oid, o in order_entries(record).items()}
    assert stored == wanted, (f"{customer_id}: order entries {sorted(set(stored) ^ set(wanted))[:4]} "
                              "differ from the record's orders")
