"""Merchants' endpoints: where events are delivered (Standard Webhooks), Zapier's REST
hooks and Slack destinations, each with its own signing secret.

A secret (``whsec_`` + base64 of 32 random bytes) is returned once, at creation or
rotation, and stored KMS-encrypted (chalicelib/crypto.py) under an encryption context of
its own, ``{"endpoint": "<account>/<endpoint>"}`` (``secret_context``). A rotation keeps the secret it
replaces signing beside the new one for a grace period (24 h by default, at most 7 days),
so a receiver can switch without losing a delivery.

URLs are checked at creation and on every change (``outbound.endpoint_url``: https only,
no user info, a public host), and again at every send, where the address the name
resolves to is checked too (``outbound.post_to_endpoint``).

An ``eventbridge`` endpoint's ``url`` is instead the ARN of an event bus in the
deployment's own account and region (``eventbridge.check_bus_arn``); IAM authenticates
its deliveries, so it has no secret (none is made, shown or rotated).
"""
from __future__ import annotations

import base64
import re
import secrets as token_source
from datetime import datetime, timedelta

from chalicelib import crypto, ids, outbound, timeutil
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.integrations import catalogue, eventbridge
from chalicelib.settings import get_settings
from chalicelib.store import endpoints as store
from chalicelib.store.endpoints import Endpoint, StoredSecret
from chalicelib.timeutil import iso

KINDS = ("webhook", "zapier", "slack", eventbridge.KIND)
ALL_EVENTS = "*"
MAX_DESCRIPTION = 500
MAX_EVENT_TYPES = 100
DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=7)
SECRET_PREFIX = "whsec_"
_EVENT_TYPE = re.compile(r"[a-z][a-z_]{0,39}(\.[a-z][a-z_]{0,39}){1,3}")
_ENDPOINT_ID = re.compile(r"ep_[0-9a-z]{26}")


def _secret() -> str:
    return SECRET_PREFIX + base64.b64encode(token_source.token_bytes(32)).decode("ascii")


def secret_context(account_id: str, endpoint_id: str) -> dict[str, str]:
    """The KMS encryption context of an endpoint's secrets: one key of their own, so the
    functions that create them (the API's) may encrypt under it and nothing else of a
    merchant's (its processor secrets are under ``{"account_id": …}``, encrypted by the
    operator), and a ciphertext copied to another endpoint or account does not decrypt."""
    return {"endpoint": f"{account_id}/{endpoint_id}"}


def _stored(account_id: str, endpoint_id: str, secret: str,
            expires_at: int | None = None) -> StoredSecret:
    return StoredSecret(crypto.encrypt(secret, secret_context(account_id, endpoint_id)),
                        crypto.fingerprint(secret), expires_at)


def public(endpoint: Endpoint) -> dict:
    """The endpoint as the dashboard and the API show it: never a secret, only the
    fingerprints of those that sign."""
    return {
        "id": endpoint.endpoint_id, "kind": endpoint.kind, "url": endpoint.url,
        "description": endpoint.description, "event_types": list(endpoint.event_types),
        "enabled": endpoint.enabled, "disabled_reason": endpoint.disabled_reason,
        "failing_since": endpoint.failing_since,
        "secrets": [{"fingerprint": s.fingerprint,
                     "expires_at": timeutil.iso_from_epoch(s.expires_at)}
                    for s in endpoint.secrets],
        "created_at": endpoint.created_at, "updated_at": endpoint.updated_at,
    }


def check_url(url, kind: str = "webhook") -> str:
    if kind == eventbridge.KIND:
        return eventbridge.check_bus_arn(url)
    try:
        outbound.endpoint_url(url, allow_http_loopback=get_settings()
                              .allow_http_loopback_endpoints)
    except outbound.Refused as exc:
        raise BadRequest(f"url: {exc}", code="invalid_url") from None
    return url


def _event_types(value) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > MAX_EVENT_TYPES:
        raise BadRequest(f"event_types: a list of 1 to {MAX_EVENT_TYPES} event types "
                         f'(or ["*"] for all)')
    types = []
    for event_type in value:
        if not isinstance(event_type, str) or not (
                event_type == ALL_EVENTS or _EVENT_TYPE.fullmatch(event_type)):
            raise BadRequest("event_types: each is an event type such as "
                             '"payment.succeeded", or "*"')
        if event_type != ALL_EVENTS and event_type not in catalogue.EVENT_TYPES:
            raise BadRequest(f"event_types: {event_type!r} is not an event type of the "
                             "catalogue (GET /api/v1/events/schema)")
        if event_type not in types:
            types.append(event_type)
    return types


