"""Webhooks: events per second through the real app, DynamoDB requests per event, and the
app's time per event against the floor (one bare PutItem round trip on the same server).

Phases, each on its own merchant account:
  floor        PutItem / GetItem of a small item straight through PynamoDB's botocore client
  first sight  customer.created for a new e-mail (pointer miss, e-mail miss, one transaction)
  steady       invoice.paid and customer.subscription.updated for customers the app knows,
               in a warm container (account and pointer caches filled, as in a warm Lambda)
  cold cache   the same steady events with the container's caches emptied before each one
  duplicate    a redelivery of an applied event
  http         the steady stream over real HTTP through ``chalice local`` (optional)
  profile      cProfile of the steady path: where the time goes
  paypal       PayPal's steady deliveries (``PAYMENT.SALE.COMPLETED``,
               ``BILLING.SUBSCRIPTION.UPDATED``) next to Stripe's, in alternating blocks
               of the same run; PayPal's signature checked offline against a certificate
               already in the container's cache (the warm path); and a few deliveries
               with that cache emptied (certificate fetch and chain check)

  python -m bench.webhooks --doc   this part alone, on its own stack, rewriting its
                                   section of docs/benchmarks.md
"""
from __future__ import annotations

import cProfile
import json
import os
import pstats
import statistics
import time
from pathlib import Path

from bench import ddbhooks
from bench.util import log, quiet, summary, timed

REPO = Path(__file__).resolve().parents[1]

STEADY_CUSTOMERS = int(os.environ.get("BENCH_STEADY_CUSTOMERS", "100"))
STEADY_ROUNDS = int(os.environ.get("BENCH_STEADY_ROUNDS", "4"))
FIRST_SIGHT = int(os.environ.get("BENCH_FIRST_SIGHT", "200"))
FLOOR_N = int(os.environ.get("BENCH_FLOOR_N", "400"))
HTTP_EVENTS = int(os.environ.get("BENCH_HTTP_EVENTS", "200"))
PAYPAL_CUSTOMERS = int(os.environ.get("BENCH_PAYPAL_CUSTOMERS", "50"))
PAYPAL_ROUNDS = int(os.environ.get("BENCH_PAYPAL_ROUNDS", "4"))
PAYPAL_BLOCK = 10  # events per block; Stripe's and PayPal's blocks alternate
PAYPAL_COLD_CERT = int(os.environ.get("BENCH_PAYPAL_COLD_CERT", "10"))


def _put_floor():
    """A callable making one bare PutItem of a ~100-byte item; see _floor."""
    from chalicelib.settings import get_settings
    from chalicelib.store.table import TableItem

    client = TableItem._get_connection().connection.client
    table = get_settings().table_name

    def put(i):
        client.put_item(TableName=table, Item={
            "PK": {"S": f"BENCH#floor#{i % 50}"}, "SK": {"S": "FLOOR"}, "T": {"S": "Bench"},
            "payload": {"S": "x" * 64}})

    return put


