"""Portal: the overview page against one bare Query of the customer's item collection, for
customers with 1, 100 and 1,000 one-time orders (and 2,000: past one Query page); the
receipt PDF's build time and size, and the receipt download route.

Customers (one merchant account, one shop):
  * ``customer.created`` and the first orders are delivered as signed Stripe webhooks
    through the app (``payment_intent.succeeded``, one order each);
  * orders past ``BENCH_PORTAL_WEBHOOK_ORDERS`` (the 1,000-order customer) are applied with
    the app's own code in memory (``processors.stripe.translate`` → ``records.service``'s
    record state, ``_State.apply`` / ``to_write``) and written with ``BatchWriteItem`` as the
    store's own models (``FactItem``, ``PointerItem``, the profile item ``store.customers``
    builds): the same items, without 900 read-modify-write transactions of a growing
    collection. Event markers and delivery audit entries are not written for those (the
    portal never reads them). The app's record and the rendered page are then checked to
    hold every order.

Each customer signs in through the real flow (sign-in page, e-mail, link from moto's SES,
the continue form with its CSRF token). The overview (``GET /portal/<slug>``) is then
requested ``BENCH_PORTAL_REPEAT`` times, each right after one bare consistent ``Query`` of
``PK = CUST#<id>`` (every page) through the botocore client PynamoDB uses, not recorded;
ratios are of medians. DynamoDB requests per page are counted with bench/ddbhooks.py
(one ``Query`` call per page of results).
"""
from __future__ import annotations

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
GOAL_REQUESTS = 2  # "at most 2 requests up to 100 orders"


def _ddb():
    from chalicelib.settings import get_settings
    from chalicelib.store.table import TableItem

    return TableItem._get_connection().connection.client, get_settings().table_name


def _bare_query(customer_id: str) -> dict:
    """One consistent Query of the customer's collection, every page."""
    client, table = _ddb()
    pages, items, size, start = 0, 0, 0, None
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
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    return {"pages": pages, "items": items, "bytes": size}


# ------------------------------------------------------------------------- seeding


def _write_items(items: list[dict]) -> int:
    client, table = _ddb()
    requests_made = 0
    for i in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": item}} for item in items[i:i + 25]]
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
    items its transaction would have written, 25 to a BatchWriteItem."""
    from chalicelib.processors.stripe.translate import translate
    from chalicelib.records import service as records
    from chalicelib.store import customers, keys
    from chalicelib.store.table import FactItem, PointerItem

    state = records._load_live(account_id, customer_id)
    for event in events:
        translation = translate(event)
        for domain_event in translation.events:
            state.apply(domain_event)
    w = state.to_write()
    assert not (w.claim_email or w.release_email or w.repoint or w.search_put), w
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
    items = [m.serialize() for m in models]
    t0 = time.perf_counter()
    made = _write_items(items)
    return {"events": len(events), "items": len(items), "requests": made,
            "seconds": time.perf_counter() - t0}


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
        shop.merchant.deliver_until_applied(by_webhook)
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
    paid = [p["id"] for p in record["payments"] if p["status"] == "succeeded"]
    return {"orders": n, "email": email, "customer_id": customer_id, "payments": paid,
            "by_webhook": len(by_webhook), "webhook_seconds": webhook_seconds,
            "direct": direct}


_deadline = 0.0


# ------------------------------------------------------------------------ measuring


def _signed_in_browser(client, stack, shop, email: str):
    from portal_helpers import PortalClient, sign_in

    browser = PortalClient(client.http)
    with quiet():
        sign_in(browser, shop, email, stack.sent_emails)
    return browser


def _overview(browser, shop, customer: dict) -> dict:
    path = shop.root
    with quiet():
        first = browser.get(path)  # warm: the portal's account cache, templates
    body = first.body.decode()
    assert first.status_code == 200 and "/sign-out" in body, first.status_code
    shown = body.count(f"{shop.root}/orders/")
    assert shown >= customer["orders"], (shown, customer["orders"])
    samples, floor, bare = [], [], None
    with ddbhooks.recording(this_thread_only=True) as rec, quiet():
        for _ in range(REPEAT):
            with ddbhooks.paused():
                t0 = time.perf_counter()
                bare = _bare_query(customer["customer_id"])
                floor.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = browser.get(path)
            samples.append(time.perf_counter() - t0)
            assert r.status_code == 200
    return {
        "orders": customer["orders"], "orders_shown": shown, "page_bytes": len(first.body),
        "collection": bare,
        "requests_per_page": rec.total / REPEAT,
        "requests_by_operation": {k: v / REPEAT for k, v in sorted(rec.calls.items())},
        "query_pages_per_page": rec.calls.get("Query", 0) / REPEAT,
        "rru_per_page_engine": rec.read_units / REPEAT,
        "ddb_ms_per_page": rec.seconds * 1000 / REPEAT,
        "time": summary(samples), "bare_query": summary(floor),
        "vs_bare_query": statistics.median(samples) / statistics.median(floor),
        "seeded": {k: customer[k] for k in ("by_webhook", "webhook_seconds", "direct")},
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

    ddbhooks.install()
    _deadline = time.monotonic() + SEED_SECONDS_MAX
    shop = make_shop(client, stack)
    tag = f"{int(time.time())}"
    out: dict = {"repeat": REPEAT, "webhook_orders_max": WEBHOOK_ORDERS,
                 "machine": machine(), "goal_requests": GOAL_REQUESTS, "overview": {}}
    customers = {}
    for n in ORDERS:
        log(f"portal: a customer with {n:,} one-time orders")
        customers[n] = _customer(shop, n, tag)
    # PDF first, so "first build" is this process's first (fpdf import, font parsing).
    log(f"portal: receipt PDF ({PDF_N} builds)")
    out["pdf"] = _receipt_pdf(shop, customers[ORDERS[0]])
    for n in ORDERS:
        log(f"portal: overview with {n:,} orders ({REPEAT} requests, each after a bare Query)")
        browser = _signed_in_browser(client, stack, shop, customers[n]["email"])
        out["overview"][str(n)] = _overview(browser, shop, customers[n])
    # The download route, for a customer with enough payments.
    big = max(ORDERS, key=lambda n: (n >= RECEIPT_ROUTE_N, -n))
    log(f"portal: receipt download route ({RECEIPT_ROUTE_N} payments)")
    browser = _signed_in_browser(client, stack, shop, customers[big]["email"])
    out["receipt_route"] = _receipt_route(browser, shop, customers[big])
    out["receipt_route"]["orders_of_customer"] = big
    ov = out["overview"]
    small = [v for k, v in ov.items() if int(k) <= 100]
    out["goal_met_up_to_100"] = all(v["requests_per_page"] <= GOAL_REQUESTS for v in small)
    out["max_query_pages"] = max(v["query_pages_per_page"] for v in ov.values())
    if "100" in ov:  # "flat beyond": page time at n orders ÷ page time at 100 (medians)
        base = ov["100"]["time"]["median_ms"]
        out["growth_vs_100"] = {k: v["time"]["median_ms"] / base for k, v in ov.items()
                                if int(k) > 100}
    return out


if __name__ == "__main__":
    run()
