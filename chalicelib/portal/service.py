"""The customer portal's logic: sign-in by magic link or code, sessions, CSRF, rate limits,
and what a signed-in customer may read. Plain Python: no Chalice, no PynamoDB.

Sign-in (this section down to "sessions" is the whole mechanism, in one place)
  A request for a link always answers the same way, in at least
  ``login_min_response_ms``, whether or not the address has a record; only a known,
  unblocked customer gets mail. The link carries a 256-bit token; the table keeps only
  its SHA-256 (``TOKEN#…``) with the customer, the e-mail it was sent to and an expiry.
  Opening the link (GET or HEAD) reads nothing but the token item; the POST of the
  "Continue" form spends it in one transaction that deletes the token (conditional:
  still there, not expired), checks that the record still has that e-mail and was not
  folded away, and creates the session (conditional: new), so N racing POSTs make
  exactly one session and no link outlives an e-mail change.
  The mail also carries a 6-digit code for another device: stored hashed (with the
  token hash as salt) in a per-e-mail item, each attempt counted by a conditional
  update before the comparison, dead after ``login_code_attempts``; a right code spends
  the same token in the same kind of transaction. Every code that does not sign in
  gets one answer (same status, page and text, same requests, padded like the link
  request), so the code form does not tell a customer's address from a stranger's.
  A customer's sessions and tokens are listed in their record's collection, so that
  ``store.end_access`` can end them all when the record's e-mail moves.

Sessions and CSRF
  The session cookie is 256 random bits; the table keys the session by its SHA-256
  and holds the account, the customer, a CSRF token and an expiry checked here. Every
  POST carries a CSRF token compared with ``hmac.compare_digest``: the session's when
  signed in; before sign-in a signed double-submit token (a random nonce in a cookie,
  the nonce and its HMAC under a deployment secret in the form).

Rate limits
  Fixed windows counted in the table (UpdateItem ADD, TTL): link requests per e-mail
  and per client address, sign-in attempts (link or code) per client address and
  (code) per e-mail, and failed codes per e-mail per day (past it, only the link signs
  in). A client address is counted by its IPv6 /64 (``client_network``). Over a limit
  the answer is 429 at once, never padded.

Isolation
  Every read of customer data starts from the session's account and customer: one
  record (``records.service.get_record``), and ids are looked up inside it only, so
  another customer's or account's id is simply not found.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import random
import re
import secrets
import time
from dataclasses import dataclass, field

from chalicelib import timeutil
from chalicelib.accounts.service import DEFAULT_SETTINGS, logo_origin
from chalicelib.domain.events import Ref
from chalicelib.errors import (
    AppError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    RetryLater,
    TooManyRequests,
)
from chalicelib.formatting import supported_locale
from chalicelib.mail import sign_in as sign_in_mail
from chalicelib.mail.sender import MailFailed
from chalicelib.observability import logger
from chalicelib.processors.gateway import ProcessorError
from chalicelib.processors.registry import ProcessorNotConfigured, gateway_for
from chalicelib.receipts import service as receipts
from chalicelib.records import service as records
from chalicelib.selfservice import service as selfservice
from chalicelib.selfservice.service import ACTIVE as SELF_SERVICE_ACTIVE
from chalicelib.selfservice.service import SelfService
from chalicelib.settings import get_settings
from chalicelib.store import accounts as account_store
from chalicelib.store import customers as customer_store
from chalicelib.store import portal as store

ACCOUNT_CACHE_SECONDS = 60
_ACCOUNT_CACHE_MAX = 1000
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")  # secrets.token_urlsafe(24)
ID_RE = re.compile(r"^[a-z]{2,8}_[a-z0-9]{8,64}$")
COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
CODE_DIGITS = 6
SECRET_NAME = "portal-signing-key"


def now() -> float:
    """The clock (tests may replace it)."""
    return time.time()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- the merchant's portal -------------------------------------------------------------------

@dataclass(frozen=True)
class Portal:
    account_id: str
    slug: str
    # name, support_email, color, logo_url, company_address: shown on pages, mail, receipts
    brand: dict
    locale: str
    # The merchant's account (settings, processor keys) for self-service; never rendered.
    account: dict = field(default_factory=dict, repr=False, compare=False, hash=False)


_portal_cache: dict[str, tuple[float, Portal]] = {}


def _brand(account: dict) -> dict:
    branding = {**DEFAULT_SETTINGS["branding"], **((account.get("settings") or {}).get("branding") or {})}
    color = branding.get("color")
    logo = branding.get("logo_url")
    address = branding.get("company_address")
    color = color if isinstance(color, str) and COLOR_RE.match(color) else \
        DEFAULT_SETTINGS["branding"]["color"]
    return {
        "name": account["name"],
        "support_email": account["support_email"],
        "color": color,
        "on_color": _text_color_on(color),
        # Only https logos from a proper host name (the same rule as the pages' CSP),
        # shown by the customer's browser; the server never fetches them.
        "logo_url": logo if logo_origin(logo) and len(logo) <= 1000 else None,
        "company_address": str(address)[:500] if address else None,
    }


def _text_color_on(color: str) -> str:
    """Black or white, whichever reads better on the brand colour."""
    value = color.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    r, g, b = (int(value[i:i + 2], 16) for i in (0, 2, 4))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 160 else "#ffffff"


def portal_for_slug(slug: str) -> Portal:
    """The merchant behind ``/portal/<slug>/``; cached for a minute per container."""
    if not SLUG_RE.match(slug or ""):
        raise NotFound("There is no such portal.")
    hit = _portal_cache.get(slug)
    if hit and time.monotonic() - hit[0] < ACCOUNT_CACHE_SECONDS:
        return hit[1]
    account = account_store.get_by_slug(slug)
    if account is None:
        raise NotFound("There is no such portal.")
    portal_settings = (account.get("settings") or {}).get("portal") or {}
    locale = supported_locale(portal_settings.get("locale"))
    portal = Portal(account_id=account["account_id"], slug=slug, brand=_brand(account),
                    locale=locale, account=account)
    if len(_portal_cache) >= _ACCOUNT_CACHE_MAX:
        _portal_cache.clear()
    _portal_cache[slug] = (time.monotonic(), portal)
    return portal


# --- CSRF before sign-in (signed double submit) ----------------------------------------------

_signing_key_ciphertext: str | None = None  # as stored; it never changes


def _signing_key() -> bytes:
    """The deployment's key for pre-sign-in CSRF tokens, created on first use. The table
    holds it KMS-encrypted (context ``{"app_secret": SECRET_NAME}``); the container keeps
    the ciphertext and decrypts it at most once a minute (chalicelib/crypto.py)."""
    from chalicelib import crypto

    global _signing_key_ciphertext
    context = crypto.app_secret_context(SECRET_NAME)
    if _signing_key_ciphertext is None:
        _signing_key_ciphertext = store.get_or_create_secret(
            SECRET_NAME, lambda: crypto.encrypt(secrets.token_urlsafe(48), context))
    try:
        return crypto.decrypt(_signing_key_ciphertext, context).encode()
    except crypto.SecretUnavailable:
        _signing_key_ciphertext = None  # read the item again next time (it may be mended)
        raise


def _mac(portal: Portal, nonce: str) -> str:
    message = f"csrf\x1f{portal.account_id}\x1f{nonce}".encode()
    return hmac.new(_signing_key(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AnonymousCsrf:
    token: str  # for the form
    new_cookie: str | None  # a nonce to set as the cookie, if the visitor had none


def anonymous_csrf(portal: Portal, cookie_nonce: str | None) -> AnonymousCsrf:
    nonce = cookie_nonce if cookie_nonce and NONCE_RE.match(cookie_nonce) else None
    new = None
    if nonce is None:
        nonce = new = secrets.token_urlsafe(24)
    return AnonymousCsrf(token=f"{nonce}.{_mac(portal, nonce)}", new_cookie=new)


def check_anonymous_csrf(portal: Portal, cookie_nonce: str | None, form_token: str | None) -> None:
    nonce, _, mac = (form_token or "").partition(".")
    ok = bool(cookie_nonce and NONCE_RE.match(nonce) and mac)
    # Both comparisons always run: no early exit that times differently.
    same = hmac.compare_digest(nonce.encode(), (cookie_nonce or "").encode())
    signed = hmac.compare_digest(mac.encode(), _mac(portal, nonce).encode()) if ok else False
    if not (ok and same and signed):
        raise Forbidden("This form has expired. Please go back, reload the page and try again.",
                        code="csrf")


# --- rate limits -------------------------------------------------------------------------------

def _parse_limit(spec: str) -> tuple[int, int]:
    count, _, minutes = spec.partition("/")
    return int(count), int(minutes or 60) * 60


@dataclass(frozen=True)
class _Hit:
    """One hit counted in a rate-limit window (``_take_back`` undoes it)."""

    scope: str
    subject_hash: str
    window_start: int
    window: int


def _limit(scope: str, subject: str, spec: str, message: str | None = None) -> _Hit:
    """Count one hit on ``subject`` in the current fixed window; over the limit, refuse
    it at once (429). The count is the counter's own atomic result, so N concurrent hits
    see N different counts and none gets past the limit."""
    limit, window = _parse_limit(spec)
    t = int(now())
    start = t - t % window
    subject_hash = _sha256(f"{scope}\x1f{subject}")
    count = store.hit_counter(scope, subject_hash, start, window)
    if count > limit:
        wait = start + window - t
        minutes = max(1, -(-wait // 60))
        raise TooManyRequests(
            message or f"Too many attempts. Please wait {minutes} minute"
                       f"{'s' if minutes != 1 else ''} and try again.", retry_after=wait)
    return _Hit(scope, subject_hash, start, window)


def _take_back(hit: _Hit) -> None:
    store.hit_counter(hit.scope, hit.subject_hash, hit.window_start, hit.window, by=-1)


def client_network(address: str) -> str:
    """What per-address limits count: an IPv4 address as it is, an IPv6 address's /64
    (one subscriber's usual allocation; counted address by address, one client could
    rotate through 2^64 of them), an IPv4-mapped IPv6 address as its IPv4 address.
    Anything that does not parse is counted as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip), 64), strict=False))
    return str(ip)


