"""Step-up: a fresh 6-digit code mailed to a signed-in staff member before one of the
riskiest actions (staff and role changes; refunds above the support limit, blocks and
exports), however recent the sign-in.

A code is bound to the staff member and to the action (a string naming the action and
what it acts on, e.g. ``staff.role:stf_…:admin``): the table keeps, under the member and
the action's SHA-256, only the code's salted SHA-256, an attempt count and an expiry
(``step_up_minutes``, 10 by default). Every attempt is counted before the comparison
(``step_up_attempts``, then the code is dead); a right code is deleted on the condition
that it is still the one compared, so it allows the action once, even under racing
requests. Codes mailed are rate-limited per member; every refused code is written to the
activity log.

``visit`` is the dashboard's StaffVisit (account_id, staff_id, email, brand, client_ip).
"""
from __future__ import annotations

import hmac
import re
import secrets

from chalicelib.errors import Forbidden, RetryLater
from chalicelib.mail.sender import MailFailed
from chalicelib.observability import logger
from chalicelib.signin import service as signin
from chalicelib.store import signin as store

_NO_CODE = "-" * 64


class StepUpRefused(Forbidden):
    code = "step_up_refused"


STEP_UP_REFUSED = ("That confirmation code did not work. A code works once, for this change "
                   "only, and only for a short time. Check it, or ask for a new one.")


def _action_hash(action: str) -> str:
    return signin.sha256(f"step-up\x1f{action}")


def _code_hash(visit, action: str, salt: str, code: str) -> str:
    return signin.sha256(f"step-up\x1f{salt}\x1f{visit.account_id}\x1f{visit.staff_id}\x1f"
                         f"{action}\x1f{code}")


def issue_step_up(visit, action: str, what: str | None = None) -> None:
    """Mail a new code for ``action`` to the staff member (replacing an older one for the
    same action). ``what``: the action in words, for the mail. Raises TooManyRequests
    past the member's limit, RetryLater when the mail cannot be sent."""
    settings = signin.get_settings()
    signin.limit("staff-step-up", f"{visit.account_id}\x1f{visit.staff_id}",
                 settings.rate_step_up_per_staff)
    code = signin.new_code()
    salt = secrets.token_hex(16)
    action_hash = _action_hash(action)
    expires_at = int(signin.now()) + settings.step_up_minutes * 60
    store.put_step_up(visit.account_id, visit.staff_id, action_hash,
                      _code_hash(visit, action, salt, code), salt, expires_at)
    from chalicelib.staff import mail as staff_mail

    try:
        staff_mail.send_step_up(brand=visit.brand, to=visit.email, code=code,
                                what=(what or action)[:200], minutes=settings.step_up_minutes,
                                account_id=visit.account_id)
    except MailFailed:
        store.delete_step_up(visit.account_id, visit.staff_id, action_hash)
        raise RetryLater("We could not send the confirmation code right now. Please try "
                         "again in a few minutes.", code="mail_unavailable") from None


def verify_step_up(visit, action: str, code_input: str | None) -> None:
    """Spend the code for ``action``; StepUpRefused (one answer for every reason: wrong,
    expired, spent, for another action or member, tried too often) otherwise."""
    settings = signin.get_settings()
    action_hash = _action_hash(action)
    try:
        attempt = store.count_step_up_attempt(visit.account_id, visit.staff_id, action_hash,
                                              int(signin.now()), settings.step_up_attempts)
    except store.NotUsable:
        attempt = None
    code = re.sub(r"[\s-]", "", code_input or "")
    code = code if re.fullmatch(rf"\d{{{signin.CODE_DIGITS}}}", code) else "-"
    given = _code_hash(visit, action, attempt.salt if attempt else "-", code)
    right = hmac.compare_digest((attempt.code_hash if attempt else _NO_CODE).encode(),
                                given.encode())
    if attempt is not None and right:
        try:
            store.spend_step_up(visit.account_id, visit.staff_id, action_hash, attempt.code_hash)
            return
        except store.NotUsable:
            pass  # spent by a racing request: this one is refused
    _log_refused(visit, action)
    raise StepUpRefused(STEP_UP_REFUSED)


def _log_refused(visit, action: str) -> None:
    from chalicelib.activity import service as activity

    try:
        activity.record(visit.account_id, actor=visit.staff_id, actor_email=visit.email,
                        action="staff.step_up_failed", details={"for": action.split(":")[0]},
                        ip=visit.client_ip)
    except Exception:  # noqa: BLE001 - the refusal stands whether or not it was logged
        logger.exception("could not log a failed step-up")
