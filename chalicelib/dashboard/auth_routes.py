"""The dashboard's way in: ``/dashboard/<slug>/…`` sign-in by e-mailed link or code
(chalicelib/signin with the staff audience), sign-out, and the home page.

  GET       /dashboard/{slug}              → customers (signed in) or the sign-in page
  GET       /dashboard/{slug}/sign-in      the form
  POST      /dashboard/{slug}/sign-in      ask for a link (always "check your e-mail")
  GET       /dashboard/{slug}/code         enter a code
  POST      /dashboard/{slug}/code         sign in with the code
  GET|HEAD  /dashboard/{slug}/link?token=  "Continue to the dashboard" (spends nothing)
  POST      /dashboard/{slug}/link         spend the token: session, then customers
  POST      /dashboard/{slug}/sign-out
  GET       /dashboard-assets/dashboard.js the dashboard's own script
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.activity import service as activity
from chalicelib.dashboard import web
from chalicelib.errors import BadRequest, Gone
from chalicelib.signin import service as signin
from chalicelib.signin import web as http
from chalicelib.staff.service import STAFF

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]


def _req(request, slug: str) -> web.Request:
    return web._request(request, slug)


def _anonymous_csrf(request, slug: str) -> str:
    req = _req(request, slug)
    csrf = signin.anonymous_csrf(STAFF, web.site_for(slug), req.read_cookie(web.CSRF_COOKIE))
    if csrf.new_cookie:
        req.set_cookie(web.CSRF_COOKIE, csrf.new_cookie, web.CSRF_COOKIE_MAX_AGE)
        req.cookies[req.cookie_name(web.CSRF_COOKIE)] = csrf.new_cookie
    return csrf.token


def _check_anonymous_csrf(request, slug: str, form: dict) -> None:
    signin.check_anonymous_csrf(STAFF, web.site_for(slug),
                                _req(request, slug).read_cookie(web.CSRF_COOKIE), form.get("csrf"))


def _sign_in_page(request, slug: str, status: int = 200, **context):
    return web.anonymous_page(request, slug, "sign_in.html", status=status,
                              csrf=_anonymous_csrf(request, slug),
                              email=context.pop("email", ""), error=context.pop("error", None),
                              invalid=context.pop("invalid", False), **context)


def _signed_in_already(request, slug: str) -> bool:
    try:
        web.staff_visit(request, slug)
    except web.SignInRequired:
        return False
    return True


@bp.route("/dashboard/{slug}", methods=["GET"])
@web.dashboard_view(bp)
def home(request, slug: str):
    web.staff_visit(request, slug)  # SignInRequired → the sign-in page
    return web.redirect(f"{_req(request, slug).root}/customers", request)


@bp.route("/dashboard/{slug}/sign-in", methods=["GET"])
@web.dashboard_view(bp)
def sign_in_form(request, slug: str):
    if _signed_in_already(request, slug):
        return web.redirect(f"{_req(request, slug).root}/customers", request)
    return _sign_in_page(request, slug)


@bp.route("/dashboard/{slug}/sign-in", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def ask_for_link(request, slug: str):
    form = http.parse_form(request)
    _check_anonymous_csrf(request, slug, form)
    req = _req(request, slug)
    try:
        email = signin.request_sign_in(STAFF, web.site_for(slug), form.get("email"),
                                       req.client_ip, req.base)
    except BadRequest as exc:
        return _sign_in_page(request, slug, status=exc.status, error=exc.message, invalid=True,
                             email=(form.get("email") or "")[:320])
    return web.anonymous_page(request, slug, "sign_in_sent.html",
                              csrf=_anonymous_csrf(request, slug), email=email)


@bp.route("/dashboard/{slug}/code", methods=["GET"])
@web.dashboard_view(bp)
def code_form(request, slug: str):
    return web.anonymous_page(request, slug, "sign_in_code.html",
                              csrf=_anonymous_csrf(request, slug),
                              email=(_req(request, slug).query("email") or "")[:320], error=None)


@bp.route("/dashboard/{slug}/code", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def use_code(request, slug: str):
    form = http.parse_form(request)
    _check_anonymous_csrf(request, slug, form)
    try:
        session = signin.redeem_code(STAFF, web.site_for(slug), form.get("email"),
                                     form.get("code"), _req(request, slug).client_ip)
    except BadRequest as exc:  # every refused code alike (signin.CODE_REFUSED)
        return web.anonymous_page(request, slug, "sign_in_code.html", status=exc.status,
                                  csrf=_anonymous_csrf(request, slug),
                                  email=(form.get("email") or "")[:320], error=exc.message)
    return _signed_in(request, slug, session)


@bp.route("/dashboard/{slug}/link", methods=["GET", "HEAD"])
@web.dashboard_view(bp)
def open_link(request, slug: str):
    head = request.method == "HEAD"
    token = _req(request, slug).query("token")
    if not signin.link_usable(STAFF, web.site_for(slug), token):
        if head:
            return web.anonymous_page(request, slug, "sign_in.html", status=410, head=True)
        return _sign_in_page(request, slug, status=410, error=signin.LINK_GONE)
    if head:
        return web.anonymous_page(request, slug, "sign_in_continue.html", head=True)
    return web.anonymous_page(request, slug, "sign_in_continue.html",
                              csrf=_anonymous_csrf(request, slug), token=token)


@bp.route("/dashboard/{slug}/link", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def use_link(request, slug: str):
    form = http.parse_form(request)
    _check_anonymous_csrf(request, slug, form)
    try:
        session = signin.redeem_link(STAFF, web.site_for(slug), form.get("token"),
                                     _req(request, slug).client_ip)
    except Gone as exc:
        return _sign_in_page(request, slug, status=exc.status, error=exc.message)
    return _signed_in(request, slug, session)


def _signed_in(request, slug: str, session: signin.NewSession):
    req = _req(request, slug)
    req.set_cookie(web.SESSION_COOKIE, session.cookie_value, session.max_age)
    req.clear_cookie(web.CSRF_COOKIE)
    return web.redirect(f"{req.root}/customers", request)


@bp.route("/dashboard/{slug}/sign-out", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def sign_out(request, slug: str):
    req = _req(request, slug)
    try:
        visit = web.staff_visit(request, slug)
    except web.SignInRequired:
        visit = None
    if visit is not None:
        web.form(request, visit)  # the session's CSRF token (403 otherwise)
        signin.sign_out(signin.Session(visit.account_id, visit.staff_id, visit.csrf_token,
                                       visit.session_hash, signin.STAFF))
        activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                        action="staff.sign_out", ip=visit.client_ip)
    req.clear_cookie(web.SESSION_COOKIE)
    return web.redirect(f"{req.root}/sign-in", request)


@bp.route("/dashboard/{slug}/sign-out", methods=["GET"])
@web.dashboard_view(bp)
def sign_out_reloaded(request, slug: str):
    return web.redirect(f"{_req(request, slug).root}/sign-in", request)


@bp.route("/dashboard-assets/{name}", methods=["GET"])
def asset(name: str):
    return web.script_response(name)