@contextlib.contextmanager
def _no_sooner_than(milliseconds: int):
    """Pad what happens inside (an answer or an error) to a floor, so whether a mail was
    sent or a code existed does not show in the response time. Rate limits are checked
    before it: a 429 answers at once (its counts are the same whatever the address)."""
    started = time.monotonic()
    try:
        yield
    finally:
        rest = milliseconds / 1000 - (time.monotonic() - started)
        if rest > 0:
            time.sleep(rest)


# --- asking for a link --------------------------------------------------------------------

def normalize_email(value: str | None) -> str:
    email = records.normalize_email((value or "").strip())
    if not email or len(email) > 254 or not EMAIL_RE.match(email):
        raise BadRequest("Enter the e-mail address you used to buy from us.", code="invalid_email")
    return email


def _code_hash(token_hash: str, code: str) -> str:
    return _sha256(f"code\x1f{token_hash}\x1f{code}")


def request_sign_in(portal: Portal, email_input: str | None, client_ip: str, base_url: str) -> str:
    """Send a sign-in mail if the address has a usable record; always answer the same.

    Returns the normalized address (to prefill the code form). Raises BadRequest for an
    invalid address, TooManyRequests over a limit (at once), RetryLater when mail cannot
    be sent.
    """
    email = normalize_email(email_input)
    settings = get_settings()
    _limit("login-request-email", f"{portal.account_id}\x1f{email}",
           settings.rate_login_requests_per_email)
    _limit("login-request-ip", client_network(client_ip), settings.rate_login_requests_per_ip)
    with _no_sooner_than(settings.login_min_response_ms):
        _send_link_if_known(portal, email, base_url)
    return email


