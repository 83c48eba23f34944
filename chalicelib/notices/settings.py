"""An account's notice settings: time zone, sending hour, which notices, renewal lead,
receipts. Defaults apply until the merchant saves the page (or ``PUT
/api/v1/settings/notices``); a saved map is checked whole, so a bad field changes nothing.
"""
from __future__ import annotations

import contextlib

from chalicelib import timeutil
from chalicelib.errors import BadRequest
from chalicelib.notices import timing
from chalicelib.store import notices as store

# The notice kinds a merchant can switch off (mail kind ``notice_<name>``).
KINDS = ("card_expiring", "card_expired", "renewal", "instalment", "receipt")
FOOTER_MAX = 1000

DEFAULTS = {
    "time_zone": timing.DEFAULT_TIME_ZONE,
    "hour": timing.DEFAULT_HOUR,
    "renewal_days": timing.DEFAULT_RENEWAL_DAYS,
    "instalment_days": timing.DEFAULT_RENEWAL_DAYS,
    # Receipts are off until the merchant turns them on (the processor may send its own).
    "enabled": {"card_expiring": True, "card_expired": True, "renewal": True,
                "instalment": True, "receipt": False},
    "receipt_footer": "",
}


def get(account_id: str) -> dict:
    """The account's settings, defaults filled in (a field saved by an older build that no
    longer passes the checks falls back to its default)."""
    saved = store.get_settings(account_id) or {}
    out = {**DEFAULTS, "enabled": dict(DEFAULTS["enabled"])}
    for name in ("time_zone", "hour", "renewal_days", "instalment_days", "receipt_footer"):
        if name in saved:
            with contextlib.suppress(BadRequest):
                out[name] = _CHECKS[name](saved[name])
    for kind, on in (saved.get("enabled") or {}).items():
        if kind in KINDS and isinstance(on, bool):
            out["enabled"][kind] = on
    return out


def time_zone_of_pauses(account_id: str, subscriptions: list[dict]) -> str | None:
    """The account's time zone when one of ``subscriptions`` is paused until a date: the
    dashboard's pause form takes that day in this zone, and shown in UTC it would read a
    day early east of UTC. Read only then (one GetItem); None otherwise."""
    if not any((s.get("pause") or {}).get("resumes_at") for s in subscriptions):
        return None
    return get(account_id)["time_zone"]


def update(account_id: str, changes: dict) -> dict:
    """Apply ``changes`` (any of the fields; ``enabled`` may name some kinds only) over the
    current settings; all checked before anything is written. Returns the new settings."""
    if not isinstance(changes, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_settings")
    unknown = set(changes) - set(DEFAULTS)
    if unknown:
        raise BadRequest(f"Unknown setting: {sorted(unknown)[0]}.", code="invalid_settings")
    current = get(account_id)
    new = {**current, "enabled": dict(current["enabled"])}
    for name, value in changes.items():
        if name == "enabled":
            if not isinstance(value, dict) or set(value) - set(KINDS) or not all(
                    isinstance(v, bool) for v in value.values()):
                raise BadRequest(f"enabled maps notice kinds ({', '.join(KINDS)}) to "
                                 "true or false.", code="invalid_settings")
            new["enabled"].update(value)
        else:
            new[name] = _CHECKS[name](value)
    store.put_settings(account_id, new, timeutil.now_iso())
    return new


def _time_zone(value) -> str:
    try:
        return timing.time_zone(value)
    except timing.BadTimeZone as exc:
        raise BadRequest(str(exc), code="invalid_time_zone") from None


def _int_between(name: str, low: int, high: int):
    def check(value) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BadRequest(f"{name} must be a whole number from {low} to {high}.",
                             code="invalid_settings")
        return value
    return check


def _footer(value) -> str:
    if not isinstance(value, str) or len(value) > FOOTER_MAX:
        raise BadRequest(f"The receipt footer is text of at most {FOOTER_MAX} characters.",
                         code="invalid_settings")
    # Plain text: templates escape it; control characters other than line breaks go.
    return "".join(c for c in value.replace("\r\n", "\n") if c == "\n" or c >= " ").strip()


_CHECKS = {
    "time_zone": _time_zone,
    "hour": _int_between("hour", 0, 23),
    "renewal_days": _int_between("renewal_days", 1, timing.RENEWAL_DAYS_MAX),
    "instalment_days": _int_between("instalment_days", 1, timing.INSTALMENT_DAYS_MAX),
    "receipt_footer": _footer,
}
