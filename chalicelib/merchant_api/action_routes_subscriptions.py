"""Merchant API: actions on a customer's subscriptions and failed payments
(chalicelib/actions/subscriptions.py). Each POST takes a JSON object and an
``Idempotency-Key`` header (the same key and body answer the first result; the same key
with another body is 422); the preview is a read and takes none.

  POST /api/v1/customers/{id}/subscriptions/{sub}/cancel        {"at", "prorate", "reason", "note"}
  POST /api/v1/customers/{id}/subscriptions/{sub}/recover       {"note"}
  POST /api/v1/customers/{id}/subscriptions/{sub}/pause         {"behavior", "resumes_at", …}
  POST /api/v1/customers/{id}/subscriptions/{sub}/resume        {"note"}
  POST /api/v1/customers/{id}/subscriptions/{sub}/plan-preview  {"price", "prorate"}
  POST /api/v1/customers/{id}/subscriptions/{sub}/plan          {"price", "prorate",
                                                                 "proration_date", …}
  POST /api/v1/customers/{id}/payments/{payment}/retry          {"card_id", "note"}
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.accounts.service import authenticate
from chalicelib.actions import web as actions_web
from chalicelib.actions.service import ActionContext
from chalicelib.actions.subscriptions import SubscriptionActions
from chalicelib.errors import BadRequest
from chalicelib.http import json_errors
from chalicelib.signin import web as http
from chalicelib.staff import roles

bp = Blueprint(__name__)
JSON = ["application/json"]


def _actions(customer_id: str) -> tuple[SubscriptionActions, dict]:
    request = bp.current_request
    return SubscriptionActions(actions_web.api_caller(request), customer_id), request


def _bool(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f'"{name}" must be true or false.', code="bad_request")
    return value


@bp.route("/api/v1/customers/{customer_id}/subscriptions/{subscription_id}/cancel",
          methods=["POST"], content_types=JSON)
@json_errors
def cancel(customer_id: str, subscription_id: str):
    acting, request = _actions(customer_id)
    body = actions_web.json_body(request, {"at", "prorate", "reason", "note"})
    return acting.cancel(subscription_id, body.get("at", "period_end"),
                         prorate=_bool(body, "prorate", False), reason=body.get("reason"),
                         note=body.get("note"))


@bp.route("/api/v1/customers/{customer_id}/subscriptions/{subscription_id}/recover",
          methods=["POST"], content_types=JSON)
@json_errors
def recover(customer_id: str, subscription_id: str):
    acting, request = _actions(customer_id)
    body = actions_web.json_body(request, {"note"})
    return acting.recover(subscription_id, note=body.get("note"))


@bp.route("/api/v1/customers/{customer_id}/subscriptions/{subscription_id}/pause",
          methods=["POST"], content_types=JSON)
@json_errors
def pause(customer_id: str, subscription_id: str):
    acting, request = _actions(customer_id)
    body = actions_web.json_body(request, {"behavior", "resumes_at", "reason", "note"})
    return acting.pause(subscription_id, body.get("behavior", "void"), body.get("resumes_at"),
                        reason=body.get("reason"), note=body.get("note"))


@bp.route("/api/v1/customers/{customer_id}/subscriptions/{subscription_id}/resume",
          methods=["POST"], content_types=JSON)
@json_errors
def resume(customer_id: str, subscription_id: str):
    acting, request = _actions(customer_id)
    body = actions_web.json_body(request, {"note"})
    return acting.resume(subscription_id, note=body.get("note"))


def preview_body(preview) -> dict:
    return {"currency": preview.currency, "proration_date": preview.proration_date,
            "proration_amount": preview.proration_amount, "amount_due": preview.amount_due,
            "next_payment_at": preview.next_payment_at,
            "lines": [{"description": line.description, "amount": line.amount,
                       "proration": line.proration} for line in preview.lines]}


@bp.route("/api/v1/customers/{customer_id}/subscriptions/{subscription_id}/plan-preview",
          methods=["POST"], content_types=JSON)
@json_errors
def plan_preview(customer_id: str, subscription_id: str):
    request = bp.current_request
    account_id = authenticate(request.headers.get("authorization"))
    # A read: no Idempotency-Key needed (one is accepted and ignored).
    ctx = ActionContext(account_id=account_id, actor_id=actions_web.API_ACTOR,
                        actor_email=None, role=roles.ADMIN, ip=http.client_ip(request),
                        source="api", idempotency_key="-")
    body = actions_web.json_body(request, {"price", "prorate"})
    preview = SubscriptionActions(ctx, customer_id).preview_plan_change(
        subscription_id, body.get("price"), _bool(body, "prorate", True))
    return preview_body(preview)


@bp.route("/api/v1/customers/{customer_id}/subscriptions/{subscription_id}/plan",
          methods=["POST"], content_types=JSON)
@json_errors
def change_plan(customer_id: str, subscription_id: str):
    acting, request = _actions(customer_id)
    body = actions_web.json_body(request, {"price", "prorate", "proration_date", "reason", "note"})
    if "proration_date" not in body:
        raise BadRequest('"proration_date" is required: send the preview\'s.', code="bad_request")
    return acting.change_plan(subscription_id, body.get("price"), _bool(body, "prorate", True),
                              body["proration_date"], reason=body.get("reason"),
                              note=body.get("note"))


@bp.route("/api/v1/customers/{customer_id}/payments/{payment_id}/retry",
          methods=["POST"], content_types=JSON)
@json_errors
def retry_payment(customer_id: str, payment_id: str):
    acting, request = _actions(customer_id)
    body = actions_web.json_body(request, {"card_id", "note"})
    return acting.retry_payment(payment_id, body.get("card_id"), note=body.get("note"))
