"""The customer portal: ``/portal/<account slug>/…``. Each view parses the request, calls
the service, renders a page (chalicelib/templates/portal/).

  GET       /portal/{slug}/                   sign-in page, or the customer's overview
  POST      /portal/{slug}/sign-in            ask for a link (always "check your e-mail")
  GET       /portal/{slug}/code               enter a code from the e-mail
  POST      /portal/{slug}/code               sign in with the code
  GET|HEAD  /portal/{slug}/link?token=…       "Continue to your account" (spends nothing)
  POST      /portal/{slug}/link               spend the link's token: session, then overview
  POST      /portal/{slug}/sign-out
  GET       /portal/{slug}/orders             every order, newest first, 25 a page (?after=…)
  GET       /portal/{slug}/orders/{id}
  GET       /portal/{slug}/subscriptions/{id} a subscription or a payment plan, its card,
                                              failed payments to pay, cancel or keep
  GET       /portal/{slug}/receipts/{id}      HTML receipt of a successful payment
  GET       /portal/{slug}/receipts/{id}/pdf  303 to a short-lived URL of the PDF

Self-service (chalicelib/selfservice through portal.service); every POST checks the
session's CSRF token first, then answers 303 back to the page with a notice, or the
page again with the problem (a declined card, the processor unavailable, …):

  POST      /portal/{slug}/subscriptions/{id}/card               charge it (or all) to a saved card
  GET       /portal/{slug}/subscriptions/{id}/cards/new          "Add a card" (Stripe.js)
  POST      /portal/{slug}/subscriptions/{id}/cards              the card Stripe.js saved
  POST      /portal/{slug}/subscriptions/{id}/cards/{card}/remove
  POST      /portal/{slug}/payments/{id}/pay                     pay a failed invoice now
  GET       /portal/{slug}/subscriptions/{id}/cancel             confirm step, optional reason
  POST      /portal/{slug}/subscriptions/{id}/cancel             cancel at period end
  POST      /portal/{slug}/subscriptions/{id}/keep               undo that
  GET       /portal-assets/portal.js                             the portal's own script
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.errors import BadRequest, Forbidden, Gone
from chalicelib.portal import service
from chalicelib.portal.web import CSRF_COOKIE, SESSION_COOKIE, Visit, portal_view, script_response
from chalicelib.signin import service as signin

bp = Blueprint(__name__)
# The page a staff member's "update billing" link asks to open, between opening the link
# and signing in (the link's lifetime).
LANDING_COOKIE = "bp_landing"
LANDING_COOKIE_MAX_AGE = 15 * 60
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
    return _overview_page(visit, who, done=service.notice(visit.query("done")))


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
    except BadRequest as exc:  # every refused code alike (service.CODE_REFUSED)
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
    landing = visit.query("next")
    if landing and service.LANDING_RE.match(landing):
        # Kept for the POST that signs in, which checks it is the customer's own page.
        visit.set_cookie(LANDING_COOKIE, landing, LANDING_COOKIE_MAX_AGE)
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
    landing = None
    if visit.cookies.get(LANDING_COOKIE):
        visit.clear_cookie(LANDING_COOKIE)
        landing = service.landing_path(visit.portal, session.subject_id,
                                       visit.cookies[LANDING_COOKIE])
    return _signed_in(visit, session, landing)


def _signed_in(visit: Visit, session: signin.NewSession, landing: str | None = None):
    visit.set_cookie(SESSION_COOKIE, session.cookie_value, session.max_age)
    visit.clear_cookie(CSRF_COOKIE)
    return visit.redirect(f"{visit.root}/{landing or ''}")


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


@bp.route("/portal/{slug}/orders", methods=["GET"])
@portal_view(bp)
def orders(visit: Visit):
    who = visit.signed_in()
    if who is None:
        return visit.redirect(f"{visit.root}/")
    return visit.page("orders.html", csrf=who.csrf_token, **service.orders(who, visit.query("after")))


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
    return _subscription_page(visit, who, subscription_id,
                              done=service.notice(visit.query("done")))


# --- self-service --------------------------------------------------------------------------

def _overview_page(visit: Visit, who: service.SignedIn, status: int = 200, **extra):
    return _page(visit, who, "overview.html", status, service.overview(who), extra)


def _subscription_page(visit: Visit, who: service.SignedIn, subscription_id: str,
                       status: int = 200, **extra):
    return _page(visit, who, "subscription.html", status,
                 service.subscription(who, subscription_id), extra)


def _page(visit: Visit, who: service.SignedIn, template: str, status: int, page: dict,
          extra: dict):
    context = {"done": None, "problem": None, "payment_problem": None, "action": None,
               **page, **extra}
    return visit.page(template, status=status, csrf=who.csrf_token,
                      stripe_js=bool(context["action"] and context["action"]["client_secret"]),
                      **context)


def _signed_in_post(visit: Visit) -> tuple[service.SignedIn, dict]:
    """The form of a signed-in customer's POST, after its CSRF token is checked: a POST
    without a live session or without the session's token changes nothing (403)."""
    form = visit.form()
    who = visit.signed_in()
    if who is None:
        raise Forbidden("Your session has ended. Please sign in again.", code="csrf")
    service.check_session_csrf(who, form.get("csrf"))
    return who, form


