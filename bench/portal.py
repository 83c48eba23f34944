"""Portal: the overview page and the orders pages against one bare Query (the same
request the page makes), for customers with 1, 100 and 1,000 one-time orders (and 2,000);
what the write side pays for them; the receipt PDF's build time and size, and the receipt
download route.

Customers (one merchant account, one shop):
  * ``customer.created`` and the first orders are delivered as signed Stripe webhooks
    through the app (``payment_intent.succeeded``, one order each); the order deliveries
    are recorded with bench/ddbhooks.py, so the write units each order costs (and which
    items they go to: the order's entry, the summary) are measured;
  * orders past ``BENCH_PORTAL_WEBHOOK_ORDERS`` (the 1,000-order customer) are applied with
    the app's own code in memory (``processors.stripe.translate`` → ``records.service``'s
    record state, ``_State.apply`` / ``to_write``) and written with ``BatchWriteItem`` as the
    items ``store.customers.commit`` builds from that write (profile, facts, pointers, the
    ``SummaryItem`` and the ``OrderEntryItem``s, deletes of moved entries): the same items,
    without 900 read-modify-write transactions of a growing collection. Event markers and
    delivery audit entries are not written for those (the portal never reads them).
  * every customer is then checked: the record holds every order, and the stored summary
    and order entries say what the record derived from all its facts says
    (``projections_agree`` of tests/test_reliability_helpers.py).

Each customer signs in through the real flow (sign-in page, e-mail, link from moto's SES,
the continue form with its CSRF token). The overview (``GET /portal/<slug>``) is checked
once per customer (the newest orders it shows, the "All N orders" link), then requested in
``BENCH_PORTAL_REPEAT`` rounds (after ``BENCH_PORTAL_WARMUP`` rounds timed and discarded),
every customer once per round, so the sizes are compared under the same conditions. Each
request comes right after one bare ``Query``: the very request the page sends (captured
from PynamoDB's ``Connection.dispatch`` on the first visit: descending from the top of the
collection, ``SK >= ORDER#``, its ``Limit``, consistent), replayed through the botocore
client PynamoDB uses, not recorded; ratios are of medians. The old read, the whole
collection every page, is timed too, for context. The orders pages (``GET
/portal/<slug>/orders``, then each "Older orders" link) are walked once to the last page,
checking that together they list every order once, newest first; then the first and the
last page of every customer are timed the same way, in rounds, each after a replay of its
own Query. DynamoDB requests per page are counted with bench/ddbhooks.py (one ``Query``
call per page of results).
"""
from __future__ import annotations

import contextlib
import copy
import os
import re
import statistics
import sys
import time

from bench import ddbhooks
from bench.util import log, quiet, summary

ORDERS = [int(x) for x in os.environ.get("BENCH_PORTAL_ORDERS", "1,100,1000,2000").split(",")]
REPEAT = int(os.environ.get("BENCH_PORTAL_REPEAT", "30"))
PDF_N = int(os.environ.get("BENCH_PORTAL_PDF_N", "30"))
RECEIPT_ROUTE_N = int(os.environ.get("BENCH_PORTAL_RECEIPTS", "10"))
WEBHOOK_ORDERS = int(os.environ.get("BENCH_PORTAL_WEBHOOK_ORDERS", "100"))
SEED_SECONDS_MAX = float(os.environ.get("BENCH_SEED_SECONDS_MAX", "900"))
WARMUP = int(os.environ.get("BENCH_PORTAL_WARMUP", "3"))  # rounds timed and discarded
COLLECTION_N = 5  # timings of the old whole-collection read (context only)
WALK_PAGES_MAX = 1000  # bound on the orders pages followed
GOAL_REQUESTS = 2  # "at most 2 requests up to 100 orders"


def _ddb():
    from chalicelib.settings import get_settings
    from chalicelib.store.table import TableItem

    return TableItem._get_connection().connection.client, get_settings().table_name


