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
"""
from __future__ import annotations

import json

from chalicelib import timeutil
from chalicelib.observability import MetricUnit, logger, metrics
from chalicelib.records.service import normalize_email
from chalicelib.store import notices as store


def reason_for(account_id: str, email: str) -> str | None:
    """Why ``email`` gets no notices from the account (``bounce``, ``complaint``), or None."""
    normalized = normalize_email(email)
    if not normalized:
        return None
    found = store.suppression(account_id, normalized)
    return found["reason"] if found else None


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
