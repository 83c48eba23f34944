"""The merchant dashboard's pages as plain data: customers, search, the customer record,
webhook deliveries, the account's settings, the activity log and its CSV.

Every function starts from the staff member's account (``account_id``) and calls the
services that own the data (records, merchant_api, accounts, portal, receipts, and the
mail history, timeline, notes and activity services); none reads the table itself.

What the record page reads: its growing sections must not grow the page's cost. The
page always reads the record's overview (``records.get_overview``: the profile, stats,
subscriptions, payment plans, cards, failed payments and the newest orders; one bounded
Query whatever the history) and pages through older orders with ``records.list_orders``.
Payment history, purchases grouped by product, disputes and each subscription's total
paid are derived from every payment, which only the whole record holds
(``records.get_record`` reads the customer's whole collection). The page reads it too
for a customer of up to ``FULL_HISTORY_ORDERS`` orders (a few Query pages at most);
beyond that those sections live on the customer's history page (``history_page``),
which reads the whole record and pages what it shows, so the record page stays flat.
"""
from __future__ import annotations

import base64
import csv
import io
import re
import unicodedata
from datetime import UTC, datetime

from chalicelib.accounts import service as accounts
from chalicelib.blocks import service as blocks
from chalicelib.errors import BadRequest, NotFound
from chalicelib.mail import history as mail_history
from chalicelib.merchant_api import service as merchant_api
from chalicelib.notes import service as notes
from chalicelib.records import service as records
from chalicelib.timeline import service as timeline
from chalicelib.webhooks import deliveries as delivery_audit

CUSTOMERS_PAGE = 25
SEARCH_RESULTS = 25
RECORD_ORDERS = 10  # the newest orders on the record page; older ones a page at a time
FULL_HISTORY_ORDERS = 100  # up to this many orders, the record page shows the whole history
HISTORY_PAGE = 25  # payments per page on the history page (and on the record page)
PURCHASE_ROWS = 5  # each product's newest transactions on the record page (all on history)
MAIL_ROWS = 10
TIMELINE_ROWS = 20
DELIVERIES_PAGE = 50
ACTIVITY_PAGE = 50
ACTIVITY_CSV_MAX_ROWS = 10_000  # one response: API Gateway caps a body at 10 MB, Lambda at 6
TIMELINE_SOURCES = ("processor", "staff", "email", "note")

CUSTOMER_ID_RE = re.compile(r"^cst_[0-9a-z]{26}$")
ORDER_ID_RE = re.compile(r"^ord_[a-z2-7]{24}$")
PROCESSOR_CUSTOMER_RE = re.compile(r"^cus_[A-Za-z0-9]{1,250}$")
# PayPal's payer ids (13 capitals and digits) and subscription ids (``I-…``): looked up by
# their pointer first; a name or e-mail prefix that only looks like one is searched as such.
PAYPAL_PAYER_RE = re.compile(r"^[A-Z0-9]{13}$")
PAYPAL_SUBSCRIPTION_RE = re.compile(r"^I-[A-Z0-9]{10,40}$")
PAYMENT_ID_RE = re.compile(r"^[a-z]{2,8}_[a-z0-9]{8,64}$")
CURSOR_RE = re.compile(r"^[A-Za-z0-9_=-]{1,400}$")
COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
ACTIVE = {"active", "trialing", "past_due", "canceling", "paused", "unpaid"}


# --- small helpers -----------------------------------------------------------------------

def _ltv(stats: dict) -> list[tuple[str, int]]:
    """Lifetime value per currency, net of refunds, largest first."""
    values = (stats or {}).get("lifetime_value") or {}
    return sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))


def _cursor_out(position: str | None) -> str | None:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=") if position else None


def _cursor_in(cursor: str | None, what: str) -> str | None:
    if not cursor:
        return None
    try:
        if not CURSOR_RE.match(cursor):
            raise ValueError(cursor)
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(f"This page of {what} does not exist.", code="bad_cursor") from None


def _customer_id(customer_id: str) -> str:
    if not CUSTOMER_ID_RE.match(customer_id or ""):
        raise NotFound("There is no such customer.")
    return customer_id


