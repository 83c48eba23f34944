"""Merchant accounts: creation, API keys, settings.

API keys are shown once and stored only as a SHA-256 hash: a key is 256 random bits,
so a fast hash is enough (no dictionary to guess from), and the lookup by hash is a
single GetItem, which also makes the comparison constant-time in effect.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from chalicelib import ids, timeutil
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
    merged = {**DEFAULT_SETTINGS, **(settings or {})}
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
        account_store.create(account, hash_api_key(api_key), api_key[: len(API_KEY_PREFIX) + 4])
    except account_store.SlugTaken:
        raise Conflict(f"the slug {account['slug']!r} is taken", code="slug_taken") from None
    return CreatedAccount(account=account, api_key=api_key)


def _existing(account_id: str) -> dict:
    account = account_store.get(account_id)
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account


def add_webhook_secret(account_id: str, secret: str) -> list[str]:
    if not secret.startswith("whsec_"):
        raise BadRequest("a Stripe webhook secret starts with whsec_")
    current = _existing(account_id)["stripe_webhook_secrets"]
    updated = current if secret in current else [secret, *current]
    account_store.update_webhook_secrets(account_id, updated)
    return updated


def remove_webhook_secret(account_id: str, secret: str) -> list[str]:
    current = _existing(account_id)["stripe_webhook_secrets"]
    updated = [s for s in current if s != secret]
    if len(updated) == len(current):
        raise NotFound("that secret is not on the account")
    account_store.update_webhook_secrets(account_id, updated)
    return updated


def set_stripe_publishable_key(account_id: str, key: str) -> None:
    settings = dict(_existing(account_id).get("settings") or {})
    settings["stripe_publishable_key"] = _publishable_key(key)
    account_store.update_settings(account_id, settings)


def issue_api_key_for(account_id: str) -> str:
    _existing(account_id)
    return issue_api_key(account_id)


def issue_api_key(account_id: str) -> str:
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    account_store.add_api_key(account_id, hash_api_key(api_key),
                              api_key[: len(API_KEY_PREFIX) + 4], timeutil.now_iso())
    return api_key


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