def _send_link_if_known(portal: Portal, email: str, base_url: str) -> None:
    settings = get_settings()
    customer_id = customer_store.find_by_email(portal.account_id, email)
    customer = store.customer_for_sign_in(customer_id) if customer_id else None
    # (A profile with another e-mail than its claim's: the record's e-mail is moving; a
    # link for the old one could not sign in anyway.)
    if customer is None or customer.account_id != portal.account_id or customer.blocked \
            or customer.merged_into or customer.email != email:
        return
    token = secrets.token_urlsafe(32)
    token_hash = _sha256(token)
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    email_hash = _sha256(email)
    expires_at = int(now()) + settings.login_token_minutes * 60
    previous_code = store.put_login(token_hash, portal.account_id, customer.customer_id, expires_at,
                                    email_hash, _code_hash(token_hash, code), email=email)
    link = f"{base_url}/portal/{portal.slug}/link?token={token}"
    try:
        sign_in_mail.send_sign_in(brand=portal.brand, to=email, link=link, code=code,
                                  minutes=settings.login_token_minutes)
    except MailFailed:
        try:
            store.undo_login(token_hash, portal.account_id, customer.customer_id, email_hash,
                             previous_code)
        except Exception:  # noqa: BLE001 - the token was never sent; its TTL removes it anyway
            logger.exception("could not delete an unsent sign-in token")
        raise RetryLater("We could not send the e-mail right now. Please try again in a few "
                         "minutes.", code="mail_unavailable") from None
    logger.info("sign-in link sent", extra={"account_id": portal.account_id,
                                            "customer_id": customer.customer_id})