def customer_row(summary: dict) -> dict:
    """A customer as the list shows it (from the profile's stats)."""
    stats = summary.get("stats") or {}
    return {
        "id": summary["id"], "name": summary.get("name"), "email": summary.get("email"),
        "created_at": summary.get("created_at"), "orders": stats.get("orders", 0),
        "lifetime_value": _ltv(stats),
        "active_subscriptions": stats.get("active_subscriptions", 0)
        + stats.get("active_payment_plans", 0),
        "missed_payments": stats.get("missed_payments", 0),
    }


# --- customers and search ----------------------------------------------------------------

def customers(account_id: str, cursor: str | None) -> dict:
    """A page of the account's customers, newest first."""
    try:
        page = merchant_api.list_customers(account_id, CUSTOMERS_PAGE, cursor or None, None)
    except BadRequest:
        raise BadRequest("This page of customers does not exist.", code="bad_cursor") from None
    return {"customers": [customer_row(c) for c in page["data"]],
            "next_cursor": page["next_cursor"], "first_page": not cursor}


def normalize_query(query: str | None) -> str:
    return unicodedata.normalize("NFKC", query or "").strip()


def search(account_id: str, query: str | None) -> dict:
    """Customers found by what the merchant has in hand: an e-mail or name prefix, the
    processor's customer id (``cus_…``; PayPal's payer id or subscription id ``I-…``), an
    order id (``ord_…``) or a record id (``cst_…``). ``open``: the one hit's id when there
    is exactly one (Enter opens it)."""
    term = normalize_query(query)
    if not term:
        return {"query": "", "by": None, "results": [], "open": None}
    if len(term) > 100:
        raise BadRequest("Search for at most 100 characters.", code="invalid_query")
    found_id, by = None, None
    if PROCESSOR_CUSTOMER_RE.match(term):
        by = "processor_customer"
        found_id = records.find_by_processor_id(account_id, "stripe", term)
    elif ORDER_ID_RE.match(term.casefold()):
        by = "order"
        found_id = records.find_by_order_id(account_id, term.casefold())
    elif CUSTOMER_ID_RE.match(term.casefold()):
        by = "customer"
        found_id = term.casefold()
    elif PAYPAL_PAYER_RE.match(term) or PAYPAL_SUBSCRIPTION_RE.match(term):
        found_id = records.find_by_processor_id(
            account_id, "paypal", term if term.startswith("I-") else f"payer_{term}")
        by = "processor_customer" if found_id else None
    if by is not None:
        results = []
        if found_id:
            record, _ = records.get_overview(account_id, found_id, 0)
            if record is not None:
                results = [customer_row(record)]
        return {"query": term, "by": by, "results": results,
                "open": results[0]["id"] if len(results) == 1 else None}
    hits = merchant_api.list_customers(account_id, SEARCH_RESULTS, None, term)["data"]
    results = [{"id": h["id"], "name": h.get("name"), "email": h.get("email")} for h in hits]
    return {"query": term, "by": "prefix", "results": results,
            "open": results[0]["id"] if len(results) == 1 else None}


# --- the customer record -----------------------------------------------------------------

def _months_between(start: str | None, end: str | None) -> int | None:
    try:
        a = datetime.fromisoformat(start) if start else None
        b = datetime.fromisoformat(end) if end else datetime.now(UTC)
    except ValueError:
        return None
    if a is None:
        return None
    if a.tzinfo is None:
        a = a.replace(tzinfo=UTC)
    if b.tzinfo is None:
        b = b.replace(tzinfo=UTC)
    months = (b.year - a.year) * 12 + b.month - a.month - (1 if b.day < a.day else 0)
    return max(months, 0)


def tenure(months: int | None) -> str:
    if months is None:
        return ""
    if months < 1:
        return "less than a month"
    years, rest = divmod(months, 12)
    parts = ([f"{years} year{'s' if years != 1 else ''}"] if years else []) + \
        ([f"{rest} month{'s' if rest != 1 else ''}"] if rest else [])
    return " ".join(parts)


