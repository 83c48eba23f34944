"""Create the table (local development and tests; production uses infra/template.yaml)."""
from __future__ import annotations

from chalicelib.store.table import TableItem


def create_table(wait: bool = True) -> None:
    if not TableItem.exists():
        TableItem.create_table(billing_mode="PAY_PER_REQUEST", wait=wait)


def delete_table() -> None:
    if TableItem.exists():
        TableItem.delete_table()
