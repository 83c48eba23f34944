"""HTTP glue for the portal's routes: cookies, forms, base URL, pages, security headers,
and AppError rendered as an HTML page (one place).
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
from chalicelib.errors import AppError, NotFound, TooManyRequests
from chalicelib.observability import logger
from chalicelib.portal import service
from chalicelib.settings import get_settings
from chalicelib.signin import web as http
from chalicelib.signin.web import (
    base_url,
    cookie,
    parse_cookies,
    secure_cookies,
)

SESSION_COOKIE = "bp_session"
CSRF_COOKIE = "bp_csrf"
CSRF_COOKIE_MAX_AGE = 2 * 3600


@dataclass
class Visit:
    """One request to ``/portal/<slug>/…``: what the routes need from it."""

    request: object
    slug: str
    _portal: service.Portal | None = None
    cookies_out: list[str] = field(default_factory=list)
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def __post_init__(self):
        self.base = base_url(self.request)
        self.secure = secure_cookies(self.base)
        self.root = f"{urlsplit(self.base).path.rstrip('/')}/portal/{self.slug}"
        self.cookies = parse_cookies((self.request.headers or {}).get("cookie"))

    @property
    def portal(self) -> service.Portal:
        if self._portal is None:
            self._portal = service.portal_for_slug(self.slug)
        return self._portal

    @property
    def client_ip(self) -> str:
        return http.client_ip(self.request)

    def form(self) -> dict[str, str]:
        return http.parse_form(self.request)

    def query(self, name: str) -> str | None:
        return (self.request.query_params or {}).get(name)

    def set_cookie(self, name: str, value: str, max_age: int) -> None:
        self.cookies_out.append(cookie(name, value, path=self.root, secure=self.secure,
                                       max_age=max_age))

    def clear_cookie(self, name: str) -> None:
        self.set_cookie(name, "", 0)

    # --- who is visiting ----------------------------------------------------------------

    def signed_in(self) -> service.SignedIn | None:
        return service.signed_in(self.portal, self.cookies.get(SESSION_COOKIE))

    def anonymous_csrf(self) -> str:
        csrf = service.anonymous_csrf(self.portal, self.cookies.get(CSRF_COOKIE))
        if csrf.new_cookie:
            self.set_cookie(CSRF_COOKIE, csrf.new_cookie, CSRF_COOKIE_MAX_AGE)
            self.cookies[CSRF_COOKIE] = csrf.new_cookie
        return csrf.token

    def check_anonymous_csrf(self, form: dict) -> None:
        service.check_anonymous_csrf(self.portal, self.cookies.get(CSRF_COOKIE), form.get("csrf"))

    # --- answers ------------------------------------------------------------------------

    def headers(self, content_type: str | None = "text/html; charset=utf-8",
                logo_origin: str | None = None, stripe_js: bool = False) -> dict:
        img = "'self'" + (f" {logo_origin}" if logo_origin else "")
        script = connect = "'self'"
        frame = None
        if stripe_js:  # only the pages that load Stripe.js may reach Stripe
            sources = stripe_js_sources(get_settings().stripe_js_url)
            script += f" {sources['script-src']}"
            connect += f" {sources['connect-src']}"
            frame = sources["frame-src"]
        return http.page_headers(self.nonce, content_type=content_type, img=img, script=script,
                                 connect=connect, frame=frame, cookies=self.cookies_out)

    def page(self, template: str, status: int = 200, head: bool = False,
             stripe_js: bool = False, **context) -> Response:
        """Render a portal page. ``stripe_js``: the page loads Stripe.js (the template gets
        its URL as ``stripe_js_url``, and the page's CSP allows its origin)."""
        portal = self._portal
        brand = portal.brand if portal else None
        logo_origin = None
        if brand and brand.get("logo_url"):
            # Only an origin rebuilt from a valid host goes into the policy: a stored value
            # with ";" or spaces would otherwise add directives. An invalid logo is dropped.
            logo_origin = accounts.logo_origin(brand["logo_url"])
            if logo_origin is None:
                brand = {**brand, "logo_url": None}
        body = "" if head else templating.render(
            f"portal/{template}", brand=brand, root=self.root, nonce=self.nonce,
            assets=f"{urlsplit(self.base).path.rstrip('/')}/portal-assets",
            script_version=script_version(),
            stripe_js_url=get_settings().stripe_js_url if stripe_js else None, **context)
        return Response(body=body, status_code=status,
                        headers=self.headers(logo_origin=logo_origin, stripe_js=stripe_js))

    def redirect(self, location: str, status: int = 303) -> Response:
        headers = self.headers(content_type="text/plain; charset=utf-8")
        headers["Location"] = location
        return Response(body="", status_code=status, headers=headers)

    def error(self, exc: AppError) -> Response:
        if self._portal is None:
            with contextlib.suppress(AppError):
                self.portal  # noqa: B018 - brand the error page when the slug is known
        title = _ERROR_TITLES.get(exc.status, "Something went wrong")
        if exc.status == 403 and exc.code != "csrf":
            title = "Not available"
        response = self.page("error.html", status=exc.status, error=exc, title=title)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(max(1, exc.retry_after))
        return response


_ERROR_TITLES = {
    400: "Please check the form",
    402: "The payment did not go through",
    403: "This form has expired",
    404: "Not found",
    409: "This cannot be done right now",
    410: "This link no longer works",
    429: "Please wait a moment",
    500: "Something went wrong",
    502: "The payment service refused this",
    503: "Temporarily unavailable",
}


# The origins Stripe.js needs, per Stripe's CSP guide: the script's own, Stripe's API for
# its requests, and the frames of its card fields and 3-D Secure pages.
_STRIPE_ORIGINS = {
    "script-src": "https://js.stripe.com https://*.js.stripe.com",
    "connect-src": "https://api.stripe.com",
    "frame-src": "https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com",
}


def stripe_js_sources(js_url: str) -> dict[str, str]:
    """CSP sources for a page that loads Stripe.js from ``js_url``. Real Stripe.js needs
    Stripe's own origins; a stand-in (localstripe's, in make dev and the tests) does
    everything on the origin it is served from."""
    parts = urlsplit(js_url)
    if parts.hostname == "js.stripe.com":
        return dict(_STRIPE_ORIGINS)
    origin = f"{parts.scheme}://{parts.netloc}"
    return {"script-src": origin, "connect-src": origin, "frame-src": origin}


# --- the portal's own script (chalicelib/portal/static/) -------------------------------------

STATIC_DIR = Path(__file__).resolve().parent / "static"
SCRIPT_NAME = "portal.js"


@functools.lru_cache(maxsize=1)
def _script() -> tuple[bytes, str]:
    body = (STATIC_DIR / SCRIPT_NAME).read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:12]


