"""The dashboard's endpoints page (owner and admin: permission ``manage_endpoints``).

  GET   /dashboard/{slug}/settings/endpoints                       list, and the add form
  POST  /dashboard/{slug}/settings/endpoints                       add → the secret, shown once
  GET   /dashboard/{slug}/settings/endpoints/{id}                  edit, enable/disable, rotate,
                                                                   delete, deliveries, replay
  POST  /dashboard/{slug}/settings/endpoints/{id}                  save the edit form
  POST  /dashboard/{slug}/settings/endpoints/{id}/<switch>         enable, disable, delete,
                                                                   rotate (→ the new secret,
                                                                   shown once), replay-failed
                                                                   (every failed one since)
  GET   /dashboard/{slug}/settings/endpoints/{id}/deliveries/{dlv} its attempts
  POST  /dashboard/{slug}/settings/endpoints/{id}/deliveries/{dlv}/replay

Every POST checks the session's CSRF token; another account's endpoint or delivery is a
404; every change is written to the activity log.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime

from chalice import Blueprint

from chalicelib import timeutil
from chalicelib.activity import service as activity
from chalicelib.dashboard import web
from chalicelib.errors import BadRequest, NotFound
from chalicelib.integrations import delivery, endpoints

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
PERMISSION = "manage_endpoints"
PAGE_KINDS = ("webhook", "slack", "eventbridge")


def _visit(request, slug: str) -> web.StaffVisit:
    visit = web.staff_visit(request, slug)
    web.require(visit, PERMISSION)
    return visit


def _log(visit: web.StaffVisit, action: str, endpoint_id: str, **details) -> None:
    activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                    action=action, target=endpoint_id, details=details or None,
                    ip=visit.client_ip)


def _types(text: str | None) -> list[str]:
    """Event types typed as a list separated by spaces, commas or lines."""
    return [t for t in re.split(r"[\s,]+", text or "") if t]


def _base(visit: web.StaffVisit) -> str:
    return f"{visit.root}/settings/endpoints"


def _list_page(request, visit, status: int = 200, error: str | None = None, values=None):
    return web.page(request, visit, "endpoints.html", status=status, current="endpoints",
                    endpoints=endpoints.list_for(visit.account_id), error=error,
                    values=values or {}, kinds=PAGE_KINDS, base=_base(visit))


def _detail_page(request, visit, endpoint_id: str, status: int = 200,
                 error: str | None = None, notice: str | None = None):
    endpoint = endpoints.require(visit.account_id, endpoint_id)
    return web.page(request, visit, "endpoints_detail.html", status=status,
                    current="endpoints", endpoint=endpoint, error=error, notice=notice,
                    deliveries=delivery.list_for_endpoint(visit.account_id, endpoint_id),
                    base=_base(visit))


@bp.route("/dashboard/{slug}/settings/endpoints", methods=["GET"])
@web.dashboard_view(bp)
def endpoint_list(request, slug: str):
    return _list_page(request, _visit(request, slug))


@bp.route("/dashboard/{slug}/settings/endpoints", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def endpoint_add(request, slug: str):
    visit = _visit(request, slug)
    form = web.form(request, visit)
    kind = form.get("kind") or "webhook"
    try:
        if kind not in PAGE_KINDS:
            raise BadRequest("Choose a kind of endpoint from the list.")
        created = endpoints.create(visit.account_id, url=form.get("url"),
                                   event_types=_types(form.get("event_types")),
                                   description=form.get("description") or "", kind=kind)
    except BadRequest as exc:
        return _list_page(request, visit, status=400, error=exc.message, values=form)
    _log(visit, "endpoint.created", created["id"], url=created["url"])
    if "secret" not in created:  # an EventBridge bus: IAM, no secret to show
        return web.redirect(f"{_base(visit)}/{created['id']}", request)
    return web.page(request, visit, "endpoints_secret.html", status=201, current="endpoints",
                    endpoint=created, secret=created["secret"], base=_base(visit),
                    created=True)


@bp.route("/dashboard/{slug}/settings/endpoints/{endpoint_id}", methods=["GET"])
@web.dashboard_view(bp)
def endpoint_detail(request, slug: str, endpoint_id: str):
    return _detail_page(request, _visit(request, slug), endpoint_id)


@bp.route("/dashboard/{slug}/settings/endpoints/{endpoint_id}", methods=["POST"],
          content_types=FORM)
@web.dashboard_view(bp)
def endpoint_edit(request, slug: str, endpoint_id: str):
    visit = _visit(request, slug)
    form = web.form(request, visit)
    endpoints.require(visit.account_id, endpoint_id)
    try:
        endpoints.update(visit.account_id, endpoint_id, url=form.get("url"),
                         description=form.get("description") or "",
                         event_types=_types(form.get("event_types")))
    except BadRequest as exc:
        return _detail_page(request, visit, endpoint_id, status=400, error=exc.message)
    _log(visit, "endpoint.updated", endpoint_id)
    return web.redirect(f"{_base(visit)}/{endpoint_id}", request)


@bp.route("/dashboard/{slug}/settings/endpoints/{endpoint_id}/{switch}", methods=["POST"],
          content_types=FORM)
@web.dashboard_view(bp)
def endpoint_switch(request, slug: str, endpoint_id: str, switch: str):
    visit = _visit(request, slug)
    form = web.form(request, visit)
    if switch not in ("enable", "disable", "delete", "rotate", "replay-failed"):
        raise NotFound("Not found.")
    endpoints.require(visit.account_id, endpoint_id)
    if switch == "replay-failed":
        return _replay_failed(request, visit, endpoint_id, form.get("since"))
    if switch == "delete":
        endpoints.delete(visit.account_id, endpoint_id)
        _log(visit, "endpoint.deleted", endpoint_id)
        return web.redirect(_base(visit), request)
    if switch == "rotate":
        secret = endpoints.rotate_secret(visit.account_id, endpoint_id, timeutil.now())
        _log(visit, "endpoint.secret_rotated", endpoint_id)
        return web.page(request, visit, "endpoints_secret.html", current="endpoints",
                        endpoint=endpoints.require(visit.account_id, endpoint_id),
                        secret=secret, base=_base(visit), created=False)
    endpoints.update(visit.account_id, endpoint_id, enabled=switch == "enable")
    _log(visit, f"endpoint.{switch}d", endpoint_id)
    return web.redirect(f"{_base(visit)}/{endpoint_id}", request)


def _replay_failed(request, visit: web.StaffVisit, endpoint_id: str, since_text: str | None):
    try:
        since = datetime.fromisoformat((since_text or "").strip())
    except ValueError:
        return _detail_page(request, visit, endpoint_id, status=400,
                            error="Give the time as 2026-11-01T08:00 (UTC).")
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    replayed = delivery.replay_failed(visit.account_id, endpoint_id, since, timeutil.now())
    _log(visit, "endpoint.replayed_failed", endpoint_id, since=timeutil.iso(since),
         count=len(replayed))
    return _detail_page(request, visit, endpoint_id,
                        notice=f"{len(replayed)} failed deliveries will be sent again.")


@bp.route("/dashboard/{slug}/settings/endpoints/{endpoint_id}/deliveries/{delivery_id}",
          methods=["GET"])
@web.dashboard_view(bp)
def delivery_detail(request, slug: str, endpoint_id: str, delivery_id: str):
    visit = _visit(request, slug)
    endpoint = endpoints.require(visit.account_id, endpoint_id)
    found = delivery.get(visit.account_id, delivery_id)
    if found["endpoint_id"] != endpoint_id:
        raise NotFound("Not found.")
    return web.page(request, visit, "endpoints_delivery.html", current="endpoints",
                    endpoint=endpoint, delivery=found, base=_base(visit))


@bp.route("/dashboard/{slug}/settings/endpoints/{endpoint_id}/deliveries/{delivery_id}/replay",
          methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def delivery_replay(request, slug: str, endpoint_id: str, delivery_id: str):
    visit = _visit(request, slug)
    web.form(request, visit)
    endpoints.require(visit.account_id, endpoint_id)
    if delivery.get(visit.account_id, delivery_id)["endpoint_id"] != endpoint_id:
        raise NotFound("Not found.")
    delivery.replay(visit.account_id, delivery_id, timeutil.now())
    _log(visit, "endpoint.delivery_replayed", endpoint_id, delivery_id=delivery_id)
    return web.redirect(f"{_base(visit)}/{endpoint_id}/deliveries/{delivery_id}", request)
