"""Merchant accounts: creation, API keys, settings.

API keys are shown once and stored only as a SHA-256 hash: a key is 256 random bits,
so a fast hash is enough (no dictionary to guess from), and the lookup by hash is a
single GetItem, which also makes the comparison constant-time in effect.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib import crypto, ids, timeutil
from chalicelib.errors import BadRequest, Conflict, NotFound, Unauthorized
from chalicelib.store import accounts as account_store

API_KEY_PREFIX = "bp_live_"

DEFAULT_SETTINGS = {
    "branding": {"logo_url": None, "color": "#3b5bdb", "company_address": None},
    "portal": {"self_cancel": True},
}


@dataclass(frozen=True)
class CreatedAccount:
    account: dict
    api_key: str


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "shop"


SECRET_KEY_RE = re.compile(r"(sk|rk)_(test|live)_[A-Za-z0-9]{1,240}")
WEBHOOK_SECRET_RE = re.compile(r"whsec_[A-Za-z0-9+/=_-]{1,240}")
API_KEY_DISPLAY_CHARS = len(API_KEY_PREFIX) + 4
# A DNS label (after IDNA): letters, digits and inner hyphens, at most 63.
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Characters with no place in a logo URL that would be dangerous where it is used (a
# header, an HTML attribute) or parsed differently by browsers (a backslash).
_URL_FORBIDDEN = set(";\\\"'<>`")


def logo_origin(url) -> str | None:
    """``https://<host>[:<port>]`` of a valid logo URL, the host in IDNA (ASCII) form, for
    the portal's Content-Security-Policy; None if ``url`` is not one.

    Valid: https, a DNS host name of two labels or more (Unicode labels IDNA-encoded),
    an optional port; no user info, no IP literal (a logo is served from a named host,
    with a certificate for that name), no whitespace, control characters or ``;``.
    """
    if not isinstance(url, str) or not 0 < len(url) <= 1000:
        return None
    if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" or c in _URL_FORBIDDEN for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme != "https" or "@" in parts.netloc or not host or ":" in host:
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
        ascii_host.encode("ascii").decode("idna")  # its xn-- labels must decode too
    except UnicodeError:
        return None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or len(labels) < 2 or labels[-1].isdigit() or \
            not all(_LABEL_RE.fullmatch(label) for label in labels):
        return None
    return f"https://{ascii_host}" + (f":{port}" if port is not None else "")


def _checked_settings(settings: dict) -> dict:
    branding = settings.get("branding")
    if branding is not None and not isinstance(branding, dict):
        raise BadRequest("branding must be an object")
    logo = (branding or {}).get("logo_url")
    if logo is not None and logo_origin(logo) is None:
        raise BadRequest("the logo URL must be an https URL on a host name "
                         "(no user, IP address, spaces or ';')", code="invalid_logo_url")
    return settings


def _secret_key(key: str) -> str:
    if not SECRET_KEY_RE.fullmatch(key or ""):
        raise BadRequest("a Stripe secret key starts with sk_live_, sk_test_, rk_live_ or rk_test_")
    return key


def _webhook_secret(secret: str) -> str:
    if not WEBHOOK_SECRET_RE.fullmatch(secret or ""):
        raise BadRequest("a Stripe webhook secret starts with whsec_")
    return secret


def _publishable_key(key: str) -> str:
    key = (key or "").strip()
    if not re.fullmatch(r"pk_(test|live)_[A-Za-z0-9_]{1,240}", key):
        raise BadRequest("a Stripe publishable key starts with pk_test_ or pk_live_")
    return key


def create_account(*, name: str, support_email: str, stripe_secret_key: str | None,
                   stripe_webhook_secrets: list[str], slug: str | None = None,
                   settings: dict | None = None,
                   stripe_publishable_key: str | None = None) -> CreatedAccount:
    """``stripe_publishable_key`` (``settings.stripe_publishable_key``) is what the portal
    hands Stripe.js for the customer's card form; without it, customers cannot add cards."""
    account_id = ids.new_id("acct")
    merged = _checked_settings({**DEFAULT_SETTINGS, **(settings or {})})
    if stripe_secret_key is not None:
        _secret_key(stripe_secret_key)
    stripe_webhook_secrets = [_webhook_secret(s) for s in stripe_webhook_secrets]
    if stripe_publishable_key:
        merged["stripe_publishable_key"] = _publishable_key(stripe_publishable_key)
    account = {
        "account_id": account_id,
        "name": name,
        "slug": slug or _slugify(name),
        "support_email": support_email,
        "stripe_secret_key": stripe_secret_key,
        "stripe_webhook_secrets": list(stripe_webhook_secrets),
        "settings": merged,
        "created_at": timeutil.now_iso(),
    }
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        account_store.create(account, hash_api_key(api_key), api_key[:API_KEY_DISPLAY_CHARS])
    except account_store.SlugTaken:
        raise Conflict(f"the slug {account['slug']!r} is taken", code="slug_taken") from None
    return CreatedAccount(account=account, api_key=api_key)


