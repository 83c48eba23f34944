"""SES bounces and complaints: noted on the e-mail's history entry, and an address that
bounced hard or complained is suppressed for the account (no more notices or dunning
mail: ``mail.sender`` asks ``reason_for``; sign-in mail still goes).

SES publishes them through the configuration set's event destination to EventBridge's
default bus (infra/template.yaml: MailFeedbackConfigurationSet); the rule Chalice makes
for ``app.mail_feedback`` hands each event's ``detail`` to ``handle_event``. (The same
payload arrives as an SNS message's body where a topic is used instead:
``handle_notification``; devstack's simulator sends one that way.) The message's tags,
set by ``mail.sender.send``, name the account and customer; its message id names the
history entry. A transient bounce (mailbox full, …) is noted but suppresses nothing.
Delivery is at least once: recording the same report twice changes nothing.

Owners and admins (``manage_notices``) can lift a customer's suppression (``lift``, on the
one action mechanism: role, idempotency key, activity log), e.g. once the customer's
mailbox works again. A complaint means the customer asked not to get the merchant's mail:
lifting one must be confirmed (``confirm_complaint``), and SES reviews an account from
0.1% complaints.
"""
from __future__ import annotations

import json
from collections.abc import Callable

from chalicelib import timeutil
from chalicelib.actions import service as actions
from chalicelib.actions.service import ActionContext, ActionSpec, Result, Step
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.observability import MetricUnit, logger, metrics
from chalicelib.records import service as records
from chalicelib.records.service import normalize_email
from chalicelib.store import notices as store

MAX_REASON = 500
LIFT_PERMISSION = "manage_notices"  # owners and admins, as the notice settings
COMPLAINT_WARNING = (
    "This customer marked one of your e-mails as spam: they asked not to get your mail. "
    "Lift it only if they asked you to write to them again. Each new complaint counts "
    "against your sending account (SES reviews it from 0.1% complaints).")


def reason_for(account_id: str, email: str) -> str | None:
    """Why ``email`` gets no notices from the account (``bounce``, ``complaint``), or None."""
    normalized = normalize_email(email)
    if not normalized:
        return None
    found = store.suppression(account_id, normalized)
    return found["reason"] if found else None


def of_customer(account_id: str, customer_id: str) -> dict:
    """The customer's e-mail address and its suppression (None when mail goes to it); 404
    for a customer that is not the account's."""
    email = _customer_email(account_id, customer_id)
    found = store.suppression(account_id, normalize_email(email)) if email else None
    return {"customer_id": customer_id, "email": email, "suppression": _public(found)}


def lift(ctx: ActionContext, customer_id: str, *, reason, confirm_complaint=False,
         before_perform: Callable[[], None] | None = None) -> dict:
    """Lift the suppression of the customer's address: notices and dunning e-mails go to it
    again (until SES reports it again). A reason is required; a complaint needs
    ``confirm_complaint`` (400 ``complaint_confirmation_required``); nothing suppressed is
    409 ``not_suppressed``. The role is checked first (support, read-only: 403, nothing
    written)."""
    # Bad input is refused inside the action, after the mechanism's role check: a role
    # without the permission gets its 403 whatever it sent.
    problem = None
    try:
        if not isinstance(confirm_complaint, bool):
            raise BadRequest('"confirm_complaint" must be true or false.', code="bad_request")
        reason = _reason(reason)
    except BadRequest as exc:
        problem, reason, confirm_complaint = exc, None, False
    spec = ActionSpec(name="customer.lift_suppression", customer_id=customer_id,
                      permission=LIFT_PERMISSION,
                      request={"confirm_complaint": confirm_complaint}, reason=reason)

    def perform(step: Step) -> Result:
        if problem is not None:
            raise problem
        email = _customer_email(ctx.account_id, customer_id)
        found = store.suppression(ctx.account_id, normalize_email(email)) if email else None
        if found is None:
            raise Conflict("Nothing is suppressed: e-mails go to this customer's address.",
                           code="not_suppressed")
        if found["reason"] == "complaint" and not confirm_complaint:
            raise BadRequest(COMPLAINT_WARNING + " Confirm to lift it.",
                             code="complaint_confirmation_required")
        lifted = _public(found)
        return Result(
            body={"customer_id": customer_id, "email": found["email"], "lifted": lifted},
            before={"suppression": lifted}, after={"suppression": None},
            writes=[store.lift_suppression_write(ctx.account_id, found["email"],
                                                 found["at"])])

    body = actions.run(ctx, spec, perform, before_perform=before_perform).body
    logger.info("e-mail suppression lifted", extra={
        "account_id": ctx.account_id, "customer_id": customer_id,
        "feedback": (body.get("lifted") or {}).get("reason")})
    return body


