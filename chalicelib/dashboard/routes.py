"""The dashboard's pages: ``/dashboard/<slug>/…`` for a signed-in staff member (sign-in is
chalicelib/dashboard/auth_routes.py). Each view checks the member's permission on the
server (``web.require``), calls one service function and renders a page.

  GET   /dashboard/{slug}/customers                 newest first (?cursor=), or search (?q=):
                                                    one hit opens the customer (303)
  GET   /dashboard/{slug}/customers/{id}            the customer's record (?orders=, ?mail=,
                                                    ?timeline=, ?source=, ?payments= page)
  GET   /dashboard/{slug}/customers/{id}/history    every payment, purchases, disputes
  GET   /dashboard/{slug}/customers/{id}/transactions/{payment}  raw webhooks, notes
  GET   /dashboard/{slug}/customers/{id}/receipts/{payment}      303 to the receipt PDF
  POST  /dashboard/{slug}/customers/{id}/sign-in-link  e-mail the customer a portal link
  GET   /dashboard/{slug}/deliveries                the webhook audit trail (?cursor=)
  GET   /dashboard/{slug}/deliveries/{id}           one delivery with its raw payload
  GET   /dashboard/{slug}/settings                  branding, self-cancel (owner); the
                                                    Radar toggle (owner, admin)
  POST  /dashboard/{slug}/settings
  POST  /dashboard/{slug}/settings/radar            blocks.push_to_radar on/off (owner, admin)
  GET   /dashboard/{slug}/activity                  the activity log (?action=&actor=&customer=)
  POST  /dashboard/{slug}/activity/export           mail a step-up code for the CSV export
  POST  /dashboard/{slug}/activity/export/confirm   the code → the CSV (owner, admin)

Another account's ids, and ids that do not exist, answer 404.
"""
from __future__ import annotations

from urllib.parse import urlencode

from chalice import Blueprint, Response

from chalicelib.actions.web import action_id
from chalicelib.activity import service as activity
from chalicelib.blocks import service as blocks
from chalicelib.dashboard import service, web
from chalicelib.dashboard.action_routes_subscriptions import NOTICES as action_notices
from chalicelib.errors import BadRequest, Conflict, TooManyRequests
from chalicelib.processors.registry import capabilities_of
from chalicelib.signin import step_up
from chalicelib.store import accounts as account_store

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
EXPORT_ACTION = "activity.export"


def _params(request) -> dict:
    return request.query_params or {}


def _visit(request, slug: str, permission: str = "view") -> web.StaffVisit:
    visit = web.staff_visit(request, slug)
    web.require(visit, permission)
    return visit


@bp.route("/dashboard/{slug}/customers", methods=["GET"])
@web.dashboard_view(bp)
def customers(request, slug: str):
    visit = _visit(request, slug)
    params = _params(request)
    if "q" in params:
        found = service.search(visit.account_id, params.get("q"))
        if found["open"]:
            return web.redirect(f"{visit.root}/customers/{found['open']}", request)
        return web.page(request, visit, "customers.html", current="customers", search=found,
                        search_query=found["query"])
    return web.page(request, visit, "customers.html", current="customers", search=None,
                    **service.customers(visit.account_id, params.get("cursor")))


def _record_context(visit: web.StaffVisit, request, customer_id: str, **extra) -> dict:
    params = _params(request)
    page = service.record_page(
        visit.account_id, customer_id, orders_cursor=params.get("orders"),
        payments_page=service.parse_page_number(params.get("payments")),
        timeline_source=params.get("source") or None, timeline_cursor=params.get("timeline"),
        mail_cursor=params.get("mail"))
    here = f"{visit.root}/customers/{customer_id}"
    return {"current": "customers", "page_url": here,
            "portal_link": service.portal_url(visit.http.base if visit.http else "", visit.slug),
            "can_send_link": visit.can("resend_email"),
            "address_lines": _address_lines(page["customer"].get("address")),
            "notice": None, "problem": None, "note_action_id": action_id(),
            "capabilities": capabilities_of, **page, **extra}


def _address_lines(address) -> list[str]:
    if not address:
        return []
    if isinstance(address, str):
        return [address]
    keys = ("line1", "line2", "postal_code", "city", "state", "country")
    parts = [address.get(k) for k in keys if isinstance(address, dict) and address.get(k)]
    return [str(p) for p in parts]