def _existing(account_id: str) -> dict:
    account = account_store.get(account_id)
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account


def _secrets_changed() -> Conflict:
    return Conflict("the account's secrets changed meanwhile; run the command again",
                    code="changed")


def webhook_secret_fingerprints(account_id: str) -> list[str]:
    fingerprints = account_store.webhook_secret_fingerprints(account_id)
    if fingerprints is None:
        raise NotFound(f"no account {account_id}")
    return fingerprints


def add_webhook_secret(account_id: str, secret: str) -> list[str]:
    """Accept one more signing secret; the fingerprints of those accepted, newest first."""
    _webhook_secret(secret)
    try:
        fingerprints = account_store.add_webhook_secret(account_id, secret)
    except account_store.Changed:
        raise _secrets_changed() from None
    if fingerprints is None:
        raise NotFound(f"no account {account_id}")
    return fingerprints


def remove_webhook_secret(account_id: str, *, secret: str | None = None,
                          fingerprint: str | None = None) -> list[str]:
    """Stop accepting a secret, named by itself or by its fingerprint; those left."""
    fingerprint = crypto.fingerprint(secret) if secret is not None else (fingerprint or "").lower()
    if not re.fullmatch(f"[0-9a-f]{{{crypto.FINGERPRINT_CHARS}}}", fingerprint):
        raise BadRequest(f"a fingerprint is {crypto.FINGERPRINT_CHARS} hex digits")
    before = webhook_secret_fingerprints(account_id)
    if fingerprint not in before:
        raise NotFound("that secret is not on the account")
    try:
        left = account_store.remove_webhook_secret(account_id, fingerprint)
    except account_store.Changed:
        raise _secrets_changed() from None
    if left is None:
        raise NotFound(f"no account {account_id}")
    return left


def set_stripe_secret_key(account_id: str, key: str) -> None:
    """Rotate the account's Stripe secret (or restricted) key."""
    if not account_store.set_stripe_secret_key(account_id, _secret_key(key)):
        raise NotFound(f"no account {account_id}")


PAYPAL_CREDENTIAL_RE = re.compile(r"[A-Za-z0-9_-]{16,200}")
PAYPAL_WEBHOOK_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
PAYPAL_MODES = ("live", "sandbox")


def set_paypal(account_id: str, *, client_id: str, client_secret: str, webhook_id: str,
               mode: str) -> None:
    """Set the account's PayPal REST app (client id and secret), the id of the webhook
    that posts to ``/webhooks/paypal/<account>`` (PayPal signs it into every delivery) and
    whether it is a live or a sandbox app. The secret is stored encrypted."""
    if mode not in PAYPAL_MODES:
        raise BadRequest("the PayPal mode is live or sandbox")
    if not PAYPAL_CREDENTIAL_RE.fullmatch(client_id or ""):
        raise BadRequest("a PayPal client id is 16 to 200 letters, digits, _ or -")
    if not PAYPAL_CREDENTIAL_RE.fullmatch(client_secret or ""):
        raise BadRequest("a PayPal client secret is 16 to 200 letters, digits, _ or -")
    if not PAYPAL_WEBHOOK_ID_RE.fullmatch(webhook_id or ""):
        raise BadRequest("a PayPal webhook id is letters, digits, _ or - (PayPal shows it "
                         "with the webhook)")
    if not account_store.set_paypal(account_id, client_id=client_id, client_secret=client_secret,
                                    webhook_id=webhook_id, mode=mode):
        raise NotFound(f"no account {account_id}")


