"""The account's dunning settings on the dashboard (owner and admin: ``manage_dunning``)
and the merchant API; the recovery report (``view_reports``: owner, admin, support).

  GET   /dashboard/{slug}/settings/dunning    the form
  POST  /dashboard/{slug}/settings/dunning    save (CSRF); a bad field saves nothing (400)
  GET   /api/v1/settings/dunning              the settings (defaults filled in)
  PUT   /api/v1/settings/dunning              any of the fields; the new settings
  GET   /dashboard/{slug}/reports/recovery    ?from=YYYY-MM&to=YYYY-MM (default: 12 months)
  GET   /api/v1/reports/recovery              ?from=YYYY-MM&to=YYYY-MM
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib import timeutil
from chalicelib.accounts.service import authenticate
from chalicelib.actions.web import json_body, log_api_change
from chalicelib.activity import service as activity
from chalicelib.dashboard import web
from chalicelib.dunning import report
from chalicelib.dunning import settings as dunning_settings
from chalicelib.errors import BadRequest
from chalicelib.http import json_errors

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
JSON = ["application/json"]
EMAIL_NAMES = {
    "payment_failed": "Payment failed (the reason and the next attempt; update your card)",
    "action_needed": "Confirmation needed (3-D Secure)",
    "final_warning": "Final warning before the last attempt",
    "recovered": "Payment recovered",
    "ended": "Subscription ended or payment plan overdue",
    "merchant_alert": "Alert to you when a customer's dunning ends",
}
ACTION_NAMES = {"cancel": "Cancel the subscription", "unpaid": "Leave it unpaid",
                "keep": "Keep it active"}
PLAN_ACTION_NAMES = {"keep_trying": "Mark it overdue and keep trying (every 14 days)",
                     "stop": "Mark it overdue and stop trying"}


def _visit(request, slug: str) -> web.StaffVisit:
    visit = web.staff_visit(request, slug)
    web.require(visit, "manage_dunning")
    return visit


def _page(request, visit, values: dict, problem: str | None = None, saved: bool = False,
          status: int = 200):
    return web.page(request, visit, "settings_dunning.html", status=status,
                    current="settings", values=values, problem=problem, saved=saved,
                    emails=EMAIL_NAMES, actions=ACTION_NAMES, plan_actions=PLAN_ACTION_NAMES)


@bp.route("/dashboard/{slug}/settings/dunning", methods=["GET"])
@web.dashboard_view(bp)
def dunning_form(request, slug: str):
    visit = _visit(request, slug)
    saved = (request.query_params or {}).get("done") == "saved"
    return _page(request, visit, dunning_settings.get(visit.account_id), saved=saved)


@bp.route("/dashboard/{slug}/settings/dunning", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def dunning_save(request, slug: str):
    visit = _visit(request, slug)
    form = web.form(request, visit)
    changes = {
        "mode": (form.get("mode") or "").strip(),
        "schedule_days": (form.get("schedule_days") or "").strip(),
        "final_action": (form.get("final_action") or "").strip(),
        "plan_final_action": (form.get("plan_final_action") or "").strip(),
        "alert_email": (form.get("alert_email") or "").strip() or None,
        "emails": {name: form.get(f"email_{name}") == "1" for name in EMAIL_NAMES},
    }
    try:
        new = dunning_settings.update(visit.account_id, changes, timeutil.now_iso())
    except dunning_settings.BadSettings as exc:
        shown = {**dunning_settings.get(visit.account_id), **changes}
        return _page(request, visit, shown, problem=exc.message, status=400)
    activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                    action="settings.dunning_updated", details={"settings": new},
                    ip=visit.client_ip)
    return web.redirect(f"{visit.root}/settings/dunning?done=saved", request)


@bp.route("/api/v1/settings/dunning", methods=["GET"])
@json_errors
def api_get():
    return dunning_settings.get(authenticate(bp.current_request.headers.get("authorization")))


@bp.route("/api/v1/settings/dunning", methods=["PUT"], content_types=JSON)
@json_errors
def api_put():
    account_id = authenticate(bp.current_request.headers.get("authorization"))
    body = json_body(bp.current_request, set(dunning_settings.DEFAULTS))
    updated = dunning_settings.update(account_id, body, timeutil.now_iso())
    log_api_change(bp.current_request, account_id, "settings.dunning_updated",
                   details={"changed": sorted(body)})
    return updated


# --- the recovery report ---------------------------------------------------------------------

CHANNEL_NAMES = {"automatic_retry": "Our automatic retries", "customer": "Customer in the portal",
                 "staff": "Staff retries", "processor": "Processor (its retries, hosted page)"}


def _report_period(params: dict | None, zone: str) -> tuple[str, str]:
    params = params or {}
    unknown = sorted(set(params) - {"from", "to"})
    if unknown:
        raise BadRequest(f'Unknown parameter "{unknown[0][:40]}".', code="bad_request")
    return report.period(params.get("from") or None, params.get("to") or None,
                         timeutil.now(), zone)


@bp.route("/dashboard/{slug}/reports/recovery", methods=["GET"])
@web.dashboard_view(bp)
def recovery_page(request, slug: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "view_reports")
    zone = report.time_zone_of(visit.account_id)
    first, last = _report_period(request.query_params, zone)
    return web.page(request, visit, "report_recovery.html", current="reports",
                    report=report.recovery(visit.account_id, first, last, zone),
                    channels=CHANNEL_NAMES)


@bp.route("/api/v1/reports/recovery", methods=["GET"])
@json_errors
def api_recovery():
    account_id = authenticate(bp.current_request.headers.get("authorization"))
    zone = report.time_zone_of(account_id)
    first, last = _report_period(bp.current_request.query_params, zone)
    return report.recovery(account_id, first, last, zone)
