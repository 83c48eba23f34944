"""Merchant API: the account's endpoints and their deliveries (API-key authentication like
every ``/api/v1/`` route; another account's endpoint or delivery is a 404).

  GET    /api/v1/endpoints                                        {"data": [endpoint, …]}
  POST   /api/v1/endpoints                                        201 endpoint + "secret" (once;
                                                                  none for kind "eventbridge")
  GET    /api/v1/endpoints/{id}                                   endpoint
  PATCH  /api/v1/endpoints/{id}                                   url, description, event_types, enabled
  DELETE /api/v1/endpoints/{id}                                   204
  POST   /api/v1/endpoints/{id}/rotate-secret                     {"secret"}; the old one signs
                                                                  ``grace_hours`` more (24, ≤ 168)
  GET    /api/v1/endpoints/{id}/deliveries                        {"data": [delivery, …]} newest first
  GET    /api/v1/endpoints/{id}/deliveries/{delivery_id}          delivery + "attempts_log"
  POST   /api/v1/endpoints/{id}/deliveries/{delivery_id}/replay   due again at once (the
                                                                  scheduler sends it)
  POST   /api/v1/endpoints/{id}/replay-failed                     {"since"} → {"replayed": [ids]}
"""
from __future__ import annotations

from datetime import datetime, timedelta

from chalice import Blueprint, Response

from chalicelib import timeutil
from chalicelib.accounts.service import authenticate
from chalicelib.actions.web import json_body, log_api_change
from chalicelib.errors import BadRequest, NotFound
from chalicelib.http import json_errors
from chalicelib.integrations import delivery, endpoints
from chalicelib.merchant_api.service import parse_limit

bp = Blueprint(__name__)
JSON = ["application/json"]
API_KINDS = ("webhook", "slack", "eventbridge")  # Zapier's hooks come through /api/v1/hooks


def _account_id() -> str:
    return authenticate(bp.current_request.headers.get("authorization"))


def _created(body: dict) -> Response:
    return Response(body=body, status_code=201, headers={"Content-Type": "application/json"})


def parse_since(value) -> datetime:
    """An ISO 8601 time with its offset (``2026-11-01T00:00:00Z``), at most 30 days ago."""
    if not isinstance(value, str) or len(value) > 40:
        raise BadRequest("since: an ISO 8601 time such as 2026-11-01T00:00:00Z")
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest("since: an ISO 8601 time such as 2026-11-01T00:00:00Z") from None
    if since.tzinfo is None:
        raise BadRequest("since: give the time's offset (Z for UTC)")
    return max(since, timeutil.now() - delivery.RETENTION)


def parse_grace(value) -> timedelta:
    if value is None:
        return endpoints.DEFAULT_GRACE
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 168:
        raise BadRequest("grace_hours: a whole number of hours from 0 to 168")
    return timedelta(hours=value)


def _delivery_of(account_id: str, endpoint_id: str, delivery_id: str) -> dict:
    found = delivery.get(account_id, delivery_id)
    if found["endpoint_id"] != endpoint_id:
        raise NotFound("no such delivery")
    return found


@bp.route("/api/v1/endpoints", methods=["GET"])
@json_errors
def list_endpoints():
    return {"data": endpoints.list_for(_account_id())}


@bp.route("/api/v1/endpoints", methods=["POST"], content_types=JSON)
@json_errors
def create_endpoint():
    account_id = _account_id()
    body = json_body(bp.current_request, {"url", "event_types", "description", "kind",
                                          "enabled"})
    kind = body.get("kind", "webhook")
    if kind not in API_KINDS:
        raise BadRequest(f"kind: one of {', '.join(API_KINDS)}")
    created = endpoints.create(
        account_id, url=body.get("url"), event_types=body.get("event_types"),
        description=body.get("description") or "", kind=kind,
        enabled=body.get("enabled", True))
    log_api_change(bp.current_request, account_id, "endpoint.created", created["id"],
                   {"url": created.get("url"), "kind": kind,
                    "event_types": created.get("event_types")})
    return _created(created)


@bp.route("/api/v1/endpoints/{endpoint_id}", methods=["GET"])
@json_errors
def get_endpoint(endpoint_id: str):
    return endpoints.require(_account_id(), endpoint_id)


@bp.route("/api/v1/endpoints/{endpoint_id}", methods=["PATCH"], content_types=JSON)
@json_errors
def update_endpoint(endpoint_id: str):
    account_id = _account_id()
    body = json_body(bp.current_request, {"url", "description", "event_types", "enabled"})
    endpoints.require(account_id, endpoint_id)
    updated = endpoints.update(account_id, endpoint_id, **body)
    log_api_change(bp.current_request, account_id, "endpoint.updated", endpoint_id,
                   {"changed": sorted(body)})
    return updated


@bp.route("/api/v1/endpoints/{endpoint_id}", methods=["DELETE"])
@json_errors
def delete_endpoint(endpoint_id: str):
    account_id = _account_id()
    if not endpoints.delete(account_id, endpoint_id):
        raise NotFound("no such endpoint")
    log_api_change(bp.current_request, account_id, "endpoint.deleted", endpoint_id)
    return Response(body="", status_code=204)


@bp.route("/api/v1/endpoints/{endpoint_id}/rotate-secret", methods=["POST"],
          content_types=JSON)
@json_errors
def rotate_secret(endpoint_id: str):
    account_id = _account_id()
    body = json_body(bp.current_request, {"grace_hours"})
    grace = parse_grace(body.get("grace_hours"))
    secret = endpoints.rotate_secret(account_id, endpoint_id, timeutil.now(), grace=grace)
    log_api_change(bp.current_request, account_id, "endpoint.secret_rotated", endpoint_id,
                   {"grace_hours": grace.total_seconds() / 3600})
    return {**endpoints.require(account_id, endpoint_id), "secret": secret}


@bp.route("/api/v1/endpoints/{endpoint_id}/deliveries", methods=["GET"])
@json_errors
def list_deliveries(endpoint_id: str):
    account_id = _account_id()
    limit = parse_limit((bp.current_request.query_params or {}).get("limit"))
    return {"data": delivery.list_for_endpoint(account_id, endpoint_id, limit=limit)}


@bp.route("/api/v1/endpoints/{endpoint_id}/deliveries/{delivery_id}", methods=["GET"])
@json_errors
def get_delivery(endpoint_id: str, delivery_id: str):
    return _delivery_of(_account_id(), endpoint_id, delivery_id)


@bp.route("/api/v1/endpoints/{endpoint_id}/deliveries/{delivery_id}/replay",
          methods=["POST"], content_types=JSON)
@json_errors
def replay_delivery(endpoint_id: str, delivery_id: str):
    account_id = _account_id()
    json_body(bp.current_request, set())
    _delivery_of(account_id, endpoint_id, delivery_id)
    return delivery.replay(account_id, delivery_id, timeutil.now())


@bp.route("/api/v1/endpoints/{endpoint_id}/replay-failed", methods=["POST"],
          content_types=JSON)
@json_errors
def replay_failed(endpoint_id: str):
    account_id = _account_id()
    body = json_body(bp.current_request, {"since"})
    since = parse_since(body.get("since"))
    return {"replayed": delivery.replay_failed(account_id, endpoint_id, since,
                                               timeutil.now())}