def encrypt_plaintext_secrets(account_id: str) -> bool:
    """Encrypt the secrets an earlier version stored in clear; False if there were none."""
    try:
        done = account_store.encrypt_plaintext_secrets(account_id)
    except account_store.Changed:
        raise _secrets_changed() from None
    if done is None:
        raise NotFound(f"no account {account_id}")
    return done


def set_stripe_publishable_key(account_id: str, key: str) -> None:
    settings = dict(_existing(account_id).get("settings") or {})
    settings["stripe_publishable_key"] = _publishable_key(key)
    account_store.update_settings(account_id, settings)


def update_branding_settings(account_id: str, *, color: str, logo_url: str | None,
                             company_address: str | None, self_cancel: bool) -> dict:
    """Set the branding (colour, logo URL, company address) and whether customers may
    cancel in the portal (the merchant's settings page); the settings as stored. Portal
    pages of warm containers show the change within a minute (their account cache)."""
    if not isinstance(color, str) or not re.fullmatch(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})", color):
        raise BadRequest("the colour must be # and 3 or 6 hex digits", code="invalid_color")
    if company_address is not None and len(company_address) > 500:
        raise BadRequest("the company address is at most 500 characters", code="invalid_address")
    settings = dict(_existing(account_id).get("settings") or {})
    settings["branding"] = {**(settings.get("branding") or {}), "color": color,
                            "logo_url": logo_url, "company_address": company_address}
    settings["portal"] = {**(settings.get("portal") or {}), "self_cancel": bool(self_cancel)}
    account_store.update_settings(account_id, _checked_settings(settings))
    return settings


def issue_api_key_for(account_id: str) -> str:
    _existing(account_id)
    return issue_api_key(account_id)


def issue_api_key(account_id: str) -> str:
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    account_store.add_api_key(account_id, hash_api_key(api_key),
                              api_key[:API_KEY_DISPLAY_CHARS], timeutil.now_iso())
    return api_key


def api_keys(account_id: str) -> list[dict]:
    """The account's API keys (prefix, created_at), oldest first."""
    _existing(account_id)
    return [{"prefix": k["prefix"], "created_at": k["created_at"]}
            for k in account_store.api_keys(account_id)]


def revoke_api_key(account_id: str, *, api_key: str | None = None,
                   prefix: str | None = None) -> str:
    """Revoke one of the account's API keys, given the key itself or its display prefix
    (which must name exactly one of the account's keys); the prefix of the key revoked.
    Another account's key is never revoked: the delete is conditional on the account."""
    _existing(account_id)
    if api_key is not None:
        if not api_key.startswith(API_KEY_PREFIX) or len(api_key) > 200:
            raise BadRequest(f"an API key starts with {API_KEY_PREFIX}")
        if not account_store.delete_api_key(account_id, hash_api_key(api_key)):
            raise NotFound("no such API key on this account")
        return api_key[:API_KEY_DISPLAY_CHARS]
    if not prefix:
        raise BadRequest("name the key by its prefix or give the key itself")
    matches = [k for k in account_store.api_keys(account_id) if k["prefix"] == prefix]
    if not matches:
        raise NotFound("no API key with that prefix on this account")
    if len(matches) > 1:
        raise Conflict(f"{len(matches)} keys of this account start with {prefix}: "
                       "give the key itself", code="ambiguous_prefix")
    if not account_store.delete_api_key(account_id, matches[0]["hash"]):
        raise NotFound("no API key with that prefix on this account")
    return prefix


def authenticate(authorization_header: str | None) -> str:
    """Return the account id for ``Authorization: Bearer <key>`` or raise Unauthorized."""
    if not authorization_header:
        raise Unauthorized("missing API key")
    scheme, _, token = authorization_header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(API_KEY_PREFIX) or len(token) > 200:
        raise Unauthorized("invalid API key")
    account_id = account_store.account_id_for_key(hash_api_key(token))
    if account_id is None:
        raise Unauthorized("invalid API key")
    return account_id


def get_account(account_id: str) -> dict | None:
    return account_store.get(account_id)


def webhook_url(base_url: str, account_id: str, processor: str = "stripe") -> str:
    return f"{base_url}/webhooks/{processor}/{account_id}"
