"""Repayments of a lost dispute: ``ACCT#<acct>#REPAY#<dispute id>`` / ``<repayment id>``
(chalicelib/actions/disputes.py; the id is derived from the action's key, so an action run
again writes the same item). ``kind`` recorded: made elsewhere; ``kind`` link: a payment
link sent to the customer (``link_id``, ``url``), repaid once its payment is reported
(``ACCT#<acct>#REPAYLINK#<link>`` / ``PAID``, written by the payment's record reaction).

  new_write        the item as the action writes it, in the action's one transaction
                   (``actions.service.Result.writes``; ``attribute_not_exists``)
  link_write       a link's item: ``attribute_not_exists`` or the same link (two
                   concurrent requests that got the same link from the processor)
  deactivated_write  a link's item marked deactivated (in the recording action's transaction)
  recorded_total_write  the dispute's recorded total raised by a recorded repayment, in the
                   same transaction, on the condition that it stays within ``cap`` (the
                   disputed amount less what its links were paid): two concurrent
                   recordings can never add up to more than the dispute took, whatever
                   each read (the loser's transaction is cancelled: store.Conflict)
  paid_op          the link's payment, for a record's transaction (unconditional: the same
                   item again on a redelivery; never aborts the record's write)
  list_for         Query the dispute's partition (consistent), oldest first (by ``at``);
                   a link's ``paid`` ({payment_id, amount, currency, paid_at} or None)
"""
from __future__ import annotations

from chalicelib.store import keys
from chalicelib.store.table import (
    RepaymentItem,
    RepaymentPaidItem,
    RepaymentTotalItem,
    TableItem,
)

FIELDS = ("customer_id", "dispute_id", "repayment_id", "kind", "amount", "currency",
          "method", "by", "at", "link_id", "url", "deactivated_at")


def _item(account_id: str, repayment: dict) -> RepaymentItem:
    return RepaymentItem(keys.dispute_repayments_pk(account_id, repayment["dispute_id"]),
                         repayment["repayment_id"],
                         account_id=account_id, **{k: repayment.get(k) for k in FIELDS})


def new_write(account_id: str, repayment: dict) -> tuple[str, TableItem, object]:
    return ("repayment", _item(account_id, repayment), TableItem.PK.does_not_exist())


def link_write(account_id: str, repayment: dict) -> tuple[str, TableItem, object]:
    return ("repayment", _item(account_id, repayment),
            TableItem.PK.does_not_exist() | (RepaymentItem.link_id == repayment["link_id"]))


def deactivated_write(account_id: str, repayment: dict,
                      at: str) -> tuple[str, TableItem, object]:
    return ("repayment", _item(account_id, {**repayment, "deactivated_at": at}),
            RepaymentItem.link_id == repayment["link_id"])


def recorded_total_write(account_id: str, dispute_id: str, amount: int, cap: int,
                         recorded_before: int) -> tuple[str, TableItem, tuple]:
    """``recorded += amount`` on the condition ``recorded + amount <= cap``, as an
    ``update`` op of the action's transaction (store.actions.commit_ops). A dispute
    whose repayments were recorded before this total was kept has no item yet: it
    starts from ``recorded_before`` (the recorded rows as read; a concurrent first
    recording makes the item, and the condition then checks what it holds)."""
    pk, sk = keys.dispute_repaid_total(account_id, dispute_id)
    if recorded_before + amount > cap:
        raise ValueError("the recorded total would exceed the cap")
    actions = [RepaymentTotalItem.T.set(RepaymentTotalItem),
               RepaymentTotalItem.account_id.set(account_id),
               RepaymentTotalItem.recorded.set(
                   (RepaymentTotalItem.recorded | recorded_before) + amount)]
    condition = RepaymentTotalItem.recorded.does_not_exist() | \
        (RepaymentTotalItem.recorded <= cap - amount)
    return ("update", RepaymentTotalItem(pk, sk), (actions, condition))


def paid_op(account_id: str, link: str, payment_id: str, amount: int | None,
            currency: str | None, paid_at: str) -> tuple[str, TableItem, None]:
    pk, sk = keys.repayment_link_paid(account_id, link)
    return ("repayment_paid", RepaymentPaidItem(pk, sk, account_id=account_id,
                                                payment_id=payment_id, amount=amount,
                                                currency=currency, paid_at=paid_at), None)


def _paid(account_id: str, link: str) -> dict | None:
    try:
        item = RepaymentPaidItem.get(*keys.repayment_link_paid(account_id, link),
                                     consistent_read=True)
    except RepaymentPaidItem.DoesNotExist:
        return None
    if item.account_id != account_id:
        return None
    return {"payment_id": item.payment_id,
            "amount": int(item.amount) if item.amount is not None else None,
            "currency": item.currency, "paid_at": item.paid_at}


def list_for(account_id: str, dispute_id: str) -> list[dict]:
    out = []
    for item in RepaymentItem.query(keys.dispute_repayments_pk(account_id, dispute_id),
                                    consistent_read=True):
        if item.account_id == account_id:
            row = {k: getattr(item, k) for k in FIELDS}
            row["amount"] = int(row["amount"])
            if row["kind"] == "link":
                row["paid"] = _paid(account_id, row["link_id"])
            out.append(row)
    return sorted(out, key=lambda r: (r["at"], r["repayment_id"]))