def _bare_query(customer_id: str, keep: bool = False) -> dict:
    """One consistent Query of the customer's whole collection, every page (the overview's
    read before it was bounded; and the items, for checks)."""
    client, table = _ddb()
    pages, items, size, start, kept = 0, 0, 0, None, []
    for _ in range(1000):  # bounded
        kwargs = {"TableName": table, "KeyConditionExpression": "PK = :pk",
                  "ExpressionAttributeValues": {":pk": {"S": f"CUST#{customer_id}"}},
                  "ConsistentRead": True}
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = client.query(**kwargs)
        pages += 1
        items += page["Count"]
        size += sum(ddbhooks.item_size(i) for i in page["Items"])
        if keep:
            kept += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    out = {"pages": pages, "items": items, "bytes": size}
    if keep:
        out["items_list"] = kept
    return out


@contextlib.contextmanager
def _captured_queries():
    """The Query requests PynamoDB sends meanwhile, as botocore parameters (a wrapper on
    ``Connection.dispatch``, where PynamoDB hands its requests to botocore)."""
    from pynamodb.connection.base import Connection

    seen: list[dict] = []
    original = Connection.dispatch

    def dispatch(self, operation_name, operation_kwargs):
        result = original(self, operation_name, operation_kwargs)
        if operation_name == "Query":  # copied after: dispatch adds ReturnConsumedCapacity
            seen.append(copy.deepcopy(operation_kwargs))
        return result

    Connection.dispatch = dispatch
    try:
        yield seen
    finally:
        Connection.dispatch = original


