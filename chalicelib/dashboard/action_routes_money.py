"""The dashboard's money actions (chalicelib/actions/refunds.py): a refund form per payment.

  GET   /dashboard/{slug}/customers/{id}/payments/{payment}/refund   the form: paid,
        refunded, what remains refundable, the reasons (fraudulent's block-list warning,
        a dispute's warning), the support limit
  POST  the same: refund (one-time action id; above the support limit the member needs
        refund_over_limit and a step-up code mailed on the first POST) → 303 back to the
        form, which shows the refund made and what remains

Errors re-render the form with the message and the status (400, 403, 409, 503); a refund
whose processor answer is unknown (503) keeps its action id, so sending the form again
confirms the same refund and never makes a second one.
"""
from __future__ import annotations

from urllib.parse import quote

from chalice import Blueprint

from chalicelib.actions import web as actions_web
from chalicelib.actions.refunds import RefundPending, Refunds, parse_major_amount
from chalicelib.dashboard import web
from chalicelib.errors import AppError, BadRequest
from chalicelib.signin import step_up

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
PATH = "/dashboard/{slug}/customers/{customer_id}/payments/{payment_id}/refund"


def _step_up_action(payment_id: str, amount: int | None) -> str:
    return f"refund:{payment_id}:{amount if amount is not None else 'all'}"


def _page(request, visit, refunds: Refunds, payment_id: str, *, status: int = 200,
          problem: str | None = None, fields: dict | None = None, action_id: str | None = None,
          needs_code: bool = False, done: str | None = None):
    state = refunds.state(payment_id)
    done_refund = next((r for r in state["payment"].get("refunds") or [] if r["id"] == done),
                       None) if done else None
    return web.page(request, visit, "action_refund.html", status=status, current="customers",
                    state=state, customer_id=refunds.customer_id, problem=problem,
                    fields=fields or {}, action_id=action_id or actions_web.action_id(),
                    needs_code=needs_code, done=done_refund,
                    over_limit_allowed=visit.can("refund_over_limit"))


@bp.route(PATH, methods=["GET"])
@web.dashboard_view(bp)
def refund_form(request, slug: str, customer_id: str, payment_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "refund")
    refunds = Refunds(_context(visit), customer_id)
    return _page(request, visit, refunds, payment_id, done=(request.query_params or {}).get(
        "refunded"))


def _context(visit, fields: dict | None = None):
    """A context for reads (the form); a POST's carries its action id."""
    return actions_web.dashboard_context(
        visit, fields or {actions_web.ACTION_ID_FIELD: actions_web.action_id()})


@bp.route(PATH, methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def refund(request, slug: str, customer_id: str, payment_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "refund")
    fields = web.form(request, visit)
    ctx = actions_web.dashboard_context(visit, fields)
    refunds = Refunds(ctx, customer_id)
    kept = {k: fields.get(k, "") for k in ("amount", "reason", "note")}
    try:
        state = refunds.state(payment_id)
        amount = parse_major_amount(fields.get("amount"), state["currency"])
        asked = amount if amount is not None else state["refundable"]
        if amount is not None and amount > state["refundable"]:
            # Said before a step-up code is mailed; the refund's ledger decides in the end.
            raise BadRequest("The amount is more than remains refundable on this payment.",
                             code="amount_above_remaining")
        before = None
        if refunds.permission_for(asked, state["currency"]) == "refund_over_limit" and \
                visit.can("refund_over_limit"):
            action = _step_up_action(payment_id, amount)
            code = (fields.get("step_up_code") or "").strip()
            if not code:
                step_up.issue_step_up(visit, action, f"a refund above the support limit "
                                                     f"on payment {payment_id}")
                return _page(request, visit, refunds, payment_id, fields=kept,
                             action_id=ctx.idempotency_key, needs_code=True)

            def before():
                step_up.verify_step_up(visit, action, code)
        result = refunds.refund(payment_id, amount, fields.get("reason"), fields.get("note"),
                                before_perform=before)
    except RefundPending as pending:
        return _page(request, visit, refunds, payment_id, status=pending.status,
                     problem=pending.message, fields=kept, action_id=ctx.idempotency_key)
    except AppError as exc:
        if exc.status >= 500 or exc.status == 404 or exc.code == "csrf":
            raise
        return _page(request, visit, refunds, payment_id, status=exc.status,
                     problem=exc.message, fields=kept)
    if not isinstance(result.body.get("refund"), dict):
        raise BadRequest("The refund was not made.")
    return web.redirect(f"{visit.root}/customers/{customer_id}/payments/{payment_id}/refund"
                        f"?refunded={quote(result.body['refund']['id'])}", request)
