"""Customers CSV export: asked for on the dashboard, built in the background, downloaded
by a short-lived link.

Why in the background: an account may have 100,000 customers (about 15 MB of CSV), and
a response through API Gateway must come within 29 s and hold at most 10 MB (6 MB out of
Lambda). So ``request_export`` only records an export item (queued) and sends its id to
the export queue (SQS); ``run`` — called by the queue's Lambda handler in AWS
(``app.export_worker``) and by devstack's queue worker locally, the same handler — pages
through the account's customers (GSI1, newest first) and streams the rows into the
receipts bucket by multipart upload, so its memory is bounded by one part whatever the
count. The page shows the item's status and, once ready, hands a presigned link.

Cells a spreadsheet would run as a formula are escaped by the dashboard's ``csv_cell``
(the activity log's CSV uses the same function).
"""
from __future__ import annotations

import csv
import io
import time

from chalicelib import ids, money, timeutil
from chalicelib.dashboard.service import csv_cell
from chalicelib.errors import NotFound, RetryLater
from chalicelib.exports import queue
from chalicelib.observability import logger
from chalicelib.settings import get_settings
from chalicelib.store import customers as customers_store
from chalicelib.store import exports as store

COLUMNS = ("id", "name", "email", "created_at", "orders", "lifetime_value",
           "active_subscriptions", "active_payment_plans", "missed_payments")
PAGE = 500  # customers per Query page of GSI1
RECENT = 10  # exports listed on the page
# A run holds its export this long (the worker's timeout, 900 s, plus slack): a second
# delivery of its message meanwhile does not start it again.
LEASE_SECONDS = 960
FILENAME = "customers.csv"


def _view(export: store.Export) -> dict:
    return {"id": export.export_id, "status": export.status, "created_at": export.created_at,
            "updated_at": export.updated_at, "created_by_email": export.created_by_email,
            "rows": export.rows, "truncated": export.truncated, "attempts": export.attempts,
            "error": export.error}


def request_export(account_id: str, staff_id: str, staff_email: str | None) -> dict:
    """Record a queued export and send it to the queue; the export (as the page shows it).
    RetryLater (503) when the queue cannot take it: the export is then marked failed."""
    export_id = ids.new_id("exp")
    at = timeutil.now_iso()
    expires_at = int(time.time()) + get_settings().export_retention_days * 86400
    export = store.create(account_id, export_id, staff_id, staff_email, at, expires_at)
    try:
        queue.send(account_id, export_id)
    except queue.QueueUnavailable as exc:
        logger.error("export not queued", extra={"account_id": account_id,
                                                 "export_id": export_id, "error": str(exc)})
        store.fail(account_id, export_id, timeutil.now_iso(), "not_queued")
        raise RetryLater("We could not start the export right now. Please try again in a "
                         "few minutes.", code="export_unavailable") from None
    return _view(export)


def get_export(account_id: str, export_id: str) -> dict:
    """One export of the account; 404 for another account's or an unknown id."""
    if not queue.EXPORT_ID_RE.match(export_id or ""):
        raise NotFound("There is no such export.")
    export = store.get(account_id, export_id)
    if export is None:
        raise NotFound("There is no such export.")
    return _view(export)


def recent_exports(account_id: str) -> list[dict]:
    return [_view(e) for e in store.list_recent(account_id, RECENT)]


def download_url(account_id: str, export_id: str) -> str:
    """A presigned GET of a ready export's file, for ``export_url_seconds``."""
    if not queue.EXPORT_ID_RE.match(export_id or ""):
        raise NotFound("There is no such export.")
    export = store.get(account_id, export_id)
    if export is None or export.status != store.READY or not export.s3_key:
        raise NotFound("This export has no file (yet).")
    try:
        return store.presigned_download(export.s3_key, FILENAME,
                                        get_settings().export_url_seconds)
    except store.ExportUnavailable:
        raise RetryLater("The file cannot be reached right now. Please try again.",
                         code="export_unavailable") from None


# --- the background part --------------------------------------------------------------------

def _lifetime_value(stats: dict) -> str:
    """``EUR 120.00; USD 9.50``: per currency, net of refunds, largest first."""
    values = sorted(((stats.get("lifetime_value") or {}).items()), key=lambda kv: (-kv[1], kv[0]))
    return "; ".join(f"{cur.upper()} {money.to_major(amount, cur)}" for cur, amount in values)


def _row(summary: dict) -> list[str]:
    stats = summary.get("stats") or {}
    return [csv_cell(v) for v in (
        summary["id"], summary.get("name"), summary.get("email"), summary.get("created_at"),
        stats.get("orders", 0), _lifetime_value(stats), stats.get("active_subscriptions", 0),
        stats.get("active_payment_plans", 0), stats.get("missed_payments", 0))]


def write_customers_csv(account_id: str, upload: store.CsvUpload, max_rows: int) -> tuple[int, bool]:
    """Stream the account's customers (newest first) into ``upload``, one Query page at a
    time; (rows written, whether it stopped at ``max_rows``)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    upload.write(("\ufeff" + text.getvalue()).encode())  # the BOM: Excel reads UTF-8
    rows, cursor = 0, None
    while True:
        page, cursor = customers_store.list_customers(account_id, min(PAGE, max_rows - rows + 1),
                                                      cursor)
        text.seek(0)
        text.truncate()
        for summary in page:
            if rows == max_rows:
                upload.write(text.getvalue().encode())
                return rows, True
            writer.writerow(_row(summary))
            rows += 1
        upload.write(text.getvalue().encode())
        if not cursor:
            return rows, False


def run(account_id: str, export_id: str) -> str:
    """Build one export (the queue's handler calls this once per message). Returns what
    happened: ``done``, ``skipped`` (ready already, unknown, or another run holds it).
    A failure is recorded on the item and raised, so the queue delivers the message
    again (up to its limit, then to the dead-letter queue)."""
    settings = get_settings()
    if not store.start(account_id, export_id, timeutil.now_iso(), int(time.time()),
                       LEASE_SECONDS):
        logger.info("export skipped", extra={"account_id": account_id, "export_id": export_id})
        return "skipped"
    key = store.object_key(account_id, export_id)
    upload = None
    try:
        upload = store.CsvUpload(key, FILENAME)
        rows, truncated = write_customers_csv(account_id, upload, settings.export_max_rows)
        upload.complete()
        store.finish(account_id, export_id, timeutil.now_iso(), rows, truncated, key)
    except Exception as exc:
        if upload is not None:
            upload.abort()
        logger.exception("export failed", extra={"account_id": account_id,
                                                 "export_id": export_id})
        store.fail(account_id, export_id, timeutil.now_iso(), type(exc).__name__)
        raise
    logger.info("export ready", extra={"account_id": account_id, "export_id": export_id,
                                       "rows": rows, "bytes": upload.bytes_written})
    return "done"


def handle_message(body: str) -> str:
    """One queue message: a message this app never sent is logged and dropped (retrying
    it could not help)."""
    parsed = queue.parse(body)
    if parsed is None:
        logger.warning("export message dropped: not one of ours")
        return "dropped"
    return run(*parsed)
