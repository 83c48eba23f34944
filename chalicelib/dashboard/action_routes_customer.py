"""The dashboard's actions on a customer (issue 11): staff notes on the record and on a
transaction, and "update billing" (e-mail the customer a portal sign-in link that lands on
one subscription's card page).

  POST /dashboard/{slug}/customers/{id}/notes                  text, object (a payment id
       or empty), action id → 303 to the record's timeline or the transaction's notes
  POST /dashboard/{slug}/customers/{id}/subscriptions/{sub}/update-billing
       → 303 to the record with a notice

  GET   /dashboard/{slug}/customers/{id}/block   the block form: each detail (e-mail,
        processor customers, cards) with its state and log, "block all customer details"
  POST  the same: block or unblock the chosen details (``do``), a reason required; the
        first POST mails a step-up code (``block`` is a step-up permission), the second
        carries it → 303 back to the form with a notice

  GET   /dashboard/{slug}/customers/{id}/edit    the details form (name, e-mail for owners
        and admins, phone, address)
  POST  the same: only the fields that differ are changed → 303 to the record with a
        notice; an e-mail that has a record re-renders the form (409) with a link to it

  GET   /dashboard/{slug}/customers/{id}/disputes/{dispute}/repayment   a lost dispute's
        repayments, what remains, and the form to record one made elsewhere
  POST  the same (``refund``; one-time action id) → 303 back with a notice
  POST  /dashboard/{slug}/customers/{id}/disputes/{dispute}/repayment-link   (``refund``;
        one-time action id) e-mail the customer a payment link for what remains → 303 back
        to the repayments page with a notice

Each checks the role on the server (``note``; ``resend_email``; ``block``) and the
session's CSRF token; the note and the block carry a one-time action id (a double
submission acts once).
"""
from __future__ import annotations

import re

from chalice import Blueprint

from chalicelib.actions import disputes as dispute_actions
from chalicelib.actions import web as actions_web
from chalicelib.actions.customer import ADDRESS_FIELDS, EMAIL_CHANGERS, CustomerActions, EmailTaken
from chalicelib.actions.notes import add_note
from chalicelib.activity import service as activity
from chalicelib.blocks import service as blocks
from chalicelib.dashboard import service, web
from chalicelib.errors import AppError, BadRequest, NotFound
from chalicelib.records import service as records
from chalicelib.signin import step_up

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
_PAYMENT_ID = re.compile(r"^pay_[a-z2-7]{24}$")


@bp.route("/dashboard/{slug}/customers/{customer_id}/notes", methods=["POST"],
          content_types=FORM)
@web.dashboard_view(bp)
def add_customer_note(request, slug: str, customer_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "note")
    fields = web.form(request, visit)
    on = (fields.get("object") or "").strip() or None
    if on is not None and not _PAYMENT_ID.match(on):
        raise BadRequest("A note is on the customer or on one of its payments.",
                         code="invalid_object")
    add_note(actions_web.dashboard_context(visit, fields), customer_id,
             fields.get("text") or "", on)
    here = f"{visit.root}/customers/{customer_id}"
    if on:
        return web.redirect(f"{here}/transactions/{on}#notes-h", request)
    return web.redirect(f"{here}?source=note#timeline-h", request)


@bp.route("/dashboard/{slug}/customers/{customer_id}/subscriptions/{subscription_id}/"
          "update-billing", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def update_billing(request, slug: str, customer_id: str, subscription_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "resend_email")
    web.form(request, visit)
    email = service.send_sign_in_link(visit.account_id, slug, customer_id, visit.client_ip,
                                      visit.http.base if visit.http else "",
                                      subscription_id=subscription_id)
    activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                    action="customer.update_billing_link_sent", target=customer_id,
                    details={"to": email, "subscription_id": subscription_id},
                    ip=visit.client_ip)
    return web.redirect(f"{visit.root}/customers/{customer_id}?done=billing_link_sent"
                        f"#sub-{subscription_id}", request)


# --- block and unblock customer details --------------------------------------------------

BLOCK_PATH = "/dashboard/{slug}/customers/{customer_id}/block"
BLOCK_DONE = {"block": "The chosen details are blocked.",
              "unblock": "The chosen details are unblocked."}


