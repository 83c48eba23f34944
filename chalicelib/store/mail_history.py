"""The e-mail history: one item per message sent, refused or planned, in the customer's own
partition (``MAIL#<customer>``) or, for mail that is no customer's, the account's
(``ACCT#<account>#MAIL``); newest first by ``<iso time>#<mail id>``; TTL."""
from __future__ import annotations

from datetime import timedelta

from chalicelib.store import keys
from chalicelib.store.table import MailItem

FIELDS = ("mail_id", "kind", "subject", "to", "status", "error", "message_id", "at",
          "planned_for", "customer_id")


def _pk(account_id: str, customer_id: str | None) -> str:
    return keys.customer_mail_pk(customer_id) if customer_id else keys.account_mail_pk(account_id)


def put(entry: dict, retention_days: int) -> None:
    MailItem(_pk(entry["account_id"], entry.get("customer_id")),
             keys.history_sk(entry["at"], entry["mail_id"]),
             ttl=timedelta(days=retention_days),
             **{k: entry.get(k) for k in ("account_id", *FIELDS)}).save()


def list_for(account_id: str, customer_id: str | None, limit: int, before: str | None
             ) -> tuple[list[dict], str | None]:
    """A page newest first, and the position of the next page (None on the last). Items of
    another account in the partition (there are none: customer ids are global) are skipped."""
    condition = before > MailItem.SK if before else None
    items, last = [], None
    query = MailItem.query(_pk(account_id, customer_id), condition, scan_index_forward=False,
                           limit=limit + 1)
    for item in query:
        if len(items) == limit:
            return items, last
        last = item.SK
        if item.account_id != account_id:
            continue
        items.append({k: getattr(item, k) for k in FIELDS})
    return items, None
