"""The dashboard's actions on a customer (issue 11): staff notes on the record and on a
transaction, and "update billing" (e-mail the customer a portal sign-in link that lands on
one subscription's card page).

  POST /dashboard/{slug}/customers/{id}/notes                  text, object (a payment id
       or empty), action id → 303 to the record's timeline or the transaction's notes
  POST /dashboard/{slug}/customers/{id}/subscriptions/{sub}/update-billing
       → 303 to the record with a notice

Both check the role on the server (``note``; ``resend_email``) and the session's CSRF
token; the note carries a one-time action id (a double submission adds it once).
"""
from __future__ import annotations

import re

from chalice import Blueprint

from chalicelib.actions import web as actions_web
from chalicelib.actions.notes import add_note
from chalicelib.activity import service as activity
from chalicelib.dashboard import service, web
from chalicelib.errors import BadRequest

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