def _block_state(visit, customer_id: str) -> dict:
    if not service.CUSTOMER_ID_RE.match(customer_id or ""):
        raise NotFound("There is no such customer.")
    overview, _ = records.get_overview(visit.account_id, customer_id, 1)
    if overview is None:
        raise NotFound("There is no such customer.")
    return {"customer": overview, "blocks": blocks.record_view(visit.account_id, overview, None)}


def _block_page(request, visit, customer_id: str, *, status: int = 200,
                problem: str | None = None, fields: dict | None = None,
                action_id: str | None = None, needs_code: bool = False,
                notice: str | None = None):
    return web.page(request, visit, "action_block.html", status=status, current="customers",
                    customer_id=customer_id, problem=problem, notice=notice,
                    fields=fields or {}, action_id=action_id or actions_web.action_id(),
                    needs_code=needs_code, **_block_state(visit, customer_id))


@bp.route(BLOCK_PATH, methods=["GET"])
@web.dashboard_view(bp)
def block_form(request, slug: str, customer_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "block")
    done = (request.query_params or {}).get("done")
    return _block_page(request, visit, customer_id, notice=BLOCK_DONE.get(done or ""))


@bp.route(BLOCK_PATH, methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def block_or_unblock(request, slug: str, customer_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "block")
    fields = web.form(request, visit)
    ctx = actions_web.dashboard_context(visit, fields)
    do = fields.get("do")
    if do not in BLOCK_DONE:
        raise BadRequest("Choose to block or to unblock.", code="bad_request")
    chosen = {
        "emails": [v for k, v in fields.items() if k == "email" and v],
        "cards": sorted(k.removeprefix("card:") for k, v in fields.items()
                        if k.startswith("card:") and v == "1"),
        "processor_customers": sorted(k.removeprefix("customer:") for k, v in fields.items()
                                      if k.startswith("customer:") and v == "1"),
        "all_details": fields.get("all") == "1",
    }
    kept = {k: v for k, v in fields.items() if k not in ("csrf", "action_id", "step_up_code")}
    acting = CustomerActions(ctx, customer_id)
    # The code is bound to what it confirms: this action id (this form's request).
    step_up_action = f"customer.{do}:{customer_id}:{ctx.idempotency_key}"
    try:
        code = (fields.get("step_up_code") or "").strip()
        if not code:
            # Checked before a code is mailed; the action checks all of it again.
            if not chosen["all_details"] and not any(chosen[k] for k in
                                                     ("emails", "cards", "processor_customers")):
                raise BadRequest("Choose the details, or all of them.", code="nothing_chosen")
            if not (fields.get("reason") or "").strip():
                raise BadRequest("The reason is required.", code="reason_required")
            step_up.issue_step_up(visit, step_up_action,
                                  f"{'blocking' if do == 'block' else 'unblocking'} details "
                                  f"of customer {customer_id}")
            return _block_page(request, visit, customer_id, fields=kept,
                               action_id=ctx.idempotency_key, needs_code=True)
        change = acting.block if do == "block" else acting.unblock
        change(**chosen, reason=fields.get("reason"), note=fields.get("note"),
               before_perform=lambda: step_up.verify_step_up(visit, step_up_action, code))
    except step_up.StepUpRefused as refused:  # the same form, to enter the code again
        return _block_page(request, visit, customer_id, status=refused.status,
                           problem=refused.message, fields=kept,
                           action_id=ctx.idempotency_key, needs_code=True)
    except AppError as exc:
        if exc.status >= 500 or exc.status == 404 or exc.code == "csrf":
            raise
        return _block_page(request, visit, customer_id, status=exc.status,
                           problem=exc.message, fields=kept)
    return web.redirect(f"{visit.root}/customers/{customer_id}/block?done={do}", request)


# --- edit customer details ------------------------------------------------------------------

EDIT_PATH = "/dashboard/{slug}/customers/{customer_id}/edit"
EDIT_DONE = {"edited": "The customer's details are changed at the processor and here.",
             "merged": ("The other record is merged into this one. You can now change the "
                        "e-mail address to the one it had."),
             "email": ("The new e-mail address is sent to the processor; the record moves to it "
                       "when the processor confirms (usually within seconds). The old address "
                       "was told.")}


def _current(overview: dict) -> dict[str, str]:
    address = overview.get("address") if isinstance(overview.get("address"), dict) else {}
    return {"name": overview.get("name") or "", "email": overview.get("email") or "",
            "phone": overview.get("phone") or "",
            **{f"address_{k}": (address or {}).get(k) or "" for k in ADDRESS_FIELDS}}


def _edit_page(request, visit, customer_id: str, *, status: int = 200,
               problem: str | None = None, fields: dict | None = None,
               taken: str | None = None, notice: str | None = None):
    state = _block_state(visit, customer_id)
    shown = _current(state["customer"])
    return web.page(request, visit, "action_edit.html", status=status, current="customers",
                    customer_id=customer_id, customer=state["customer"], problem=problem,
                    notice=notice, fields=fields or shown, shown=shown, taken=taken,
                    may_change_email=visit.role in EMAIL_CHANGERS,
                    action_id=actions_web.action_id(), merge_action_id=actions_web.action_id())


@bp.route(EDIT_PATH, methods=["GET"])
@web.dashboard_view(bp)
def edit_form(request, slug: str, customer_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "edit_customer")
    done = (request.query_params or {}).get("done")
    return _edit_page(request, visit, customer_id, notice=EDIT_DONE.get(done or ""))


@bp.route(EDIT_PATH, methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def edit_details(request, slug: str, customer_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "edit_customer")
    fields = web.form(request, visit)
    ctx = actions_web.dashboard_context(visit, fields)
    # The values the form showed (so a double submission is the same request, answered
    # once), else the record's.
    shown = _current(_block_state(visit, customer_id)["customer"])
    current = {k: fields.get(f"was_{k}", v) for k, v in shown.items()}
    kept = {k: (fields.get(k) or "").strip() for k in current}
    changes: dict = {k: kept[k] for k in ("name", "phone") if kept[k] != current[k]}
    if kept["email"] and kept["email"].casefold() != current["email"].casefold():
        changes["email"] = kept["email"]
    if any(kept[f"address_{k}"] != current[f"address_{k}"] for k in ADDRESS_FIELDS):
        changes["address"] = {k: kept[f"address_{k}"] for k in ADDRESS_FIELDS}
    if not changes:
        return _edit_page(request, visit, customer_id, status=400, fields=kept,
                          problem="Nothing was changed.")
    try:
        CustomerActions(ctx, customer_id).edit(changes, note=fields.get("note"))
    except EmailTaken as taken:
        return _edit_page(request, visit, customer_id, status=taken.status, fields=kept,
                          problem=taken.message, taken=taken.other_customer_id)
    except AppError as exc:
        if exc.status >= 500 or exc.status == 404 or exc.code == "csrf":
            raise
        return _edit_page(request, visit, customer_id, status=exc.status, fields=kept,
                          problem=exc.message)
    done = "email" if "email" in changes else "edited"
    return web.redirect(f"{visit.root}/customers/{customer_id}/edit?done={done}", request)


# --- merge two records ------------------------------------------------------------------------

@bp.route("/dashboard/{slug}/customers/{customer_id}/merge", methods=["POST"],
          content_types=FORM)
@web.dashboard_view(bp)
def merge_records(request, slug: str, customer_id: str):
    """Fold the record ``other`` (the one holding the e-mail asked for) into this one; the
    form on the edit page's conflict, for owners and admins."""
    visit = web.staff_visit(request, slug)
    web.require(visit, "edit_customer")
    fields = web.form(request, visit)
    ctx = actions_web.dashboard_context(visit, fields)
    try:
        CustomerActions(ctx, customer_id).merge(fields.get("other"), note=fields.get("note"))
    except AppError as exc:
        if exc.status >= 500 or exc.status == 404 or exc.code == "csrf":
            raise
        return _edit_page(request, visit, customer_id, status=exc.status, problem=exc.message)
    return web.redirect(f"{visit.root}/customers/{customer_id}/edit?done=merged", request)


# --- a lost dispute's repayments --------------------------------------------------------------

REPAYMENT_PATH = "/dashboard/{slug}/customers/{customer_id}/disputes/{dispute_id}/repayment"
_REPAYMENT_NOTICES = {
    "recorded": "The repayment is recorded.",
    "recorded_link_deactivated": "The repayment is recorded. The open repayment link asked "
                                 "for more than now remains, so it was deactivated: send a "
                                 "new link for the remaining amount below.",
    "link_sent": "The repayment link was e-mailed to the customer.",
    "link_not_mailed": "The repayment link was created but could not be e-mailed: copy it "
                       "from below and send it to the customer.",
    "link_open": "A repayment link is already open: it is shown below.",
}


def _repayment_page(request, visit, customer_id: str, dispute_id: str, *, status: int = 200,
                    problem: str | None = None, fields: dict | None = None,
                    notice: str | None = None):
    if not service.CUSTOMER_ID_RE.match(customer_id or ""):
        raise NotFound("There is no such customer.")
    record = records.get_record(visit.account_id, customer_id, consistent=True)
    if record is None:
        raise NotFound("There is no such customer.")
    dispute = next((d for d in record.get("disputes") or [] if d["id"] == dispute_id), None)
    if dispute is None:
        raise NotFound("There is no such dispute.")
    return web.page(request, visit, "action_dispute_repayment.html", status=status,
                    current="customers", customer=record, customer_id=customer_id,
                    dispute=dispute, state=dispute_actions.repayment_state(visit.account_id,
                                                                           dispute),
                    problem=problem, notice=notice, fields=fields or {},
                    action_id=actions_web.action_id(), link_action_id=actions_web.action_id())


@bp.route(REPAYMENT_PATH, methods=["GET"])
@web.dashboard_view(bp)
def repayment_form(request, slug: str, customer_id: str, dispute_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "refund")
    done = (request.query_params or {}).get("done")
    return _repayment_page(request, visit, customer_id, dispute_id,
                           notice=_REPAYMENT_NOTICES.get(done or ""))


@bp.route(REPAYMENT_PATH, methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def record_repayment(request, slug: str, customer_id: str, dispute_id: str):
    from chalicelib.actions.refunds import parse_major_amount

    visit = web.staff_visit(request, slug)
    web.require(visit, "refund")
    fields = web.form(request, visit)
    ctx = actions_web.dashboard_context(visit, fields)
    kept = {k: fields.get(k, "") for k in ("amount", "method", "note")}
    try:
        record = records.get_record(visit.account_id, customer_id, consistent=True) or {}
        dispute = next((d for d in record.get("disputes") or [] if d["id"] == dispute_id), None)
        if dispute is None:
            raise NotFound("There is no such dispute.")
        amount = parse_major_amount(fields.get("amount"), dispute.get("currency") or "eur")
        if amount is None:
            raise BadRequest("Enter the amount repaid.", code="bad_amount")
        recorded = dispute_actions.DisputeActions(ctx, customer_id).record_repayment(
            dispute_id, amount, (fields.get("method") or "").strip() or None,
            (fields.get("note") or "").strip() or None)
    except AppError as exc:
        if exc.status >= 500 or exc.status == 404 or exc.code == "csrf":
            raise
        return _repayment_page(request, visit, customer_id, dispute_id, status=exc.status,
                               problem=exc.message, fields=kept)
    done = "recorded_link_deactivated" if recorded.get("next") else "recorded"
    return web.redirect(f"{visit.root}/customers/{customer_id}/disputes/{dispute_id}/"
                        f"repayment?done={done}", request)


@bp.route(REPAYMENT_PATH + "-link", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def send_repayment_link(request, slug: str, customer_id: str, dispute_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "refund")
    fields = web.form(request, visit)
    ctx = actions_web.dashboard_context(visit, fields)
    try:
        if not service.CUSTOMER_ID_RE.match(customer_id or ""):
            raise NotFound("There is no such customer.")
        sent = dispute_actions.DisputeActions(ctx, customer_id).send_repayment_link(dispute_id)
    except AppError as exc:
        if exc.status >= 500 or exc.status == 404 or exc.code == "csrf":
            raise
        return _repayment_page(request, visit, customer_id, dispute_id, status=exc.status,
                               problem=exc.message)
    done = "link_open" if not sent["created"] else \
        "link_sent" if sent["mailed"] else "link_not_mailed"
    return web.redirect(f"{visit.root}/customers/{customer_id}/disputes/{dispute_id}/"
                        f"repayment?done={done}", request)
