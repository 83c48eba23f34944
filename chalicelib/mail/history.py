"""The e-mail history: every message the product sent, failed to send or plans to send,
recorded by the one place mail leaves (``mail.sender.send``), so every mail kind appears
here by itself.

Never the body: sign-in links and codes are secrets, and a later mail's body may hold
others. Kept ``RETENTION_DAYS`` (DynamoDB TTL; docs/data-model.md).
"""
from __future__ import annotations

from chalicelib import ids, paging, timeutil
from chalicelib.observability import MetricUnit, logger, metrics
from chalicelib.store import mail_history as store

RETENTION_DAYS = 400
# skipped: not sent on purpose (a suppressed address, a notice no longer true; ``error``
# says why); bounced and complained: SES's later feedback on a sent one (store.notices).
STATUSES = ("sent", "failed", "planned", "skipped", "bounced", "complained")
SUBJECT_MAX = 300
KIND_MAX = 40


def _entry(account_id: str, customer_id: str | None, kind: str, subject: str, to: str,
           status: str, **extra) -> dict:
    if status not in STATUSES:
        raise ValueError(f"unknown mail status {status!r}")
    return {"account_id": account_id, "customer_id": customer_id, "mail_id": ids.new_id("mail"),
            "kind": (kind or "other")[:KIND_MAX], "subject": subject[:SUBJECT_MAX], "to": to,
            "status": status, "at": timeutil.now_iso(), **extra}


def record(account_id: str, customer_id: str | None, kind: str, *, subject: str, to: str,
           status: str, message_id: str | None = None, error: str | None = None) -> None:
    """Note one message sent (``message_id``) or refused (``error``: SES's error code).

    Best effort: the message has left (or failed) already; a history that cannot be
    written must not turn a sent sign-in mail into an error page whose link is dead."""
    try:
        store.put(_entry(account_id, customer_id, kind, subject, to, status,
                         message_id=message_id, error=error), RETENTION_DAYS)
    except Exception:  # noqa: BLE001 - logged and counted; the mail itself is not undone
        logger.exception("could not record the e-mail in the history",
                         extra={"account_id": account_id, "mail_kind": kind})
        metrics.add_metric(name="MailHistoryWriteFailed", unit=MetricUnit.Count, value=1)


def plan(account_id: str, customer_id: str, kind: str, *, subject: str, to: str,
         planned_for: str) -> str:
    """Note a message the product will send at ``planned_for`` (ISO time; dunning notices,
    renewal reminders); returns its mail id. Raises if it cannot be written."""
    entry = _entry(account_id, customer_id, kind, subject, to, "planned", planned_for=planned_for)
    store.put(entry, RETENTION_DAYS)
    return entry["mail_id"]


def list_for(account_id: str, customer_id: str | None, limit: int, cursor: str | None
             ) -> tuple[list[dict], str | None]:
    """A customer's e-mails, newest first (``customer_id`` None: the account's own mail,
    such as staff sign-in). The caller has checked that the customer is the account's
    (records.customer_belongs); items are filtered by account too. ``cursor``: the
    ``next_cursor`` of the previous page; another answers ``paging.BadCursor`` (400)."""
    items, last = store.list_for(account_id, customer_id, limit, paging.decode(cursor))
    return [{"id": i["mail_id"], "at": i["at"], "kind": i["kind"], "subject": i["subject"],
             "to": i["to"], "status": i["status"], "error": i["error"],
             "message_id": i["message_id"], "planned_for": i["planned_for"]}
            for i in items], paging.encode(last)
