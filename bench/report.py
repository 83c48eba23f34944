# ruff: noqa: E501  (markdown templates: a table row is one line)
"""docs/benchmarks.md from one run's results (bench/__main__.py), and a short summary."""
from __future__ import annotations

from bench.cost import ASSUMPTIONS, INIT_BILLING_SOURCE, LABELS, PRICES, PRICES_DATE, REGION

GOALS = {"steady_requests": 2.0, "vs_putitem": 2.0, "search_ratio": 1.5, "cold_ratio": 1.3,
         "zip_mb": 5.0, "portal_requests": 2.0, "portal_flat": 1.5}


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _f(x, digits=1) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def _mb(n) -> str:
    return f"{n / 1e6:.1f} MB" if n is not None else "–"


def goals(r: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    w = r.get("webhooks")
    if w:
        steady = w["steady"]["requests_per_event"]
        rows.append(("Webhook, steady path: DynamoDB requests per event",
                     f"≤ {GOALS['steady_requests']:g}", f"{steady:g} (warm container)",
                     _met(steady <= GOALS["steady_requests"])))
        ratio = w["ratios"]["steady_vs_putitem"]
        rows.append(("Webhook, steady path: app time per event ÷ one bare PutItem",
                     f"≤ {GOALS['vs_putitem']:g}x", f"{ratio:.1f}x", _met(ratio <= GOALS["vs_putitem"])))
    s = r.get("search")
    if s:
        rows.append((f"Search `?q=`: {s['large']['customers']:,} ÷ {s['small']['customers']:,} "
                     "customers (mean of medians over the prefixes)",
                     f"≤ {GOALS['search_ratio']:g}", f"{s['ratio']:.2f} (worst prefix {s['max_ratio']:.2f})",
                     _met(s["ratio"] <= GOALS["search_ratio"])))
        queries = {p: v["requests_per_search"].get("Query", 0) for p, v in s["large"]["by_prefix"].items()}
        one = all(q == 1 for q in queries.values())
        rows.append(("Search: index queries per search", "1", "1" if one else str(queries), _met(one)))
    c = r.get("coldstart")
    if c:
        for label, key in (("source copy", "source"), ("unpacked zip, Lambda-like", "zip")):
            ratio = c[key]["ratio_process"]
            rows.append((f"Cold start: `import app` ÷ `import boto3`, whole process ({label})",
                         f"≤ {GOALS['cold_ratio']:g}x", f"{ratio:.2f}x", _met(ratio <= GOALS["cold_ratio"])))
        pkg = c["package"]
        rows.append(("Deployment zip", f"≤ {GOALS['zip_mb']:g} MB",
                     f"{_mb(pkg['before_bytes'])} → {_mb(pkg['after_bytes'])}",
                     _met(pkg["after_bytes"] <= GOALS["zip_mb"] * 1e6)))
    p = r.get("portal")
    if p and p.get("overview"):
        ov = p["overview"]
        small = {k: v for k, v in ov.items() if int(k) <= 100}
        worst = max(v["requests_per_page"] for v in small.values())
        rows.append((f"Portal overview, up to 100 orders: DynamoDB requests per page "
                     f"({', '.join(f'{int(k):,}' for k in small)} orders)",
                     f"≤ {GOALS['portal_requests']:g}",
                     ", ".join(f"{v['requests_per_page']:g}" for v in small.values())
                     + f" ({_ops(small[max(small, key=int)]['requests_by_operation'])})",
                     _met(worst <= GOALS["portal_requests"])))
        base = ov.get("100")
        for k, growth in (p.get("growth_vs_100") or {}).items():
            v = ov[k]
            pages, base_pages = v["query_pages_per_page"], base["query_pages_per_page"]
            rows.append((f"Portal overview, {int(k):,} orders: flat beyond 100 by paging "
                         "(page time ÷ page time at 100 orders, medians; Query pages per page)",
                         f"≤ {GOALS['portal_flat']:g}x, Query pages as at 100",
                         f"{growth:.2f}x; {v['requests_per_page']:g} requests, {pages:g} Query "
                         f"page{'s' if pages != 1 else ''} ({base_pages:g} at 100), "
                         f"{_f(v['rru_per_page_engine'], 0)} RRU ({_f(base['rru_per_page_engine'], 0)} at 100); "
                         f"{v['orders_shown']:,} newest orders shown, all {int(k):,} on the orders pages",
                         _met(growth <= GOALS["portal_flat"] and pages <= base_pages)))
    return rows


def summary(r: dict) -> str:
    lines = ["", "Goals (this run):"]
    for what, goal, got, met in goals(r):
        lines.append(f"  {what}: {got} (goal {goal}) {met.strip('*')}")
    cw = r.get("cost_webhooks")
    if cw:
        lines.append(f"  Cost per million webhook events: ${cw['total_usd_per_million']:.2f}")
    cs = r.get("cost_signin")
    if cs:
        lines.append(f"  Cost per thousand portal sign-ins: ${cs['total_usd_per_thousand']:.3f}"
                     + ("" if cs["measured"] else " (estimate)"))
    return "\n".join(lines)


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _ops(d: dict) -> str:
    return ", ".join(f"{op} {n:g}" for op, n in sorted(d.items())) or "–"


def render(r: dict) -> str:
    m = r["machine"]
    parts = [f"""# Benchmarks

Every figure below comes from **one run** of `make bench` (`.venv/bin/python -m bench`) on
the machine described here, against a local stack the bench starts itself: **DynamoDB
Local** (never moto) for everything DynamoDB, moto for SES, localstripe idle. Absolute
times are this machine's and it is shared and noisy (2 cores, other jobs running), so the
goals are stated and judged as **ratios inside the run** and as **counts** (DynamoDB
requests per operation, bytes), which do not depend on the machine. The bench never
asserts a time; tests never time anything.

- Run: {m['date']}, {r['seconds'] / 60:.0f} minutes{' (quick sizes)' if r.get('quick') else ''}.
- Machine: {m['cores']} cores ({m['cpu'] or 'unknown CPU'}), {m['memory']}, {m['os']};
  Python {m['python']}; {m['java']}; DynamoDB Local 3.3.1 in memory.
- Reproduce: `make bench` (about {max(1, round(r['seconds'] / 60))} minutes; raw results in
  `build/bench/results.json`); one part: `python -m bench --only webhooks` (parts: coldstart,
  webhooks, search, signin, portal, dashboard); a smoke run: `python -m bench --quick`. The full run
  rewrites this file.
- DynamoDB requests are counted with botocore's own event hooks on the client PynamoDB
  builds (`before-call` per API call, `before-send` per HTTP attempt, `after-call` for the
  consumed capacity): `bench/ddbhooks.py`, also used by the reliability tests to inject faults.

## Goals
""", _table(["what", "goal", "this run", ""], [list(g) for g in goals(r)])]

    w = r.get("webhooks")
    if w:
        parts.append(_webhooks(w))
    s = r.get("search")
    if s:
        parts.append(_search(s))
    c = r.get("coldstart")
    if c:
        parts.append(_coldstart(c))
    if r.get("cost_webhooks") or r.get("cost_signin"):
        parts.append(_cost(r))
    p = r.get("portal")
    parts.append(_portal(p, m, r.get("webhooks")) if p and p.get("overview") else """## Portal

Not measured in this run (`python -m bench --only portal`). The sign-in flow's requests
used for the cost above are measured by `bench/signin.py` (best effort: if the flow
changes shape it falls back to the estimate in `bench/cost.py` and this file says so).
""")
    d = r.get("dashboard")
    if d and d.get("record"):
        parts.append(_dashboard(d, m))
    if r.get("exports"):
        parts.append(render_exports(r["exports"]))
    parts.extend(filter(None, (section_of(h) for h in SEPARATE_RUN_HEADINGS)))
    return "\n".join(parts)


def _dashboard(d: dict, m: dict) -> str:
    """The dashboard's record page and search (bench/dashboard.py)."""
    dm = d.get("machine") or {}
    when = (f"Measured in a separate run (`python -m bench --only dashboard`, {dm.get('date')}, "
            "same machine); its ratios are inside that run."
            if dm.get("date") and dm.get("date") != m.get("date") else "Measured in this run.")
    rows = []
    for k, v in d["record"].items():
        rows.append([f"{int(k):,}", "whole record" if v["whole_history_on_page"] else "bounded",
                     f"{v['requests_per_page']:g}", _ops(v["requests_by_operation"]),
                     f"{v['rru_per_page_engine']:g}", _f(v["time"]["median_ms"]),
                     _f(v["bare_query"]["median_ms"], 2), f"{v['vs_bare_query']:.1f}x",
                     f"{v['page_bytes']:,}"])
    growth = d.get("growth_vs_1") or {}
    growth_100 = d.get("growth_vs_100") or {}
    search_rows = []
    s = d.get("search") or {}
    for prefix, v in (s.get("prefixes") or {}).items():
        search_rows.append([f"`{prefix}`", v["results"], f"{v['requests_per_page']:g}",
                            _ops(v["requests_by_operation"]), _f(v["time"]["median_ms"]),
                            _f(v["bare_query"]["median_ms"], 2), f"{v['vs_bare_query']:.1f}x"])
    beyond = "; ".join(f"{int(k):,} orders: {x:.2f}x the page of 1 order, "
                       f"{growth_100.get(k, 0):.2f}x the page of 100 (which reads the whole record)"
                       for k, x in growth.items()) or "–"
    return f"""## Dashboard

{when} `bench/dashboard.py`: a staff owner signed in through the real flow opens
`GET /dashboard/<slug>/customers/<id>` for customers with {", ".join(f"{int(k):,}" for k in d["record"])}
one-time orders, {d['repeat']} rounds each after a bare replay of the page's first `Query`
(the record's overview: descending from the top of the collection, bounded). Up to
{d['full_history_orders']} orders the page also reads the whole record (payment history,
purchases by product, disputes, total paid per subscription on the page); beyond, those
live on the customer's history page and the record page reads only bounded items: the
overview, the newest {d['record_orders']} orders' end (for "Older orders"), one page of the
e-mail history and one of the timeline.

""" + _table(["orders", "reads", "DynamoDB requests / page", "by operation", "read units (engine)",
              "page ms (median)", "bare Query ms", "page ÷ bare Query", "HTML bytes"], rows) + f"""

Past the limit the page is flat (median page times): {beyond}. Up to the limit the page
grows with the history it reads whole (payment history, purchases): a bounded read of
those needs projections of the payments like the order entries (not built yet).

Search at {s.get('customers', 0):,} customers (`GET /dashboard/<slug>/customers?q=<prefix>`;
the 100,000-customer figures of the merchant API's search are in the Search section, which
this page's search calls):

""" + _table(["prefix", "results", "DynamoDB requests", "by operation", "page ms (median)",
              "bare Query ms", "page ÷ bare Query"], search_rows) + "\n"


def _portal(p: dict, m: dict, webhooks: dict | None = None) -> str:
    ov = p["overview"]
    pm = p.get("machine") or {}
    separate = (f"Measured in a separate run (`python -m bench --only portal`, {pm.get('date')}, "
                "same machine), merged into this file's results; its ratios are inside that run."
                if pm.get("date") and pm.get("date") != m.get("date") else "Measured in this run.")
    growth = p.get("growth_vs_100") or {}
    rows = []
    for k, v in ov.items():
        c, bare = v["collection"], v.get("bare_query_read") or {}
        rows.append([f"{int(k):,}", f"{v['orders_shown']:,}",
                     f"{v['requests_per_page']:g} ({_ops(v['requests_by_operation'])})",
                     f"{v['query_pages_per_page']:g}", _f(v["rru_per_page_engine"], 0),
                     _f(v["time"]["median_ms"], 1), _f(v["ddb_ms_per_page"], 1),
                     f"{_f(v['bare_query']['median_ms'], 1)} ({bare.get('items', '–')} items, {bare.get('bytes', 0) / 1000:,.0f} KB)",
                     f"{v['vs_bare_query']:.1f}x",
                     f"{growth[k]:.2f}x" if k in growth else ("1x" if k == "100" else "–"),
                     f"{v['page_bytes'] / 1000:,.0f} KB",
                     f"{c['items']:,} / {c['bytes'] / 1000:,.0f} KB / {c['pages']} · {_f(c['time']['median_ms'], 1) if c.get('time') else '–'} ms"])
    small = {k: v for k, v in ov.items() if int(k) <= 100}
    met_small = all(v["requests_per_page"] <= GOALS["portal_requests"] for v in small.values())
    big = {k: v for k, v in ov.items() if int(k) > 100}
    base = ov.get("100")
    flat = bool(big) and base is not None and all(
        growth.get(k, 99) <= GOALS["portal_flat"]
        and v["query_pages_per_page"] <= base["query_pages_per_page"] for k, v in big.items())
    largest = ov[max(ov, key=int)]
    q = largest.get("bare_query_shape") or {}
    n_shown = p.get("overview_orders", 10)
    seeded = next((v["seeded"]["direct"] for v in ov.values() if v["seeded"].get("direct")), None)
    # the orders pages
    op = p.get("orders_pages") or {}
    op_rows = []
    for k, v in op.items():
        f, last, w = v["first"], v["last"], v["walk"]
        reqs = f"{w['requests_min']:g}" if w["requests_min"] == w["requests_max"] else f"{w['requests_min']:g}–{w['requests_max']:g}"
        op_rows.append([f"{int(k):,}", f"{v['pages']} × {v['page_size']}", reqs,
                        f"{f['requests_per_page']:g} / {last['requests_per_page']:g}",
                        f"{_f(f['rru_per_page_engine'], 0)} / {_f(last['rru_per_page_engine'], 0)}",
                        f"{_f(f['time']['median_ms'], 1)} ({f['vs_bare_query']:.1f}x)",
                        f"{last['page']}: {_f(last['time']['median_ms'], 1)} ({last['vs_bare_query']:.1f}x)",
                        f"{v['last_vs_first']:.2f}x"])
    op_table = _table(["orders", "pages", "requests/page (every page, once)", "requests/page (first / last, timed)",
                       "RRU/page (first / last)", "first page ms (÷ its bare Query)",
                       "last page: ms (÷ its bare Query)", "last ÷ first"], op_rows) if op_rows else ""
    lq = (next(iter(op.values()))["last"].get("bare_query_shape") or {}) if op else {}
    # the write side
    ws = p.get("write_side") or {}
    stored = (p.get("stored") or {}).get(max(ov, key=int)) or {}
    sb = stored.get("bytes_by_type") or {}
    wt = ws.get("wru_by_item_type") or {}
    extra = wt.get("OrderEntry", 0) + wt.get("Summary", 0)
    summary_writes = (ws.get("items_by_type") or {}).get("Summary", 0)
    steady = ((webhooks or {}).get("steady") or {}).get("wru_by_item_type") or {}
    steady_line = (f" On the steady webhook path (renewals, subscription updates; *Webhooks*) the "
                   f"summary costs {steady.get('Summary', 0):.1f} and order entries "
                   f"{steady.get('OrderEntry', 0):.1f} WRU per event."
                   if "Summary" in steady or "OrderEntry" in steady else "")
    def _n(x, word):
        return f"{x:g} {word}{'' if x == 1 else 's'}"

    summary_said = (f"was written {summary_writes:g} times per order event"
                    if summary_writes else "was not rewritten by any of these order events")
    write_side = (f"""**What the write side pays.** Measured on the {ws['events']} order deliveries of
the {ws['orders_of_customer']:,}-order customer (webhooks through the app): each
`payment_intent.succeeded` took {_n(sum((ws.get('requests_by_operation') or {}).values()), 'request')} ({_ops(ws.get('requests_by_operation') or {})}; {ws['items_per_transaction']:.0f} items written),
{ws['wru_per_event']:.1f} WRU ({', '.join(f'{t} {u:g}' for t, u in sorted(wt.items(), key=lambda kv: -kv[1]))}).
The order's entry is {ws['item_bytes_by_type'].get('OrderEntry', 0):,} B, so {wt.get('OrderEntry', 0):g} WRU (inside a transaction
every item costs 2 WRU per started KB): {extra:g} of the {ws['wru_per_event']:.1f} WRU per order
({extra / ws['wru_per_event'] * 100:.0f}%), and {sb.get('OrderEntry', 0):,} B more stored per order. The summary item
({sb.get('Summary', 0):,} B for these customers, who have no subscriptions or cards; 2 WRU when
written) {summary_said}: one-time orders do not change it; subscriptions, plans, failed
payments and cards do. A later change of an order (a refund, a subscription's status)
rewrites its entry, 2 WRU more.{steady_line}
""" if ws.get("events") else "")
    entries_bytes = sb.get("OrderEntry", 0) * int(max(ov, key=int))
    rest_bytes = largest["collection"]["bytes"] - entries_bytes
    growth_of_read = (f" and that the order entries make {entries_bytes / rest_bytes * 100:.0f}% larger "
                      f"({sb.get('OrderEntry', 0):,} B per order next to its {sb.get('Fact', 0):,}-byte payment fact)"
                      if entries_bytes and rest_bytes > 0 else "")
    cap = p.get("write_copy_items_max")
    copy_line = (f" A container keeps its copy of a record it wrote up to {cap} facts and order entries "
                 f"(`store.customers.load_for_write`); past that ({cap // 2} one-time orders, now that each "
                 "order has an entry) every event reads the whole collection again" if cap
                 else " Every event reads it")
    copy_line += (f", a read that grows with the history{growth_of_read}." if growth_of_read
                  else ", a read that grows with the history.")
    pdf, route = p["pdf"], p["receipt_route"]
    dl = route.get("download") or {}
    other_first = ", ".join(f"{svc} {n:g}" for svc, n in route["first_other_calls"].items()) or "–"
    other_again = ", ".join(f"{svc} {n:g}" for svc, n in route["again_other_calls"].items()) or "–"
    big_lines = " ".join(
        f"At {int(k):,} orders: {growth.get(k, 0):.2f}x the time at 100, {v['requests_per_page']:g} requests, "
        f"{v['query_pages_per_page']:g} Query page, {_f(v['rru_per_page_engine'], 0)} RRU; reading the whole "
        f"collection, as the overview did before, would now be {v['collection']['items']:,} items "
        f"({v['collection']['bytes'] / 1e6:.2f} MB, the order entries included) in "
        f"{v['collection']['pages']} Query page{'s' if v['collection']['pages'] != 1 else ''}."
        for k, v in big.items())
    lb = largest.get("bare_query_read") or {}
    above = (p.get("stored") or {}).get(max(ov, key=int), {}).get("items_by_type") or {}
    used = sum(n for t, n in above.items() if t not in ("Fact", "OrderEntry")) + n_shown + 1
    return f"""## Portal

{separate} One merchant, one customer per size with that many one-time orders
(`payment_intent.succeeded`, one order and one payment fact each). The customer and the first
{p['webhook_orders_max']} orders were delivered as signed webhooks through the app; orders past
that were applied with the app's own code in memory (`stripe.translate`, the record state of
`records.service`) and written with `BatchWriteItem` as the items `store.customers.commit`
builds from that write, the summary and the order entries included
{f"({seeded['events']:,} orders → {seeded['items']:,} items in {seeded['requests']} requests at the largest size)" if seeded else ""}.
Each size is checked: the record holds every order, and the stored summary and order entries
agree with the record derived from all its facts (the reliability suite's
`projections_agree`). Each customer signs in through the real flow (link from moto's SES, the
continue form with its CSRF token). `GET /portal/<slug>` is then requested in {p['repeat']} rounds
(after a few discarded), every customer once per round, each request right after one bare
`Query` through the same botocore client: the very request the page sends, captured from
PynamoDB (`{q.get('KeyConditionExpression')}`, descending, `Limit` {q.get('Limit')},
consistent); times and ratios are medians. The last column is the whole collection read every page
(what the overview read before), bare, for scale.

**The design.** Each record write (the webhook's one `TransactWriteItems`) also keeps two
projections of the derived record in the customer's collection: a `Summary` item (SK
`SUMMARY`: subscriptions, plans, open payments, cards; written when it changes) and one
`OrderEntry` per order (SK `ORDER#<created>#<order id>`, written when the order changes);
payment, refund and dispute facts live under `H#PAY#…`, `H#REFUND#…`, `H#DISPUTE#…`. The sort
keys put the few items the overview needs (`SUMMARY`, `SUB#…`, `SEARCH#…`, `PROFILE`, `PM#…`)
above the order entries, newest order first, and the history below them. So the overview
(`store.customers.load_overview`) is one descending `Query` from the top, `SK >= ORDER#`, one
page of {q.get('Limit')} items at most, which stops after the {n_shown + 1}th order entry (it only says
there are more); the page shows the {n_shown} newest orders and links "All N orders" to the orders
pages. With the session's `GetItem`: 2 requests, whatever the history.

{_table(["orders", "orders shown", "requests/page", "Query pages", "RRU/page", "page ms", "in DynamoDB ms", "bare Query ms (what it reads)", "page ÷ Query", "page ÷ page at 100", "HTML", "whole collection: items / size / pages · bare ms"], rows)}

**Requests up to 100 orders: goal {'met' if met_small else 'not met'}.** The session's `GetItem` (the
merchant's portal settings are cached per container for a minute) and one `Query` page.
The time over the bare `Query` is the session read, PynamoDB's models, `overview_record`
and the template. The `Query` reads its whole `Limit` ({lb.get('items', '–')} items, {lb.get('bytes', 0) / 1000:,.0f} KB,
{_f(lb.get('rru'), 0)} of the {_f(largest['rru_per_page_engine'], 0)} RRU) where the page uses {used} (the items above the orders and
{n_shown + 1} entries): the slack of 30 keeps customers with many subscriptions and cards to one page,
at the price of a few RRU for everyone.

**Flat beyond 100 orders: {'met' if flat else 'not met'}.** {big_lines}

### Orders pages

`GET /portal/<slug>/orders`, {next(iter(op.values()))['page_size'] if op else 25} orders a page, newest first; "Older orders" (`rel="next"`)
carries `?after=<cursor>`, the last entry's sort key in base64 (opaque to the customer; it can
only name a place in their own collection). Each page is the session's `GetItem` and one `Query`
of the order entries (`{lq.get('KeyConditionExpression', 'SK BETWEEN ORDER# AND <cursor>')}`, descending, `Limit` {lq.get('Limit', 27)}:
the cursor's own entry comes back first and is skipped, one more says there is a next page).
Every page was requested once by following the links from the first to the last: together they
list each of the customer's orders exactly once, newest first, as the record has them (checked
at every size). Then the first and the last page were timed in rounds, each after a bare
replay of its own `Query`.

{op_table}

{write_side}
Still to do (product code): the order, receipt and payment pages read the whole record
(`records.get_record`, every page of the collection) to show one order or payment; a `GetItem`
of the order entry or payment fact, checked against the session's customer, would bound them
too. The webhook path derives each write from the whole collection.{copy_line}

### Receipt PDF

A typical receipt ({pdf['lines']} line, one-time order, DejaVu Sans embedded as a subset,
{pdf['pages']} page): **{pdf['bytes']:,} bytes**. `receipts.pdf.build_pdf`: first build in the
process {_f(pdf['first_build_ms'], 0)} ms (imports fpdf2, fontTools and Pillow, parses the two
fonts{'' if not pdf['fpdf_imported_before'] else '; fpdf2 was already imported'}), then
median {_f(pdf['warm']['median_ms'], 1)} ms warm (p90 {_f(pdf['warm']['p90_ms'], 1)} ms,
{pdf['warm']['n']} builds; the fonts are parsed and subset again on every build).

The download route `GET /portal/<slug>/receipts/<id>/pdf` ({route['payments']} payments of
the {route['orders_of_customer']:,}-order customer): the first request per payment builds the PDF
and stores it in S3 (moto) with its fingerprint, median **{_f(route['first']['median_ms'], 0)} ms**
(DynamoDB: {_ops(route['first_ddb'])}; calls to other services: {other_first}, the `HeadObject` miss and the `PutObject`); later requests find the
fingerprint and only presign, median **{_f(route['again']['median_ms'], 1)} ms** (DynamoDB:
{_ops(route['again_ddb'])}; other services: {other_again}, the `HeadObject`). Both answer 303 to a short-lived URL
{f"(fetched: {dl.get('status')}, {dl.get('bytes', 0):,} bytes, a PDF)" if dl.get('is_pdf') else ""}.
The route reads the whole record (every page of the collection), so at 1,000 orders it pays
what the overview used to; a receipt needs one payment fact.
"""


def _webhooks(w: dict) -> str:
    floor = w["steady"]["floor"]["median_ms"]
    rows = []
    names = {"first_sight": "first sight: `customer.created`, new e-mail",
             "first_sight_no_email": "first sight: subscription before its customer",
             "steady": "steady: `invoice.paid` / `customer.subscription.updated`, known customer",
             "steady_cold_cache": "steady, new container (caches empty)",
             "steady_stale_copy": "steady, another container wrote the record last (stale copy)",
             "duplicate": "redelivery of an applied event"}
    for key, label in names.items():
        p = w.get(key)
        if p is None:
            continue
        rows.append([label, f"{p['requests_per_event']:g}", _ops(p["requests_by_operation"]),
                     _f(p["wru_per_event"]), _f(p["rcu_per_event_engine"], 2),
                     f"{p['vs_putitem']:.1f}x", _f(p["time"]["median_ms"], 1),
                     _f(p["events_per_second"], 0)])
    steady = w["steady"]
    prof = w["profile"]
    shares = "\n".join(f"| {k} | {v * 100:.0f}% |" for k, v in prof["shares"].items())
    top = "\n".join(f"| `{t['function']}` | {t['calls']:,} | {t['tottime_ms_per_event']:.2f} |"
                    for t in prof["top_tottime"][:8])
    wru_types = ", ".join(f"{k} {v:.1f}" for k, v in sorted(
        steady["wru_by_item_type"].items(), key=lambda kv: -kv[1]))
    first_types = ", ".join(f"{k} {v:.1f}" for k, v in sorted(
        w["first_sight"]["wru_by_item_type"].items(), key=lambda kv: -kv[1]))
    sizes = ", ".join(f"{k} {v:,} B" for k, v in sorted(
        {**w["first_sight"].get("item_bytes_by_type", {}),
         **steady.get("item_bytes_by_type", {})}.items()))
    http = w.get("http") or {}
    http_line = (f"Over real HTTP through `chalice local` (one keep-alive connection), the same "
                 f"steady events take {http['time']['median_ms'] / steady['time']['median_ms']:.1f}x "
                 f"the in-process time ({_f(http['events_per_second'], 0)} events/s): `chalice "
                 "local` is a single-threaded development server, and the difference is its "
                 "HTTP handling, not the app; API Gateway and Lambda do not go through it."
                 if "time" in http else f"Over HTTP: not measured ({http.get('error', 'skipped')}).")
    ratio = w["ratios"]["steady_vs_putitem"]
    paypal = _webhooks_paypal(w.get("paypal"))
    blocks = (" An event that records a succeeding payment also reads the block items of its "
              "card and customer (one `BatchGetItem`, the blocks feature), hence "
              f"{steady['requests_by_operation']['BatchGetItem']:g} per event on this mix of "
              "payments and subscription updates."
              if steady["requests_by_operation"].get("BatchGetItem") else "")
    return f"""
## Webhooks

Through the real app (`app.app` in Chalice's in-process test client, signed Stripe events,
DynamoDB Local over HTTP). The floor is one bare `PutItem` of a ~100-byte item through the
same botocore client, timed right before each delivered event (interleaved, so both see
the same load on this shared machine); ratios are of medians. Steady-path floor:
{_f(floor, 2)} ms (in a separate run of {w['floor']['put']['n']} PutItems: median
{_f(w['floor']['put']['median_ms'], 2)} ms; GetItem {_f(w['floor']['get']['median_ms'], 2)} ms).
WRU are write request units computed from the sizes of the items actually written, by
DynamoDB's rules (see *Cost*); RRU are the read units DynamoDB Local reports.

{_table(["path", "requests/event", "by operation", "WRU/event", "RRU/event", "time ÷ PutItem (medians)", "ms (median)", "events/s"], rows)}

Steady path: {_f(steady['time']['mean_ms'], 1)} ms per event on average (median
{_f(steady['time']['median_ms'], 1)} ms), of which {_f(steady['ddb_ms_per_event'], 1)} ms
({w['ratios']['steady_ddb_share'] * 100:.0f}%) inside its DynamoDB call{'s' if steady['requests_per_event'] > 1 else ''}; {'those calls' if steady['requests_per_event'] > 1 else 'that call'}
alone take{'' if steady['requests_per_event'] > 1 else 's'} {w['ratios']['steady_ddb_vs_putitem']:.1f}x a PutItem. {http_line}

**Requests: goal met on the steady path** ({steady['requests_per_event']:g}: one
`TransactWriteItems` that writes the changed items, the event marker and the audit
entry, checking the profile's `rev`). The record is not read first: a container keeps its
copy of the records it last wrote (`store.customers.load_for_write`), and a renewal's
events (invoice, payment, charge, subscription update) come in a burst for one customer.
When another container wrote the record in between, the `rev` condition refuses the
transaction and the record is read again at once (the stale-copy row: the refused
transaction, the `Query`, the transaction again). A container that has
not seen the customer pays the pointer `GetItem` and the `Query` (and the account every
60 s); a first sight is 3 (pointer miss, e-mail claim miss, one transaction); a redelivery
is refused by the marker in its one transaction, then the "duplicate" audit entry is a
`PutItem`.{blocks}

**Time: goal {'met' if ratio <= 2 else 'not met'}** ({ratio:.1f}x a PutItem). Where it goes
(cProfile of {prof['events']} steady deliveries, shares of the time inside the test client's
`post`):

| part | share |
|---|---|
{shares}

Most expensive functions by own time, per event:

| function | calls | ms/event |
|---|---|---|
{top}

One `TransactWriteItems` of {steady['items_per_transaction']:.0f} items is the floor of
this design: a bare 5-item `TransactWriteItems` alone takes
{w['floor']['transact5_vs_put']:.1f}x a PutItem on this engine (medians, separate run;
two-phase, one condition per item). Applying an event and marking it seen in one atomic
write is the design's core guarantee (a crash leaves nothing half done, a redelivery is
refused by the same write), so **≤ 2x one PutItem is below what that one write costs
here**, however lean the Python around it. What would still take time off: fewer items per
transaction (the audit entry of an applied event could be the event marker itself; a
payment's pointers for its invoice, intent and charge could be written only when an event
needs them), and sparing a new container the pointer lookup (a record id derived from the
account and the processor's customer id).

Write units are the cost lever, not requests: {steady['wru_per_event']:.1f} WRU per steady event
({wru_types}), from items of these mean sizes: {sizes}. Inside `TransactWriteItems` every item
is billed twice, at 2 WRU per started KB, so an item of 1.1 KB costs 4 WRU where one of
0.9 KB costs 2. A first sight costs {w['first_sight']['wru_per_event']:.1f} WRU
({first_types}): the search items (one per e-mail and per word suffix of the name, each also
written to GSI2) are most of it. Done since the first run: a field's tiebreak is a
6-byte digest instead of a copy of the value (13 → 12 WRU per steady event), and a
pointer is written once per object, not again with each new fact naming it. Cheaper
still, not done: (b) GSI1 projects ALL, so every profile write is copied to the index
although its key never changes — `KEYS_ONLY`, or `INCLUDE` of the summary fields, cuts
that; likewise GSI2 for search items; (d) the audit entry of an applied event could be
the event marker itself (one item instead of two); (e) three name-suffix search terms per
customer could be one (search the first word only) or move out of the transaction.
{paypal}"""


def _webhooks_paypal(pp: dict | None) -> str:
    """PayPal's steady deliveries next to Stripe's, measured in one window (bench.webhooks
    ._paypal_vs_stripe)."""
    if not pp:
        return ""
    rows = []
    for key, label in (("stripe", "Stripe: `invoice.paid` / `customer.subscription.updated`"),
                       ("paypal", "PayPal: `PAYMENT.SALE.COMPLETED` / `BILLING.SUBSCRIPTION.UPDATED`, "
                                  "certificate cached (warm)"),
                       ("paypal_cold_certificate", "PayPal, certificate cache emptied before each "
                                                   "(fetch + chain check)")):
        p = pp[key]
        api = p.get("paypal_api_requests_per_event")
        rows.append([label, f"{p['requests_per_event']:g}", _ops(p["requests_by_operation"]),
                     "–" if api is None else f"{api:g}", _f(p["wru_per_event"]),
                     f"{p['vs_putitem']:.1f}x", _f(p["time"]["median_ms"], 1), p["events"]])
    warm, cold, stripe = pp["paypal"], pp["paypal_cold_certificate"], pp["stripe"]
    prof = pp["paypal_profile"]
    shares = "; ".join(f"{k} {v * 100:.0f}%" for k, v in prof["shares"].items())
    same = warm["requests_per_event"] == stripe["requests_per_event"]
    return f"""
### PayPal next to Stripe

Steady deliveries for known customers of one account, both processors in the same window:
blocks of {pp['block']} Stripe events and {pp['block']} PayPal events alternate, and each
event has its own bare `PutItem` timed right before it, so the ratios compare like with
like on this shared machine. PayPal's deliveries are signed by the dev stack's PayPal
stand-in beforehand (its signing is not in the time) and verified offline as PayPal's
are (SHA256withRSA over the transmission, CRC32 of the body); the certificate is already
in the container's cache, fetched and its chain checked once by the first delivery: **the
warm path**, which is what a warm container runs. The last row empties that cache before
each delivery (a new container, or a certificate PayPal rolled): one `GET` of the
certificate from PayPal's host and the chain check to the trusted root, then the same.

{_table(["path", "DynamoDB requests/event", "by operation", "PayPal API requests/event", "WRU/event", "time ÷ PutItem (medians)", "ms (median)", "events"], rows)}

**PayPal ÷ Stripe, warm: {pp['paypal_vs_stripe']:.2f}x** the time (medians; each
against its own interleaved PutItem: {warm['vs_putitem']:.1f}x and
{stripe['vs_putitem']:.1f}x), with {warm['requests_per_event']:g} DynamoDB requests per
event against Stripe's {stripe['requests_per_event']:g}{' (the same)' if same else ''} and
{warm.get('paypal_api_requests_per_event', 0):g} requests to PayPal's API: a sale names only its subscription, which the container's
pointer cache resolves as it resolves Stripe's invoice. Where a warm PayPal delivery's
time goes (cProfile of {prof['events']} more, shares of the time in the test client's
`post`): {shares}. With the certificate cache emptied a delivery takes
{cold['vs_putitem'] / warm['vs_putitem']:.1f}x the warm one (each as a multiple of its
interleaved PutItem; only {cold['events']} deliveries, so a rough figure): the fetch over
HTTPS and the chain check happen once per certificate and container, until the
certificate expires.
"""


def webhooks_section(w: dict, machine: dict, load: dict | None = None) -> str:
    """The Webhooks section alone (``python -m bench.webhooks --doc``), saying which run."""
    body = _webhooks(w).lstrip("\n")
    heading, rest = body.split("\n", 1)
    busy = (f" (1-minute load average {load['start']:g} when it started, {load['end']:g} when "
            "it ended)" if load else "")
    return (f"{heading}\n\n*Measured by `python -m bench.webhooks --doc` on {machine['date']}, "
            f"a run of this part alone on the same {machine['cores']}-core machine, shared: "
            f"other work ran meanwhile{busy}. Absolute times differ from the rest of this "
            "file's and vary; compare the ratios and counts inside this section, not times "
            "across sections. The Goals table above is from the last full run.*\n" + rest)


def _search(s: dict) -> str:
    rows = []
    for prefix in s["small"]["by_prefix"]:
        a, b = s["small"]["by_prefix"][prefix], s["large"]["by_prefix"][prefix]
        rows.append([f"`{prefix}`", a["results"], b["results"], _f(a["time"]["median_ms"], 2),
                     _f(b["time"]["median_ms"], 2), f"{s['ratio_by_prefix'][prefix]:.2f}",
                     _ops(b["requests_per_search"])])
    seed = s["large"]["seed"]
    return f"""
## Customer search

`GET /api/v1/customers?q=<prefix>` through the app, {s['small']['customers']:,} customers in one
account and {s['large']['customers']:,} in another, on the same table. The first account was
filled the way production fills it (`customer.created` webhooks through the app,
{s['small']['seed_seconds']:.0f} s); the second straight into the table with `BatchWriteItem`
({seed['items']:,} items, {seed['requests']:,} requests of 25, {seed['unprocessed_retries']}
retries of unprocessed items, {seed['seconds']:.0f} s), built with the store's own models, keys and
`records.service.search_terms`, and checked to have the same attributes and types as the
items the app wrote ({', '.join(s['shape_check']['compared_items'])}). Names and e-mails are
drawn from mixed-language name lists, so prefixes spread over the index partitions
(`ACCT#…#SEARCH#<first character>`). Each prefix: median of two interleaved rounds.

{_table(["q", "results (small)", "results (large)", "ms (small)", "ms (large)", "large ÷ small", "requests (large)"], rows)}

**Ratio {s['ratio']:.2f}: goal {'met' if s['ratio'] <= 1.5 else 'not met'}.** A search is one
`Query` of the search index (GSI2) with `begins_with` and `Limit = 3 × limit`, plus the
`GetItem` of the API key: its cost follows the page size, not the account's size.
Differences between prefixes here are noise of a shared machine (a few ms either way).
"""


def _coldstart(c: dict) -> str:
    pkg = c["package"]
    dropped = "\n".join(f"| {d['why']} | {d['files']:,} | {d['mib']:.1f} MiB |" for d in pkg["dropped"])
    groups = "\n".join(f"| {g} | {_mb(b)} |" for g, b in pkg["by_group_bytes"].items())
    z, src = c["zip"], c["source"]
    top_zip = ", ".join(f"{k} {v:.0f} ms" for k, v in list(z["importtime"]["self_ms_by_package"].items())[:8])
    top_src = ", ".join(f"{k} {v:.0f} ms" for k, v in list(src["importtime"]["self_ms_by_package"].items())[:8])
    direct = ", ".join(f"`{k}` {v:.0f} ms" for k, v in list(z["importtime"]["direct_imports_cumulative_ms"].items())[1:6])
    pdf = next((b for g, b in pkg["by_group_bytes"].items() if g.startswith("receipt PDFs")), 0)
    return f"""
## Cold start

`import app` in a fresh interpreter (`PYTHONDONTWRITEBYTECODE=1`, nothing cached from a
previous run), {src['rounds']} alternating rounds, medians; against `import boto3` alone and a bare
interpreter. *Source* ({src.get('python', 'the development Python')}): app.py and chalicelib copied without
`__pycache__`, the libraries from the virtualenv (with their .pyc). *Zip*
({z.get('python', 'the runtime')}, the function's runtime): the deployment.zip `make package`
builds, unpacked beside the SDK the runtime provides, in `python -S` (no site-packages),
as Lambda loads it: what `import app` loads is shipped compiled ({pkg['precompiled_modules']} modules, `PRECOMPILE=1`
in `infra/package.sh`; Lambda's file system is read-only, so anything not compiled in the
zip is compiled again at every cold start), everything else has no .pyc.

| set-up | `import app` | `import boto3` | bare | app ÷ boto3 (process) | app ÷ boto3 (import only) |
|---|---|---|---|---|---|
| source | {_f(src['process_ms']['app'], 0)} ms | {_f(src['process_ms']['boto3'], 0)} ms | {_f(src['process_ms']['bare'], 0)} ms | {src['ratio_process']:.2f}x | {src['ratio_import']:.2f}x |
| zip (Lambda-like) | {_f(z['process_ms']['app'], 0)} ms | {_f(z['process_ms']['boto3'], 0)} ms | {_f(z['process_ms']['bare'], 0)} ms | {z['ratio_process']:.2f}x | {z['ratio_import']:.2f}x |

**Goal (≤ 1.3x): {'met' if z['ratio_process'] <= 1.3 else 'not met'} by the package Lambda runs
({z['ratio_process']:.2f}x; {'at the limit, within the noise of this machine' if abs(z['ratio_process'] - 1.3) < 0.05 else 'clear of the limit' if z['ratio_process'] < 1.3 else 'over it'}); {'met' if src['ratio_process'] <= 1.3 else 'not met'} by the source copy on
the development Python ({src['ratio_process']:.2f}x: its app modules are compiled on every run and
3.11 pays the interpreter effect below).**
What dominates, from `-X importtime` (self time summed per top-level package):
zip: {top_zip}; source: {top_src}. Under `app` (cumulative, so the first blueprint to import
PynamoDB and botocore carries them): {direct}.
boto3's own share (botocore, urllib3, dateutil, jmespath) is paid by both sides; what `app`
adds is PynamoDB (which imports botocore's client machinery), Chalice, powertools and the
app's own modules. Shipping them compiled (`infra/package.sh`, see *Deployment zip*) halved
the zip variant's import time; heavy libraries are imported only inside the code paths that
use them: {', '.join(z['importtime']['heavy_lazy']) or 'none'}; loaded by `import app` itself:
{', '.join(z['importtime']['heavy_loaded_at_import']) or 'none'}.

On python3.11 (the source copy) much of the gap is not the app's work but an interpreter
effect of *where* the bench imports from: CPython 3.11 keeps Python frames in 16 KiB chunks
and frees a chunk as soon as the stack drops below it, so code that calls in and out right
at a chunk boundary pays an `mmap`/`munmap` pair per call (python/cpython#142183).
`python -c "import app"` puts urllib3's regex compilation on that boundary (about 5,900
`munmap` calls against 15 for `import boto3`). The same imports made from 0 to
{len(z.get('by_depth', {}).get('ratio', {})) - 1 if z.get('by_depth') else '…'} nested calls deep (CPU time, medians):
{_depths(z.get('by_depth'), 'zip')}; {_depths(src.get('by_depth'), 'source')}. Packaging for python3.13
(which python3.11's deprecation required anyway) took the Lambda package from 1.54x to
about 1.3x. What would still help: creating powertools' Metrics and Logger on first use
(~5 ms, but every request uses them, so it would only move the cost into the first
request), and fewer modules on the import path (PynamoDB's model machinery and Chalice's
app object are most of what `app` adds).

## Deployment zip

`make package` (`infra/package.sh`) builds the zip with `chalice package`, then trims it and
checks the result: **{_mb(pkg['before_bytes'])} → {_mb(pkg['after_bytes'])}**
({pkg['unzipped_bytes'] / 1e6:.1f} MB unzipped). Check: {pkg['check'] or 'n/a'}.

| dropped | files | zipped |
|---|---|---|
{dropped}

- *Provided by the Lambda runtime* (`RUNTIME_PROVIDED`): boto3, botocore, s3transfer,
  jmespath, dateutil, six, urllib3 — "the Lambda Python runtimes include the AWS SDK for
  Python (Boto3) and its dependencies" (AWS Lambda developer guide, *Working with .zip file
  archives for Python Lambda functions*; the same page warns that bundling SDK
  dependencies such as urllib3 can misalign versions with the runtime's SDK).
- *Babel locales* (`BABEL_LOCALES`): the product's `SUPPORTED_LOCALES`
  (`chalicelib/formatting.py`: English, German, French, Spanish, Italian, Dutch, Polish,
  Portuguese and their main territories) and the locales they inherit from, down to
  `root`; a merchant's other locale setting falls back to its language or to English.
- *Never loaded*: C/Cython sources and headers, caches, type stubs, pip's install records,
  wheels' `.data/` folders, powertools' Swagger UI bundle.
- *Type-checking only* (`TYPE_ONLY`): `stripe/params`, imported by stripe only under
  `TYPE_CHECKING` — verified on every build by reading stripe's own imports.
- *Never imported* (`NOT_IMPORTED`): powertools' event handlers and the utilities the app
  does not use, Babel's message-catalog tools, fontTools' font-building parts; checked on
  every build against the imports of every module kept (also inside functions and module
  names in strings).
- *Never reached* (`UNREACHED`): `stripe/events`, the classes of Stripe's v2 "thin" events,
  which stripe imports only to convert a v2 API response; the product calls the v1 API and
  the build fails if app code names the v2 API.
- *Optional imports* (`OPTIONAL_IMPORTS`): Pillow and the libraries its wheel vendors,
  which fpdf2 imports inside `try/except ImportError` for images; receipts draw none.
- *Compiled accelerators with a pure-Python twin* (`ACCELERATED_PURE`): fontTools' Cython
  `.so` files and charset_normalizer's mypyc builds.
- *Added*: {pkg['precompiled_modules']} modules compiled (+{pkg['precompiled_mib']:.1f} MiB zipped,
  `PRECOMPILE=1`): the cold-start path, as unchecked-hash `.pyc` in `__pycache__`, built only
  when the packaging Python is the function's runtime version.
- The receipt fonts in the repository are DejaVu Sans cut down to the scripts a receipt
  can print (`chalicelib/receipts/fonts/README.md`): 1.5 → 0.7 MB.

What is left:

| part | zipped |
|---|---|
{groups}

**Goal (≤ 5 MB): {'met' if pkg['after_bytes'] <= 5e6 else 'not met'}** ({_mb(pkg['after_bytes'])}). The
receipt-PDF stack (fpdf2 with fontTools, and the two fonts) is {_mb(pdf)} of it and is used
by one route; a second function for receipts would take the API function's zip to about
{_mb(pkg['after_bytes'] - pdf)} (not done: one function is simpler to run and the goal is met).
"""


def _depths(by_depth: dict | None, label: str) -> str:
    if not by_depth:
        return f"{label}: not measured"
    return (f"{label} {by_depth['ratio_min']:.2f}–{by_depth['ratio_max']:.2f}x "
            f"(median {by_depth['ratio_median']:.2f}x)")


def _cost(r: dict) -> str:
    out = [f"""
## Cost

AWS list prices for **{REGION}**, looked up on **{PRICES_DATE}** from the pages below.
**Prices change**: check them before relying on these figures. Free tiers are left out.

| price | source |
|---|---|
""" + "\n".join(f"| {LABELS[k]} | {v[2]} |" for k, v in PRICES.items())]
    cw = r.get("cost_webhooks")
    if cw:
        mix = ", ".join(f"{k.replace('_', ' ')} {v * 100:.0f}%" for k, v in cw["mix"].items())
        paths = "\n".join(
            f"| {k.replace('_', ' ')} | {p['requests']:g} | {p['wru']:.1f} | {p['rru']:.2f} | "
            f"{p['cpu_ms_here']:.1f} ms × {p['cpu_factor']:.2f} + {p['ddb_ms_aws']:.0f} ms = {p['billed_ms']} ms |"
            for k, p in cw["per_path"].items())
        lines = "\n".join(f"| {k} | ${v:,.2f} |" for k, v in cw["lines_usd_per_million"].items())
        out.append(f"""
### Per million webhook events

Measured per delivery path (requests, WRU from item sizes, RRU as DynamoDB Local reports
them, CPU time outside DynamoDB), then mixed: {mix}.

| path | requests | WRU | RRU | Lambda billed duration (CPU here × factor + DynamoDB in AWS) |
|---|---|---|---|---|
{paths}

| line | USD per million events |
|---|---|
{lines}
| **total** | **${cw['total_usd_per_million']:,.2f}** |

With an HTTP API instead of a REST API: ${cw['with_http_api_usd_per_million']:,.2f}.
DynamoDB is {cw['lines_usd_per_million']['DynamoDB (on-demand)'] / cw['total_usd_per_million'] * 100:.0f}% of it,
and within DynamoDB the write units (transactions bill each item twice): see *Webhooks*
for what would halve them.
""")
    cs = r.get("cost_signin")
    if cs:
        steps = "\n".join(
            f"| {s['step']} | {_ops(s['calls'])} | {s['wru']:.1f} | {s['rru']:.1f} | {s['emails']:g} | "
            f"{s['billed_ms']} ms{' (of which ' + format(s.get('sleep_ms', 0), '.0f') + ' ms deliberate padding)' if s.get('sleep_ms') else ''} |"
            for s in cs["steps"])
        lines = "\n".join(f"| {k} | ${v:,.4f} |" for k, v in cs["lines_usd_per_thousand"].items())
        out.append(f"""
### Per thousand portal sign-ins

{'Measured through the app (`bench/signin.py`, mean of several sign-ins)' if cs['measured'] else '**Estimated** (the flow could not be driven this run; `bench/cost.py` SIGN_IN_ESTIMATE)'}:
sign-in page, e-mail submitted (token and code written, the mail sent), link opened,
link spent (session written), overview.

| step | DynamoDB requests | WRU | RRU | e-mails | Lambda billed |
|---|---|---|---|---|---|
{steps}

| line | USD per thousand sign-ins |
|---|---|
{lines}
| **total** | **${cs['total_usd_per_thousand']:,.3f}** |

The e-mail is most of it. The sign-in `POST` waits on purpose to a fixed floor
(`login_min_response_ms`, so the answer's time does not reveal whether the address has
an account); Lambda bills that wait.
""")
    out.append(f"""
### Assumptions

- Lambda: {r.get('cost_webhooks', {}).get('memory_mb', 512)} MB (`.chalice/config.json`, prod), x86. CPU in proportion to memory, a
  full vCPU at {ASSUMPTIONS['cpu_factor_per_mb']:,} MB (AWS Lambda docs, *Configuring function memory*),
  so CPU time measured here on one core is scaled by 1769 / memory. DynamoDB round trips
  from Lambda, in-region: {', '.join(f'{k} {v} ms' for k, v in ASSUMPTIONS['ddb_ms'].items())};
  SES send {ASSUMPTIONS['other_ms']['sesv2']} ms.
- One cold start per {ASSUMPTIONS['events_per_cold_start']:,} webhook events; its INIT phase is billed
  (since 1 August 2025 also for ZIP functions on managed runtimes: {INIT_BILLING_SOURCE}) at the
  zip-variant import time × the CPU factor.
- Write units: {ASSUMPTIONS['gsi_writes']}; items inside `TransactWriteItems` at 2 WRU per KB;
  deletes counted as 1 KB.
- CloudWatch Logs: the bytes the app wrote to stdout per event, measured (JSON log line
  and EMF metrics), plus {ASSUMPTIONS['platform_log_bytes']} bytes of Lambda's START/END/REPORT lines.
- Not counted: storage (a record is a few KB; $0.25 per GB-month), data transfer, S3
  (receipt PDFs), KMS requests for the table's customer-managed key if one is used.
""")
    return "\n".join(out)


# --- the dashboard's search at 100,000 customers and the CSV export (bench/exports.py) ----

EXPORTS_HEADING = "## Dashboard search and CSV export"


def render_exports(e: dict) -> str:
    m = e.get("machine") or {}
    s, x = e["search"], e["export"]
    seed = e["seed"]
    rows = []
    for prefix, v in s["prefixes"].items():
        rows.append([f"`{prefix}`", v["small"]["results"], v["large"]["results"],
                     _ops(v["large"]["requests_by_operation"]),
                     _f(v["small"]["time"]["median_ms"]), _f(v["large"]["time"]["median_ms"]),
                     f"{v['ratio']:.2f}", f"{v['large']['vs_bare_query']:.1f}x"])
    u, t, f = x["untraced"], x["traced"], x["file"]
    return f"""{EXPORTS_HEADING}

Measured in a separate run (`python -m bench.exports`, {m.get('date')}, same machine); its
ratios are inside that run. `bench/exports.py`: two accounts written straight into the
table with `BatchWriteItem` (bench/search.py's items: {seed['small']['customers']:,} customers in
{seed['small']['seconds']:.0f} s, {seed['large']['customers']:,} in {seed['large']['seconds']:.0f} s).

Search on the dashboard (`GET /dashboard/<slug>/customers?q=<prefix>`, a staff owner signed
in through the real flow), {e['repeat']} interleaved rounds, each after a bare replay of its
search-index `Query`; medians:

""" + _table(["prefix", f"results ({s['small']:,})", f"results ({s['large']:,})",
              f"DynamoDB requests ({s['large']:,})", f"ms ({s['small']:,})",
              f"ms ({s['large']:,})", "large ÷ small", "page ÷ bare Query (large)"], rows) + f"""

**Mean ratio {s['ratio']:.2f}** (goal ≤ {GOALS['search_ratio']}): a search is one `Query` of
the search index (GSI2) whatever the account's size, plus the session's reads.

CSV export of {x['customers']:,} customers (`exports.service.run`, what the export
queue's handler runs; multipart upload to moto's S3 in parts of {u['part_size_mb']:g} MiB):

""" + _table(["run", "rows", "seconds", "DynamoDB requests", "peak Python allocations",
              "process peak RSS (before → after)"], [
        ["untraced", f"{u['rows']:,}", _f(u["seconds"]), _ops(u["ddb_requests"]), "–",
         f"{u['maxrss_before_mb']:.0f} → {u['maxrss_after_mb']:.0f} MB"],
        ["under tracemalloc", f"{t['rows']:,}", _f(t["seconds"]), _ops(t["ddb_requests"]),
         f"{t['tracemalloc_peak_mb']:.1f} MB",
         f"{t['maxrss_before_mb']:.0f} → {t['maxrss_after_mb']:.0f} MB"]]) + f"""

The file read back: {f['bytes']:,} bytes, {f['rows']:,} rows, {f['distinct_ids']:,} distinct
customer ids ({f['bytes'] / 2**20:.1f} MiB). What the run holds at once does not grow with the
count: the part being filled (up to {u['part_size_mb']:g} MiB), the copy of it being sent, and one
`Query` page of 500 customers; so the peak of Python allocations is about two parts
({t['tracemalloc_peak_mb']:.1f} MB) however many customers, where building the file in
memory would hold all of it. The time is one GSI1 `Query` page per 500 customers
(DynamoDB Local here) plus the uploads, linear in the count; the worker's Lambda timeout
(900 s) leaves a wide margin at this size. tracemalloc slows the run about
{t['seconds'] / u['seconds']:.1f}x, hence the untraced run for the time. The tests export a
few hundred customers (tests/test_exports.py).
"""


# Sections measured by runs of their own (`python -m bench.<part> --doc`): a full run keeps
# them as they are in the doc rather than dropping what it did not measure.
SEPARATE_RUN_HEADINGS = ("## Webhook deliveries", "## Scheduler sweep")


def _doc_path():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def _section_bounds(text: str, heading: str) -> tuple[int, int] | None:
    start = text.find("\n" + heading + "\n")
    if start < 0:
        return None
    start += 1
    end = text.find("\n## ", start + len(heading))
    return start, (end + 1 if end >= 0 else len(text))


def section_of(heading: str) -> str | None:
    """A section of the doc as it stands (from its heading to the next ``## ``)."""
    text = _doc_path().read_text()
    bounds = _section_bounds(text, heading)
    return text[bounds[0]:bounds[1]].rstrip("\n") + "\n" if bounds else None


def write_section(section: str) -> None:
    """Replace one part's section of docs/benchmarks.md (the section's first line is its
    heading), or append it."""
    doc = _doc_path()
    text = doc.read_text()
    heading = section.split("\n", 1)[0]
    bounds = _section_bounds(text, heading)
    if bounds is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        text = text[:bounds[0]] + section.rstrip("\n") + "\n" + (
            "\n" + text[bounds[1]:] if bounds[1] < len(text) else "")
    doc.write_text(text)