def _replay(kwargs: dict) -> dict:
    """Send one captured Query again, bare: one request, no following page."""
    client, _ = _ddb()
    page = client.query(**kwargs)
    return {"items": page["Count"], "bytes": sum(ddbhooks.item_size(i) for i in page["Items"]),
            "rru": float((page.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0),
            "more": "LastEvaluatedKey" in page}


def _shape(kwargs: dict) -> dict:
    """What a captured Query asks, for the report: placeholders resolved, the customer's id
    and a cursor shown as such."""
    names = kwargs.get("ExpressionAttributeNames") or {}
    values = {}
    for k, v in (kwargs.get("ExpressionAttributeValues") or {}).items():
        text = next(iter(v.values()))
        values[k] = ("CUST#<id>" if str(text).startswith("CUST#")
                     else "<cursor>" if str(text).startswith("ORDER#") and text != "ORDER#"
                     else text)

    def resolved(expr):
        if not expr:
            return expr
        for k in sorted(values, key=len, reverse=True):
            expr = expr.replace(k, str(values[k]))
        for k in sorted(names, key=len, reverse=True):
            expr = expr.replace(k, names[k])
        depth = 0
        for i, ch in enumerate(expr):  # drop one pair of parentheses around the whole
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0 and i < len(expr) - 1:
                return expr
        return expr[1:-1] if expr.startswith("(") else expr

    return {"KeyConditionExpression": resolved(kwargs.get("KeyConditionExpression")),
            "FilterExpression": resolved(kwargs.get("FilterExpression")),
            **{k: kwargs.get(k) for k in ("ScanIndexForward", "Limit", "ConsistentRead")}}


# ------------------------------------------------------------------------- seeding


def _write_items(items: list[dict], deletes: list[dict] | None = None) -> int:
    """Deletes (keys) first, then puts; 25 to a BatchWriteItem."""
    client, table = _ddb()
    requests_made = 0
    ops = [{"DeleteRequest": {"Key": key}} for key in deletes or []]
    chunks = [ops[i:i + 25] for i in range(0, len(ops), 25)]
    ops = [{"PutRequest": {"Item": item}} for item in items]
    chunks += [ops[i:i + 25] for i in range(0, len(ops), 25)]
    for batch in chunks:
        for attempt in range(20):  # bounded: unprocessed items are retried with backoff
            response = client.batch_write_item(RequestItems={table: batch})
            requests_made += 1
            batch = response.get("UnprocessedItems", {}).get(table, [])
            if not batch:
                break
            time.sleep(0.05 * (attempt + 1))
        else:
            raise RuntimeError("BatchWriteItem kept items unprocessed")
    return requests_made


def _apply_directly(account_id: str, customer_id: str, events: list[dict]) -> dict:
    """Apply Stripe events with the app's own translation and record state, then write the
    items its transaction would have written (as ``store.customers.commit`` builds them),
    25 to a BatchWriteItem."""
    from chalicelib.processors.stripe.translate import translate
    from chalicelib.records import service as records
    from chalicelib.store import customers, keys
    from chalicelib.store.table import FactItem, OrderEntryItem, PointerItem, SummaryItem

    state = records._load_live(account_id, customer_id)
    for event in events:
        translation = translate(event)
        for domain_event in translation.events:
            state.apply(domain_event)
    w = state.to_write()
    assert not (w.claim_email or w.release_email or w.repoint or w.search_put
                or w.search_delete or w.delete_facts or w.delete_summary), w
    pk = keys.customer_pk(customer_id)
    models = [customers._profile_item(w)]
    models += [FactItem(pk, keys.fact_sk(kind, fid), kind=kind, fact_id=fid, data=data)
               for kind, fid, data in w.facts]
    for processor, ext_id in w.pointers:
        ppk, psk = keys.ext_pointer(account_id, processor, ext_id)
        models.append(PointerItem(ppk, psk, customer_id=customer_id))
    for order_id in w.order_pointers:
        ppk, psk = keys.order_pointer(account_id, order_id)
        models.append(PointerItem(ppk, psk, customer_id=customer_id))
    if w.summary is not None:
        models.append(SummaryItem(pk, keys.SUMMARY_SK, data=w.summary))
    models += [OrderEntryItem(pk, customers._order_sk(entry), order_id=entry["id"], data=entry)
               for entry in w.order_puts]
    deletes = [{k: v for k, v in OrderEntryItem(pk, customers._order_sk(entry)).serialize().items()
                if k in ("PK", "SK")} for entry in w.order_deletes]
    items = [m.serialize() for m in models]
    by_type: dict[str, int] = {}
    for item in items:
        by_type[item["T"]["S"]] = by_type.get(item["T"]["S"], 0) + 1
    t0 = time.perf_counter()
    made = _write_items(items, deletes)
    # The app keeps the record as it last wrote it, for its next write; written around it
    # here, that copy is stale (its rev condition would refuse it): drop it.
    customers.forget_collection(customer_id)
    return {"events": len(events), "items": len(items), "items_by_type": by_type,
            "deletes": len(deletes), "requests": made, "seconds": time.perf_counter() - t0}


def _write_side(rec: ddbhooks.Recorder, events: int) -> dict:
    """Write units of the recorded order deliveries, per event and by item type."""
    from bench.cost import write_units

    wru = write_units(rec.writes)
    sizes: dict[str, list[int]] = {}
    counts: dict[str, int] = {}
    for w in rec.writes:
        key = w["type"] or w["kind"]
        counts[key] = counts.get(key, 0) + 1
        if w["bytes"] is not None:
            sizes.setdefault(key, []).append(w["bytes"])
    return {"events": events, "wru_per_event": wru["total"] / events,
            "wru_by_item_type": {k: v / events for k, v in sorted(wru["by_type"].items())},
            "items_by_type": {k: v / events for k, v in sorted(counts.items())},
            "item_bytes_by_type": {k: round(sum(v) / len(v)) for k, v in sorted(sizes.items())},
            "items_per_transaction": (sum(rec.transact_items) / len(rec.transact_items)
                                      if rec.transact_items else 0),
            "requests_by_operation": {k: v / events for k, v in sorted(rec.calls.items())}}


def _check_projections(account_id: str, customer_id: str, n: int) -> dict:
    """The stored summary and order entries agree with the record derived from every fact
    (the reliability suite's check); their stored sizes."""
    from test_reliability_helpers import projections_agree

    items = _bare_query(customer_id, keep=True)["items_list"]
    projections_agree(account_id, customer_id, items)
    by_type: dict[str, list[int]] = {}
    for item in items:
        by_type.setdefault(item.get("T", {}).get("S"), []).append(ddbhooks.item_size(item))
    assert len(by_type.get("OrderEntry", [])) == n, (n, len(by_type.get("OrderEntry", [])))
    assert len(by_type.get("Summary", [])) == 1, by_type.keys()
    return {"items_by_type": {k: len(v) for k, v in sorted(by_type.items())},
            "bytes_by_type": {k: round(sum(v) / len(v)) for k, v in sorted(by_type.items())},
            "max_bytes_by_type": {k: max(v) for k, v in sorted(by_type.items())}}


def _customer(shop, n: int, tag: str) -> dict:
    """A customer of ``shop`` with ``n`` one-time orders; its ids and how it was built."""
    from stripe_events import Stream

    from chalicelib.records.service import get_record, normalize_email
    from chalicelib.store.customers import find_by_email

    email = f"orders{n}-{tag}@example.com"
    s = Stream(f"po{n}{tag}")
    cus = s.customer(email, "Zoë Łukasiewicz")
    for i in range(n):
        s.t += 3600
        s.one_time(cus, 1900 + i % 50 * 100, currency="eur", email=email)
    by_webhook = s.events[:1 + min(n, WEBHOOK_ORDERS)]
    rest = s.events[len(by_webhook):]
    t0 = time.perf_counter()
    with quiet():
        shop.merchant.deliver_until_applied(by_webhook[:1])
    with ddbhooks.recording(this_thread_only=True) as rec, quiet():
        shop.merchant.deliver_until_applied(by_webhook[1:])
    webhook_seconds = time.perf_counter() - t0
    customer_id = find_by_email(shop.merchant.account_id, normalize_email(email))
    assert customer_id, "the customer's record was not created"
    direct = None
    if rest:
        if time.monotonic() > _deadline:
            raise RuntimeError("portal seeding over its time budget")
        direct = _apply_directly(shop.merchant.account_id, customer_id, rest)
    record = get_record(shop.merchant.account_id, customer_id, consistent=True)
    assert len(record["orders"]) == n, (n, len(record["orders"]))
    stored = _check_projections(shop.merchant.account_id, customer_id, n)
    paid = [p["id"] for p in record["payments"] if p["status"] == "succeeded"]
    return {"orders": n, "email": email, "customer_id": customer_id, "payments": paid,
            "order_ids": [o["id"] for o in record["orders"]],  # newest first
            "by_webhook": len(by_webhook), "webhook_seconds": webhook_seconds,
            "write_side": _write_side(rec, len(by_webhook) - 1) if n else None,
            "stored": stored, "direct": direct}


_deadline = 0.0


# ------------------------------------------------------------------------ measuring


def _signed_in_browser(client, stack, shop, email: str):
    from portal_helpers import PortalClient, sign_in

    browser = PortalClient(client.http)
    with quiet():
        sign_in(browser, shop, email, stack.sent_emails)
    return browser


def _order_links(body: str, root: str) -> list[str]:
    return re.findall(rf'href="{re.escape(root)}/orders/([^"/?#]+)"', body)


def _page(browser, path: str) -> tuple[object, float, ddbhooks.Recorder, list[dict]]:
    """One recorded GET: the response, its seconds, its DynamoDB calls, its Query requests."""
    with ddbhooks.recording(this_thread_only=True) as rec, _captured_queries() as queries, quiet():
        t0 = time.perf_counter()
        r = browser.get(path)
        seconds = time.perf_counter() - t0
    assert r.status_code == 200, (path, r.status_code)
    return r, seconds, rec, queries


def _the_query(queries: list[dict]) -> dict:
    assert len(queries) == 1, f"{len(queries)} Query requests for one page"
    return queries[0]


def _repeat(targets: dict[str, tuple]) -> dict:
    """``targets``: key → (browser, path, captured Query). ``WARMUP`` rounds, discarded, then
    ``REPEAT`` rounds; in each round every target once, in turn, each request right after a
    bare replay of its own Query (not recorded). Interleaved, so figures of different
    targets (and their ratios) are taken under the same conditions on a shared machine."""
    out = {k: {"samples": [], "floor": [], "calls": {}, "rru": 0.0, "ddb": [], "bare": None}
           for k in targets}
    for round_ in range(WARMUP + REPEAT):
        for key, (browser, path, query) in targets.items():
            o = out[key]
            with ddbhooks.paused():
                t0 = time.perf_counter()
                o["bare"] = _replay(query)
                floor = time.perf_counter() - t0
            _, seconds, rec, _ = _page(browser, path)
            if round_ < WARMUP:
                continue
            o["floor"].append(floor)
            o["samples"].append(seconds)
            for op, c in rec.calls.items():
                o["calls"][op] = o["calls"].get(op, 0) + c
            o["rru"] += rec.read_units
            o["ddb"].append(rec.seconds)
    return {key: {
        "requests_per_page": sum(o["calls"].values()) / REPEAT,
        "requests_by_operation": {k: v / REPEAT for k, v in sorted(o["calls"].items())},
        "query_pages_per_page": o["calls"].get("Query", 0) / REPEAT,
        "rru_per_page_engine": o["rru"] / REPEAT,
        # Median, as the page's time: a few slow calls would lift a mean over the page's median.
        "ddb_ms_per_page": statistics.median(o["ddb"]) * 1000,
        "ddb_ms_per_page_mean": statistics.fmean(o["ddb"]) * 1000,
        "time": summary(o["samples"]), "bare_query": summary(o["floor"]),
        "bare_query_read": o["bare"], "bare_query_shape": _shape(targets[key][2]),
        "vs_bare_query": statistics.median(o["samples"]) / statistics.median(o["floor"]),
    } for key, o in out.items()}


def _overview_checked(browser, shop, customer: dict) -> dict:
    """Visit the overview once (warm: the portal's account cache, templates), check what it
    shows, capture its Query; time the old whole-collection read, for context."""
    from chalicelib.portal.service import OVERVIEW_ORDERS
    from chalicelib.store.customers import _OVERVIEW_PAGE_SLACK

    n, path = customer["orders"], shop.root
    first, _, _, queries = _page(browser, path)
    body = first.body.decode()
    assert "/sign-out" in body
    query = _the_query(queries)
    assert (query.get("ScanIndexForward") is False and query.get("ConsistentRead") is True
            and query.get("Limit") == OVERVIEW_ORDERS + 1 + _OVERVIEW_PAGE_SLACK), _shape(query)
    shown = _order_links(body, shop.root)
    assert shown == customer["order_ids"][:OVERVIEW_ORDERS], (len(shown), n)
    all_link = f'href="{shop.root}/orders"' in body and f"All {n} orders" in body
    assert all_link == (n > OVERVIEW_ORDERS), (n, all_link)
    with ddbhooks.paused():
        whole, whole_s = None, []
        for _ in range(COLLECTION_N):
            t0 = time.perf_counter()
            whole = _bare_query(customer["customer_id"])
            whole_s.append(time.perf_counter() - t0)
    return {
        "target": (browser, path, query),
        "orders": n, "orders_shown": len(shown), "all_orders_link": all_link,
        "page_bytes": len(first.body),
        "collection": {**whole, "time": summary(whole_s)},
        "seeded": {k: customer[k] for k in ("by_webhook", "webhook_seconds", "direct")},
    }


def _orders_walk(browser, shop, customer: dict) -> dict:
    """Follow the orders pages' "Older orders" links from the first page to the last, once
    each; check that together they list every order once, newest first."""
    from chalicelib.portal.service import ORDERS_PAGE

    root = shop.root
    next_link = re.compile(rf'href="{re.escape(root)}/orders\?after=([A-Za-z0-9_-]+)" rel="next"')
    path, listed, walk = f"{root}/orders", [], []
    t_walk = time.perf_counter()
    for _ in range(WALK_PAGES_MAX):
        r, seconds, rec, queries = _page(browser, path)
        body = r.body.decode()
        ids = _order_links(body, root)
        listed += ids
        walk.append({"path": path, "orders": len(ids), "requests": rec.total,
                     "queries": rec.calls.get("Query", 0), "rru": rec.read_units,
                     "ms": seconds * 1000, "query": _the_query(queries)})
        found = next_link.search(body)
        if not found:
            break
        path = f"{root}/orders?after={found.group(1)}"
    else:
        raise AssertionError("the orders pages never ended")
    walk_seconds = time.perf_counter() - t_walk
    assert listed == customer["order_ids"], (
        f"the orders pages list {len(listed)} orders ({len(set(listed))} distinct), "
        f"the record {len(customer['order_ids'])}")
    assert all(p["orders"] == ORDERS_PAGE for p in walk[:-1]) and 0 < walk[-1]["orders"] <= ORDERS_PAGE
    requests = [p["requests"] for p in walk]
    first, last = walk[0], walk[-1]
    return {
        "targets": {"first": (browser, first["path"], first["query"]),
                    "last": (browser, last["path"], last["query"])},
        "orders": customer["orders"], "page_size": ORDERS_PAGE, "pages": len(walk),
        "all_listed_once_in_order": True,  # asserted above
        "walk": {"seconds": walk_seconds, "requests_min": min(requests),
                 "requests_max": max(requests), "requests_mean": statistics.fmean(requests),
                 "queries_max": max(p["queries"] for p in walk),
                 "rru_max": max(p["rru"] for p in walk),
                 "ms_median": statistics.median(p["ms"] for p in walk)},
    }


def _receipt_pdf(shop, customer: dict) -> dict:
    """build_pdf on a typical receipt: the first build in this process, then warm builds."""
    from chalicelib.portal import service as portal_service
    from chalicelib.receipts import service as receipts
    from chalicelib.records.service import get_record

    fpdf_loaded_before = "fpdf" in sys.modules
    portal = portal_service.portal_for_slug(shop.slug)
    record = get_record(shop.merchant.account_id, customer["customer_id"], consistent=True)
    payment = receipts.receipt_payment(record, customer["payments"][0])
    doc = receipts.document(portal.brand, record, payment, portal.locale)
    t0 = time.perf_counter()
    from chalicelib.receipts.pdf import build_pdf

    pdf = build_pdf(doc)
    first_ms = (time.perf_counter() - t0) * 1000
    samples, sizes = [], set()
    for _ in range(PDF_N):
        t0 = time.perf_counter()
        out = build_pdf(doc)
        samples.append(time.perf_counter() - t0)
        sizes.add(len(out))
    assert pdf[:5] == b"%PDF-", pdf[:16]
    return {"first_build_ms": first_ms, "fpdf_imported_before": fpdf_loaded_before,
            "warm": summary(samples), "bytes": len(pdf), "sizes_seen": sorted(sizes),
            "lines": len(doc["receipt"]["lines"]), "pages": len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))}


