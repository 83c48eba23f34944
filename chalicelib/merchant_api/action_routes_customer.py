"""Merchant API: actions on a customer's details (chalicelib/actions/customer.py). Each
POST takes a JSON object and an ``Idempotency-Key`` header (the same key and body answer
the first result; the same key with another body is 422).

  POST /api/v1/customers/{id}/block     {"emails": [...], "cards": [...],
                                         "processor_customers": [...], "all": bool,
                                         "reason": "...", "note": "..."}
  POST /api/v1/customers/{id}/unblock   the same fields

  POST /api/v1/customers/{id}/details   {"name", "email", "phone", "address", "note"}:
       only the fields to change ("" or null clears name, phone, address); a new e-mail
       is pending until the processor's event (409 email_taken with the other record's
       ``customer_id`` when the address has one)

  POST /api/v1/customers/{id}/merge     {"customer_id", "reason", "note"}: fold that record
       into this one (owners and admins; the API acts as an admin)

  POST /api/v1/customers/{id}/notes     {"text", "object"}: a staff note on the customer,
       or on one of its objects (a processor ref or an id of the record)

  POST /api/v1/customers/{id}/disputes/{dispute}/repayments   {"amount", "method", "note"}:
       a repayment of a lost dispute made elsewhere, never above what remains
  POST /api/v1/customers/{id}/disputes/{dispute}/repayment-link   {} → a payment link for
       what remains of a lost dispute, e-mailed to the customer (the open one if any)

``cards`` are the record's card ids (``card_…``), ``processor_customers`` the processor's
customer ids (``cus_…``); a detail that is not the customer's is 404, a request that
changes nothing (all blocked already, none blocked) 409.
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.actions import web as actions_web
from chalicelib.actions.customer import CustomerActions
from chalicelib.actions.disputes import DisputeActions
from chalicelib.actions.notes import add_note
from chalicelib.errors import BadRequest
from chalicelib.http import json_errors

bp = Blueprint(__name__)
JSON = ["application/json"]
BLOCK_FIELDS = {"emails", "cards", "processor_customers", "all", "reason", "note"}


def _acting(customer_id: str) -> tuple[CustomerActions, dict]:
    request = bp.current_request
    ctx = actions_web.api_caller(request)
    return CustomerActions(ctx, customer_id), actions_web.json_body(request, BLOCK_FIELDS)


@bp.route("/api/v1/customers/{customer_id}/block", methods=["POST"], content_types=JSON)
@json_errors
def block(customer_id: str):
    acting, body = _acting(customer_id)
    return acting.block(emails=body.get("emails"), cards=body.get("cards"),
                        processor_customers=body.get("processor_customers"),
                        all_details=body.get("all", False), reason=body.get("reason"),
                        note=body.get("note"))


@bp.route("/api/v1/customers/{customer_id}/unblock", methods=["POST"], content_types=JSON)
@json_errors
def unblock(customer_id: str):
    acting, body = _acting(customer_id)
    return acting.unblock(emails=body.get("emails"), cards=body.get("cards"),
                          processor_customers=body.get("processor_customers"),
                          all_details=body.get("all", False), reason=body.get("reason"),
                          note=body.get("note"))


@bp.route("/api/v1/customers/{customer_id}/details", methods=["POST"], content_types=JSON)
@json_errors
def edit_details(customer_id: str):
    request = bp.current_request
    ctx = actions_web.api_caller(request)
    body = actions_web.json_body(request, {"name", "email", "phone", "address", "note"})
    note = body.pop("note", None)
    return CustomerActions(ctx, customer_id).edit(body, note=note)


@bp.route("/api/v1/customers/{customer_id}/merge", methods=["POST"], content_types=JSON)
@json_errors
def merge(customer_id: str):
    """Fold the record ``{"customer_id": …}`` into this one (``customer.merged``)."""
    request = bp.current_request
    ctx = actions_web.api_caller(request)
    body = actions_web.json_body(request, {"customer_id", "reason", "note"})
    return CustomerActions(ctx, customer_id).merge(body.get("customer_id"),
                                                   reason=body.get("reason"),
                                                   note=body.get("note"))


@bp.route("/api/v1/customers/{customer_id}/notes", methods=["POST"], content_types=JSON)
@json_errors
def add_customer_note(customer_id: str):
    """A note on the customer or one of its objects (chalicelib/actions/notes.py)."""
    request = bp.current_request
    ctx = actions_web.api_caller(request)
    body = actions_web.json_body(request, {"text", "object"})
    text, on = body.get("text"), body.get("object")
    if not isinstance(text, str) or not (on is None or isinstance(on, str)):
        raise BadRequest("text (and object, when given) are strings.", code="invalid_note")
    return {"note": add_note(ctx, customer_id, text, on)}


@bp.route("/api/v1/customers/{customer_id}/disputes/{dispute_id}/repayments",
          methods=["POST"], content_types=JSON)
@json_errors
def record_repayment(customer_id: str, dispute_id: str):
    """Record a repayment of a lost dispute made elsewhere (chalicelib/actions/disputes.py)."""
    request = bp.current_request
    ctx = actions_web.api_caller(request)
    body = actions_web.json_body(request, {"amount", "method", "note"})
    return DisputeActions(ctx, customer_id).record_repayment(
        dispute_id, body.get("amount"), body.get("method"), body.get("note"))


@bp.route("/api/v1/customers/{customer_id}/disputes/{dispute_id}/repayment-link",
          methods=["POST"], content_types=JSON)
@json_errors
def send_repayment_link(customer_id: str, dispute_id: str):
    """E-mail the customer a payment link for what remains of a lost dispute
    (chalicelib/actions/disputes.py)."""
    request = bp.current_request
    ctx = actions_web.api_caller(request)
    actions_web.json_body(request, set())
    return DisputeActions(ctx, customer_id).send_repayment_link(dispute_id)
