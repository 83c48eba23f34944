"""Sign-in, sessions, CSRF and rate limits: the one mechanism behind the customers' portal
and the staff's dashboard. Plain Python: no Chalice, no PynamoDB.

Each caller names its ``Audience`` (who signs in: customers or staff, how an e-mail finds
its subject, the mail, the session's life) and a ``site`` (any object with ``account_id``,
``slug`` and ``brand``: the merchant behind the URL). Everything below works the same for
both audiences, and the items of one never serve the other (store.signin).

Sign-in
  A request for a link always answers the same way, in at least
  ``login_min_response_ms``, whether or not the address has a subject; only a known,
  usable one gets mail. The link carries a 256-bit token; the table keeps only its
  SHA-256 (``TOKEN#…``) with the subject, the e-mail it was sent to and an expiry.
  Opening the link (GET or HEAD) reads nothing but the token item; the POST of the
  "Continue" form spends it in one transaction that deletes the token (conditional:
  still there, not expired), checks that the subject still has that e-mail (a customer
  record not folded away nor moving; a staff member not removed), and creates the session
  (conditional: new), so N racing POSTs make exactly one session and no link outlives an
  e-mail change or a removal.
  The mail also carries a 6-digit code for another device: stored hashed (with the
  token hash as salt) in a per-e-mail item, each attempt counted by a conditional
  update before the comparison, dead after ``login_code_attempts``; a right code spends
  the same token in the same kind of transaction. Every code that does not sign in
  gets one answer (same status, page and text, same requests, padded like the link
  request), so the code form does not tell a subject's address from a stranger's.
  A subject's sessions and tokens are listed with it (access entries), so that
  ``store.end_access`` can end them all at once.

Sessions and CSRF
  The session cookie is 256 random bits; the table keys the session by its SHA-256
  and holds the audience, the account, the subject, a CSRF token and an expiry checked
  here. A staff session also has an idle timeout: its last use is written at most once a
  minute. Every POST carries a CSRF token compared with ``hmac.compare_digest``: the
  session's when signed in; before sign-in a signed double-submit token (a random nonce
  in a cookie, the nonce and its HMAC under a deployment secret in the form, bound to the
  audience and the account).

Rate limits
  Fixed windows counted in the table (UpdateItem ADD, TTL), per audience: link requests
  per e-mail and per client address, sign-in attempts (link or code) per client address
  and (code) per e-mail, and failed codes per e-mail per day (past it, only the link
  signs in). A client address is counted by its IPv6 /64 (``client_network``). Over a
  limit the answer is 429 at once, never padded.

Step-up (staff; ``step_up``)
  A risky action asks for a fresh 6-digit code mailed to the staff member, however
  recent the sign-in: bound to the member and the action, 10 minutes, attempts capped,
  hashed at rest, spent once.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from chalicelib import timeutil
from chalicelib.errors import BadRequest, Forbidden, Gone, RetryLater, TooManyRequests
from chalicelib.mail.sender import MailFailed
from chalicelib.observability import logger
from chalicelib.settings import Settings, get_settings
from chalicelib.store import signin as store

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")  # secrets.token_urlsafe(24)
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
CODE_DIGITS = 6
SECRET_NAME = "portal-signing-key"
CUSTOMER = store.CUSTOMER
STAFF = store.STAFF


def now() -> float:
    """The clock (tests may replace it)."""
    return time.time()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


@dataclass(frozen=True)
class Audience:
    """Who signs in, and what differs between customers and staff."""

    name: str  # store.CUSTOMER or store.STAFF
    path: str  # the URL's first segment: "portal", "dashboard"
    rate_scope: str  # the prefix of its rate-limit counters
    # The subject id of a usable subject with this e-mail in the account, or None.
    find_subject: Callable[[str, str], str | None]
    # send_mail(brand=…, to=…, link=…, code=…, minutes=…, account_id=…, subject_id=…);
    # raises MailFailed.
    send_mail: Callable[..., None]
    session_seconds: Callable[[Settings], int]
    # Seconds without use after which a session ends (None: only its expiry ends it).
    idle_seconds: Callable[[Settings], int | None] = lambda settings: None
    invalid_email: str = "Enter your e-mail address."
    # Called after a session starts: on_signed_in(site, subject_id, by, client_ip).
    on_signed_in: Callable[..., None] | None = None


# --- normalizing -------------------------------------------------------------------------------

def normalize(value: str | None) -> str | None:
    """The address as records compare it (trimmed, lower case), or None if it is not one."""
    from chalicelib.records.service import normalize_email as records_normalize

    email = records_normalize((value or "").strip())
    if not email or len(email) > 254 or not EMAIL_RE.match(email):
        return None
    return email


def normalize_email(value: str | None, message: str = "Enter your e-mail address.") -> str:
    email = normalize(value)
    if email is None:
        raise BadRequest(message, code="invalid_email")
    return email


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


def _mac(audience: Audience, site, nonce: str) -> str:
    # A customer's form token is not a staff form's (nor another account's).
    label = "csrf" if audience.name == CUSTOMER else f"csrf-{audience.name}"
    message = f"{label}\x1f{site.account_id}\x1f{nonce}".encode()
    return hmac.new(_signing_key(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AnonymousCsrf:
    token: str  # for the form
    new_cookie: str | None  # a nonce to set as the cookie, if the visitor had none


def anonymous_csrf(audience: Audience, site, cookie_nonce: str | None) -> AnonymousCsrf:
    nonce = cookie_nonce if cookie_nonce and NONCE_RE.match(cookie_nonce) else None
    new = None
    if nonce is None:
        nonce = new = secrets.token_urlsafe(24)
    return AnonymousCsrf(token=f"{nonce}.{_mac(audience, site, nonce)}", new_cookie=new)


CSRF_EXPIRED = "This form has expired. Please go back, reload the page and try again."


def check_anonymous_csrf(audience: Audience, site, cookie_nonce: str | None,
                         form_token: str | None) -> None:
    nonce, _, mac = (form_token or "").partition(".")
    ok = bool(cookie_nonce and NONCE_RE.match(nonce) and mac)
    # Both comparisons always run: no early exit that times differently.
    same = hmac.compare_digest(nonce.encode(), (cookie_nonce or "").encode())
    signed = hmac.compare_digest(mac.encode(), _mac(audience, site, nonce).encode()) if ok else False
    if not (ok and same and signed):
        raise Forbidden(CSRF_EXPIRED, code="csrf")


def check_session_csrf(csrf_token: str, form_token: str | None) -> None:
    if not hmac.compare_digest(csrf_token.encode(), (form_token or "").encode()):
        raise Forbidden(CSRF_EXPIRED, code="csrf")


# --- rate limits -------------------------------------------------------------------------------

def _parse_limit(spec: str) -> tuple[int, int]:
    count, _, minutes = spec.partition("/")
    return int(count), int(minutes or 60) * 60


@dataclass(frozen=True)
class Hit:
    """One hit counted in a rate-limit window (``take_back`` undoes it)."""

    scope: str
    subject_hash: str
    window_start: int
    window: int


def limit(scope: str, subject: str, spec: str, message: str | None = None) -> Hit:
    """Count one hit on ``subject`` in the current fixed window; over the limit, refuse
    it at once (429). The count is the counter's own atomic result, so N concurrent hits
    see N different counts and none gets past the limit."""
    count_limit, window = _parse_limit(spec)
    t = int(now())
    start = t - t % window
    subject_hash = sha256(f"{scope}\x1f{subject}")
    count = store.hit_counter(scope, subject_hash, start, window)
    if count > count_limit:
        wait = start + window - t
        minutes = max(1, -(-wait // 60))
        raise TooManyRequests(
            message or f"Too many attempts. Please wait {minutes} minute"
                       f"{'s' if minutes != 1 else ''} and try again.", retry_after=wait)
    return Hit(scope, subject_hash, start, window)


def take_back(hit: Hit) -> None:
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
def no_sooner_than(milliseconds: int):
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


def _scope(audience: Audience, what: str) -> str:
    return f"{audience.rate_scope}-{what}"


# --- asking for a link --------------------------------------------------------------------

def code_hash(token_hash: str, code: str) -> str:
    return sha256(f"code\x1f{token_hash}\x1f{code}")


def request_sign_in(audience: Audience, site, email_input: str | None, client_ip: str,
                    base_url: str, landing: str | None = None) -> str:
    """Send a sign-in mail if the address has a usable subject; always answer the same.

    ``landing``: a page of the site (a path below its root, e.g. ``subscriptions/sub_…``)
    the link asks to open after sign-in; the site checks it again when the link is used
    (it only ever lands on the signed-in subject's own page).

    Returns the normalized address (to prefill the code form). Raises BadRequest for an
    invalid address, TooManyRequests over a limit (at once), RetryLater when mail cannot
    be sent.
    """
    email = normalize_email(email_input, audience.invalid_email)
    settings = get_settings()
    limit(_scope(audience, "request-email"), f"{site.account_id}\x1f{email}",
          settings.rate_login_requests_per_email)
    limit(_scope(audience, "request-ip"), client_network(client_ip),
          settings.rate_login_requests_per_ip)
    with no_sooner_than(settings.login_min_response_ms):
        _send_link_if_known(audience, site, email, base_url, landing)
    return email


def _send_link_if_known(audience: Audience, site, email: str, base_url: str,
                        landing: str | None = None) -> None:
    settings = get_settings()
    subject_id = audience.find_subject(site.account_id, email)
    if subject_id is None:
        return
    token = secrets.token_urlsafe(32)
    token_hash = sha256(token)
    code = new_code()
    email_hash = sha256(email)
    expires_at = int(now()) + settings.login_token_minutes * 60
    previous_code = store.put_login(token_hash, site.account_id, subject_id, expires_at,
                                    email_hash, code_hash(token_hash, code), email=email,
                                    audience=audience.name)
    link = f"{base_url}/{audience.path}/{site.slug}/link?token={token}"
    if landing:
        link += f"&next={quote(landing, safe='/')}"
    try:
        audience.send_mail(brand=site.brand, to=email, link=link, code=code,
                           minutes=settings.login_token_minutes, account_id=site.account_id,
                           subject_id=subject_id)
    except MailFailed:
        try:
            store.undo_login(token_hash, site.account_id, subject_id, email_hash,
                             previous_code, audience=audience.name)
        except Exception:  # noqa: BLE001 - the token was never sent; its TTL removes it anyway
            logger.exception("could not delete an unsent sign-in token")
        raise RetryLater("We could not send the e-mail right now. Please try again in a few "
                         "minutes.", code="mail_unavailable") from None
    logger.info("sign-in link sent", extra={"account_id": site.account_id,
                                            "audience": audience.name,
                                            "subject_id": subject_id})


# --- using a link or a code ------------------------------------------------------------------

@dataclass(frozen=True)
class NewSession:
    cookie_value: str
    max_age: int
    subject_id: str = ""


LINK_GONE = "This sign-in link has expired or has already been used. Ask for a new one below."
# Every code that does not sign in gets this one answer (status, page, text), whatever
# the reason: wrong, expired, spent, replaced by a newer mail's, tried too often, or an
# address with no code or no subject. Nothing in it depends on the address.
CODE_REFUSED = ("That code did not work. A code works once, only from your newest sign-in "
                "e-mail, and only for a short time. Check it, or get a new sign-in link below.")
CODE_FAILURES_CAPPED = ("Too many codes that did not work were entered for this address "
                        "today. Please sign in with the link in your e-mail instead (you can "
                        "ask for a new one).")
_NO_CODE = "-" * 64  # compared with when there is no live code: no code hashes to it


def _grant(audience: Audience, site, token: str | None) -> store.Grant | None:
    if not token or not TOKEN_RE.match(token):
        return None
    grant = store.get_token(sha256(token))
    if grant is None or grant.audience != audience.name or grant.account_id != site.account_id \
            or grant.expires_at <= now() or grant.email is None:
        return None
    return grant


def link_usable(audience: Audience, site, token: str | None) -> bool:
    """Whether the link still works; reads only (a GET or HEAD must never spend it)."""
    return _grant(audience, site, token) is not None


def redeem_link(audience: Audience, site, token: str | None, client_ip: str) -> NewSession:
    limit(_scope(audience, "attempt-ip"), client_network(client_ip),
          get_settings().rate_login_attempts_per_ip)
    grant = _grant(audience, site, token)
    if grant is None:
        raise Gone(LINK_GONE)
    return _start_session(audience, site, grant.subject_id, sha256(token or ""), grant.email,
                          client_ip=client_ip)


class CodeRefused(BadRequest):
    code = "code_refused"


def redeem_code(audience: Audience, site, email_input: str | None, code_input: str | None,
                client_ip: str) -> NewSession:
    """Sign in with the code of a sign-in mail.

    Every code that does not sign in raises the same CodeRefused after the same DynamoDB
    requests, padded to ``login_min_response_ms``: a stranger's address and a subject's
    wrong code answer alike. Over a limit, TooManyRequests at once. Each attempt counts
    against the address's failures of the day before the code is compared (an atomic
    count, so racing attempts cannot pass the cap) and is taken back when the code is
    right: past ``rate_login_code_failures_per_email`` only the link signs in, however
    many mails were asked for.
    """
    settings = get_settings()
    email = normalize_email(email_input, audience.invalid_email)
    subject = f"{site.account_id}\x1f{email}"
    limit(_scope(audience, "attempt-email"), subject, settings.rate_login_attempts_per_email)
    limit(_scope(audience, "attempt-ip"), client_network(client_ip),
          settings.rate_login_attempts_per_ip)
    failure = limit(_scope(audience, "code-failures-email"), subject,
                    settings.rate_login_code_failures_per_email, CODE_FAILURES_CAPPED)
    with no_sooner_than(settings.login_min_response_ms):
        session = _sign_in_with_code(audience, site, email, code_input, client_ip)
    try:
        take_back(failure)
    except Exception:  # noqa: BLE001 - signed in; at worst one failure too many counted today
        logger.exception("could not take back a right code's failure count")
    return session


def _code_matches(expected: str | None, salt: str, code_input: str | None) -> bool:
    """The same hashing and comparison whether or not there is a live code."""
    code = re.sub(r"[\s-]", "", code_input or "")
    given = code_hash(salt, code if re.fullmatch(rf"\d{{{CODE_DIGITS}}}", code) else "-")
    right = hmac.compare_digest((expected or _NO_CODE).encode(), given.encode())
    return expected is not None and right


def _sign_in_with_code(audience: Audience, site, email: str, code_input: str | None,
                       client_ip: str) -> NewSession:
    settings = get_settings()
    email_hash = sha256(email)
    try:
        attempt = store.count_code_attempt(site.account_id, email_hash, int(now()),
                                           settings.login_code_attempts, audience=audience.name)
    except store.NotUsable:
        attempt = None
    if not _code_matches(attempt.code_hash if attempt else None,
                         attempt.token_hash if attempt else email_hash, code_input):
        raise CodeRefused(CODE_REFUSED)
    try:
        return _start_session(audience, site, attempt.subject_id, attempt.token_hash, email,
                              code_of=(site.account_id, email_hash), client_ip=client_ip)
    except Gone:
        raise CodeRefused(CODE_REFUSED) from None


def _start_session(audience: Audience, site, subject_id: str, token_hash: str, email: str,
                   code_of: tuple[str, str] | None = None, client_ip: str = "") -> NewSession:
    """Spend the token for a new session (store.spend_token: once, and only while the
    subject still has the e-mail the token was sent to). Gone when it cannot be spent."""
    settings = get_settings()
    value = secrets.token_urlsafe(32)
    issued = int(now())
    max_age = audience.session_seconds(settings)
    idle = audience.idle_seconds(settings)
    new = store.NewSession(session_hash=sha256(value), account_id=site.account_id,
                           subject_id=subject_id, csrf_token=secrets.token_urlsafe(32),
                           created_at=timeutil.now_iso(), expires_at=issued + max_age,
                           audience=audience.name, last_seen=issued if idle else None)
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
    by = "code" if code_of else "link"
    logger.info(f"{audience.name} sign-in", extra={"account_id": site.account_id,
                                                   "subject_id": subject_id, "by": by})
    if audience.on_signed_in is not None:
        try:
            audience.on_signed_in(site, subject_id, by, client_ip)
        except Exception:  # noqa: BLE001 - signed in; the hook (a log entry) must not undo it
            logger.exception("sign-in hook failed")
    return NewSession(cookie_value=value, max_age=max_age, subject_id=subject_id)


# --- sessions ------------------------------------------------------------------------------

# A staff session's last use is written at most this often (bounds the writes per session).
TOUCH_EVERY_SECONDS = 60


@dataclass(frozen=True)
class Session:
    account_id: str
    subject_id: str
    csrf_token: str
    session_hash: str
    audience: str


def live_session(audience: Audience, cookie_value: str | None) -> Session | None:
    """The live session of this audience behind the cookie, whatever its account: one
    GetItem (and, for a session with an idle timeout, an UpdateItem at most once a
    minute). None when there is none, it expired, it was idle too long, or it belongs to
    the other audience."""
    if not cookie_value or not TOKEN_RE.match(cookie_value):
        return None
    session_hash = sha256(cookie_value)
    session = store.get_session(session_hash)
    t = now()
    if session is None or session.audience != audience.name or session.expires_at <= t:
        return None
    idle = audience.idle_seconds(get_settings())
    if idle:
        last = session.last_seen or 0
        if t - last >= idle:
            return None
        if t - last >= TOUCH_EVERY_SECONDS:
            store.touch_session(session_hash, int(t), int(t) - TOUCH_EVERY_SECONDS)
    return Session(session.account_id, session.subject_id, session.csrf_token, session_hash,
                   audience.name)


def signed_in(audience: Audience, site, cookie_value: str | None) -> Session | None:
    """The live session behind the cookie for this audience and the site's account (see
    ``live_session``); None for another account's."""
    session = live_session(audience, cookie_value)
    if session is None or session.account_id != site.account_id:
        return None
    return session


def sign_out(session: Session) -> None:
    store.delete_session(session.session_hash, session.subject_id, audience=session.audience,
                         account_id=session.account_id)


def end_access(audience: Audience, account_id: str, subject_id: str) -> int:
    """End every session and pending sign-in of a subject at once (store.end_access)."""
    return store.end_access(account_id, subject_id, audience=audience.name)