def _reason(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("The reason is required.", code="reason_required")
    value = value.strip()
    if len(value) > MAX_REASON or any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise BadRequest(f"The reason is text of at most {MAX_REASON} characters.",
                         code="bad_request")
    return value


def _customer_email(account_id: str, customer_id: str) -> str | None:
    overview, _ = records.get_overview(account_id, customer_id, 1)
    if overview is None or not records.customer_belongs(account_id, customer_id):
        raise NotFound("No such customer.")
    return overview.get("email") or None


def _public(found: dict | None) -> dict | None:
    if not found:
        return None
    return {"reason": found["reason"], "detail": found.get("detail"), "at": found["at"]}


def handle_notification(body: str) -> dict:
    """SES's event as the JSON body of an SNS message."""
    try:
        event = json.loads(body)
    except (TypeError, ValueError):
        logger.warning("SES feedback: not JSON; ignored")
        return {"ignored": "not_json"}
    return handle_event(event)


def handle_event(event) -> dict:
    """One SES event (event publishing's ``eventType``, or identity notifications'
    ``notificationType``). Returns what was done, for logs and tests; anything unreadable
    or of another type is logged and ignored (a retry would not fix it)."""
    if not isinstance(event, dict):
        return {"ignored": "not_an_object"}
    kind = event.get("eventType") or event.get("notificationType")
    mail = event.get("mail") if isinstance(event.get("mail"), dict) else {}
    tags = mail.get("tags") if isinstance(mail.get("tags"), dict) else {}
    account_id = _tag(tags, "account_id")
    customer_id = _tag(tags, "customer_id")
    message_id = mail.get("messageId") if isinstance(mail.get("messageId"), str) else None
    if kind == "Bounce":
        report = event.get("bounce") or {}
        recipients = report.get("bouncedRecipients")
        hard = report.get("bounceType") == "Permanent"
        reason = "bounce"
        detail = f"{report.get('bounceType')}/{report.get('bounceSubType')}"
        status = "bounced"
    elif kind == "Complaint":
        report = event.get("complaint") or {}
        recipients = report.get("complainedRecipients")
        hard = True
        reason = "complaint"
        detail = str(report.get("complaintFeedbackType") or "complaint")
        status = "complained"
    else:
        return {"ignored": str(kind)[:40]}
    if not account_id:
        logger.warning("SES feedback without an account tag; ignored",
                       extra={"feedback": reason, "message_id": message_id})
        return {"ignored": "no_account"}
    addresses = [normalize_email(r.get("emailAddress")) for r in recipients or []
                 if isinstance(r, dict) and isinstance(r.get("emailAddress"), str)]
    addresses = [a for a in addresses if a]
    marked = bool(message_id) and store.mark_feedback(account_id, customer_id, message_id,
                                                      status, detail)
    if hard:
        at = timeutil.now_iso()
        for address in addresses:
            store.suppress(account_id, address, reason, detail[:100], message_id, at)
    metrics.add_metric(name="MailBounced" if reason == "bounce" else "MailComplained",
                       unit=MetricUnit.Count, value=1)
    logger.info("SES feedback recorded", extra={
        "account_id": account_id, "feedback": reason, "detail": detail, "suppressed": hard,
        "history_marked": marked})
    return {"feedback": reason, "detail": detail, "suppressed": addresses if hard else [],
            "history_marked": marked}


def _tag(tags: dict, name: str) -> str | None:
    value = tags.get(name)
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0][:64]
    return None
