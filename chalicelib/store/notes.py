"""Staff notes on a customer: ``NOTES#<customer>`` / ``<iso time>#<note id>``, newest first
when read descending; TTL (chalicelib/notes)."""
from __future__ import annotations

from datetime import timedelta

from chalicelib.store import keys
from chalicelib.store.table import NoteItem

FIELDS = ("account_id", "customer_id", "note_id", "staff_id", "staff_email", "text",
          "object_ref", "at")


def put(note: dict, retention_days: int) -> None:
    NoteItem(keys.customer_notes_pk(note["customer_id"]), keys.history_sk(note["at"], note["note_id"]),
             ttl=timedelta(days=retention_days), **{k: note.get(k) for k in FIELDS}).save(
        condition=NoteItem.PK.does_not_exist())


def list_for(customer_id: str, limit: int, before: str | None, object_ref: str | None = None
             ) -> tuple[list[dict], str | None]:
    """A page newest first (only the notes on ``object_ref`` when given: a filter, so a
    page may hold fewer) and the position of the next page (None on the last)."""
    condition = before > NoteItem.SK if before else None
    out, last = [], None
    query = NoteItem.query(keys.customer_notes_pk(customer_id), condition,
                           scan_index_forward=False, limit=limit + 1,
                           filter_condition=(NoteItem.object_ref == object_ref) if object_ref else None)
    for item in query:
        if len(out) == limit:
            return out, last
        out.append({k: getattr(item, k) for k in FIELDS})
        last = item.SK
    return out, None