def _description(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise BadRequest(f"description: text of at most {MAX_DESCRIPTION} characters")
    return value.strip()


def valid_endpoint_id(endpoint_id) -> bool:
    return isinstance(endpoint_id, str) and bool(_ENDPOINT_ID.fullmatch(endpoint_id))


def create(account_id: str, *, url, event_types, description="", kind="webhook",
           enabled=True, now: datetime | None = None, once: bool = False) -> dict:
    """A new endpoint; its ``secret`` is in this answer only (an ``eventbridge`` one has
    none). ``once``: if the account has an enabled endpoint of the same kind, URL and
    event types, even one being created at this moment, that one is answered instead,
    without a secret (``store.create_endpoint_once``)."""
    if kind not in KINDS:
        raise BadRequest(f"kind: one of {', '.join(KINDS)}")
    if not isinstance(enabled, bool):
        raise BadRequest("enabled: true or false")
    check_url(url, kind)
    types = _event_types(event_types)
    text = _description(description)
    if len(store.list_endpoints(account_id)) >= store.MAX_ENDPOINTS:
        raise Conflict(f"an account has at most {store.MAX_ENDPOINTS} endpoints",
                       code="too_many_endpoints")
    at = iso(now or timeutil.now())
    signs = kind != eventbridge.KIND
    secret = _secret() if signs else None
    endpoint_id = ids.new_id("ep")
    endpoint = Endpoint(account_id=account_id, endpoint_id=endpoint_id, kind=kind,
                        url=url, description=text, event_types=types, enabled=enabled,
                        disabled_reason=None if enabled else "disabled by the merchant",
                        secrets=[_stored(account_id, endpoint_id, secret)] if signs else [],
                        failing_since=None, created_at=at, updated_at=at)
    if once:
        stored, made = store.create_endpoint_once(endpoint)
        if stored is None:
            raise Conflict("the same endpoint is being created by another request: try again",
                           code="create_in_progress")
        if not made:
            return public(stored)
    else:
        store.create_endpoint(endpoint)
    return {**public(endpoint), "secret": secret} if signs else public(endpoint)


def get(account_id: str, endpoint_id: str) -> dict | None:
    if not valid_endpoint_id(endpoint_id):
        return None
    endpoint = store.get_endpoint(account_id, endpoint_id)
    return public(endpoint) if endpoint else None


def require(account_id: str, endpoint_id: str) -> dict:
    found = get(account_id, endpoint_id)
    if found is None:
        raise NotFound("no such endpoint")
    return found


def list_for(account_id: str) -> list[dict]:
    return [public(e) for e in store.list_endpoints(account_id)]


def update(account_id: str, endpoint_id: str, *, now: datetime | None = None, **fields) -> dict:
    """Change ``url``, ``description``, ``event_types`` or ``enabled``; 404 for an
    endpoint that is not the account's."""
    unknown = set(fields) - {"url", "description", "event_types", "enabled"}
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    if not valid_endpoint_id(endpoint_id):
        raise NotFound("no such endpoint")
    changes = {}
    if fields.get("url") is not None:
        current = store.get_endpoint(account_id, endpoint_id)
        if current is None:
            raise NotFound("no such endpoint")
        changes["url"] = check_url(fields["url"], current.kind)
    if fields.get("description") is not None:
        changes["description"] = _description(fields["description"])
    if fields.get("event_types") is not None:
        changes["event_types"] = _event_types(fields["event_types"])
    if fields.get("enabled") is not None:
        if not isinstance(fields["enabled"], bool):
            raise BadRequest("enabled: true or false")
        changes["enabled"] = fields["enabled"]
        if not fields["enabled"]:
            changes["disabled_reason"] = "disabled by the merchant"
    updated = store.update_endpoint(account_id, endpoint_id,
                                    iso(now or timeutil.now()), **changes)
    if updated is None:
        raise NotFound("no such endpoint")
    return public(updated)


def delete(account_id: str, endpoint_id: str) -> bool:
    return valid_endpoint_id(endpoint_id) and store.delete_endpoint(account_id, endpoint_id)


def disable(account_id: str, endpoint_id: str, reason: str, now: datetime | None = None) -> bool:
    """Disable the endpoint; True for the call that disabled it (False: already disabled
    or no such endpoint)."""
    if not valid_endpoint_id(endpoint_id):
        return False
    return store.disable_endpoint(account_id, endpoint_id, reason,
                                  iso(now or timeutil.now()))


def rotate_secret(account_id: str, endpoint_id: str, now: datetime,
                  grace: timedelta = DEFAULT_GRACE) -> str:
    """A new secret (returned this once); the current one keeps signing until
    ``now + grace`` (at most 7 days), older ones keep their own, earlier, end."""
    if not isinstance(grace, timedelta) or not timedelta(0) <= grace <= MAX_GRACE:
        raise BadRequest("grace: from 0 to 7 days")
    if not valid_endpoint_id(endpoint_id):
        raise NotFound("no such endpoint")
    endpoint = store.get_endpoint(account_id, endpoint_id)
    if endpoint is None:
        raise NotFound("no such endpoint")
    if endpoint.kind == eventbridge.KIND:
        raise BadRequest("an EventBridge destination has no secret (IAM authenticates it)",
                         code="no_secret")
    now_ts = int(now.timestamp())
    until = now_ts + int(grace.total_seconds())
    kept = []
    for old in endpoint.secrets:
        expires_at = until if old.expires_at is None else min(old.expires_at, until)
        if expires_at > now_ts:
            kept.append(StoredSecret(old.ciphertext, old.fingerprint, expires_at))
    secret = _secret()
    current = endpoint.secrets[0].fingerprint if endpoint.secrets else ""
    if not store.set_secrets_if_unchanged(account_id, endpoint_id, iso(now), current,
                                          [_stored(account_id, endpoint_id, secret),
                                           *kept[:4]]):
        raise Conflict("the secret was rotated meanwhile: try again", code="rotated_meanwhile")
    return secret


def signing_secrets(endpoint: Endpoint, now: datetime) -> list[str]:
    """The secrets that sign at ``now``, newest first (decrypted)."""
    now_ts = int(now.timestamp())
    context = secret_context(endpoint.account_id, endpoint.endpoint_id)
    return [crypto.decrypt(s.ciphertext, context)
            for s in endpoint.secrets if s.expires_at is None or s.expires_at > now_ts]


def subscribed(account_id: str, event_type: str) -> list[dict]:
    """The enabled endpoints whose event types hold ``event_type`` or ``*``."""
    return [public(e) for e in store.list_endpoints(account_id)
            if e.enabled and (event_type in e.event_types or ALL_EVENTS in e.event_types)]