# --- using a link or a code ------------------------------------------------------------------

@dataclass(frozen=True)
class NewSession:
    cookie_value: str
    max_age: int


LINK_GONE = "This sign-in link has expired or has already been used. Ask for a new one below."
# Every code that does not sign in gets this one answer (status, page, text), whatever
# the reason: wrong, expired, spent, replaced by a newer mail's, tried too often, or an
# address with no code or no record. Nothing in it depends on the address.
CODE_REFUSED = ("That code did not work. A code works once, only from your newest sign-in "
                "e-mail, and only for a short time. Check it, or get a new sign-in link below.")
CODE_FAILURES_CAPPED = ("Too many codes that did not work were entered for this address "
                        "today. Please sign in with the link in your e-mail instead (you can "
                        "ask for a new one).")
_NO_CODE = "-" * 64  # compared with when there is no live code: no code hashes to it


def link_usable(portal: Portal, token: str | None) -> bool:
    """Whether the link still works; reads only (a GET or HEAD must never spend it)."""
    if not token or not TOKEN_RE.match(token):
        return False
    grant = store.get_token(_sha256(token))
    return grant is not None and grant.account_id == portal.account_id and \
        grant.expires_at > now() and grant.email is not None


def redeem_link(portal: Portal, token: str | None, client_ip: str) -> NewSession:
    _limit("login-attempt-ip", client_network(client_ip), get_settings().rate_login_attempts_per_ip)
    if not token or not TOKEN_RE.match(token):
        raise Gone(LINK_GONE)
    token_hash = _sha256(token)
    grant = store.get_token(token_hash)
    if grant is None or grant.account_id != portal.account_id or grant.expires_at <= now() \
            or grant.email is None:
        raise Gone(LINK_GONE)
    return _start_session(portal, grant.customer_id, token_hash, grant.email)


class CodeRefused(BadRequest):
    code = "code_refused"


def redeem_code(portal: Portal, email_input: str | None, code_input: str | None,
                client_ip: str) -> NewSession:
    """Sign in with the code of a sign-in mail.

    Every code that does not sign in raises the same CodeRefused after the same DynamoDB
    requests, padded to ``login_min_response_ms``: a stranger's address and a customer's
    wrong code answer alike. Over a limit, TooManyRequests at once. Each attempt counts
    against the address's failures of the day before the code is compared (an atomic
    count, so racing attempts cannot pass the cap) and is taken back when the code is
    right: past ``rate_login_code_failures_per_email`` only the link signs in, however
    many mails were asked for.
    """
    settings = get_settings()
    email = normalize_email(email_input)
    subject = f"{portal.account_id}\x1f{email}"
    _limit("login-attempt-email", subject, settings.rate_login_attempts_per_email)
    _limit("login-attempt-ip", client_network(client_ip), settings.rate_login_attempts_per_ip)
    failure = _limit("login-code-failures-email", subject,
                     settings.rate_login_code_failures_per_email, CODE_FAILURES_CAPPED)
    with _no_sooner_than(settings.login_min_response_ms):
        session = _sign_in_with_code(portal, email, code_input)
    try:
        _take_back(failure)
    except Exception:  # noqa: BLE001 - signed in; at worst one failure too many counted today
        logger.exception("could not take back a right code's failure count")
    return session


