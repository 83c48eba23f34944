"""Reads of the outbox (its item and writes are in ``store.customers``: ``outbox_item``,
written inside the transaction of the change an event reports).

The outbox is one partition per account (``ACCT#<account>#OUTBOX``), sort key
``<ISO time>#<event id>``: read descending, newest first, every type mixed.
"""
from __future__ import annotations

from chalicelib.store import keys
from chalicelib.store.table import OutboxItem

# A sample read stops after this many Query pages of this many items, matched or not:
# a rare type's events older than the account's newest SAMPLE_PAGES × SAMPLE_PAGE_SIZE
# are not looked for (callers then show an example instead).
SAMPLE_PAGE_SIZE = 100
SAMPLE_PAGES = 5


def _event(item: OutboxItem) -> dict:
    return {"event_id": item.event_id, "type": item.event_type, "account_id": item.account_id,
            "customer_id": item.customer_id, "occurred_at": item.occurred_at,
            "data": item.data or {}}


def latest_of_type(account_id: str, event_type: str, limit: int) -> list[dict]:
    """The account's newest events of ``event_type``, newest first, at most ``limit``.

    Bounded: at most ``SAMPLE_PAGES`` Queries of ``SAMPLE_PAGE_SIZE`` items each (the
    filter on the type is applied by DynamoDB after reading, so each page costs its items
    whatever matches); stops as soon as ``limit`` are found."""
    results = OutboxItem.query(keys.outbox_pk(account_id), scan_index_forward=False,
                               filter_condition=OutboxItem.event_type == event_type,
                               page_size=SAMPLE_PAGE_SIZE)
    found: list[dict] = []
    # Page by page (PynamoDB's item iterator would go on reading until the partition ends
    # when nothing matches).
    for pages, page in enumerate(results.page_iter, start=1):
        for raw in page.get("Items", []):
            item = OutboxItem.from_raw_data(raw)
            if item.account_id == account_id:
                found.append(_event(item))
            if len(found) >= limit:
                return found
        if pages >= SAMPLE_PAGES:
            break
    return found