def script_version() -> str:
    """Part of the script's URL, so a new deployment's script is never taken from a cache."""
    return _script()[1]


def script_response(name: str) -> Response:
    if name != SCRIPT_NAME:
        return Response(body="Not found", status_code=404,
                        headers={"Content-Type": "text/plain; charset=utf-8"})
    body, _ = _script()
    return Response(body=body.decode(), status_code=200, headers={
        "Content-Type": "text/javascript; charset=utf-8",
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    })


def portal_view(blueprint):
    """Decorate a portal view ``view(visit, **path_params)``: AppError → branded HTML page,
    anything else → a plain 500 page (logged, no detail to the client)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(slug: str, **kwargs):
            if not service.SLUG_RE.match(slug or ""):
                # Never echo an invalid slug into a path, a cookie or a Location header.
                visit = Visit(blueprint.current_request, "-")
                return visit.error(NotFound("There is no such portal."))
            visit = Visit(blueprint.current_request, slug)
            try:
                return view(visit, **kwargs)
            except AppError as exc:
                return visit.error(exc)
            except Exception:  # noqa: BLE001 - logged; the client gets a page without detail
                logger.exception("portal request failed")
                return visit.error(AppError("Something went wrong on our side. Please try "
                                            "again in a few minutes.", code="internal_error",
                                            status=500))

        return wrapper

    return decorate
