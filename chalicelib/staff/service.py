"""Staff of merchant accounts: who they are, their roles, adding, changing and removing
them, and staff as the dashboard's sign-in audience. Plain Python.

Rules kept here (the store makes them hold under concurrency):
  - one member per e-mail in an account;
  - the last owner can never be removed or demoted (an owners count on the account's
    staff roster, changed in the same transaction as the member, conditional on
    another owner staying);
  - a removed member's sessions and pending sign-ins end at once (``end_access``), and
    every dashboard request reads the member again, so a role change applies to the next
    request and a removal locks out even a request already past its session check;
  - every change is written to the activity log with who made it.
"""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib import ids, timeutil
from chalicelib.activity import service as activity
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.signin import service as signin
from chalicelib.staff import mail as staff_mail
from chalicelib.staff.roles import ROLE_NAMES, ROLES
from chalicelib.store import staff as store
from chalicelib.store.staff import Staff

STAFF_ID_PREFIX = "stf"


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a staff member (id, e-mail, address) or the operator's CLI."""

    actor: str
    email: str | None = None
    ip: str | None = None


OPERATOR = Actor("operator")


def _email(value: str | None) -> str:
    return signin.normalize_email(value, "Enter the staff member's e-mail address.")


def check_email(value: str | None) -> str:
    """The normalized e-mail, or BadRequest."""
    return _email(value)


def _role(value: str | None) -> str:
    if value not in ROLES:
        raise BadRequest(f"Choose a role: {', '.join(ROLES)}.", code="invalid_role")
    return value


def _log(account_id: str, by: Actor, action: str, member: Staff, **details) -> None:
    activity.record(account_id, actor=by.actor, actor_email=by.email, action=action,
                    target=member.staff_id, details={"email": member.email, **details},
                    ip=by.ip)


def add_staff(account_id: str, email: str | None, role: str | None, by: Actor = OPERATOR) -> Staff:
    member = Staff(account_id=account_id, staff_id=ids.new_id(STAFF_ID_PREFIX),
                   email=_email(email), role=_role(role), created_at=timeutil.now_iso(),
                   added_by=by.actor)
    try:
        store.add(member)
    except store.EmailTaken:
        raise Conflict(f"{member.email} is already on the staff.", code="staff_exists") from None
    _log(account_id, by, "staff.add", member, role=member.role)
    return member


def list_staff(account_id: str) -> list[Staff]:
    order = {role: i for i, role in enumerate(ROLES)}
    return sorted(store.list_members(account_id), key=lambda m: (order.get(m.role, 9), m.email))


def get_staff(account_id: str, staff_id: str | None) -> Staff:
    member = store.get(account_id, staff_id) if staff_id else None
    if member is None:
        raise NotFound("There is no such staff member.")
    return member


def find_staff(account_id: str, email: str | None) -> Staff:
    """A member by e-mail (the CLI names members so)."""
    member = store.find_by_email(account_id, _email(email))
    if member is None:
        raise NotFound("There is no staff member with that e-mail.")
    return member


LAST_OWNER = "The account needs at least one owner: make someone else an owner first."


def set_role(account_id: str, staff_id: str, role: str | None, by: Actor = OPERATOR) -> Staff:
    role = _role(role)
    member = get_staff(account_id, staff_id)
    if member.role == role:
        return member
    try:
        store.set_role(member, role)
    except store.LastOwner:
        raise Conflict(LAST_OWNER, code="last_owner") from None
    except store.Changed:
        raise Conflict("This staff member changed meanwhile. Please look again.",
                       code="changed") from None
    _log(account_id, by, "staff.role", member, role_from=member.role, role_to=role)
    return Staff(**{**member.__dict__, "role": role})


def remove_staff(account_id: str, staff_id: str, by: Actor = OPERATOR) -> Staff:
    member = get_staff(account_id, staff_id)
    try:
        store.remove(member)
    except store.LastOwner:
        raise Conflict(LAST_OWNER, code="last_owner") from None
    except store.Changed:
        raise Conflict("This staff member changed meanwhile. Please look again.",
                       code="changed") from None
    signin.end_access(STAFF, account_id, member.staff_id)
    _log(account_id, by, "staff.remove", member, role=member.role)
    return member


def role_name(role: str) -> str:
    return ROLE_NAMES.get(role, role)


# --- staff as the dashboard's sign-in audience ------------------------------------------------

def _find_subject(account_id: str, email: str) -> str | None:
    member = store.find_by_email(account_id, email)
    return member.staff_id if member is not None else None


def _signed_in(site, staff_id: str, by: str, client_ip: str) -> None:
    member = store.get(site.account_id, staff_id)
    activity.record(site.account_id, actor=staff_id, actor_email=member.email if member else None,
                    action="staff.sign_in", details={"by": by}, ip=client_ip or None)


STAFF = signin.Audience(
    name=signin.STAFF,
    path="dashboard",
    rate_scope="staff-login",
    find_subject=_find_subject,
    send_mail=staff_mail.send_sign_in,
    session_seconds=lambda settings: min(8, settings.staff_session_hours) * 3600,
    idle_seconds=lambda settings: settings.staff_idle_minutes * 60,
    invalid_email="Enter your work e-mail address.",
    on_signed_in=_signed_in,
)
