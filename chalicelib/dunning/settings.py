"""An account's dunning settings: who retries, when, what happens at the end, which
e-mails go. Checked here (a bad value is a 400 naming the field), stored whole
(store.dunning)."""
from __future__ import annotations

import re

from chalicelib.errors import AppError
from chalicelib.store import dunning as store

# "processor": the processor's own retries (Stripe Smart Retries); we only notify and never
# charge. "ours": we retry on our schedule; Stripe's automatic collection is turned off for
# each invoice we take over (auto_advance false), and its retry settings should be off.
MODES = ("processor", "ours")
SUBSCRIPTION_ACTIONS = ("cancel", "unpaid", "keep")
# A payment plan is a debt: it is marked defaulted, and we keep trying or stop.
PLAN_ACTIONS = ("keep_trying", "stop")
EMAILS = ("payment_failed", "action_needed", "recovered", "final_warning", "ended",
          "merchant_alert")
MAX_ATTEMPTS = 8
MAX_DAYS = 60
MAX_OVERRIDES = 50
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")

DEFAULTS = {
    "mode": "processor",
    "schedule_days": [1, 3, 7, 14],
    # price or plan id → its own schedule (days after the first failure)
    "schedule_overrides": {},
    "final_action": "cancel",
    "plan_final_action": "keep_trying",
    # price or plan id → its own final action
    "final_action_overrides": {},
    "emails": {name: True for name in EMAILS},
    "alert_email": None,  # None: the account's support address
}


class BadSettings(AppError):
    status = 400
    code = "invalid_settings"


def get(account_id: str) -> dict:
    stored = store.get_settings(account_id) or {}
    out = {**DEFAULTS, **{k: v for k, v in stored.items() if k in DEFAULTS}}
    out["emails"] = {**DEFAULTS["emails"], **(stored.get("emails") or {})}
    return out


def update(account_id: str, changes: dict, at: str) -> dict:
    """Merge ``changes`` into the settings, check the result, store it."""
    if not isinstance(changes, dict):
        raise BadSettings("settings must be an object")
    unknown = set(changes) - set(DEFAULTS)
    if unknown:
        raise BadSettings(f"unknown setting: {sorted(unknown)[0]}")
    merged = {**get(account_id), **changes}
    if "emails" in changes:
        merged["emails"] = {**get(account_id)["emails"], **_emails(changes["emails"])}
    checked = check(merged)
    store.put_settings(account_id, checked, at)
    return checked


def check(s: dict) -> dict:
    if s["mode"] not in MODES:
        raise BadSettings(f"mode: one of {', '.join(MODES)}")
    if s["final_action"] not in SUBSCRIPTION_ACTIONS:
        raise BadSettings(f"final_action: one of {', '.join(SUBSCRIPTION_ACTIONS)}")
    if s["plan_final_action"] not in PLAN_ACTIONS:
        raise BadSettings(f"plan_final_action: one of {', '.join(PLAN_ACTIONS)}")
    overrides = s.get("schedule_overrides") or {}
    actions = s.get("final_action_overrides") or {}
    for name, value in (("schedule_overrides", overrides), ("final_action_overrides", actions)):
        if not isinstance(value, dict) or len(value) > MAX_OVERRIDES or \
                not all(isinstance(k, str) and _ID.match(k) for k in value):
            raise BadSettings(f"{name}: at most {MAX_OVERRIDES} price or plan ids")
    for action in actions.values():
        if action not in SUBSCRIPTION_ACTIONS + PLAN_ACTIONS:
            raise BadSettings("final_action_overrides: an action per id")
    alert = s.get("alert_email")
    if alert is not None and (not isinstance(alert, str) or not _EMAIL.match(alert)):
        raise BadSettings("alert_email: an e-mail address")
    return {**s, "schedule_days": schedule(s["schedule_days"], "schedule_days"),
            "schedule_overrides": {k: schedule(v, f"schedule_overrides.{k}")
                                   for k, v in overrides.items()},
            "final_action_overrides": dict(actions),
            "emails": _emails(s["emails"])}


def schedule(value, name: str = "schedule_days") -> list[int]:
    """Days after the first failure, increasing, 1..60, at most 8 attempts."""
    if isinstance(value, str):
        value = [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
    try:
        days = [int(v) for v in value]
    except (TypeError, ValueError):
        raise BadSettings(f"{name}: whole numbers of days") from None
    if not days or len(days) > MAX_ATTEMPTS or any(d < 1 or d > MAX_DAYS for d in days) or \
            days != sorted(set(days)):
        raise BadSettings(f"{name}: 1 to {MAX_ATTEMPTS} increasing days between 1 and "
                          f"{MAX_DAYS}")
    return days


def _emails(value) -> dict:
    if not isinstance(value, dict) or set(value) - set(EMAILS) or \
            not all(isinstance(v, bool) for v in value.values()):
        raise BadSettings(f"emails: true or false for {', '.join(EMAILS)}")
    return dict(value)


def schedule_for(settings: dict, price_ids: list[str]) -> list[int]:
    for price in price_ids:
        if price in settings["schedule_overrides"]:
            return settings["schedule_overrides"][price]
    return settings["schedule_days"]


def final_action_for(settings: dict, price_ids: list[str], is_plan: bool) -> str:
    for price in price_ids:
        action = settings["final_action_overrides"].get(price)
        if action in (PLAN_ACTIONS if is_plan else SUBSCRIPTION_ACTIONS):
            return action
    return settings["plan_final_action"] if is_plan else settings["final_action"]