def _change(visit: Visit, subscription_id: str, change):
    """A POST about one subscription: back to its page with a notice (303), or its page
    again with the problem and the error's status."""
    who, form = _signed_in_post(visit)
    try:
        done = change(who, form)
    except service.SHOWN_ON_PAGE as exc:
        return _subscription_page(visit, who, subscription_id, status=exc.status,
                                  problem=exc.message)
    return visit.redirect(f"{visit.root}/subscriptions/{subscription_id}?done={done}")


@bp.route("/portal/{slug}/subscriptions/{subscription_id}/card", methods=["POST"],
          content_types=FORM)
@portal_view(bp)
def choose_card(visit: Visit, subscription_id: str):
    return _change(visit, subscription_id, lambda who, form: service.set_card(
        who, subscription_id, form.get("card"), form.get("for_all") == "1"))


@bp.route("/portal/{slug}/subscriptions/{subscription_id}/cards/new", methods=["GET"])
@portal_view(bp)
def new_card(visit: Visit, subscription_id: str):
    who = visit.signed_in()
    if who is None:
        return visit.redirect(f"{visit.root}/")
    try:
        page = service.card_setup(who, subscription_id)
    except service.SHOWN_ON_PAGE as exc:
        return _subscription_page(visit, who, subscription_id, status=exc.status,
                                  problem=exc.message)
    return visit.page("add_card.html", csrf=who.csrf_token,
                      stripe_js=bool(page["client_secret"]), **page)


@bp.route("/portal/{slug}/subscriptions/{subscription_id}/cards", methods=["POST"],
          content_types=FORM)
@portal_view(bp)
def add_card(visit: Visit, subscription_id: str):
    return _change(visit, subscription_id, lambda who, form: service.add_card(
        who, subscription_id, form.get("payment_method"), form.get("for_all") == "1"))


@bp.route("/portal/{slug}/subscriptions/{subscription_id}/cards/{card_id}/remove",
          methods=["POST"], content_types=FORM)
@portal_view(bp)
def remove_card(visit: Visit, subscription_id: str, card_id: str):
    return _change(visit, subscription_id,
                   lambda who, form: service.remove_card(who, subscription_id, card_id))


@bp.route("/portal/{slug}/subscriptions/{subscription_id}/cancel", methods=["GET"])
@portal_view(bp)
def cancel_form(visit: Visit, subscription_id: str):
    who = visit.signed_in()
    if who is None:
        return visit.redirect(f"{visit.root}/")
    return visit.page("cancel.html", csrf=who.csrf_token,
                      **service.cancel_form(who, subscription_id))


@bp.route("/portal/{slug}/subscriptions/{subscription_id}/cancel", methods=["POST"],
          content_types=FORM)
@portal_view(bp)
def cancel(visit: Visit, subscription_id: str):
    return _change(visit, subscription_id, lambda who, form: service.cancel(
        who, subscription_id, form.get("reason")))


@bp.route("/portal/{slug}/subscriptions/{subscription_id}/keep", methods=["POST"],
          content_types=FORM)
@portal_view(bp)
def keep(visit: Visit, subscription_id: str):
    return _change(visit, subscription_id,
                   lambda who, form: service.keep(who, subscription_id))


@bp.route("/portal/{slug}/payments/{payment_id}/pay", methods=["POST"], content_types=FORM)
@portal_view(bp)
def pay(visit: Visit, payment_id: str):
    """Pay a failed invoice with the chosen card; the outcome shows on the page the form
    was on (the overview's alert, or the subscription's page) at once."""
    who, form = _signed_in_post(visit)
    status = 200
    try:
        result = service.pay_now(who, payment_id, form.get("card"), form.get("attempt"))
    except service.SHOWN_ON_PAGE as exc:
        status = exc.status
        result = service.PaymentResult("error", exc.message, None,
                                       service.payment_subscription(who, payment_id))
    on_overview = form.get("from") == "overview" or result.subscription_id is None
    if result.status == "paid":
        target = "/" if on_overview else f"/subscriptions/{result.subscription_id}"
        return visit.redirect(f"{visit.root}{target}?done=paid")
    if result.status == "declined":
        status = 402
    action = None
    if result.status == "requires_action":
        key = service.publishable_key(who)
        action = {"payment_id": payment_id, "message": result.message, "card": form.get("card"),
                  "client_secret": result.client_secret if key else None, "stripe_key": key}
    problem = None if action else {"payment_id": payment_id, "message": result.message}
    if on_overview:
        return _overview_page(visit, who, status, payment_problem=problem, action=action)
    return _subscription_page(visit, who, result.subscription_id, status,
                              payment_problem=problem, action=action)


@bp.route("/portal-assets/{name}", methods=["GET"])
def asset(name: str):
    return script_response(name)


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
