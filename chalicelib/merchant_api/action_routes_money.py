"""Merchant API: refunds (chalicelib/actions/refunds.py). The POST takes a JSON object and an
``Idempotency-Key`` header (the same key and body answer the first result, even while it
runs; the same key with another body is 422).

  POST /api/v1/customers/{id}/payments/{payment}/refunds   {"amount", "reason", "note"}
       amount: minor units (cents), optional (absent: all that remains refundable);
       reason: duplicate, fraudulent, requested_by_customer or other. 201 with the refund
       and the payment's refunded and remaining amounts; 503 refund_pending when the
       processor's answer is unknown (send the same request again).
"""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.actions import web as actions_web
from chalicelib.actions.refunds import Refunds, parse_minor_amount
from chalicelib.http import json_errors

bp = Blueprint(__name__)
JSON = ["application/json"]


@bp.route("/api/v1/customers/{customer_id}/payments/{payment_id}/refunds", methods=["POST"],
          content_types=JSON)
@json_errors
def create_refund(customer_id: str, payment_id: str):
    request = bp.current_request
    ctx = actions_web.api_caller(request)
    body = actions_web.json_body(request, {"amount", "reason", "note"})
    result = Refunds(ctx, customer_id).refund(
        payment_id, parse_minor_amount(body.get("amount")), body.get("reason"), body.get("note"))
    return Response(body=result.body, status_code=result.status,
                    headers={"Content-Type": "application/json"})
