"""Staff notes on a customer or one of its objects (a payment, a subscription, an order,
or a processor object): added by staff, listed newest first on the record page, its
timeline and the merchant API.

The text is plain text, at most ``TEXT_MAX`` characters, without control characters
(new lines and tabs apart). It is stored HTML-escaped, so no reader of the table (an
export, a report, a page that forgot to escape) ever meets live markup; callers get it
back as typed (pages escape it when they render it, as they do all text). Kept
``RETENTION_DAYS`` (DynamoDB TTL; docs/data-model.md).
"""
from __future__ import annotations

import html
import re
import unicodedata

from chalicelib import ids, paging, timeutil
from chalicelib.errors import BadRequest, NotFound
from chalicelib.records import service as records
from chalicelib.store import notes as store

RETENTION_DAYS = 730
TEXT_MAX = 2000
LIST_MAX = 100
# A processor object as the record shows it (PayPal ids hold "-": paypal:I-…), or an id
# of the record (payment, subscription or plan, order, card).
_OBJECT_REF = re.compile(r"^(?:[a-z]{2,20}:[A-Za-z0-9_-]{1,255}|(?:pay|sub|ord|card)_[a-z2-7]{24})$")
_RECORD_ID = re.compile(r"^(?:pay|sub|ord|card)_[a-z2-7]{24}$")


def _clean_text(text: str | None) -> str:
    text = unicodedata.normalize("NFC", (text or "").replace("\r\n", "\n")).strip()
    if not text:
        raise BadRequest("Write the note first.", code="invalid_note")
    if len(text) > TEXT_MAX:
        raise BadRequest(f"A note is at most {TEXT_MAX} characters.", code="invalid_note")
    if any(unicodedata.category(c) in ("Cc", "Cs", "Co") and c not in "\n\t" for c in text):
        raise BadRequest("A note cannot hold control characters.", code="invalid_note")
    return text


def _check_object_ref(object_ref: str | None) -> str | None:
    if object_ref is None or object_ref == "":
        return None
    if not _OBJECT_REF.match(object_ref):
        raise BadRequest("object must be a processor object (stripe:pi_…) or an id of the "
                         "record (pay_…, sub_…, ord_…, card_…)", code="invalid_object")
    return object_ref


def _check_object_of_customer(account_id: str, customer_id: str, object_ref: str) -> None:
    """An id of the record (``pay_…``, ``sub_…``, ``ord_…``, ``card_…``) must name one of
    this customer's objects: a note on another customer's payment, or on none, would be
    shown on no page of its own and tell the next reader a wrong story. NotFound
    otherwise (as for a customer that is not the account's). A processor ref is kept as
    given (the processor may know objects the record does not show)."""
    if not _RECORD_ID.match(object_ref):
        return
    record = records.get_record(account_id, customer_id)
    if record is None:
        raise NotFound("no such customer")
    ids_of_record = {o["id"] for o in record["payments"] + record["subscriptions"] +
                     record["payment_plans"] + record["orders"] + record["cards"]}
    if object_ref not in ids_of_record:
        raise NotFound("There is no such payment, subscription, order or card for this "
                       "customer.", code="unknown_object")


def _public(note: dict) -> dict:
    return {"id": note["note_id"], "at": note["at"], "staff_id": note["staff_id"],
            "staff_email": note["staff_email"], "text": html.unescape(note["text"]),
            "object_ref": note["object_ref"]}


def add(account_id: str, customer_id: str, staff_id: str, staff_email: str, text: str,
        object_ref: str | None = None) -> dict:
    """Add a note; returns it as listed. BadRequest for an empty, long or control-character
    text or a malformed ``object_ref``; NotFound for a customer not the account's or an
    id of the record that is not one of this customer's objects. The
    caller checks the staff member may (permission ``note``) and logs the action."""
    clean = _clean_text(text)
    object_ref = _check_object_ref(object_ref)
    if not records.customer_belongs(account_id, customer_id):
        raise NotFound("no such customer")
    if object_ref is not None:
        _check_object_of_customer(account_id, customer_id, object_ref)
    note = {"account_id": account_id, "customer_id": customer_id, "note_id": ids.new_id("note"),
            "staff_id": staff_id[:100], "staff_email": (staff_email or "")[:320],
            "text": html.escape(clean, quote=True), "object_ref": object_ref,
            "at": timeutil.now_iso()}
    store.put(note, RETENTION_DAYS)
    return _public(note)


def page(account_id: str, customer_id: str, limit: int, cursor: str | None,
         object_ref: str | None = None) -> tuple[list[dict], str | None]:
    """A page of the customer's notes, newest first (those on ``object_ref`` when given),
    and the next page's cursor. The caller has checked the customer is the account's
    (records.customer_belongs); notes of another account are never returned."""
    object_ref = _check_object_ref(object_ref)
    notes, last = store.list_for(customer_id, limit, paging.decode(cursor), object_ref)
    return [_public(n) for n in notes if n["account_id"] == account_id], paging.encode(last)


def list_for(account_id: str, customer_id: str, object_ref: str | None = None,
             limit: int = LIST_MAX) -> list[dict]:
    """The newest ``limit`` notes on the customer (or on one of its objects)."""
    notes, _ = page(account_id, customer_id, limit, None, object_ref)
    return notes
