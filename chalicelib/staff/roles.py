"""Staff roles and what each may do: the one table every dashboard route and action
checks on the server (``dashboard.web.require``), never only by hiding a button.

  owner      everything, including the account's settings and its staff
  admin      every action and export; not settings, not staff
  support    notes, customer edits, resending e-mails, cancelling at period end,
             retrying a failed payment, reading reports (recovery), and refunds up to
             the account's ``staff.support_refund_limit``
  read_only  reads only

The riskiest permissions (``STEP_UP``) also ask for a fresh code mailed to the staff
member, however recent the sign-in (signin.step_up).
"""
from __future__ import annotations

OWNER, ADMIN, SUPPORT, READ_ONLY = "owner", "admin", "support", "read_only"
ROLES = (OWNER, ADMIN, SUPPORT, READ_ONLY)
ROLE_NAMES = {OWNER: "Owner", ADMIN: "Admin", SUPPORT: "Support", READ_ONLY: "Read-only"}

PERMISSIONS = (
    "view", "note", "edit_customer", "resend_email", "cancel_at_period_end", "refund",
    "refund_over_limit", "cancel_now", "block", "export", "manage_settings", "manage_staff",
    "view_activity", "change_subscription", "retry_payment", "manage_endpoints",
    "manage_notices", "manage_dunning", "view_reports",
)

_SUPPORT = frozenset({"view", "note", "edit_customer", "resend_email", "cancel_at_period_end",
                      "refund", "retry_payment", "view_reports"})
_ADMIN = frozenset(PERMISSIONS) - {"manage_settings", "manage_staff"}
GRANTS: dict[str, frozenset[str]] = {
    OWNER: frozenset(PERMISSIONS),
    ADMIN: _ADMIN,
    SUPPORT: _SUPPORT,
    READ_ONLY: frozenset({"view"}),
}

# Permissions whose use asks for a step-up code (staff and role changes; refunds above
# the support limit, blocks and exports from the actions' issue on).
STEP_UP = frozenset({"manage_staff", "refund_over_limit", "block", "export"})

# What support may refund without ``refund_over_limit``, in minor units, when the account
# sets nothing for the currency (``settings.staff.support_refund_limit``).
DEFAULT_SUPPORT_REFUND_LIMIT = 10000


def allows(role: str | None, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    return permission in GRANTS.get(role or "", frozenset())


def support_refund_limit(account_settings: dict | None, currency: str) -> int:
    """The most support may refund at once in ``currency`` (minor units).

    ``settings["staff"]["support_refund_limit"]`` is either one number for every currency
    or a mapping of lower-case ISO 4217 codes to numbers (``"default"`` for the rest)."""
    configured = ((account_settings or {}).get("staff") or {}).get("support_refund_limit")
    if isinstance(configured, bool):
        configured = None
    if isinstance(configured, int):
        return max(0, configured)
    if isinstance(configured, dict):
        value = configured.get(currency.lower(), configured.get("default"))
        if isinstance(value, int) and not isinstance(value, bool):
            return max(0, value)
    return DEFAULT_SUPPORT_REFUND_LIMIT


def may_refund(role: str, account_settings: dict | None, amount: int, currency: str) -> bool:
    """Whether ``role`` may refund ``amount`` minor units of ``currency`` (a step-up is
    still asked above the support limit: ``STEP_UP``)."""
    if allows(role, "refund_over_limit"):
        return True
    return allows(role, "refund") and amount <= support_refund_limit(account_settings, currency)
