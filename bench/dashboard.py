"""Dashboard: the customer record page for customers with 1, 100 and 2,000 one-time orders,
and the customers search at 1,000 customers, against one bare Query each (the page's own
first Query, replayed).

Customers are built as bench/portal.py builds them (its ``_customer``: ``customer.created``
and the first orders as signed webhooks through the app, the rest with the app's own
record code written in batches, then checked). A staff owner signs in through the real
flow (e-mailed link read back from moto's SES, the confirm form with its CSRF token) and
opens ``GET /dashboard/<slug>/customers/<id>`` once per customer (checked: the newest
orders it lists; whether the whole history is on the page), then in ``BENCH_DASHBOARD_REPEAT``
rounds (after ``BENCH_PORTAL_WARMUP`` discarded), every page once per round, each right
after a bare replay of its first Query (the overview's: descending from the top of the
collection, ``SK >= ORDER#``, bounded), through the botocore client PynamoDB uses. Ratios
are of medians. DynamoDB requests per page are counted with bench/ddbhooks.py.

Search: ``BENCH_DASHBOARD_SEARCH`` customers delivered as ``customer.created`` webhooks
(bench/search.py's people), then ``GET /dashboard/<slug>/customers?q=<prefix>`` for
prefixes with several hits, each after a replay of its search-index Query.
"""
from __future__ import annotations

import os
import re
import time

from bench import ddbhooks
from bench.util import log, quiet

ORDERS = [int(x) for x in os.environ.get("BENCH_DASHBOARD_ORDERS", "1,100,2000").split(",")]
REPEAT = int(os.environ.get("BENCH_DASHBOARD_REPEAT", "20"))
SEARCH_CUSTOMERS = int(os.environ.get("BENCH_DASHBOARD_SEARCH", "1000"))
SEARCH_PREFIXES = ["ma", "an", "ko", "w"]


def _staff_browser(client, stack, shop):
    """A client signed in as the shop's owner, through the staff sign-in (link by mail)."""
    import secrets

    from dashboard_helpers import staff_sign_in
    from portal_helpers import PortalClient

    from chalicelib.staff import service as staff

    owner = f"owner-{secrets.token_hex(4)}@shop.test"
    staff.add_staff(shop.merchant.account_id, owner, "owner")
    browser = PortalClient(client.http)
    with quiet():
        staff_sign_in(browser, f"/dashboard/{shop.slug}", owner, stack.sent_emails)
    return browser


def _record_checked(browser, shop, customer: dict) -> dict:
    from bench.portal import _page
    from chalicelib.dashboard import service

    path = f"/dashboard/{shop.slug}/customers/{customer['customer_id']}"
    first, _, rec, queries = _page(browser, path)
    body = first.body.decode()
    n = customer["orders"]
    shown = re.findall(r"<code>(ord_[a-z2-7]{24})</code>", body)
    assert shown == customer["order_ids"][:service.RECORD_ORDERS], (n, len(shown))
    whole = n <= service.FULL_HISTORY_ORDERS
    assert ("Payments, newest first" in body) == whole, n
    assert (f'href="{path}/history"' in body) == (not whole), n
    return {"target": (browser, path, queries[0]), "orders": n, "page_bytes": len(first.body),
            "whole_history_on_page": whole, "first_visit_requests": rec.total,
            "first_visit_queries": len(queries)}


def _search_checked(browser, shop, prefix: str) -> dict:
    from bench.portal import _page

    path = f"/dashboard/{shop.slug}/customers?q={prefix}"
    first, _, _, queries = _page(browser, path)
    body = first.body.decode()
    hits = len(re.findall(rf'href="/dashboard/{re.escape(shop.slug)}/customers/cst_', body))
    assert hits > 1, (prefix, hits)
    return {"target": (browser, path, queries[0]), "results": hits}


def run(stack=None, client=None) -> dict | None:
    if stack is None or client is None:
        print("run through `python -m bench --only dashboard` (it starts the stack)")
        return None
    from bench import portal

    ddbhooks.install()
    portal._deadline = time.monotonic() + portal.SEED_SECONDS_MAX
    portal_repeat, portal.REPEAT = portal.REPEAT, REPEAT  # portal._repeat's rounds
    try:
        return _run(stack, client)
    finally:
        portal.REPEAT = portal_repeat


def _run(stack, client) -> dict:
    from portal_helpers import make_shop

    from bench import portal
    from bench.__main__ import machine
    from bench.search import _seed_by_webhooks
    from chalicelib.dashboard import service

    shop = make_shop(client, stack)
    tag = f"d{int(time.time())}"
    out: dict = {"repeat": REPEAT, "machine": machine(), "record_orders": service.RECORD_ORDERS,
                 "full_history_orders": service.FULL_HISTORY_ORDERS}
    customers = {}
    for n in ORDERS:
        log(f"dashboard: a customer with {n:,} one-time orders")
        customers[n] = portal._customer(shop, n, tag)
    browser = _staff_browser(client, stack, shop)
    log("dashboard: the record page, once per customer (checks)")
    checked = {n: _record_checked(browser, shop, customers[n]) for n in ORDERS}
    log(f"dashboard: the record page, {REPEAT} rounds, each after a bare replay of its Query")
    timed = portal._repeat({str(n): c.pop("target") for n, c in checked.items()})
    out["record"] = {str(n): {**c, **timed[str(n)]} for n, c in checked.items()}
    record = out["record"]
    bounded = [k for k in record if int(k) > service.FULL_HISTORY_ORDERS]
    if "100" in record and bounded:
        base = record["100"]
        out["growth_vs_100"] = {k: record[k]["time"]["median_ms"] / base["time"]["median_ms"]
                                for k in bounded}
    if bounded and "1" in record:  # "flat": a bounded page ÷ the page of a 1-order customer
        out["growth_vs_1"] = {k: record[k]["time"]["median_ms"] / record["1"]["time"]["median_ms"]
                              for k in bounded}

    log(f"dashboard: search, {SEARCH_CUSTOMERS:,} customers by webhooks")
    searched = make_shop(client, stack)
    t0 = time.perf_counter()
    _seed_by_webhooks(searched.merchant, SEARCH_CUSTOMERS)
    seeded_s = time.perf_counter() - t0
    search_browser = _staff_browser(client, stack, searched)
    checks = {p: _search_checked(search_browser, searched, p) for p in SEARCH_PREFIXES}
    timed = portal._repeat({p: c.pop("target") for p, c in checks.items()})
    out["search"] = {"customers": SEARCH_CUSTOMERS, "seed_seconds": seeded_s,
                     "prefixes": {p: {**c, **timed[p]} for p, c in checks.items()}}
    return out


if __name__ == "__main__":
    run()
