"""Lifting a customer's e-mail suppression (chalicelib/notices/suppression.py ``lift``), on
the dashboard and the merchant API. Owners and admins (``manage_notices``); support and
read-only get 403 and nothing is written.

  GET   /dashboard/{slug}/customers/{id}/suppression   the address's suppression (bounce or
        complaint, when, SES's detail), the warning, and the form
  POST  the same: reason (required), ``confirm_complaint=1`` for a complaint, CSRF and a
        one-time action id → 303 back with a notice; a refusal re-renders the form
  GET    /api/v1/customers/{id}/suppression   {"customer_id", "email", "suppression":
         {"reason", "detail", "at"} or null}
  DELETE /api/v1/customers/{id}/suppression   {"reason", "confirm_complaint"} with an
         ``Idempotency-Key``: the lifted suppression; 409 ``not_suppressed``, 400
         ``complaint_confirmation_required``
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.accounts.service import authenticate
from chalicelib.actions import web as actions_web
from chalicelib.dashboard import web
from chalicelib.errors import AppError
from chalicelib.http import json_errors
from chalicelib.notices import suppression

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
JSON = ["application/json"]
PAGE_PATH = "/dashboard/{slug}/customers/{customer_id}/suppression"
LIFTED = "The suppression is lifted: notices and payment e-mails go to this address again."


def _page(request, visit, customer_id: str, *, status: int = 200, problem: str | None = None,
          notice: str | None = None, fields: dict | None = None):
    found = suppression.of_customer(visit.account_id, customer_id)
    return web.page(request, visit, "action_lift_suppression.html", status=status,
                    current="customers", customer_id=customer_id, email=found["email"],
                    suppression=found["suppression"], problem=problem, notice=notice,
                    fields=fields or {}, action_id=actions_web.action_id(),
                    warning=suppression.COMPLAINT_WARNING)


@bp.route(PAGE_PATH, methods=["GET"])
@web.dashboard_view(bp)
def lift_form(request, slug: str, customer_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, suppression.LIFT_PERMISSION)
    done = (request.query_params or {}).get("done")
    return _page(request, visit, customer_id, notice=LIFTED if done == "lifted" else None)


@bp.route(PAGE_PATH, methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def lift(request, slug: str, customer_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, suppression.LIFT_PERMISSION)
    fields = web.form(request, visit)
    ctx = actions_web.dashboard_context(visit, fields)
    try:
        suppression.lift(ctx, customer_id, reason=fields.get("reason"),
                         confirm_complaint=fields.get("confirm_complaint") == "1")
    except AppError as exc:
        if exc.status >= 500 or exc.status in (403, 404):
            raise
        kept = {"reason": fields.get("reason") or ""}
        return _page(request, visit, customer_id, status=exc.status, problem=exc.message,
                     fields=kept)
    return web.redirect(f"{visit.root}/customers/{customer_id}/suppression?done=lifted",
                        request)


@bp.route("/api/v1/customers/{customer_id}/suppression", methods=["GET"])
@json_errors
def api_get(customer_id: str):
    account_id = authenticate(bp.current_request.headers.get("authorization"))
    return suppression.of_customer(account_id, customer_id)


@bp.route("/api/v1/customers/{customer_id}/suppression", methods=["DELETE"],
          content_types=JSON)
@json_errors
def api_lift(customer_id: str):
    request = bp.current_request
    ctx = actions_web.api_caller(request)
    body = actions_web.json_body(request, {"reason", "confirm_complaint"})
    return suppression.lift(ctx, customer_id, reason=body.get("reason"),
                            confirm_complaint=body.get("confirm_complaint", False))
