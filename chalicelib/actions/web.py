"""HTTP glue shared by every merchant action: the dashboard form's one-time action id and
the merchant API's ``Idempotency-Key`` header, and the ActionContext of each.

    <input type="hidden" name="action_id" value="{{ action_id }}">   # web.action_id()
    ctx = actions_web.dashboard_context(visit, form)    # 400 without a valid action id
    ctx = actions_web.api_context(request, account_id)  # 400 without Idempotency-Key
"""
from __future__ import annotations

import re
import secrets

from chalicelib.actions.service import ActionContext
from chalicelib.errors import BadRequest
from chalicelib.signin import web as http
from chalicelib.staff import roles

ACTION_ID_FIELD = "action_id"
_ACTION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Stripe takes keys of up to 255 characters; each processor call adds ":<step>".
MAX_KEY_LENGTH = 200
_KEY_RE = re.compile(rf"^[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}$")
API_ACTOR = "api"


def action_id() -> str:
    """A new one-time id for an action form (a double submission sends it twice)."""
    return secrets.token_urlsafe(24)


def dashboard_context(visit, fields: dict[str, str]) -> ActionContext:
    value = (fields.get(ACTION_ID_FIELD) or "").strip()
    if not _ACTION_ID_RE.match(value):
        raise BadRequest("This form is missing its action id. Reload the page and try again.",
                         code="action_id_required")
    return ActionContext(account_id=visit.account_id, actor_id=visit.staff_id,
                         actor_email=visit.email, role=visit.role, ip=visit.client_ip,
                         source="dashboard", idempotency_key=value)


def idempotency_key(request) -> str:
    headers = request.headers or {}
    value = headers.get("idempotency-key")
    if value is None:
        raise BadRequest("Send an Idempotency-Key header (a unique value per action, at most "
                         f"{MAX_KEY_LENGTH} printable ASCII characters): the same key sent "
                         "again answers the first result.", code="idempotency_key_required")
    if not _KEY_RE.match(value):
        raise BadRequest(f"The Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII "
                         "characters without spaces.", code="bad_idempotency_key")
    return value


def api_context(request, account_id: str) -> ActionContext:
    """The merchant API acts for the whole account (as an admin: no support limit, no
    step-up; the API key is the merchant's own secret)."""
    return ActionContext(account_id=account_id, actor_id=API_ACTOR, actor_email=None,
                         role=roles.ADMIN, ip=http.client_ip(request), source="api",
                         idempotency_key=idempotency_key(request))


def api_caller(request) -> ActionContext:
    """The merchant API's caller as an action context: its API key first (401 without a
    valid one, before anything else is read), then its Idempotency-Key (400)."""
    from chalicelib.accounts.service import authenticate

    return api_context(request, authenticate(request.headers.get("authorization")))


def log_api_change(request, account_id: str, action: str, target: str | None = None,
                   details: dict | None = None) -> None:
    """An entry in the account's activity log for a change made with the API key outside
    the action mechanism (settings, endpoints): who changed where events and e-mails go
    must be on record whichever way it was changed."""
    from chalicelib.activity import service as activity

    activity.record(account_id, actor=API_ACTOR, actor_email=None, action=action,
                    target=target, details=details, ip=http.client_ip(request))


MAX_JSON_BODY = 16 * 1024


def json_body(request, allowed: set[str]) -> dict:
    """An action request's JSON object: bounded, only ``allowed`` fields (400 otherwise);
    an empty body is ``{}``."""
    import json

    raw = request.raw_body or b""
    if len(raw) > MAX_JSON_BODY:
        raise BadRequest("The request body is too large.", code="bad_request")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The request body is not valid JSON.", code="bad_request") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="bad_request")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"Unknown field: {unknown[0][:50]}.", code="bad_request")
    return body
