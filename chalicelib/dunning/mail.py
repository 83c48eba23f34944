"""Dunning e-mails, each a due step of its own (``dunning:<invoice>:mail:<kind>[:<n>]``):
payment failed (the reason in plain words, the next attempt), action needed (3-D Secure),
update your card (a hard decline), final warning, recovered, subscription ended, plan
defaulted, and the merchant's alert when a customer's dunning ends.

Sent once: ``store.notices.mark_sending`` claims the step's e-mail before it leaves (the
mechanism the notices use), so a step run again after its sweep died never sends it twice;
SES refusing it releases the claim and the step tries later. An e-mail the account switched
off, or one no longer true (the invoice was paid meanwhile), is not sent.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib import formatting, templating, timeutil
from chalicelib.dunning import settings as dunning_settings
from chalicelib.mail.sender import MailFailed, Message, Suppressed, send
from chalicelib.observability import logger
from chalicelib.scheduler.service import Outcome
from chalicelib.store import dunning as store
from chalicelib.store import notices as sent_store
from chalicelib.store.steps import Step
from chalicelib.templating import N_

MAIL_RETRY_MINUTES = 15
MAIL_ATTEMPTS = 5

# e-mail → the setting that switches it (its subject is the template's ``subject`` block).
MAILS = {
    "payment_failed": "payment_failed",
    "update_card": "payment_failed",
    "action_needed": "action_needed",
    "final_warning": "final_warning",
    "recovered": "recovered",
    "ended": "ended",
    "defaulted": "ended",
    "merchant_alert": "merchant_alert",
}
# Only the recovered e-mail and the merchant's alert go once the invoice is paid.
STILL_TRUE_WHEN_PAID = ("recovered", "merchant_alert")

# Decline codes in plain words for the customer (the rest: the processor's message),
# translated into the account's language when the e-mail is written.
REASONS = {
    "insufficient_funds": N_("your card did not have enough funds"),
    "expired_card": N_("your card has expired"),
    "lost_card": N_("your card was reported lost"),
    "stolen_card": N_("your card was reported stolen"),
    "pickup_card": N_("your bank asked us not to charge this card"),
    "restricted_card": N_("your bank has restricted this card"),
    "do_not_honor": N_("your bank declined the payment without giving a reason"),
    "generic_decline": N_("your bank declined the payment"),
    "card_declined": N_("your bank declined the payment"),
    "incorrect_cvc": N_("the card's security code was not accepted"),
    "processing_error": N_("the payment could not be processed"),
    "authentication_required": N_("your bank asks you to confirm the payment"),
    "try_again_later": N_("your bank asked us to try again later"),
    "transaction_not_allowed": N_("your bank does not allow this kind of payment on this card"),
}


def reason_in_words(decline_code: str | None, message: str | None) -> str:
    return REASONS.get(decline_code or "") or (message or "your bank declined the payment")


def handle(step: Step, now: datetime) -> Outcome:
    from chalicelib.portal.service import brand_of
    from chalicelib.records import service as records
    from chalicelib.settings import get_settings
    from chalicelib.store import accounts as account_store

    mail, invoice = step.data["mail"], step.data["invoice"]
    setting = MAILS[mail]
    account = account_store.get(step.account_id)
    state = store.get_state(step.account_id, invoice)
    if account is None or state is None:
        return Outcome("canceled", {"skipped": "no such account or dunning"})
    settings = dunning_settings.get(step.account_id)
    if not settings["emails"].get(setting, True):
        return Outcome.done({"skipped": "turned off"})
    data = state.data
    if data.get("status") == "recovered" and mail not in STILL_TRUE_WHEN_PAID:
        return Outcome.done({"skipped": "paid meanwhile"})
    record = records.get_record(step.account_id, step.customer_id, consistent=True) \
        if step.customer_id else None
    if mail == "merchant_alert":
        to = settings.get("alert_email") or account["support_email"]
    else:
        to = (record or {}).get("email")
    if not to:
        return Outcome.done({"skipped": "no e-mail address"})
    if not sent_store.mark_sending(step.account_id, step.step_id, [step.step_id],
                                   timeutil.iso(now)):
        return Outcome.done({"skipped": "already sent"})
    brand = brand_of(account)
    portal = (account.get("settings") or {}).get("portal") or {}
    locale = formatting.supported_locale(portal.get("locale"))
    attempts = data.get("attempts") or []
    last = attempts[-1] if attempts else data.get("first_failure") or {}
    context = {
        "brand": brand, "locale": locale, "mail": mail,
        "portal_link": f"{get_settings().public_base_url}/portal/{account['slug']}/",
        "customer_name": (record or {}).get("name") if mail != "merchant_alert" else None,
        "customer_email": (record or {}).get("email"),
        "amount": formatting.money(data.get("amount"), data.get("currency"), locale)
        if data.get("amount") is not None else None,
        "reason": templating.gettext(
            locale, reason_in_words(last.get("decline_code"), last.get("message"))),
        "next_attempt": formatting.date(data["next_attempt_at"], locale)
        if data.get("next_attempt_at") else None,
        "attempts": len(attempts) + 1,  # the processor's own first attempt counts
        "is_plan": data.get("is_plan"), "final_action": data.get("final_action"),
        "status": data.get("status"),
    }
    try:
        message_id = send(Message(
            from_name=brand["name"], from_address=brand["support_email"],
            reply_to=brand["support_email"], to=to,
            subject=templating.render_subject(f"mail/dunning_{mail}.txt", **context),
            text=templating.render(f"mail/dunning_{mail}.txt", **context),
            html=templating.render(f"mail/dunning_{mail}.html", **context),
        ), account_id=step.account_id,
            customer_id=step.customer_id if mail != "merchant_alert" else None,
            kind=f"dunning_{mail}")
    except Suppressed as exc:
        return Outcome.done({"skipped": f"suppressed: {exc.reason}"})
    except MailFailed as exc:
        sent_store.release_sending(step.account_id, [step.step_id])
        if step.attempts >= MAIL_ATTEMPTS:
            return Outcome.failed({"error": exc.code})
        logger.warning("dunning: SES refused the message; trying later",
                       extra={"step_id": step.step_id, "error": exc.code})
        return Outcome.later(timeutil.iso(now + timedelta(minutes=MAIL_RETRY_MINUTES)))
    return Outcome.done({"sent": message_id})