SENT_NOTICE = "A sign-in link is on its way to {email}. It works for 15 minutes, once."


@bp.route("/dashboard/{slug}/customers/{customer_id}", methods=["GET"])
@web.dashboard_view(bp)
def customer(request, slug: str, customer_id: str):
    visit = _visit(request, slug)
    context = _record_context(visit, request, customer_id)
    if _params(request).get("done") == "link_sent" and context["customer"].get("email"):
        context["notice"] = SENT_NOTICE.format(email=context["customer"]["email"])
    elif _params(request).get("done") in action_notices:
        context["notice"] = action_notices[_params(request)["done"]]
    return web.page(request, visit, "customer.html", **context)


@bp.route("/dashboard/{slug}/customers/{customer_id}/history", methods=["GET"])
@web.dashboard_view(bp)
def history(request, slug: str, customer_id: str):
    visit = _visit(request, slug)
    page = service.history_page(visit.account_id, customer_id,
                                service.parse_page_number(_params(request).get("payments")))
    return web.page(request, visit, "history.html", current="customers",
                    page_url=f"{visit.root}/customers/{customer_id}/history", **page)


@bp.route("/dashboard/{slug}/customers/{customer_id}/transactions/{payment_id}",
          methods=["GET"])
@web.dashboard_view(bp)
def transaction(request, slug: str, customer_id: str, payment_id: str):
    visit = _visit(request, slug)
    return web.page(request, visit, "transaction.html", current="customers",
                    note_action_id=action_id(),
                    **service.transaction_page(visit.account_id, customer_id, payment_id))


@bp.route("/dashboard/{slug}/customers/{customer_id}/receipts/{payment_id}", methods=["GET"])
@web.dashboard_view(bp)
def receipt(request, slug: str, customer_id: str, payment_id: str):
    visit = _visit(request, slug)
    return web.redirect(service.receipt_pdf_url(visit.account_id, slug, customer_id,
                                                payment_id), request)


@bp.route("/dashboard/{slug}/customers/{customer_id}/sign-in-link", methods=["POST"],
          content_types=FORM)
@web.dashboard_view(bp)
def send_sign_in_link(request, slug: str, customer_id: str):
    visit = _visit(request, slug, "resend_email")
    web.form(request, visit)
    base = visit.http.base if visit.http else ""
    try:
        email = service.send_sign_in_link(visit.account_id, slug, customer_id, visit.client_ip,
                                          base)
    except (BadRequest, TooManyRequests) as exc:
        return web.page(request, visit, "customer.html", status=exc.status,
                        **_record_context(visit, request, customer_id, problem=exc.message))
    activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                    action="customer.sign_in_link_sent", target=customer_id,
                    details={"to": email}, ip=visit.client_ip)
    return web.redirect(f"{visit.root}/customers/{customer_id}?done=link_sent", request)


@bp.route("/dashboard/{slug}/deliveries", methods=["GET"])
@web.dashboard_view(bp)
def deliveries(request, slug: str):
    visit = _visit(request, slug)
    return web.page(request, visit, "deliveries.html", current="deliveries",
                    **service.deliveries(visit.account_id, _params(request).get("cursor")))


@bp.route("/dashboard/{slug}/deliveries/{delivery_id}", methods=["GET"])
@web.dashboard_view(bp)
def delivery(request, slug: str, delivery_id: str):
    visit = _visit(request, slug)
    return web.page(request, visit, "delivery.html", current="deliveries",
                    **service.delivery(visit.account_id, delivery_id))


# --- settings (owner) ------------------------------------------------------------------

def _settings_visit(request, slug: str) -> web.StaffVisit:
    """The settings page: the owner's (branding, self-cancel), and the admins' too for the
    Radar toggle (``block``)."""
    visit = web.staff_visit(request, slug)
    if not visit.can("manage_settings"):
        web.require(visit, "block")
    return visit


def _radar(account_id: str) -> dict:
    """The Radar toggle: shown only when the account has Stripe (Radar is Stripe's)."""
    account = account_store.get(account_id) or {}
    return {"shown": bool(account.get("stripe_secret_key")),
            "on": blocks.push_to_radar(account)}


