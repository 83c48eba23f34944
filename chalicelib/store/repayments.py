"""Repayments of a lost dispute: ``ACCT#<acct>#REPAY#<dispute id>`` / ``<repayment id>``
(chalicelib/actions/disputes.py; the id is derived from the action's key, so an action run
again writes the same item).

  new_write   the item as the action writes it, in the action's one transaction
              (``actions.service.Result.writes``; ``attribute_not_exists``)
  list_for    Query the dispute's partition (consistent), oldest first (by ``at``)
"""
from __future__ import annotations

from chalicelib.store import keys
from chalicelib.store.table import RepaymentItem, TableItem

FIELDS = ("customer_id", "dispute_id", "repayment_id", "kind", "amount", "currency",
          "method", "by", "at")


def new_write(account_id: str, repayment: dict) -> tuple[str, TableItem, object]:
    item = RepaymentItem(keys.dispute_repayments_pk(account_id, repayment["dispute_id"]),
                         repayment["repayment_id"],
                         account_id=account_id, **{k: repayment.get(k) for k in FIELDS})
    return ("repayment", item, TableItem.PK.does_not_exist())


def list_for(account_id: str, dispute_id: str) -> list[dict]:
    out = []
    for item in RepaymentItem.query(keys.dispute_repayments_pk(account_id, dispute_id),
                                    consistent_read=True):
        if item.account_id == account_id:
            out.append({k: getattr(item, k) for k in FIELDS})
    return sorted(out, key=lambda r: (r["at"], r["repayment_id"]))
