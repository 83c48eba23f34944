"""The customer portal: ``/portal/<account slug>/…``. Each view parses the request, calls
the service, renders a page (chalicelib/templates/portal/).

  GET       /portal/{slug}/                   sign-in page, or the customer's overview
  POST      /portal/{slug}/sign-in            ask for a link (always "check your e-mail")
  GET       /portal/{slug}/code               enter a code from the e-mail
  POST      /portal/{slug}/code               sign in with the code
  GET|HEAD  /portal/{slug}/link?token=…       "Continue to your account" (spends nothing)
  POST      /portal/{slug}/link               spend the link's token: session, then overview
  POST      /portal/{slug}/sign-out
  GET       /portal/{slug}/orders/{id}
  GET       /portal/{slug}/subscriptions/{id} a subscription or a payment plan
  GET       /portal/{slug}/receipts/{id}      HTML receipt of a successful payment
  GET       /portal/{slug}/receipts/{id}/pdf  303 to a short-lived URL of the PDF
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.errors import BadRequest, Gone
from chalicelib.portal import service
from chalicelib.portal.web import CSRF_COOKIE, SESSION_COOKIE, Visit, portal_view

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]


def _sign_in_page(visit: Visit, status: int = 200, **context):
    return visit.page("sign_in.html", status=status, csrf=visit.anonymous_csrf(),
                      email=context.pop("email", ""), **context)


@bp.route("/portal/{slug}", methods=["GET"])
@portal_view(bp)
def home(visit: Visit):
    who = visit.signed_in()
    if who is None:
        if visit.cookies.get(SESSION_COOKIE):
            visit.clear_cookie(SESSION_COOKIE)
        return _sign_in_page(visit)
    return visit.page("overview.html", csrf=who.csrf_token, **service.overview(who))


@bp.route("/portal/{slug}/sign-in", methods=["POST"], content_types=FORM)
@portal_view(bp)
def ask_for_link(visit: Visit):
    form = visit.form()
    visit.check_anonymous_csrf(form)
    try:
        email = service.request_sign_in(visit.portal, form.get("email"), visit.client_ip,
                                        visit.base)
    except BadRequest as exc:
        return _sign_in_page(visit, status=exc.status, error=exc.message, invalid=True,
                             email=(form.get("email") or "")[:320])
    return visit.page("check_email.html", csrf=visit.anonymous_csrf(), email=email)


@bp.route("/portal/{slug}/sign-in", methods=["GET"])
@portal_view(bp)
def sign_in_reloaded(visit: Visit):
    """A reload or bookmark of a form's target: back to the portal's front page."""
    return visit.redirect(f"{visit.root}/")


@bp.route("/portal/{slug}/sign-out", methods=["GET"])
@portal_view(bp)
def sign_out_reloaded(visit: Visit):
    return visit.redirect(f"{visit.root}/")


@bp.route("/portal/{slug}/code", methods=["GET"])
@portal_view(bp)
def code_form(visit: Visit):
    return visit.page("code.html", csrf=visit.anonymous_csrf(),
                      email=(visit.query("email") or "")[:320], error=None)


@bp.route("/portal/{slug}/code", methods=["POST"], content_types=FORM)
@portal_view(bp)
def use_code(visit: Visit):
    form = visit.form()
    visit.check_anonymous_csrf(form)
    try:
        session = service.redeem_code(visit.portal, form.get("email"), form.get("code"),
                                      visit.client_ip)
    except Gone as exc:
        return _sign_in_page(visit, status=exc.status, error=exc.message,
                             email=(form.get("email") or "")[:320])
    except BadRequest as exc:
        return visit.page("code.html", status=exc.status, csrf=visit.anonymous_csrf(),
                          email=(form.get("email") or "")[:320], error=exc.message)
    return _signed_in(visit, session)


@bp.route("/portal/{slug}/link", methods=["GET", "HEAD"])
@portal_view(bp)
def open_link(visit: Visit):
    head = visit.request.method == "HEAD"
    token = visit.query("token")
    if not service.link_usable(visit.portal, token):
        if head:
            return visit.page("sign_in.html", status=410, head=True)
        return _sign_in_page(visit, status=410, error=service.LINK_GONE)
    if head:
        return visit.page("continue.html", head=True)
    return visit.page("continue.html", csrf=visit.anonymous_csrf(), token=token)


@bp.route("/portal/{slug}/link", methods=["POST"], content_types=FORM)
@portal_view(bp)
def use_link(visit: Visit):
    form = visit.form()
    visit.check_anonymous_csrf(form)
    try:
        session = service.redeem_link(visit.portal, form.get("token"), visit.client_ip)
    except Gone as exc:
        return _sign_in_page(visit, status=exc.status, error=exc.message)
    return _signed_in(visit, session)


def _signed_in(visit: Visit, session: service.NewSession):
    visit.set_cookie(SESSION_COOKIE, session.cookie_value, session.max_age)
    visit.clear_cookie(CSRF_COOKIE)
    return visit.redirect(f"{visit.root}/")


@bp.route("/portal/{slug}/sign-out", methods=["POST"], content_types=FORM)
@portal_view(bp)
def sign_out(visit: Visit):
    form = visit.form()
    who = visit.signed_in()
    if who is not None:
        service.check_session_csrf(who, form.get("csrf"))
        service.sign_out(who)
    visit.clear_cookie(SESSION_COOKIE)
    return visit.redirect(f"{visit.root}/")


@bp.route("/portal/{slug}/orders/{order_id}", methods=["GET"])
@portal_view(bp)
def order(visit: Visit, order_id: str):
    who = visit.signed_in()
    if who is None:
        return visit.redirect(f"{visit.root}/")
    return visit.page("order.html", csrf=who.csrf_token, **service.order(who, order_id))


@bp.route("/portal/{slug}/subscriptions/{subscription_id}", methods=["GET"])
@portal_view(bp)
def subscription(visit: Visit, subscription_id: str):
    who = visit.signed_in()
    if who is None:
        return visit.redirect(f"{visit.root}/")
    return visit.page("subscription.html", csrf=who.csrf_token,
                      **service.subscription(who, subscription_id))


@bp.route("/portal/{slug}/receipts/{payment_id}", methods=["GET"])
@portal_view(bp)
def receipt(visit: Visit, payment_id: str):
    who = visit.signed_in()
    if who is None:
        return visit.redirect(f"{visit.root}/")
    return visit.page("receipt.html", csrf=who.csrf_token, doc=service.receipt(who, payment_id))


@bp.route("/portal/{slug}/receipts/{payment_id}/pdf", methods=["GET"])
@portal_view(bp)
def receipt_pdf(visit: Visit, payment_id: str):
    who = visit.signed_in()
    if who is None:
        return visit.redirect(f"{visit.root}/")
    return visit.redirect(service.receipt_pdf_url(who, payment_id))