def _receipt_route(browser, shop, customer: dict) -> dict:
    """GET /receipts/<id>/pdf: the first request per payment builds and stores the PDF
    (S3: HEAD miss, PUT), later ones find its fingerprint and only presign (S3: HEAD)."""
    ids = customer["payments"][:RECEIPT_ROUTE_N]
    first, again = [], []
    location = None
    with ddbhooks.recording(this_thread_only=True) as rec_first, quiet():
        for pid in ids:
            t0 = time.perf_counter()
            r = browser.get(f"{shop.root}/receipts/{pid}/pdf")
            first.append(time.perf_counter() - t0)
            assert r.status_code in (302, 303), (r.status_code, r.body[:200])
            location = r.headers.get("Location") or r.headers.get("location")
    with ddbhooks.recording(this_thread_only=True) as rec_again, quiet():
        for _ in range(3):
            for pid in ids:
                t0 = time.perf_counter()
                r = browser.get(f"{shop.root}/receipts/{pid}/pdf")
                again.append(time.perf_counter() - t0)
                assert r.status_code in (302, 303), r.status_code
    fetched = None
    if location:  # the presigned URL, from moto (loopback): is it the PDF?
        try:
            import requests

            session = requests.Session()
            session.trust_env = False
            got = session.get(location, timeout=10)
            fetched = {"status": got.status_code, "bytes": len(got.content),
                       "is_pdf": got.content[:5] == b"%PDF-"}
        except Exception as exc:  # noqa: BLE001 (optional check: say why it is missing)
            fetched = {"error": f"{type(exc).__name__}: {exc}"}

    def other(rec, n):
        return {svc: calls / n for svc, (calls, _) in sorted(rec.other.items())}

    return {"payments": len(ids), "first": summary(first), "again": summary(again),
            "first_ddb": {k: v / len(ids) for k, v in sorted(rec_first.calls.items())},
            "again_ddb": {k: v / len(again) for k, v in sorted(rec_again.calls.items())},
            "first_other_calls": other(rec_first, len(ids)),
            "again_other_calls": other(rec_again, len(again)),
            "first_other_ms": sum(s for _, s in rec_first.other.values()) * 1000 / len(ids),
            "again_other_ms": sum(s for _, s in rec_again.other.values()) * 1000 / len(again),
            "download": fetched}


