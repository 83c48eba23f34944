"""HTTP glue for the merchant dashboard (``/dashboard/<slug>/…``): who the signed-in staff
member is, roles on the server, forms with CSRF, pages with strict security headers, and
errors rendered as HTML in one place. The routes stay thin: parse, check, call a service,
render.

  visit = web.staff_visit(request, slug)   # or SignInRequired (303 to sign in / 403)
  web.require(visit, "refund")             # or Forbidden: 403, logged and in the activity log
  form = web.form(request, visit)          # urlencoded, bounded, CSRF checked (403)
  return web.page(request, visit, "customers.html", rows=…)
  return web.redirect(url)                 # 303

Views are wrapped with ``dashboard_view(bp)``: ``view(request, slug, **params)``.

Cookies: the staff session is ``__Host-bp_staff`` (Path=/, Secure) when the public base
URL is https, else ``bp_staff`` scoped to the dashboard's path (a loopback http
development server); it is never the portal's ``bp_session``. HttpOnly, SameSite=Lax (the
e-mailed link and links to customers from mail or chat open signed in; every POST needs
the session's CSRF token). One staff cookie per browser: signing in to another account
replaces it, and a session of one account opens nothing of another (404).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from chalice import Response

from chalicelib import templating
from chalicelib.accounts import service as accounts
from chalicelib.activity import service as activity
from chalicelib.errors import AppError, Forbidden, NotFound, TooManyRequests
from chalicelib.observability import logger
from chalicelib.portal import service as portal_service
from chalicelib.signin import service as signin
from chalicelib.signin import web as http
from chalicelib.staff import roles
from chalicelib.staff.service import STAFF
from chalicelib.store import staff as staff_store

SESSION_COOKIE = "bp_staff"
CSRF_COOKIE = "bp_staff_csrf"
HOST_PREFIX = "__Host-"
CSRF_COOKIE_MAX_AGE = 2 * 3600
MAX_FORM_FIELDS = 50


class SignInRequired(Exception):
    """No live staff session for this account: GET → 303 to sign in, POST → 403."""


# --- the site (the merchant behind the slug) and the request ---------------------------------

def site_for(slug: str) -> portal_service.Portal:
    try:
        return portal_service.portal_for_slug(slug)
    except NotFound:
        raise NotFound("There is no such dashboard.") from None


@dataclass
class Request:
    """What the dashboard needs from one Chalice request, computed once."""

    request: object
    slug: str
    cookies_out: list[str] = field(default_factory=list)
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def __post_init__(self):
        self.base = http.base_url(self.request)
        self.https = http.https(self.base)
        self.secure = http.secure_cookies(self.base)
        self.prefix = urlsplit(self.base).path.rstrip("/")
        self.root = f"{self.prefix}/dashboard/{self.slug}"
        self.cookies = http.parse_cookies((self.request.headers or {}).get("cookie"))
        self.client_ip = http.client_ip(self.request)

    def cookie_name(self, name: str) -> str:
        return f"{HOST_PREFIX}{name}" if self.https else name

    def read_cookie(self, name: str) -> str | None:
        return self.cookies.get(self.cookie_name(name))

    def set_cookie(self, name: str, value: str, max_age: int) -> None:
        # __Host- cookies must have Path=/ and Secure; otherwise the dashboard's own path.
        path = "/" if self.https else self.root
        self.cookies_out.append(http.cookie(self.cookie_name(name), value, path=path,
                                            secure=self.secure or self.https, max_age=max_age))

    def clear_cookie(self, name: str) -> None:
        self.set_cookie(name, "", 0)

    def query(self, name: str) -> str | None:
        return (self.request.query_params or {}).get(name)

    @property
    def path(self) -> str:
        return (self.request.context or {}).get("path") or getattr(self.request, "path", "") or ""


def _request(request, slug: str) -> Request:
    """One Request per Chalice request (the cookies set while handling it go out with it)."""
    found = getattr(request, "_dashboard", None)
    if found is None or found.slug != slug:
        found = Request(request, slug)
        with contextlib.suppress(AttributeError):
            request._dashboard = found
    return found


# --- who is visiting -------------------------------------------------------------------------

@dataclass
class StaffVisit:
    account_id: str
    slug: str
    staff_id: str
    email: str
    role: str
    csrf_token: str
    brand: dict
    client_ip: str
    session_hash: str = field(repr=False, default="")
    site: portal_service.Portal | None = field(repr=False, default=None)
    http: Request | None = field(repr=False, default=None)

    @property
    def root(self) -> str:
        return self.http.root if self.http else f"/dashboard/{self.slug}"

    def can(self, permission: str) -> bool:
        return roles.allows(self.role, permission)


def staff_visit(request, slug: str) -> StaffVisit:
    """The signed-in staff member of the account behind ``slug``. Raises NotFound for an
    unknown slug or a live session of another account, SignInRequired when there is no
    live session (expired, idle too long, signed out, a customer's cookie, or the member
    was removed)."""
    req = _request(request, slug)
    site = site_for(slug)
    session = signin.live_session(STAFF, req.read_cookie(SESSION_COOKIE))
    if session is None:
        raise SignInRequired()
    if session.account_id != site.account_id:
        raise NotFound("Not found.")
    member = staff_store.get(site.account_id, session.subject_id)
    if member is None:
        # Removed (its sessions were ended; this one raced with that): end it for good.
        with contextlib.suppress(Exception):
            signin.sign_out(session)
        raise SignInRequired()
    return StaffVisit(account_id=site.account_id, slug=slug, staff_id=member.staff_id,
                      email=member.email, role=member.role, csrf_token=session.csrf_token,
                      brand=site.brand, client_ip=req.client_ip,
                      session_hash=session.session_hash, site=site, http=req)


FORBIDDEN = "Your role does not allow this. Ask an owner of the account if you need it."


def require(visit: StaffVisit, permission: str) -> None:
    """Forbidden (403) unless the member's role has ``permission``; a refusal is logged and
    written to the activity log (who, what, where)."""
    if roles.allows(visit.role, permission):
        return
    path = visit.http.path if visit.http else ""
    logger.warning("dashboard forbidden", extra={"account_id": visit.account_id,
                                                 "staff_id": visit.staff_id,
                                                 "permission": permission, "path": path})
    try:
        activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                        action="staff.forbidden", details={"permission": permission,
                                                           "path": path[:300]},
                        ip=visit.client_ip)
    except Exception:  # noqa: BLE001 - refused whether or not it was logged
        logger.exception("could not log a forbidden request")
    raise Forbidden(FORBIDDEN, code="forbidden")


def form(request, visit: StaffVisit) -> dict[str, str]:
    """The POST's urlencoded fields, after the session's CSRF token is checked (403)."""
    fields = http.parse_form(request, MAX_FORM_FIELDS)
    signin.check_session_csrf(visit.csrf_token, fields.get("csrf"))
    return fields


# --- answers -----------------------------------------------------------------------------

STATIC_DIR = Path(__file__).resolve().parent / "static"
SCRIPT_NAME = "dashboard.js"


@functools.lru_cache(maxsize=1)
def _script() -> tuple[bytes, str] | None:
    path = STATIC_DIR / SCRIPT_NAME
    if not path.exists():
        return None
    body = path.read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:12]


def script_response(name: str) -> Response:
    found = _script() if name == SCRIPT_NAME else None
    if found is None:
        return Response(body="Not found", status_code=404,
                        headers={"Content-Type": "text/plain; charset=utf-8"})
    return Response(body=found[0].decode(), status_code=200, headers={
        "Content-Type": "text/javascript; charset=utf-8",
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    })


def _render(req: Request, template: str, status: int, brand: dict | None,
            visit: StaffVisit | None, head: bool = False, **context) -> Response:
    logo_origin = None
    if brand and brand.get("logo_url"):
        logo_origin = accounts.logo_origin(brand["logo_url"])
        if logo_origin is None:
            brand = {**brand, "logo_url": None}
    script = _script()
    body = "" if head else templating.render(
        f"dashboard/{template}", brand=brand, root=req.root, nonce=req.nonce, visit=visit,
        can=(visit.can if visit else (lambda permission: False)),
        csrf=context.pop("csrf", visit.csrf_token if visit else ""),
        script_url=(f"{req.prefix}/dashboard-assets/{SCRIPT_NAME}?v={script[1]}"
                    if script else None),
        **context)
    img = "'self'" + (f" {logo_origin}" if logo_origin else "")
    return Response(body=body, status_code=status,
                    headers=http.page_headers(req.nonce, img=img, cookies=req.cookies_out))


def page(request, visit: StaffVisit, template: str, status: int = 200, **context) -> Response:
    """Render ``templates/dashboard/<template>`` for a signed-in member. The template gets
    ``visit``, ``root``, ``brand``, ``csrf`` (the session's token), ``nonce`` (for a
    ``<style>``), ``can(permission)`` and the context."""
    req = visit.http or _request(request, visit.slug)
    return _render(req, template, status, visit.brand, visit, **context)


def anonymous_page(request, slug: str, template: str, status: int = 200, head: bool = False,
                   **context) -> Response:
    """A page of the signed-out dashboard (sign-in, errors)."""
    req = _request(request, slug)
    brand = None
    with contextlib.suppress(AppError):
        brand = site_for(slug).brand if portal_service.SLUG_RE.match(slug or "") else None
    return _render(req, template, status, brand, None, head=head, **context)


def redirect(url: str, request=None, status: int = 303) -> Response:
    """A 303 to ``url`` (with the cookies set while handling ``request``, if given)."""
    cookies = []
    found = getattr(request, "_dashboard", None) if request is not None else None
    if found is not None:
        cookies = found.cookies_out
    headers = http.page_headers("-", content_type="text/plain; charset=utf-8", cookies=cookies)
    headers["Location"] = url
    return Response(body="", status_code=status, headers=headers)


_ERROR_TITLES = {
    400: "Please check the form",
    403: "Not allowed",
    404: "Not found",
    409: "This cannot be done right now",
    410: "This link no longer works",
    429: "Please wait a moment",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}


def error(request, slug: str, exc: AppError) -> Response:
    title = _ERROR_TITLES.get(exc.status, "Something went wrong")
    if exc.status == 403 and exc.code == "csrf":
        title = "This form has expired"
    response = anonymous_page(request, slug, "error.html", status=exc.status, error=exc,
                              title=title)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(max(1, exc.retry_after))
    return response


def dashboard_view(blueprint):
    """Decorate a dashboard view ``view(request, slug, **path_params)``: SignInRequired →
    303 to the sign-in page (GET, HEAD) or 403 (any other method), AppError → an HTML page
    with its status, anything else → a plain 500 page (logged, no detail to the client)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(slug: str, **kwargs):
            request = blueprint.current_request
            if not portal_service.SLUG_RE.match(slug or ""):
                # Never echo an invalid slug into a path, a cookie or a Location header.
                return error(request, "-", NotFound("There is no such dashboard."))
            try:
                return view(request, slug, **kwargs)
            except SignInRequired:
                req = _request(request, slug)
                if req.read_cookie(SESSION_COOKIE):
                    req.clear_cookie(SESSION_COOKIE)
                if request.method in ("GET", "HEAD"):
                    return redirect(f"{req.root}/sign-in", request)
                return error(request, slug, Forbidden(
                    "Your session has ended. Please sign in again.", code="signed_out"))
            except AppError as exc:
                return error(request, slug, exc)
            except Exception:  # noqa: BLE001 - logged; the client gets a page without detail
                logger.exception("dashboard request failed")
                return error(request, slug, AppError(
                    "Something went wrong on our side. Please try again in a few minutes.",
                    code="internal_error", status=500))

        return wrapper

    return decorate