@bp.route("/dashboard/{slug}/settings", methods=["GET"])
@web.dashboard_view(bp)
def settings_form(request, slug: str):
    visit = _settings_visit(request, slug)
    done = _params(request).get("done")
    return web.page(request, visit, "settings.html", current="settings",
                    values=service.settings(visit.account_id)
                    if visit.can("manage_settings") else None, problems={},
                    saved=done == "saved", radar_saved=done == "radar_saved",
                    radar=_radar(visit.account_id))


@bp.route("/dashboard/{slug}/settings/radar", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def save_radar(request, slug: str):
    """``blocks.push_to_radar`` on or off (owner, admin; CSRF; on the activity log)."""
    visit = _visit(request, slug, "block")
    form = web.form(request, visit)
    value = form.get("push_to_radar") or ""
    if value not in ("", "1"):
        raise BadRequest("Tick the box or leave it empty.", code="bad_request")
    if not _radar(visit.account_id)["shown"]:
        raise Conflict("This shop has no Stripe account: there are no Radar lists to put "
                       "blocks on.", code="not_applicable")
    on = value == "1"
    before = blocks.set_push_to_radar(visit.account_id, on)
    activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                    action="settings.updated",
                    details={"changed": {"blocks.push_to_radar": on} if before != on else {}},
                    ip=visit.client_ip)
    return web.redirect(f"{visit.root}/settings?done=radar_saved", request)


@bp.route("/dashboard/{slug}/settings", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def save_settings(request, slug: str):
    visit = _visit(request, slug, "manage_settings")
    values, problems = service.parse_settings_form(web.form(request, visit))
    if problems:
        return web.page(request, visit, "settings.html", status=400, current="settings",
                        values=values, problems=problems, saved=False, radar_saved=False,
                        radar=_radar(visit.account_id))
    before = service.save_settings(visit.account_id, values)
    changed = {k: values[k] for k in values if before.get(k) != values[k]}
    activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                    action="settings.updated", details={"changed": changed}, ip=visit.client_ip)
    return web.redirect(f"{visit.root}/settings?done=saved", request)


# --- activity log ----------------------------------------------------------------------------

def _activity_filters(params: dict) -> tuple[dict, dict, str]:
    filters = service.activity_filters(params)
    shown = {k: (params.get(k) or "").strip() for k in ("action", "actor", "customer")}
    kept = {k: v for k, v in shown.items() if v}
    return filters, shown, ("?" + urlencode(kept)) if kept else ""


@bp.route("/dashboard/{slug}/activity", methods=["GET"])
@web.dashboard_view(bp)
def activity_log(request, slug: str):
    visit = _visit(request, slug, "view_activity")
    params = _params(request)
    filters, shown, query_string = _activity_filters(params)
    return web.page(request, visit, "activity.html", current="activity", filters_in=shown,
                    query_string=query_string, can_export=visit.can("export"), step_up=False,
                    **service.activity_page(visit.account_id, filters, params.get("cursor")))


@bp.route("/dashboard/{slug}/activity/export", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def activity_export(request, slug: str):
    """An export asks for a fresh code (staff.roles.STEP_UP): mail it, show the form."""
    visit = _visit(request, slug, "export")
    form = web.form(request, visit)
    _, shown, _ = _activity_filters(form)
    step_up.issue_step_up(visit, EXPORT_ACTION, "Download the activity log as CSV")
    return web.page(request, visit, "activity_export.html", current="activity",
                    filters_in=shown, error=None)


@bp.route("/dashboard/{slug}/activity/export/confirm", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def activity_export_confirm(request, slug: str):
    visit = _visit(request, slug, "export")
    form = web.form(request, visit)
    filters, shown, _ = _activity_filters(form)
    try:
        step_up.verify_step_up(visit, EXPORT_ACTION, form.get("code"))
    except step_up.StepUpRefused as exc:
        return web.page(request, visit, "activity_export.html", status=exc.status,
                        current="activity", filters_in=shown, error=exc.message)
    body, more = service.activity_csv(visit.account_id, filters)
    activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                    action="activity.exported", details={"filters": shown, "truncated": more},
                    ip=visit.client_ip)
    headers = {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="activity.csv"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    }
    if more:
        headers["X-Rows-Truncated"] = str(service.ACTIVITY_CSV_MAX_ROWS)
    return Response(body="\ufeff" + body, status_code=200, headers=headers)