def _subscription_view(sub: dict, payments: list[dict] | None) -> dict:
    """A subscription or plan with its key dates, tenure and (with the history) its total
    paid per currency, net of refunds."""
    out = dict(sub)
    ended = sub.get("canceled_at") if sub.get("status") == "canceled" else None
    out["tenure"] = tenure(_months_between(sub.get("started_at"), ended))
    # "Activated": the first successful payment (a trial or an incomplete start has none).
    out["activated_at"] = None
    out["total_paid"] = None
    if payments is not None:
        mine = [p for p in payments if sub.get("processor_ref")
                and p.get("subscription") == sub["processor_ref"] and p["status"] == "succeeded"]
        if mine:
            out["activated_at"] = min(p["paid_at"] or "" for p in mine) or None
        totals: dict[str, int] = {}
        for p in mine:
            if p.get("currency"):
                totals[p["currency"]] = totals.get(p["currency"], 0) + (p.get("amount") or 0) \
                    - (p.get("refunded") or 0)
        out["total_paid"] = sorted(totals.items())
    return out


def _purchases(record: dict, per_group: int | None) -> list[dict]:
    """Purchases grouped by product, newest activity first (the record's ``purchases``),
    each transaction resolved to its payment; the newest ``per_group`` of each (None:
    all), with ``more``: how many are left to the history page."""
    by_id = {p["id"]: p for p in record.get("payments") or []}
    groups = []
    for group in record.get("purchases") or []:
        transactions = [by_id[t] for t in group.get("transactions") or [] if t in by_id]
        shown = transactions if per_group is None else transactions[:per_group]
        groups.append({**group, "transactions": shown, "more": len(transactions) - len(shown)})
    return groups


def _planned(record: dict) -> list[dict]:
    return sorted(record.get("planned_payments") or [],
                  key=lambda p: (p.get("due_at") or p.get("due_date") or "", str(p.get("amount"))))


def record_page(account_id: str, customer_id: str, *, orders_cursor: str | None = None,
                payments_page: int = 1, timeline_source: str | None = None,
                timeline_cursor: str | None = None, mail_cursor: str | None = None) -> dict:
    """Everything the customer's record page shows (see the module's docstring for what
    it reads)."""
    customer_id = _customer_id(customer_id)
    overview, more_orders = records.get_overview(account_id, customer_id, RECORD_ORDERS)
    if overview is None:
        raise NotFound("There is no such customer.")
    stats = overview["stats"]
    full = None
    if (stats.get("orders") or 0) <= FULL_HISTORY_ORDERS:
        full = records.get_record(account_id, customer_id, card_fingerprints=True)
        if full is None:  # folded away or moved between the two reads
            raise NotFound("There is no such customer.")
    orders, next_orders = overview["orders"], None
    if more_orders:
        next_orders = _cursor_out(_newest_orders_end(customer_id))
    if orders_cursor:
        orders, next_orders = _orders_page(customer_id, orders_cursor)
    payments = full["payments"] if full else None
    subs = [_subscription_view(s, payments) for s in overview["subscriptions"]]
    plans = [_subscription_view(s, payments) for s in overview["payment_plans"]]
    card_users = {}
    for s in subs + plans:
        if s.get("card") and s["card"].get("id") and s["status"] in ACTIVE:
            card_users.setdefault(s["card"]["id"], []).append(s)
    failed = [p for p in overview["payments"] if p["status"] in ("failed", "requires_action")]
    page = {
        "customer": overview, "stats": stats, "lifetime_value": _ltv(stats),
        "subscriptions": subs, "payment_plans": plans,
        "cards": [{**c, "pays_for": card_users.get(c.get("id"), [])} for c in overview["cards"]],
        "missed": failed, "orders": orders, "orders_next": next_orders,
        "dunning": _dunning_of(account_id, failed),
        "orders_first_page": not orders_cursor,
        "history_loaded": full is not None,
        "processor_customers": [pid.partition(":")[2] for pid in overview.get("processor_ids") or []],
        "planned": _planned(full or overview),
    }
    if full is not None:
        page.update(_history(full, payments_page, PURCHASE_ROWS))
    else:
        page.update({"payments": [], "payments_page": 1, "payments_pages": 0, "purchases": [],
                     "open_disputes": None, "disputes": []})
    page["blocks"] = blocks.record_view(account_id, overview, payments)
    page["mail"] = _mail(account_id, customer_id, mail_cursor)
    # An address SES reported as bouncing hard or complaining gets no notices (notices).
    from chalicelib.notices import suppression

    page["mail"]["suppressed"] = suppression.reason_for(account_id, overview.get("email") or "")
    page["timeline"] = _timeline(account_id, customer_id, timeline_source, timeline_cursor)
    from chalicelib.notices import settings as notice_settings

    page["pause_time_zone"] = notice_settings.time_zone_of_pauses(account_id, subs + plans)
    return page


