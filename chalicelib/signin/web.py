"""HTTP glue shared by the portal's and the dashboard's pages: the public base URL,
cookies, urlencoded forms, the client's address and the pages' security headers. Chalice
request objects in, plain values out; each feature's own ``web`` module builds on these.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from chalicelib.errors import BadRequest
from chalicelib.settings import get_settings

MAX_FORM_BYTES = 8 * 1024
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def base_url(request) -> str:
    """The public URL of the app (scheme, host, any path prefix), without a trailing slash.

    PUBLIC_BASE_URL when set; otherwise API Gateway's own domain and stage.
    """
    settings = get_settings()
    if settings.public_base_url_configured:
        return settings.public_base_url
    context = request.context or {}
    domain = context.get("domainName")
    if domain:
        stage = context.get("stage")
        prefix = f"/{stage}" if stage and domain.endswith(".amazonaws.com") else ""
        return f"https://{domain}{prefix}"
    return settings.public_base_url


def secure_cookies(base: str) -> bool:
    """Cookies are Secure unless the app is served over plain HTTP on a loopback host."""
    parts = urlsplit(base)
    return not (parts.scheme == "http" and (parts.hostname or "") in LOOPBACK)


def https(base: str) -> bool:
    return urlsplit(base).scheme == "https"


def parse_cookies(header: str | None) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


def cookie(name: str, value: str, *, path: str, secure: bool, max_age: int,
           same_site: str = "Lax") -> str:
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly",
             f"SameSite={same_site}"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def client_ip(request) -> str:
    # API Gateway's view of the caller; headers such as X-Forwarded-For are not trusted.
    return ((request.context or {}).get("identity") or {}).get("sourceIp") or "unknown"


def parse_form(request, max_fields: int = 20) -> dict[str, str]:
    """An urlencoded POST body (bounded in size and fields), first value of each field."""
    body = request.raw_body or b""
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest("The form is too large.")
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True,
                          max_num_fields=max_fields)
    except ValueError:
        raise BadRequest("The form has too many fields.") from None
    return {k: v[0] for k, v in fields.items()}


def page_headers(nonce: str, *, content_type: str | None = "text/html; charset=utf-8",
                 img: str = "'self'", script: str = "'self'", connect: str = "'self'",
                 frame: str | None = None, cookies: list[str] | None = None) -> dict:
    """A server-rendered page's headers: a strict Content-Security-Policy (inline styles
    only with the page's nonce, no inline script), no referrer, no framing, no caching."""
    frame_src = f"frame-src {frame}; " if frame else ""
    headers = {
        "Content-Security-Policy": (
            f"default-src 'self'; script-src {script}; "
            f"style-src 'self' 'nonce-{nonce}'; img-src {img}; "
            f"connect-src {connect}; {frame_src}object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'"),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }
    if content_type:
        headers["Content-Type"] = content_type
    if cookies:
        headers["Set-Cookie"] = list(cookies)
    return headers
