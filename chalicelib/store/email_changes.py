"""A merchant's pending change of a record's e-mail: ``ACCT#<acct>#EMAILCHANGE#<new>`` /
``PENDING`` → the record (chalicelib/actions/customer.py writes it before asking the
processor; records.service reads it when a processor customer's e-mail changes to that
address). Kept ``HOURS`` (TTL, and ``expires_at`` checked here: TTL deletion lags).

  put          PutItem (a newer request for the same address replaces it)
  pending_for  GetItem (consistent): the record, or None when none or expired
"""
from __future__ import annotations

import time
from datetime import timedelta

from pynamodb.exceptions import DoesNotExist

from chalicelib.store import keys
from chalicelib.store.table import PendingEmailChangeItem

HOURS = 48


def put(account_id: str, new_email: str, customer_id: str, old_email: str | None,
        requested_by: str) -> None:
    pk, sk = keys.pending_email_change(account_id, new_email)
    PendingEmailChangeItem(pk, sk, customer_id=customer_id, old_email=old_email,
                           requested_by=requested_by,
                           expires_at=int(time.time()) + HOURS * 3600,
                           ttl=timedelta(hours=HOURS)).save()


def pending_for(account_id: str, new_email: str) -> str | None:
    try:
        item = PendingEmailChangeItem.get(*keys.pending_email_change(account_id, new_email),
                                          consistent_read=True)
    except DoesNotExist:
        return None
    return item.customer_id if item.expires_at > time.time() else None