def _newest_orders_end(customer_id: str) -> str | None:
    """Where the newest ``RECORD_ORDERS`` end, as a cursor of records.list_orders."""
    _, after = records.list_orders(customer_id, RECORD_ORDERS, None)
    return after


def _orders_page(customer_id: str, cursor: str) -> tuple[list[dict], str | None]:
    after = _cursor_in(cursor, "orders")
    try:
        entries, next_after = records.list_orders(customer_id, RECORD_ORDERS, after)
    except ValueError:  # store.BadCursor: not a place among this customer's orders
        raise BadRequest("This page of orders does not exist.", code="bad_cursor") from None
    return entries, _cursor_out(next_after)


def _history(record: dict, payments_page: int, per_group: int | None = None) -> dict:
    """Payment history (a page of it), purchases and disputes, from the whole record."""
    payments = record["payments"]
    pages = max(1, -(-len(payments) // HISTORY_PAGE))
    if not 1 <= payments_page <= pages:
        raise BadRequest("This page of payments does not exist.", code="bad_page")
    start = (payments_page - 1) * HISTORY_PAGE
    disputes = record.get("disputes") or []
    return {
        "payments": payments[start:start + HISTORY_PAGE], "payments_page": payments_page,
        "payments_pages": pages if payments else 0,
        "purchases": _purchases(record, per_group),
        "disputes": disputes,
        "open_disputes": sum(1 for d in disputes if d.get("status") not in
                             ("won", "lost", "closed", "warning_closed")),
    }


def history_page(account_id: str, customer_id: str, payments_page: int = 1) -> dict:
    """The whole history of a customer with more orders than the record page reads:
    every payment (paged), purchases by product, disputes."""
    customer_id = _customer_id(customer_id)
    record = records.get_record(account_id, customer_id)
    if record is None:
        raise NotFound("There is no such customer.")
    return {"customer": record, **_history(record, payments_page)}


def parse_page_number(raw: str | None) -> int:
    if raw is None or raw == "":
        return 1
    if not (raw.isascii() and raw.isdecimal() and len(raw) <= 6) or int(raw) < 1:
        raise BadRequest("This page does not exist.", code="bad_page")
    return int(raw)


def _mail(account_id: str, customer_id: str, cursor: str | None) -> dict:
    items, next_cursor = mail_history.list_for(account_id, customer_id, MAIL_ROWS, cursor or None)
    return {"entries": items, "next_cursor": next_cursor}


def _timeline(account_id: str, customer_id: str, source: str | None,
              cursor: str | None) -> dict:
    if source and source not in TIMELINE_SOURCES:
        raise BadRequest("Choose a timeline source from the list.", code="bad_source")
    items, next_cursor = timeline.list_for(account_id, customer_id, TIMELINE_ROWS,
                                           cursor or None, sources=[source] if source else None)
    return {"entries": items, "next_cursor": next_cursor, "source": source}


def transaction_page(account_id: str, customer_id: str, payment_id: str) -> dict:
    """One transaction (payment) of a customer: its details, the processor's raw webhook
    payloads for it, and the staff notes about it."""
    customer_id = _customer_id(customer_id)
    if not PAYMENT_ID_RE.match(payment_id or ""):
        raise NotFound("There is no such transaction.")
    record = records.get_record(account_id, customer_id)
    if record is None:
        raise NotFound("There is no such customer.")
    payment = next((p for p in record["payments"] if p["id"] == payment_id), None)
    if payment is None:
        raise NotFound("There is no such transaction.")
    return {"customer": record, "payment": payment,
            "raw_events": records.raw_events(account_id, customer_id, payment_id),
            "notes": notes.list_for(account_id, customer_id, object_ref=payment_id)}


def receipt_pdf_url(account_id: str, slug: str, customer_id: str, payment_id: str) -> str:
    """A short-lived URL of a successful payment's receipt PDF (as the customer gets it)."""
    from chalicelib.portal import service as portal
    from chalicelib.receipts import service as receipts

    customer_id = _customer_id(customer_id)
    if not PAYMENT_ID_RE.match(payment_id or ""):
        raise NotFound("There is no such receipt.")
    record = records.get_record(account_id, customer_id)
    if record is None:
        raise NotFound("There is no such customer.")
    shop = portal.portal_for_slug(slug)
    if shop.account_id != account_id:
        raise NotFound("There is no such receipt.")
    doc = receipts.document(shop.brand, record, receipts.receipt_payment(record, payment_id),
                            shop.locale)
    return receipts.pdf_download_url(doc, account_id, customer_id)


def portal_url(base_url: str, slug: str) -> str:
    """The shop's customer portal (where a customer signs in)."""
    return f"{base_url}/portal/{slug}/"


def send_sign_in_link(account_id: str, slug: str, customer_id: str, client_ip: str,
                      base_url: str, subscription_id: str | None = None) -> str:
    """E-mail the customer a portal sign-in link (the portal's own request: its limits,
    its mail, recorded in the customer's e-mail history); the address it went to. With
    ``subscription_id`` ("update billing") the link lands on that subscription's card page
    (404 for one not the customer's)."""
    from chalicelib.portal import service as portal

    customer_id = _customer_id(customer_id)
    record, _ = records.get_overview(account_id, customer_id, 0)
    if record is None:
        raise NotFound("There is no such customer.")
    if not record.get("email"):
        raise BadRequest("This customer has no e-mail address.", code="no_email")
    shop = portal.portal_for_slug(slug)
    if shop.account_id != account_id:
        raise NotFound("There is no such customer.")
    landing = None
    if subscription_id is not None:
        full = records.get_record(account_id, customer_id)
        if full is None or not any(s["id"] == subscription_id for s in
                                   full["subscriptions"] + full["payment_plans"]):
            raise NotFound("There is no such subscription.")
        landing = portal.landing_for_subscription(subscription_id)
    return portal.request_sign_in(shop, record["email"], client_ip, base_url, landing)


# --- webhook deliveries --------------------------------------------------------------------

def deliveries(account_id: str, cursor: str | None) -> dict:
    try:
        page = merchant_api.list_deliveries(account_id, DELIVERIES_PAGE, cursor or None)
    except BadRequest:
        raise BadRequest("This page of deliveries does not exist.", code="bad_cursor") from None
    return {"deliveries": page["data"], "next_cursor": page["next_cursor"],
            "first_page": not cursor}


def delivery(account_id: str, delivery_id: str) -> dict:
    """One delivery of the account with the raw payload it kept; 404 for another's."""
    found = delivery_audit.get(account_id, delivery_id)
    if found is None:
        raise NotFound("There is no such delivery.")
    return {"delivery": found}


# --- settings --------------------------------------------------------------------------------

def settings(account_id: str) -> dict:
    account = accounts.get_account(account_id)
    if account is None:
        raise NotFound("There is no such account.")
    stored = account.get("settings") or {}
    branding = {**accounts.DEFAULT_SETTINGS["branding"], **(stored.get("branding") or {})}
    portal = {**accounts.DEFAULT_SETTINGS["portal"], **(stored.get("portal") or {})}
    return {"color": branding.get("color") or "", "logo_url": branding.get("logo_url") or "",
            "company_address": branding.get("company_address") or "",
            "self_cancel": bool(portal.get("self_cancel"))}


def parse_settings_form(form: dict) -> tuple[dict, dict[str, str]]:
    """The settings form as values, and a message per field that is not valid."""
    values = {
        "color": (form.get("color") or "").strip(),
        "logo_url": (form.get("logo_url") or "").strip(),
        "company_address": unicodedata.normalize("NFC", form.get("company_address") or "").strip(),
        "self_cancel": form.get("self_cancel") == "1",
    }
    problems = {}
    if not COLOR_RE.match(values["color"]):
        problems["color"] = "Enter a colour as # and 3 or 6 hex digits, e.g. #0a7d5a."
    if values["logo_url"] and accounts.logo_origin(values["logo_url"]) is None:
        problems["logo_url"] = ("Enter an https:// address on a host name (no user, IP "
                                "address, spaces or ';'), or leave it empty.")
    address = values["company_address"]
    if len(address) > 500 or any(unicodedata.category(c) == "Cc" and c not in "\n\r\t"
                                 for c in address):
        problems["company_address"] = "Enter at most 500 characters, without control characters."
    return values, problems


def save_settings(account_id: str, values: dict) -> dict:
    """Store branding and self-cancel; the settings before the change (for the log)."""
    before = settings(account_id)
    accounts.update_branding_settings(
        account_id, color=values["color"], logo_url=values["logo_url"] or None,
        company_address=values["company_address"] or None, self_cancel=values["self_cancel"])
    return before


# --- activity log ------------------------------------------------------------------------------

ACTION_FILTER_RE = re.compile(r"^[a-z0-9_.]{1,60}$")
ACTOR_FILTER_RE = re.compile(r"^[A-Za-z0-9_@.+-]{1,320}$")


def activity_filters(params: dict) -> dict:
    """The activity page's filters (action prefix, actor, customer); bad ones are 400."""
    out = {}
    action = (params.get("action") or "").strip()
    actor = (params.get("actor") or "").strip()
    customer = (params.get("customer") or "").strip()
    if action:
        if not ACTION_FILTER_RE.match(action):
            raise BadRequest("An action is letters, digits, '.' and '_'.", code="bad_filter")
        out["action_prefix"] = action
    if actor:
        if not ACTOR_FILTER_RE.match(actor):
            raise BadRequest("An actor is a staff id or 'system'.", code="bad_filter")
        out["actor"] = actor
    if customer:
        if not CUSTOMER_ID_RE.match(customer):
            raise BadRequest("A customer is a record id (cst_…).", code="bad_filter")
        out["target"] = customer
    return out


def activity_page(account_id: str, filters: dict, cursor: str | None) -> dict:
    from chalicelib.activity import service as activity

    items, next_cursor = activity.list(account_id, limit=ACTIVITY_PAGE, cursor=cursor or None,
                                       **filters)
    return {"items": items, "next_cursor": next_cursor, "first_page": not cursor}


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ACTIVITY_COLUMNS = ("at", "actor", "actor_email", "action", "target", "reason", "ip", "details")


def csv_cell(value) -> str:
    """A cell a spreadsheet will show as text: one that would run as a formula (``=``,
    ``+``, ``-``, ``@``, tab or CR first) gets a leading apostrophe (OWASP's advice)."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        import json

        value = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_rows(rows, columns) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in columns])
    return out.getvalue()


def activity_csv(account_id: str, filters: dict) -> tuple[str, bool]:
    """The log (filtered) as CSV, newest first, at most ``ACTIVITY_CSV_MAX_ROWS`` rows;
    and whether there were more."""
    from chalicelib.activity import service as activity

    rows, cursor, more = [], None, False
    while True:
        items, cursor = activity.list(account_id, limit=100, cursor=cursor, **filters)
        rows += items
        if len(rows) >= ACTIVITY_CSV_MAX_ROWS:
            more = len(rows) > ACTIVITY_CSV_MAX_ROWS or cursor is not None
            rows = rows[:ACTIVITY_CSV_MAX_ROWS]
            break
        if not cursor:
            break
    return csv_rows(rows, ACTIVITY_COLUMNS), more


def _dunning_of(account_id: str, payments: list[dict]) -> dict[str, dict]:
    """Each failed invoice's dunning (its attempts, the pending retry): invoice ref → state."""
    from chalicelib.dunning.steps import open_invoices_of

    invoices = [p["invoice"] for p in payments if p.get("invoice")]
    return open_invoices_of(account_id, invoices) if invoices else {}
