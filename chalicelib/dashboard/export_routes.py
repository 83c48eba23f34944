"""The customers CSV export on the dashboard (owner and admin: permission ``export``).

  GET   /dashboard/{slug}/exports                   recent exports, and the button
  POST  /dashboard/{slug}/exports                   mail a step-up code, show its form
  POST  /dashboard/{slug}/exports/confirm           the code → a queued export (303 to it)
  GET   /dashboard/{slug}/exports/{id}              its status, and "Check again" while it is
                                                    queued or running (no JS; the page does
                                                    not reload by itself: WCAG 2.2.1)
  GET   /dashboard/{slug}/exports/{id}/download     303 to a short-lived link to the file

The file is built in the background (chalicelib/exports/service.py explains why and how).
Another account's export ids answer 404.
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.activity import service as activity
from chalicelib.dashboard import web
from chalicelib.exports import service as exports
from chalicelib.signin import step_up

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
EXPORT_ACTION = "customers.export"


def _visit(request, slug: str) -> web.StaffVisit:
    visit = web.staff_visit(request, slug)
    web.require(visit, "export")
    return visit


@bp.route("/dashboard/{slug}/exports", methods=["GET"])
@web.dashboard_view(bp)
def export_list(request, slug: str):
    visit = _visit(request, slug)
    return web.page(request, visit, "exports.html", current="exports",
                    exports=exports.recent_exports(visit.account_id))


@bp.route("/dashboard/{slug}/exports", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def export_ask(request, slug: str):
    """An export asks for a fresh code (staff.roles.STEP_UP): mail it, show the form."""
    visit = _visit(request, slug)
    web.form(request, visit)
    step_up.issue_step_up(visit, EXPORT_ACTION, "Export all customers as CSV")
    return web.page(request, visit, "exports_confirm.html", current="exports", error=None)


@bp.route("/dashboard/{slug}/exports/confirm", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def export_confirm(request, slug: str):
    visit = _visit(request, slug)
    form = web.form(request, visit)
    try:
        step_up.verify_step_up(visit, EXPORT_ACTION, form.get("code"))
    except step_up.StepUpRefused as exc:
        return web.page(request, visit, "exports_confirm.html", status=exc.status,
                        current="exports", error=exc.message)
    export = exports.request_export(visit.account_id, visit.staff_id, visit.email)
    activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                    action="customers.exported", target=export["id"], ip=visit.client_ip)
    return web.redirect(f"{visit.root}/exports/{export['id']}", request)


@bp.route("/dashboard/{slug}/exports/{export_id}", methods=["GET"])
@web.dashboard_view(bp)
def export_status(request, slug: str, export_id: str):
    visit = _visit(request, slug)
    export = exports.get_export(visit.account_id, export_id)
    return web.page(request, visit, "export.html", current="exports", export=export,
                    pending=export["status"] in ("queued", "running"))


@bp.route("/dashboard/{slug}/exports/{export_id}/download", methods=["GET"])
@web.dashboard_view(bp)
def export_download(request, slug: str, export_id: str):
    visit = _visit(request, slug)
    url = exports.download_url(visit.account_id, export_id)
    activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                    action="customers.export_downloaded", target=export_id, ip=visit.client_ip)
    return web.redirect(url, request)