def _sign_in_with_code(portal: Portal, email: str, code_input: str | None) -> NewSession:
    settings = get_settings()
    code = re.sub(r"[\s-]", "", code_input or "")
    email_hash = _sha256(email)
    try:
        attempt = store.count_code_attempt(portal.account_id, email_hash, int(now()),
                                           settings.login_code_attempts)
    except store.NotUsable:
        attempt = None
    # The same hashing and comparison whether or not there is a live code.
    expected = attempt.code_hash if attempt else _NO_CODE
    given = _code_hash(attempt.token_hash if attempt else email_hash,
                       code if re.fullmatch(rf"\d{{{CODE_DIGITS}}}", code) else "-")
    right = hmac.compare_digest(expected.encode(), given.encode())
    if attempt is None or not right:
        raise CodeRefused(CODE_REFUSED)
    try:
        return _start_session(portal, attempt.customer_id, attempt.token_hash, email,
                              code_of=(portal.account_id, email_hash))
    except Gone:
        raise CodeRefused(CODE_REFUSED) from None


def _start_session(portal: Portal, customer_id: str, token_hash: str, email: str,
                   code_of: tuple[str, str] | None = None) -> NewSession:
    """Spend the token for a new session (store.spend_token: once, and only while the
    record still has the e-mail the token was sent to). Gone when it cannot be spent."""
    settings = get_settings()
    value = secrets.token_urlsafe(32)
    issued = int(now())
    max_age = settings.session_hours * 3600
    new = store.NewSession(session_hash=_sha256(value), account_id=portal.account_id,
                           customer_id=customer_id, csrf_token=secrets.token_urlsafe(32),
                           created_at=timeutil.now_iso(), expires_at=issued + max_age)
    for attempt in range(4):
        try:
            store.spend_token(token_hash, issued, new, email, code_of)
            break
        except store.NotUsable:
            raise Gone(LINK_GONE) from None
        except store.Contended:
            # Another request is spending the same token right now: look again; if it
            # won, the token is gone and the condition refuses this one.
            time.sleep(random.uniform(0.005, 0.02 * (attempt + 1)))
    else:
        raise RetryLater("Please try again.")
    logger.info("portal sign-in", extra={"account_id": portal.account_id,
                                         "customer_id": customer_id,
                                         "by": "code" if code_of else "link"})
    return NewSession(cookie_value=value, max_age=max_age)


# --- sessions ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignedIn:
    portal: Portal
    customer_id: str
    csrf_token: str
    session_hash: str


def signed_in(portal: Portal, cookie_value: str | None) -> SignedIn | None:
    """The live session behind the cookie, for this portal's account; one GetItem.

    The session alone is trusted for who the customer is; every page then reads that
    customer's record and answers 404 if it is gone or was folded into another record
    (``_record``, ``overview``, ``orders``). A change of the record's e-mail ends its
    sessions (``store.end_access``)."""
    if not cookie_value or not TOKEN_RE.match(cookie_value):
        return None
    session_hash = _sha256(cookie_value)
    session = store.get_session(session_hash)
    if session is None or session.expires_at <= now() or session.account_id != portal.account_id:
        return None
    return SignedIn(portal, session.customer_id, session.csrf_token, session_hash)


def check_session_csrf(who: SignedIn, form_token: str | None) -> None:
    if not hmac.compare_digest(who.csrf_token.encode(), (form_token or "").encode()):
        raise Forbidden("This form has expired. Please go back, reload the page and try again.",
                        code="csrf")


def sign_out(who: SignedIn) -> None:
    store.delete_session(who.session_hash, who.customer_id)


# --- what a signed-in customer reads -----------------------------------------------------

RECORD_GONE = "Your customer record is not available."


def _own(who: SignedIn, record: dict | None) -> dict:
    """The session's own record, or 404: none (another account's, or folded into another
    record: ``records`` answers None then), or a record under another id (a reader that
    followed a fold or a move must not show another record to this session)."""
    if record is None or record.get("id") != who.customer_id:
        raise NotFound(RECORD_GONE)
    return record


def _record(who: SignedIn) -> dict:
    return _own(who, records.get_record(who.portal.account_id, who.customer_id, consistent=True))