def run(stack=None, client=None) -> dict | None:
    global _deadline
    if stack is None or client is None:
        print("run through `python -m bench --only portal` (it starts the stack)")
        return None
    from portal_helpers import make_shop

    from bench.__main__ import machine
    from chalicelib.portal.service import ORDERS_PAGE, OVERVIEW_ORDERS

    ddbhooks.install()
    _deadline = time.monotonic() + SEED_SECONDS_MAX
    shop = make_shop(client, stack)
    tag = f"{int(time.time())}"
    out: dict = {"repeat": REPEAT, "webhook_orders_max": WEBHOOK_ORDERS,
                 "machine": machine(), "goal_requests": GOAL_REQUESTS,
                 "overview_orders": OVERVIEW_ORDERS}
    customers = {}
    for n in ORDERS:
        log(f"portal: a customer with {n:,} one-time orders")
        customers[n] = _customer(shop, n, tag)
    # PDF first, so "first build" is this process's first (fpdf import, font parsing).
    log(f"portal: receipt PDF ({PDF_N} builds)")
    out["pdf"] = _receipt_pdf(shop, customers[ORDERS[0]])
    browsers = {n: _signed_in_browser(client, stack, shop, customers[n]["email"]) for n in ORDERS}
    log("portal: overview, once per customer (checks; the old whole-collection read)")
    checked = {n: _overview_checked(browsers[n], shop, customers[n]) for n in ORDERS}
    log(f"portal: overview, {REPEAT} rounds over {len(ORDERS)} customers, each request after "
        "a bare replay of its Query")
    timed = _repeat({str(n): c.pop("target") for n, c in checked.items()})
    out["overview"] = {str(n): {**c, **timed[str(n)]} for n, c in checked.items()}
    paged = [n for n in ORDERS if n > ORDERS_PAGE]
    walks = {}
    for n in paged:
        log(f"portal: orders pages of {n:,} orders, each once by its links")
        walks[n] = _orders_walk(browsers[n], shop, customers[n])
    log(f"portal: the first and the last orders page, {REPEAT} rounds")
    timed = _repeat({f"{n}:{which}": target for n, w in walks.items()
                     for which, target in w.pop("targets").items()})
    out["orders_pages"] = {}
    for n, w in walks.items():
        first, last = timed[f"{n}:first"], timed[f"{n}:last"]
        out["orders_pages"][str(n)] = {
            **w, "first": first, "last": {**last, "page": w["pages"]},
            "last_vs_first": last["time"]["median_ms"] / first["time"]["median_ms"]}
    # What the write side pays: the order deliveries of the (smallest) customer with the
    # most orders delivered as webhooks; the stored items' sizes of every customer.
    most = max(ORDERS, key=lambda n: (customers[n]["by_webhook"], -n))
    out["write_side"] = {**(customers[most]["write_side"] or {}),
                         "orders_of_customer": most}
    out["stored"] = {str(n): customers[n]["stored"] for n in ORDERS}
    from chalicelib.store import customers as customer_store

    # Items (facts and order entries) past which a container no longer keeps its copy of a
    # record for the next write (store.customers.load_for_write).
    out["write_copy_items_max"] = getattr(customer_store, "COLLECTION_CACHE_ITEMS", None)
    # The download route, for a customer with enough payments.
    big = max(ORDERS, key=lambda n: (n >= RECEIPT_ROUTE_N, -n))
    log(f"portal: receipt download route ({RECEIPT_ROUTE_N} payments)")
    out["receipt_route"] = _receipt_route(browsers[big], shop, customers[big])
    out["receipt_route"]["orders_of_customer"] = big
    ov = out["overview"]
    small = [v for k, v in ov.items() if int(k) <= 100]
    out["goal_met_up_to_100"] = all(v["requests_per_page"] <= GOAL_REQUESTS for v in small)
    out["max_query_pages"] = max(v["query_pages_per_page"] for v in ov.values())
    if "100" in ov:  # "flat beyond": page time at n orders ÷ page time at 100 (medians)
        base = ov["100"]
        out["growth_vs_100"] = {k: v["time"]["median_ms"] / base["time"]["median_ms"]
                                for k, v in ov.items() if int(k) > 100}
        out["rru_vs_100"] = {k: v["rru_per_page_engine"] / base["rru_per_page_engine"]
                             for k, v in ov.items() if int(k) > 100}
        # Bounded reads: no more Query pages per overview than at 100 orders.
        out["reads_bounded_beyond_100"] = all(
            v["query_pages_per_page"] <= base["query_pages_per_page"]
            for k, v in ov.items() if int(k) > 100)
    return out


if __name__ == "__main__":
    run()
