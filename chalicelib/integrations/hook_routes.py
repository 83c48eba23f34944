"""Merchant API: Zapier's REST hooks (chalicelib/integrations/hooks.py) and the API key's
account, which Zapier's connection test calls. API-key authentication like every
``/api/v1/`` route.

  GET    /api/v1/me                             the key's account: id, name, slug
  POST   /api/v1/hooks                          {"target_url", "event"} → 201 {"id", …}
  DELETE /api/v1/hooks/{hook_id}                204; another account's or unknown: 404
  GET    /api/v1/hooks/samples/{event_type}     {"data": [payload, …]}, newest first
"""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.accounts.service import authenticate, get_account
from chalicelib.actions.web import json_body
from chalicelib.errors import NotFound
from chalicelib.http import json_errors
from chalicelib.integrations import hooks

bp = Blueprint(__name__)
JSON = ["application/json"]


def _account_id() -> str:
    return authenticate(bp.current_request.headers.get("authorization"))


@bp.route("/api/v1/me", methods=["GET"])
@json_errors
def me():
    account_id = _account_id()
    account = get_account(account_id)
    if account is None:  # a key left behind by a deleted account
        raise NotFound("no such account")
    return {"account_id": account_id, "name": account.get("name"), "slug": account.get("slug")}


@bp.route("/api/v1/hooks", methods=["POST"], content_types=JSON)
@json_errors
def subscribe():
    account_id = _account_id()
    body = json_body(bp.current_request, {"target_url", "event"})
    return Response(body=hooks.subscribe(account_id, body), status_code=201,
                    headers={"Content-Type": "application/json"})


@bp.route("/api/v1/hooks/{hook_id}", methods=["DELETE"])
@json_errors
def unsubscribe(hook_id: str):
    hooks.unsubscribe(_account_id(), hook_id)
    return Response(body="", status_code=204)


@bp.route("/api/v1/hooks/samples/{event_type}", methods=["GET"])
@json_errors
def samples(event_type: str):
    return hooks.samples(_account_id(), event_type)