def _check_record_live(who: SignedIn) -> None:
    """For the pages that read no profile (the orders pages): one GetItem of it."""
    found = store.customer_for_sign_in(who.customer_id)
    if found is None or found.account_id != who.portal.account_id or found.merged_into:
        raise NotFound(RECORD_GONE)


OVERVIEW_ORDERS = 10  # the newest orders on the overview; the rest on the orders pages
ORDERS_PAGE = 25


def overview(who: SignedIn) -> dict:
    """The customer's subscriptions, plans, newest orders and what needs attention, read
    without their history (one Query however many orders they have). When a payment
    failed, the customer's cards too (one call to the processor), to pay it from the alert."""
    record, more_orders = records.get_overview(who.portal.account_id, who.customer_id,
                                               OVERVIEW_ORDERS)
    record = _own(who, record)
    failing = [s for s in record["subscriptions"] + record["payment_plans"]
               if s.get("missed_payments")]
    page = {"record": record, "failing": failing, "more_orders": more_orders,
            "show_failed_alert": bool(record["stats"].get("missed_payments")),
            "due": [], "cards": [], "cards_error": None}
    if page["show_failed_alert"]:
        page["due"] = _due(record)
        if page["due"]:
            page["cards"], page["cards_error"] = _cards(who, record)
    return page


CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]{1,300}$")


def orders(who: SignedIn, cursor: str | None) -> dict:
    """A page of the customer's orders, newest first. ``cursor`` comes from the previous
    page's "Older orders" link (opaque to the customer: base64 of where that page ended)."""
    after = None
    if cursor:
        try:
            after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode() \
                if CURSOR_RE.match(cursor) else None
        except (ValueError, UnicodeDecodeError):
            after = None
        if after is None:
            raise BadRequest("This page of orders does not exist.", code="bad_cursor")
    _check_record_live(who)
    try:
        entries, next_after = records.list_orders(who.customer_id, ORDERS_PAGE, after)
    except customer_store.BadCursor as exc:
        raise BadRequest("This page of orders does not exist.", code="bad_cursor") from exc
    next_cursor = (base64.urlsafe_b64encode(next_after.encode()).decode().rstrip("=")
                   if next_after else None)
    return {"orders": entries, "next_cursor": next_cursor, "first_page": cursor is None}


def _find(items: list[dict], item_id: str) -> dict:
    if not ID_RE.match(item_id or ""):
        raise NotFound("Not found.")
    for item in items:
        if item["id"] == item_id:
            return item
    raise NotFound("Not found.")


def order(who: SignedIn, order_id: str) -> dict:
    record = _record(who)
    found = _find(record["orders"], order_id)
    payments = [p for p in record["payments"] if p["id"] in set(found.get("payment_ids") or [])]
    subscription = None
    if found.get("subscription_id"):
        subscription = next((s for s in record["subscriptions"] + record["payment_plans"]
                             if s["id"] == found["subscription_id"]), None)
    return {"record": record, "order": found, "payments": payments, "subscription": subscription}


def subscription(who: SignedIn, subscription_id: str, with_cards: bool = True) -> dict:
    """A subscription or payment plan, its payments, and what the customer can do about
    it: the card it is charged to (and the other saved cards), paying a failed invoice,
    cancelling at period end or taking that back."""
    record = _record(who)
    plans = record["payment_plans"]
    found = _find(record["subscriptions"] + plans, subscription_id)
    payments = [p for p in record["payments"] if found.get("processor_ref") and
                p.get("subscription") == found["processor_ref"]]
    rules = SelfService(who.portal.account, who.customer_id, gateway=None)  # rules only
    page = {"record": record, "subscription": found, "is_plan": found in plans,
            "payments": payments, "due": _due(record, found), "cards": [],
            "cards_error": None, "can_choose_card": found["status"] in CARD_STATUSES,
            "can_cancel": rules.can_self_cancel(found), "can_keep": rules.can_keep(found)}
    if with_cards:
        page["cards"], page["cards_error"] = _cards(who, record)
    return page


def receipt(who: SignedIn, payment_id: str) -> dict:
    """The receipt document of one of the customer's successful payments."""
    if not ID_RE.match(payment_id or ""):
        raise NotFound("Not found.")
    record = _record(who)
    payment = receipts.receipt_payment(record, payment_id)
    return receipts.document(who.portal.brand, record, payment, who.portal.locale)


