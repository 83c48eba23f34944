"""The owner's staff page: ``/dashboard/<slug>/staff``. Every change (adding a member,
changing a role, removing one) is confirmed with a step-up code mailed to the owner
(signin.step_up), bound to that exact change, and written to the activity log.

  GET   /dashboard/{slug}/staff                      members, the add form
  POST  /dashboard/{slug}/staff                      add (e-mail, role) → confirm page
  POST  /dashboard/{slug}/staff/{staff_id}/role      change role → confirm page
  POST  /dashboard/{slug}/staff/{staff_id}/remove    remove → confirm page
  POST  /dashboard/{slug}/staff/confirm              the code: the change is made
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.dashboard import web
from chalicelib.errors import BadRequest, Conflict
from chalicelib.signin import service as signin
from chalicelib.signin import step_up
from chalicelib.staff import service as staff
from chalicelib.staff.roles import ROLE_NAMES, ROLES

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
NOTICES = {"added": "Staff member added. They can sign in with their e-mail now.",
           "role": "Role changed. It applies from their next click.",
           "removed": "Staff member removed. Their sessions have ended."}


def _visit(request, slug: str) -> web.StaffVisit:
    visit = web.staff_visit(request, slug)
    web.require(visit, "manage_staff")
    return visit


def _posted(request, slug: str) -> tuple[web.StaffVisit, dict]:
    visit = web.staff_visit(request, slug)
    fields = web.form(request, visit)
    web.require(visit, "manage_staff")
    return visit, fields


def _actor(visit: web.StaffVisit) -> staff.Actor:
    return staff.Actor(visit.staff_id, visit.email, visit.client_ip)


def _staff_page(request, visit: web.StaffVisit, status: int = 200, **context):
    context = {"error": None, "email": "", "role": "support", "done": None, **context}
    return web.page(request, visit, "staff.html", status=status, current="staff",
                    members=staff.list_staff(visit.account_id), roles=ROLES,
                    role_names=ROLE_NAMES, **context)


@bp.route("/dashboard/{slug}/staff", methods=["GET"])
@web.dashboard_view(bp)
def staff_page(request, slug: str):
    visit = _visit(request, slug)
    done = (request.query_params or {}).get("done")
    return _staff_page(request, visit, done=NOTICES.get(done))


# A change as the confirm form carries it: (action bound to the code, words for the mail).
def _change(visit: web.StaffVisit, fields: dict) -> tuple[dict, str, str]:
    op = fields.get("op")
    if op == "add":
        email = signin.normalize_email(fields.get("email"), "Enter the new member's e-mail address.")
        role = fields.get("role")
        if role not in ROLES:
            raise BadRequest("Choose a role.", code="invalid_role")
        return ({"op": op, "email": email, "role": role}, f"staff.add:{email}:{role}",
                f"add {email} to the staff as {ROLE_NAMES[role]}")
    member = staff.get_staff(visit.account_id, fields.get("staff_id"))
    if op == "role":
        role = fields.get("role")
        if role not in ROLES:
            raise BadRequest("Choose a role.", code="invalid_role")
        return ({"op": op, "staff_id": member.staff_id, "role": role},
                f"staff.role:{member.staff_id}:{member.role}:{role}",
                f"make {member.email} {ROLE_NAMES[role]} (now {ROLE_NAMES.get(member.role)})")
    if op == "remove":
        return ({"op": op, "staff_id": member.staff_id},
                f"staff.remove:{member.staff_id}", f"remove {member.email} from the staff")
    raise BadRequest("Unknown change.", code="bad_request")


def _ask_for_code(request, slug: str, fields: dict):
    visit, form = _posted(request, slug)
    try:
        change, action, what = _change(visit, {**form, **fields})
    except BadRequest as exc:
        return _staff_page(request, visit, status=exc.status, error=exc.message,
                           email=(form.get("email") or "")[:320], role=form.get("role") or "support")
    step_up.issue_step_up(visit, action, what)
    return web.page(request, visit, "staff_confirm.html", current="staff", change=change,
                    what=what, error=None)


@bp.route("/dashboard/{slug}/staff", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def add(request, slug: str):
    return _ask_for_code(request, slug, {"op": "add"})


@bp.route("/dashboard/{slug}/staff/{staff_id}/role", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def change_role(request, slug: str, staff_id: str):
    return _ask_for_code(request, slug, {"op": "role", "staff_id": staff_id})


@bp.route("/dashboard/{slug}/staff/{staff_id}/remove", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def remove(request, slug: str, staff_id: str):
    return _ask_for_code(request, slug, {"op": "remove", "staff_id": staff_id})


@bp.route("/dashboard/{slug}/staff/confirm", methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def confirm(request, slug: str):
    visit, form = _posted(request, slug)
    change, action, what = _change(visit, form)
    try:
        step_up.verify_step_up(visit, action, form.get("code"))
    except step_up.StepUpRefused as exc:
        return web.page(request, visit, "staff_confirm.html", status=exc.status, current="staff",
                        change=change, what=what, error=exc.message)
    by = _actor(visit)
    try:
        if change["op"] == "add":
            staff.add_staff(visit.account_id, change["email"], change["role"], by)
            done = "added"
        elif change["op"] == "role":
            staff.set_role(visit.account_id, change["staff_id"], change["role"], by)
            done = "role"
        else:
            staff.remove_staff(visit.account_id, change["staff_id"], by)
            done = "removed"
    except Conflict as exc:
        return _staff_page(request, visit, status=exc.status, error=exc.message)
    if change.get("staff_id") == visit.staff_id and change["op"] == "remove":
        return web.redirect(f"{visit.root}/sign-in", request)
    return web.redirect(f"{visit.root}/staff?done={done}", request)