def _floor() -> dict:
    """One PutItem (and one GetItem) of a ~100-byte item, through the same botocore client
    the app uses: the cheapest DynamoDB round trip this machine can make; and a bare
    5-item TransactWriteItems, the least a write-only steady path would send."""
    from chalicelib.settings import get_settings
    from chalicelib.store.table import TableItem

    client = TableItem._get_connection().connection.client
    table = get_settings().table_name
    put = _put_floor()

    def get(i):
        client.get_item(TableName=table, Key={"PK": {"S": f"BENCH#floor#{i % 50}"},
                                              "SK": {"S": "FLOOR"}}, ConsistentRead=True)

    def transact(i, items=5):
        client.transact_write_items(TransactItems=[{"Put": {
            "TableName": table, "ConditionExpression": "attribute_not_exists(PK)",
            "Item": {"PK": {"S": f"BENCH#tx#{i}#{n}#{time.time_ns()}"}, "SK": {"S": "TX"},
                     "T": {"S": "Bench"}, "payload": {"S": "x" * 64}}}} for n in range(items)])

    timed(put, 50)  # warm the connection pool
    puts = timed(put, FLOOR_N)
    gets = timed(get, FLOOR_N)
    transacts = timed(transact, FLOOR_N // 2)
    return {"put": summary(puts), "get": summary(gets), "transact5": summary(transacts),
            "transact5_vs_put": statistics.median(transacts) / statistics.median(puts)}


def _deliver_all(merchant, events, expect=("applied",), before_each=None,
                 logs: dict | None = None, floor: list | None = None
                 ) -> tuple[list[float], ddbhooks.Recorder]:
    """Deliver and time each event; with ``floor`` (a list), also time one bare PutItem
    right before each event (not recorded), so the floor is measured under the same
    conditions as the app, interleaved, on a noisy machine."""
    samples = []
    put = _put_floor() if floor is not None else None
    with ddbhooks.recording() as rec, quiet(logs):
        for i, event in enumerate(events):
            if put is not None:
                with ddbhooks.paused():
                    t0 = time.perf_counter()
                    put(i)
                    floor.append(time.perf_counter() - t0)
            if before_each:
                before_each()
            t0 = time.perf_counter()
            response = merchant.deliver(event)
            samples.append(time.perf_counter() - t0)
            body = json.loads(response.body)
            assert response.status_code == 200 and body["outcome"] in expect, (
                response.status_code, body)
    return samples, rec


def _per_event(rec: ddbhooks.Recorder, n: int, samples: list[float],
               floor: list[float] | None = None) -> dict:
    from bench.cost import write_units

    wru = write_units(rec.writes)
    sizes: dict[str, list[int]] = {}
    for w in rec.writes:
        if w["bytes"] is not None:
            sizes.setdefault(w["type"] or w["kind"], []).append(w["bytes"])
    return {
        "item_bytes_by_type": {k: round(sum(v) / len(v)) for k, v in sorted(sizes.items())},
        "wru_per_event": wru["total"] / n,
        "wru_by_item_type": {k: v / n for k, v in sorted(wru["by_type"].items())},
        "events": n,
        "requests_per_event": rec.total / n,
        "requests_by_operation": {k: v / n for k, v in sorted(rec.calls.items())},
        "attempts_per_event": rec.attempts / n,
        "rcu_per_event_engine": rec.read_units / n,
        "wcu_per_event_engine": rec.write_units / n,
        "items_per_transaction": (sum(rec.transact_items) / len(rec.transact_items)
                                  if rec.transact_items else 0),
        "item_bytes": sorted(rec.item_bytes),
        "ddb_ms_per_event": rec.seconds * 1000 / n,
        "time": summary(samples),
        "events_per_second": n / sum(samples),
        # The same-moment floor: one bare PutItem timed right before each event.
        "floor": summary(floor) if floor else None,
        "vs_putitem": (statistics.median(samples) / statistics.median(floor)) if floor else None,
    }


def _clear_caches() -> None:
    from chalicelib.store import customers
    from chalicelib.webhooks import service

    customers._pointer_cache.clear()
    customers.forget_all_collections()
    service._account_cache.clear()


def _stale_copies() -> None:
    """As if another container had written every record since this one kept its copy:
    the copy's ``rev`` is one behind, so the transaction built on it is refused."""
    from dataclasses import replace

    from chalicelib.store import customers

    for _, (_, kept) in list(customers._collection_cache.items()):
        customers.remember_collection(replace(
            kept, profile={**kept.profile, "rev": kept.profile["rev"] - 1}))


def _known_customers(merchant, prefix: str, n: int):
    """n customers with a subscription, delivered (not measured); their Stream and ids."""
    from stripe_events import Stream

    s = Stream(prefix)
    known = []
    for i in range(n):
        cus = s.customer(f"{prefix}{i}@bench.test", f"Bench Customer {i}")
        sub = s.subscription(cus, 1900 + i)
        known.append((cus, sub))
    _deliver_all(merchant, s.events)
    s.events.clear()
    return s, known


def _steady_events(s, known, rounds: int) -> list[dict]:
    s.events.clear()
    for r in range(rounds):
        for i, (cus, sub) in enumerate(known):
            if r % 2 == 0:
                s.invoice(cus, sub, 1900 + i, email=f"{s.prefix}{i}@bench.test")
            else:
                s.update_subscription(sub, cus, 1900 + i, cancel_at_period_end=bool(r % 4 == 3))
    events = list(s.events)
    s.events.clear()
    return events


def _profile(merchant, events) -> dict:
    """Cumulative time of the parts of one steady delivery, as shares of the whole."""
    profiler = cProfile.Profile()
    with quiet():
        profiler.enable()
        for event in events:
            merchant.deliver(event)
        profiler.disable()
    stats = pstats.Stats(profiler)

    def cumulative(predicate) -> float:
        # The outermost matching frames only, so recursion and nesting count once.
        out = 0.0
        for (filename, _, name), (_, _, _, cum, callers) in stats.stats.items():
            if predicate(filename, name) and not any(predicate(f, n) for (f, _, n) in callers):
                out += cum
        return out

    whole = cumulative(lambda f, n: n == "deliver" and f.endswith("app_fixtures.py"))
    parts = {
        "DynamoDB calls (botocore: serialize, sign, HTTP, parse)":
            cumulative(lambda f, n: n == "_make_api_call" and "botocore" in f),
        "  of which the HTTP exchange (urllib3)":
            cumulative(lambda f, n: n == "urlopen" and "urllib3" in f),
        "PynamoDB model <-> item conversion":
            cumulative(lambda f, n: "pynamodb" in f and n in (
                "serialize", "deserialize", "_instantiate", "from_raw_data",
                "_container_serialize", "_container_deserialize")),
        "signature check (stripe.WebhookSignature)":
            cumulative(lambda f, n: n == "verify_header" and "stripe" in f),
        "record derivation (records.view.build_record)":
            cumulative(lambda f, n: n == "build_record"),
        "logging and metrics (powertools)":
            cumulative(lambda f, n: "aws_lambda_powertools" in f and n in (
                "info", "exception", "flush_metrics", "add_metric", "append_keys",
                "set_correlation_id")),
        "Chalice test client (event build, routing, response)":
            cumulative(lambda f, n: n == "post" and "chalice" in f and "test" in f)
            - cumulative(lambda f, n: n == "receive_webhook"),
        "test sender: JSON encode and HMAC sign":
            cumulative(lambda f, n: (n == "sign" and f.endswith("stripe_events.py"))
                       or (n == "dumps" and "json/__init__" in f)),
    }
    stats.sort_stats("tottime")
    top = []
    for (filename, line, name), (_, nc, tt, _cum, _) in sorted(
            stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]:
        short = filename.split("site-packages/")[-1].removeprefix(f"{REPO}/")
        top.append({"function": f"{short}:{line}({name})", "calls": nc,
                    "tottime_ms_per_event": tt * 1000 / len(events)})
    return {"events": len(events), "ms_per_event": whole * 1000 / len(events),
            "shares": {k: (v / whole if whole else 0) for k, v in parts.items()},
            "top_tottime": top}


def _over_http(stack, merchant, events) -> dict | None:
    """The same steady events through ``chalice local`` over HTTP (one connection)."""
    import requests
    from stripe_events import sign

    from devstack import servers

    if not events:
        return None
    server = servers.start_chalice(stack.app_port, env=dict(os.environ), log_dir=stack.log_dir)
    try:
        session = requests.Session()
        session.trust_env = False
        url = f"{server.url}/webhooks/stripe/{merchant.account_id}"

        def post(event):
            body = json.dumps(event).encode()
            return session.post(url, data=body, headers={
                "Content-Type": "application/json",
                "Stripe-Signature": sign(body, merchant.webhook_secrets[0])}, timeout=30)

        warm = post(events[0])
        assert warm.status_code == 200, warm.text
        samples = []
        for event in events[1:]:
            t0 = time.perf_counter()
            r = post(event)
            samples.append(time.perf_counter() - t0)
            assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
        return {"events": len(samples), "time": summary(samples),
                "events_per_second": len(samples) / sum(samples)}
    finally:
        server.stop()


class _PresignedPayPal:
    """Delivers PayPal events to a PayPalMerchant (tests/test_paypal_webhooks.py) signed
    beforehand by the stand-in, one transmission each as PayPal signs every attempt, so
    the stand-in's signing is not in the measured time."""

    def __init__(self, paypal_merchant, events: list[dict]):
        self.m = paypal_merchant.m
        self.signed = {e["id"]: paypal_merchant.stub.sign(e, paypal_merchant.webhook_id)
                       for e in events}

    def deliver(self, event):
        body, headers = self.signed[event["id"]]
        return self.m.client.http.post(f"/webhooks/paypal/{self.m.account_id}", body=body,
                                       headers=headers)


def _merged(recs: list[ddbhooks.Recorder]) -> ddbhooks.Recorder:
    out = ddbhooks.Recorder()
    for rec in recs:
        out.calls.update(rec.calls)
        out.capacity_by_op.update(rec.capacity_by_op)
        out.attempts += rec.attempts
        out.read_units += rec.read_units
        out.write_units += rec.write_units
        out.seconds += rec.seconds
        out.transact_items += rec.transact_items
        out.item_bytes += rec.item_bytes
        out.writes += rec.writes
    return out


def _paypal_steady_events(stream, subs: list[dict], rounds: int) -> list[dict]:
    """PayPal's renewal burst for known subscriptions: the sale, then the subscription's
    update (its next billing time moved on), alternating by round as Stripe's are."""
    from datetime import timedelta

    start = len(stream.events)
    for r in range(rounds):
        for sub in subs:
            if r % 2 == 0:
                stream.sale(sub)
            else:
                billing = sub["billing_info"]
                billing["next_billing_time"] = (
                    stream.t + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
                stream.subscription_event(sub, "BILLING.SUBSCRIPTION.UPDATED")
    return stream.events[start:]


def _profile_paypal(deliverer, events) -> dict:
    """Shares of a warm PayPal delivery's time (inside the test client's ``post``) spent
    verifying the signature and translating the event."""
    profiler = cProfile.Profile()
    with quiet():
        profiler.enable()
        for event in events:
            deliverer.deliver(event)
        profiler.disable()
    stats = pstats.Stats(profiler)

    def cumulative(predicate) -> float:
        return sum(cum for (filename, _, name), (_, _, _, cum, callers) in stats.stats.items()
                   if predicate(filename, name) and not any(predicate(f, n) for (f, _, n) in callers))

    whole = cumulative(lambda f, n: n == "post" and "chalice" in f and "test" in f)
    parts = {"signature check (processors.paypal.webhook.verify)":
             cumulative(lambda f, n: n == "verify" and f.endswith("paypal/webhook.py")),
             "translation (processors.paypal.translate)":
             cumulative(lambda f, n: n == "translate" and f.endswith("paypal/translate.py")),
             "DynamoDB calls (botocore)":
             cumulative(lambda f, n: n == "_make_api_call" and "botocore" in f)}
    return {"events": len(events), "ms_per_event": whole * 1000 / len(events),
            "shares": {k: (v / whole if whole else 0) for k, v in parts.items()}}


def _paypal_vs_stripe(stack, client) -> dict:
    """Steady deliveries of both processors for known customers of one account, in
    alternating blocks of PAYPAL_BLOCK events, each event with its own bare PutItem timed
    right before it: requests per event and time as ratios of the same run."""
    from paypal_events import PayPalStream
    from test_paypal_webhooks import PayPalMerchant, PayPalStub

    from chalicelib.processors.paypal import webhook as paypal_webhook

    stub = PayPalStub(stack.paypal.url)
    sender = PayPalMerchant(client, stub)  # an account set up for Stripe and PayPal
    merchant = sender.m
    stripe_stream, known = _known_customers(merchant, "pvs", PAYPAL_CUSTOMERS)
    paypal_stream = PayPalStream("bench")
    subs = []
    for i in range(PAYPAL_CUSTOMERS):
        sub = paypal_stream.subscription(f"paypal{i}@bench.test", ("Bench", f"Payer {i}"), 1900 + i)
        paypal_stream.subscription_event(sub, "BILLING.SUBSCRIPTION.ACTIVATED", status="ACTIVE")
        subs.append(sub)
    # Not measured: the customers become known and the certificate enters the cache (the
    # first delivery fetches it and checks its chain once for the container).
    _deliver_all(sender, paypal_stream.events)

    stripe_events = _steady_events(stripe_stream, known, PAYPAL_ROUNDS)
    paypal_events = _paypal_steady_events(paypal_stream, subs, PAYPAL_ROUNDS)
    presigned = _PresignedPayPal(sender, paypal_events)
    served_before = len(stub.served())
    samples: dict[str, list[float]] = {"stripe": [], "paypal": []}
    floors: dict[str, list[float]] = {"stripe": [], "paypal": []}
    recs: dict[str, list] = {"stripe": [], "paypal": []}
    for start in range(0, max(len(stripe_events), len(paypal_events)), PAYPAL_BLOCK):
        for name, deliverer, events in (("stripe", merchant, stripe_events),
                                        ("paypal", presigned, paypal_events)):
            block = events[start:start + PAYPAL_BLOCK]
            if block:
                got, rec = _deliver_all(deliverer, block, floor=floors[name])
                samples[name] += got
                recs[name].append(rec)
    paypal_api = len(stub.served()) - served_before
    out = {name: _per_event(_merged(recs[name]), len(samples[name]), samples[name], floors[name])
           for name in ("stripe", "paypal")}
    out["paypal"]["paypal_api_requests_per_event"] = paypal_api / len(paypal_events)

    # The certificate cache emptied before each delivery (a new container, or a
    # certificate PayPal rolled): its fetch from PayPal's host and the chain check.
    cold = _paypal_steady_events(paypal_stream, subs[:PAYPAL_COLD_CERT], 1)
    presigned = _PresignedPayPal(sender, cold)
    served_before = len(stub.served())
    floor: list[float] = []
    got, rec = _deliver_all(presigned, cold, before_each=paypal_webhook.forget_cached, floor=floor)
    out["paypal_cold_certificate"] = _per_event(rec, len(cold), got, floor)
    out["paypal_cold_certificate"]["paypal_api_requests_per_event"] = (
        len(stub.served()) - served_before) / len(cold)
    # Where a warm PayPal delivery's time goes that a Stripe one does not spend.
    extra = _paypal_steady_events(paypal_stream, subs, 2)
    out["paypal_profile"] = _profile_paypal(_PresignedPayPal(sender, extra), extra)
    out["block"] = PAYPAL_BLOCK
    out["paypal_vs_stripe"] = (out["paypal"]["time"]["median_ms"]
                               / out["stripe"]["time"]["median_ms"])
    return out


def run(stack, client) -> dict:
    from app_fixtures import make_merchant
    from stripe_events import Stream

    out: dict = {}
    log("webhooks: floor (bare PutItem / GetItem)")
    out["floor"] = _floor()

    log(f"webhooks: first sight ({FIRST_SIGHT} new customers)")
    merchant = make_merchant(client)
    s = Stream("fs")
    for i in range(FIRST_SIGHT):
        s.customer(f"first{i}@bench.test", f"First Sight {i}")
    warm = Stream("fswarm")
    warm.customer("warm@bench.test", "Warm")
    _deliver_all(merchant, warm.events)  # the account is in the cache, as in a warm container
    floor: list[float] = []
    samples, rec = _deliver_all(merchant, s.events, floor=floor)
    out["first_sight"] = _per_event(rec, len(s.events), samples, floor)

    log("webhooks: first sight, subscription before its customer (no e-mail yet)")
    s2 = Stream("fsub")
    for i in range(FIRST_SIGHT // 4):
        s2.subscription(f"cus_fsub{i}", 1500)
    floor = []
    samples, rec = _deliver_all(merchant, s2.events, floor=floor)
    out["first_sight_no_email"] = _per_event(rec, len(s2.events), samples, floor)

    log(f"webhooks: steady path ({STEADY_CUSTOMERS} known customers x {STEADY_ROUNDS} rounds)")
    merchant = make_merchant(client)
    stream, known = _known_customers(merchant, "st", STEADY_CUSTOMERS)
    events = _steady_events(stream, known, STEADY_ROUNDS)
    logs: dict = {}
    floor = []
    samples, rec = _deliver_all(merchant, events, logs=logs, floor=floor)
    out["steady"] = _per_event(rec, len(events), samples, floor)
    out["log_bytes_per_event"] = logs.get("bytes", 0) / len(events)
    by_type: dict[str, list[float]] = {}
    for event, sample in zip(events, samples, strict=True):
        by_type.setdefault(event["type"], []).append(sample)
    out["steady"]["by_type_ms"] = {t: summary(v)["mean_ms"] for t, v in by_type.items()}

    log("webhooks: steady path with the container's caches emptied before each event")
    events = _steady_events(stream, known, 1)
    floor = []
    samples, rec = _deliver_all(merchant, events, before_each=_clear_caches, floor=floor)
    out["steady_cold_cache"] = _per_event(rec, len(events), samples, floor)

    log("webhooks: steady path with a stale copy of each record (another container wrote last)")
    _deliver_all(merchant, _steady_events(stream, known, 1))  # (not measured) every copy kept
    events = _steady_events(stream, known, 1)
    floor = []
    samples, rec = _deliver_all(merchant, events, before_each=_stale_copies, floor=floor)
    out["steady_stale_copy"] = _per_event(rec, len(events), samples, floor)

    log("webhooks: redelivery of applied events")
    floor = []
    samples, rec = _deliver_all(merchant, events[: len(events) // 2], expect=("duplicate",),
                                floor=floor)
    out["duplicate"] = _per_event(rec, len(events) // 2, samples, floor)

    log("webhooks: profile of the steady path")
    events = _steady_events(stream, known, 2)
    out["profile"] = _profile(merchant, events)

    if HTTP_EVENTS:
        log(f"webhooks: {HTTP_EVENTS} steady events over HTTP (chalice local)")
        http_merchant = make_merchant(client)
        stream2, known2 = _known_customers(http_merchant, "http", max(1, HTTP_EVENTS // 2))
        events = _steady_events(stream2, known2, 2)[:HTTP_EVENTS]
        try:
            out["http"] = _over_http(stack, http_merchant, events)
        except Exception as exc:  # noqa: BLE001 (optional figure: report why it is missing)
            out["http"] = {"error": f"{type(exc).__name__}: {exc}"}

    log(f"webhooks: PayPal next to Stripe ({PAYPAL_CUSTOMERS} known customers each x "
        f"{PAYPAL_ROUNDS} rounds, alternating blocks of {PAYPAL_BLOCK})")
    out["paypal"] = _paypal_vs_stripe(stack, client)

    # Ratios of medians against the PutItem floor timed interleaved with each path.
    steady = out["steady"]
    floor = steady["floor"]["median_ms"]
    out["ratios"] = {
        "steady_vs_putitem": steady["vs_putitem"],
        "first_sight_vs_putitem": out["first_sight"]["vs_putitem"],
        "steady_ddb_share": steady["ddb_ms_per_event"] / steady["time"]["mean_ms"],
        "steady_ddb_vs_putitem": steady["ddb_ms_per_event"] / floor,
    }
    out["ratios"]["paypal_vs_stripe"] = out["paypal"]["paypal_vs_stripe"]
    out["ratios"]["paypal_vs_putitem"] = out["paypal"]["paypal"]["vs_putitem"]
    if out.get("http") and "time" in out["http"]:
        out["ratios"]["http_vs_in_process"] = (out["http"]["time"]["median_ms"]
                                               / out["steady"]["time"]["median_ms"])
        out["ratios"]["http_vs_putitem"] = out["http"]["time"]["median_ms"] / floor
    return out


def main() -> dict:
    """This part alone on a stack of its own (``python -m bench.webhooks [--doc]``)."""
    from bench import stack as bench_stack

    stack = bench_stack.start()
    try:
        from chalice.test import Client

        from app import app

        with Client(app) as client:
            return run(stack, client)
    finally:
        stack.stop()


if __name__ == "__main__":
    import sys

    from bench.__main__ import machine

    load_at_start = os.getloadavg()[0]
    results = {"machine": machine(), "webhooks": main()}
    # The machine is shared: say how busy it was (1-minute load averages, 2 cores).
    results["load"] = {"start": round(load_at_start, 1), "end": round(os.getloadavg()[0], 1)}
    out = REPO / "build" / "bench" / "webhooks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    log(f"results: {out.relative_to(REPO)}")
    if "--doc" in sys.argv:
        from bench import report

        report.write_section(report.webhooks_section(results["webhooks"], results["machine"],
                                                     results["load"]))
        log("rewrote the webhooks section of docs/benchmarks.md")