def receipt_pdf_url(who: SignedIn, payment_id: str) -> str:
    doc = receipt(who, payment_id)
    return receipts.pdf_download_url(doc, who.portal.account_id, who.customer_id)


# --- self-service: cards, paying a failed invoice, cancelling (chalicelib/selfservice) -------
#
# The portal's side of SelfService: ids from the browser are checked for shape, every
# subscription is looked up in the signed-in customer's own record first (another
# customer's id is "not found" before the processor is ever called), and the processor's
# answers come back as results or customer-safe errors for the page.

PROCESSOR = "stripe"  # the processor whose gateway serves the portal (registry.gateway_for)
PAYABLE = {"failed", "requires_action"}
CARD_STATUSES = SELF_SERVICE_ACTIVE  # a subscription whose card can still be chosen
# Errors the page the customer acted from shows next to the form, with its status code.
SHOWN_ON_PAGE = (BadRequest, Conflict, ProcessorError, ProcessorNotConfigured)
PAYMENT_METHOD_RE = re.compile(r"^pm_[A-Za-z0-9]{4,100}$")
ATTEMPT_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# ?done=… after a change: the notice the page shows (fixed texts; nothing is echoed).
NOTICES = {"card", "card_all", "card_added", "card_saved", "card_removed", "paid",
           "confirmed", "canceling", "kept"}
CARDS_UNAVAILABLE = "Your saved cards cannot be shown right now. Please try again later."


def _self_service(who: SignedIn) -> SelfService:
    return SelfService(who.portal.account, who.customer_id, gateway_for(who.portal.account))


def publishable_key(who: SignedIn) -> str | None:
    key = (who.portal.account.get("settings") or {}).get("stripe_publishable_key")
    return key if isinstance(key, str) and key.startswith("pk_") else None


def notice(code: str | None) -> str | None:
    return code if code in NOTICES else None


def _cards(who: SignedIn, record: dict) -> tuple[list[dict], str | None]:
    """The customer's saved cards for the page, or an explanation of why not."""
    names = {s["id"]: s.get("product") or "Subscription"
             for s in record["subscriptions"] + record["payment_plans"]}
    try:
        views = _self_service(who).cards(record=record)
    except NotFound:
        return [], None  # no customer at the processor: nothing saved
    except AppError as exc:
        logger.warning("saved cards unavailable", extra={"account_id": who.portal.account_id,
                                                         "error": exc.code})
        return [], CARDS_UNAVAILABLE
    return [{"id": v.id, "brand": v.brand, "last4": v.last4,
             "expires": f"{v.exp_month:02d}/{v.exp_year}" if v.exp_month and v.exp_year else None,
             "expired": v.expired, "used_by": [names.get(i, "Subscription") for i in v.used_by]}
            for v in views], None


def _due(record: dict, subscription: dict | None = None) -> list[dict]:
    """Failed payments the customer can pay now, each with a fresh attempt nonce (one per
    form, so a double submit of the same form pays once)."""
    by_ref = {s["processor_ref"]: s for s in record["subscriptions"] + record["payment_plans"]
              if s.get("processor_ref")}
    due = []
    for payment in record["payments"]:
        if payment["status"] not in PAYABLE or not payment.get("invoice"):
            continue
        sub = by_ref.get(payment.get("subscription"))
        if subscription is not None and sub is not subscription:
            continue
        due.append({"payment": payment, "subscription": sub,
                    "attempt": secrets.token_urlsafe(18)})
    return due


def _own_subscription(who: SignedIn, subscription_id: str) -> dict:
    record = _record(who)
    return _find(record["subscriptions"] + record["payment_plans"], subscription_id)


def _card_id(value: str | None) -> str:
    if not ID_RE.match(value or ""):
        raise BadRequest("Choose a card.", code="no_card")
    return value or ""


def set_card(who: SignedIn, subscription_id: str, card_id: str | None, for_all: bool) -> str:
    """Charge the subscription (or, ``for_all``, every active one) to a saved card."""
    _own_subscription(who, subscription_id)
    _self_service(who).set_card(subscription_id, _card_id(card_id), for_all)
    return "card_all" if for_all else "card"


