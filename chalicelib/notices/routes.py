"""The account's notice settings on the dashboard (owner and admin: ``manage_notices``) and
the merchant API.

  GET   /dashboard/{slug}/settings/notices    the form, and the suppressed addresses
  POST  /dashboard/{slug}/settings/notices    save (CSRF); a bad field saves nothing (400)
  GET   /api/v1/settings/notices              the settings (defaults filled in)
  PUT   /api/v1/settings/notices              any of the fields; the new settings
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.accounts.service import authenticate
from chalicelib.actions.web import json_body, log_api_change
from chalicelib.activity import service as activity
from chalicelib.dashboard import web
from chalicelib.errors import BadRequest
from chalicelib.http import json_errors
from chalicelib.notices import settings as notice_settings
from chalicelib.notices import timing
from chalicelib.store import notices as store

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
JSON = ["application/json"]
KIND_NAMES = {
    "card_expiring": "Card expiring (30 and 7 days before)",
    "card_expired": "Card expired (the day after)",
    "renewal": "Upcoming renewal",
    "instalment": "Upcoming instalment of a payment plan",
    "receipt": "Receipt after each successful payment",
}


def _visit(request, slug: str) -> web.StaffVisit:
    visit = web.staff_visit(request, slug)
    web.require(visit, "manage_notices")
    return visit


def _page(request, visit, values: dict, problem: str | None = None, saved: bool = False,
          status: int = 200):
    return web.page(request, visit, "settings_notices.html", status=status,
                    current="notices", values=values, problem=problem, saved=saved,
                    kinds=KIND_NAMES, hours=range(24),
                    renewal_max=timing.RENEWAL_DAYS_MAX,
                    suppressed=store.list_suppressions(visit.account_id))


@bp.route("/dashboard/{slug}/settings/notices", methods=["GET"])
@web.dashboard_view(bp)
def notices_form(request, slug: str):
    visit = _visit(request, slug)
    saved = (request.query_params or {}).get("done") == "saved"
    return _page(request, visit, notice_settings.get(visit.account_id), saved=saved)


@bp.route("/dashboard/{slug}/settings/notices", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def notices_save(request, slug: str):
    visit = _visit(request, slug)
    form = web.form(request, visit)
    changes = {
        "time_zone": (form.get("time_zone") or "").strip(),
        "hour": (form.get("hour") or "").strip(),
        "renewal_days": (form.get("renewal_days") or "").strip(),
        "instalment_days": (form.get("instalment_days") or "").strip(),
        "receipt_footer": form.get("receipt_footer") or "",
        "enabled": {kind: form.get(f"enabled_{kind}") == "1" for kind in KIND_NAMES},
    }
    try:
        new = notice_settings.update(visit.account_id, changes)
    except BadRequest as exc:
        shown = {**notice_settings.get(visit.account_id), **{
            k: v for k, v in changes.items() if k != "enabled"}, "enabled": changes["enabled"]}
        return _page(request, visit, shown, problem=exc.message, status=400)
    activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                    action="settings.notices_updated", details={"settings": new},
                    ip=visit.client_ip)
    return web.redirect(f"{visit.root}/settings/notices?done=saved", request)


@bp.route("/api/v1/settings/notices", methods=["GET"])
@json_errors
def api_get():
    return notice_settings.get(authenticate(bp.current_request.headers.get("authorization")))


@bp.route("/api/v1/settings/notices", methods=["PUT"], content_types=JSON)
@json_errors
def api_put():
    account_id = authenticate(bp.current_request.headers.get("authorization"))
    body = json_body(bp.current_request, set(notice_settings.DEFAULTS))
    updated = notice_settings.update(account_id, body)
    log_api_change(bp.current_request, account_id, "settings.notices_updated",
                   details={"changed": sorted(body)})
    return updated