def card_setup(who: SignedIn, subscription_id: str) -> dict:
    """What the "Add a card" page needs: a client secret for Stripe.js's card form."""
    sub = _own_subscription(who, subscription_id)
    key = publishable_key(who)
    secret = _self_service(who).start_card_setup() if key else None
    return {"subscription": sub, "publishable_key": key, "client_secret": secret,
            "can_choose_card": sub["status"] in CARD_STATUSES}


def add_card(who: SignedIn, subscription_id: str, payment_method: str | None,
             for_all: bool) -> str:
    """The card Stripe.js has just saved (``pm_…``, attached to the customer by the
    processor; we never see its number) becomes this subscription's, or every one's."""
    sub = _own_subscription(who, subscription_id)
    if not PAYMENT_METHOD_RE.match(payment_method or ""):
        raise BadRequest("The card could not be saved. Please try again.", code="no_card")
    card = selfservice.card_id(who.portal.account_id, Ref(PROCESSOR, payment_method or ""))
    service = _self_service(who)
    if for_all or sub["status"] in CARD_STATUSES:
        service.set_card(subscription_id, card, for_all)
        return "card_all" if for_all else "card_added"
    if card not in {c.id for c in service.cards()}:
        raise NotFound("no such card")
    return "card_saved"  # an ended subscription keeps its card; the new one is saved


def remove_card(who: SignedIn, subscription_id: str, card_id: str | None) -> str:
    _own_subscription(who, subscription_id)
    if not ID_RE.match(card_id or ""):
        raise NotFound("Not found.")
    _self_service(who).remove_card(card_id or "")
    return "card_removed"


@dataclass(frozen=True)
class PaymentResult:
    status: str  # paid, declined, requires_action
    message: str | None
    client_secret: str | None  # for requires_action: Stripe.js confirms the payment with it
    subscription_id: str | None  # the payment's subscription or plan, if it has one


def pay_now(who: SignedIn, payment_id: str, card_id: str | None,
            attempt: str | None) -> PaymentResult:
    """Pay a failed invoice with a chosen card. The same ``attempt`` (the form's nonce) is
    the same payment at the processor: a double submit pays once."""
    if not ID_RE.match(payment_id or ""):
        raise NotFound("Not found.")
    record = _record(who)
    payment = _find(record["payments"], payment_id)
    sub = next((s for s in record["subscriptions"] + record["payment_plans"]
                if payment.get("subscription") and s.get("processor_ref") == payment["subscription"]),
               None)
    sub_id = sub["id"] if sub else None
    if not ATTEMPT_RE.match(attempt or ""):
        raise BadRequest("This form has expired. Please reload the page and try again.")
    service = _self_service(who)
    try:
        outcome = service.pay_now(payment_id, _card_id(card_id), attempt or "")
    except Conflict as exc:
        # The second of two quick submits: the first one has paid it.
        paid = next((p for p in service.record()["payments"] if p["id"] == payment_id), {})
        if exc.code == "not_payable" and paid.get("status") == "succeeded":
            return PaymentResult("paid", None, None, sub_id)
        raise
    return PaymentResult(outcome.status, outcome.message, outcome.client_secret, sub_id)


def payment_subscription(who: SignedIn, payment_id: str) -> str | None:
    """The id of the subscription a payment of this customer belongs to (for its page)."""
    record = _record(who)
    payment = _find(record["payments"], payment_id)
    return next((s["id"] for s in record["subscriptions"] + record["payment_plans"]
                 if payment.get("subscription") and s.get("processor_ref") == payment["subscription"]),
                None)


def cancel_form(who: SignedIn, subscription_id: str) -> dict:
    """The confirm step before cancelling; only where the merchant allows it."""
    page = subscription(who, subscription_id, with_cards=False)
    if not page["can_cancel"]:
        raise Forbidden("Cancelling is not available for this subscription. Please write to "
                        f"{who.portal.brand['support_email']}.", code="self_cancel_off")
    return page


def cancel(who: SignedIn, subscription_id: str, reason: str | None) -> str:
    _own_subscription(who, subscription_id)
    _self_service(who).cancel(subscription_id, (reason or "")[:2000])
    return "canceling"


def keep(who: SignedIn, subscription_id: str) -> str:
    _own_subscription(who, subscription_id)
    _self_service(who).keep(subscription_id)
    return "kept"
