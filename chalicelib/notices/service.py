"""Customer notices as the scheduler runs them (kind ``notice.*``): card expiring and
expired, upcoming renewal, upcoming instalment, receipt.

``handle(step, now)`` is called for a claimed step (scheduler.service). It reads the
account's settings and the customer's record as they are *now*, and decides:
  later    the account's sending time for the notice's local date is still ahead (the
           step was planned at the earliest instant any zone could need it: planning);
  skip     the notice is no longer true (the card was updated or detached, no charge falls
           after its expiry, the subscription is canceled or set to cancel, the date has
           passed) or the customer's address is suppressed: noted in the e-mail history with
           the reason; a kind the merchant switched off is skipped without a history entry;
  send     once: ``store.notices.mark_sending`` claims the notice (per step; for a receipt,
           per processor id of the payment, so one payment gets one receipt whichever of its
           facts planned it) before the mail leaves, so a retried or re-planned step never
           sends it again. SES refusing the message releases the claim and tries later.
Card notices also write the outbox events ``card.expiring`` / ``card.expired`` with the
step's outcome (once: the outcome is written under the step's claim).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from chalicelib import formatting, ids, templating, timeutil
from chalicelib.mail import history
from chalicelib.mail.sender import MailFailed, Message, Suppressed, send
from chalicelib.notices import settings as notice_settings
from chalicelib.notices import timing
from chalicelib.observability import logger
from chalicelib.scheduler.service import Outcome
from chalicelib.store import notices as store
from chalicelib.store.steps import Step

# A notice is not sent more than this long after its local date (a sweep outage): a card
# notice or a reminder weeks late would only confuse.
LATE_DAYS = 2
# SES refused the message (throttled, …): try again this much later, this many times.
MAIL_RETRY_MINUTES = 15
MAIL_ATTEMPTS = 5
ANNOUNCED = ("active", "trialing", "past_due")


@dataclass
class Notice:
    """A notice ready to send: its template (whose ``subject`` block is its subject line)
    and template values."""

    kind: str  # settings.KINDS
    context: dict
    sent_keys: list[str]
    outbox: list[dict] = field(default_factory=list)


class _Skip(Exception):
    def __init__(self, reason: str, record_it: bool = True):
        super().__init__(reason)
        self.reason = reason
        self.record_it = record_it


class _Later(Exception):
    def __init__(self, at: datetime):
        super().__init__(at.isoformat())
        self.at = at


def handle(step: Step, now: datetime) -> Outcome:
    """The scheduler's handler of ``notice.*`` steps (scheduler.kinds). While a notice
    waits for its sending time, the customer's e-mail history shows it as planned; the
    planned entry goes when the notice is sent, skipped or given up."""
    outcome = _handle(step, now)
    planned = step.data.get("planned_mail")
    if planned and outcome.status != "pending" and step.customer_id:
        try:
            store.drop_planned(step.account_id, step.customer_id, planned)
        except Exception:  # noqa: BLE001 - a stale "planned" line is no reason to resend
            logger.exception("notice: could not drop the planned history entry",
                             extra={"step_id": step.step_id})
    return outcome


def _handle(step: Step, now: datetime) -> Outcome:
    from chalicelib.portal.service import brand_of
    from chalicelib.records import service as records
    from chalicelib.store import accounts as account_store

    kind = step.kind.split(".", 1)[1]
    account = account_store.get(step.account_id)
    record = records.get_record(step.account_id, step.customer_id, consistent=True) \
        if account and step.customer_id else None
    if account is None or record is None:
        return Outcome("canceled", {"skipped": "no such account or customer"})
    settings = notice_settings.get(step.account_id)
    portal = (account.get("settings") or {}).get("portal") or {}
    locale = formatting.supported_locale(portal.get("locale"))
    try:
        notice = _DECIDE[kind](step, record, settings, now, locale)
    except _Later as later:
        return Outcome.later(timeutil.iso(later.at), _planned(step, record, settings, kind,
                                                              later.at))
    except _Skip as skip:
        if skip.record_it and record.get("email"):
            history.record(step.account_id, step.customer_id, f"notice_{kind}",
                           subject=_SUBJECTS.get(kind, kind), to=record["email"],
                           status="skipped", error=skip.reason)
        return Outcome.done({"skipped": skip.reason})
    events = notice.outbox
    enabled = settings["enabled"].get(notice.kind, False)
    if not enabled and not events:
        return Outcome.done({"skipped": "turned off"})
    # Claimed before anything leaves, events included: a step planned again (the same id
    # re-planned by a later change of its fact) finds the claim and sends nothing twice.
    if not store.mark_sending(step.account_id, step.step_id, notice.sent_keys,
                              timeutil.iso(now)):
        return Outcome.done({"skipped": "already sent"})
    if not enabled:
        return Outcome.done({"skipped": "turned off"}, outbox=events)
    if not record.get("email"):
        return Outcome.done({"skipped": "no e-mail address"}, outbox=events)
    brand = brand_of(account)
    from chalicelib.settings import get_settings

    portal_link = f"{get_settings().public_base_url}/portal/{account['slug']}/"
    context = {"brand": brand, "portal_link": portal_link, "locale": locale,
               "customer_name": record.get("name"), **notice.context}
    if "receipt_path" in context:
        context["receipt_link"] = portal_link + context.pop("receipt_path")
    try:
        message_id = send(Message(
            from_name=brand["name"], from_address=brand["support_email"],
            reply_to=brand["support_email"], to=record["email"],
            subject=templating.render_subject(f"mail/notice_{notice.kind}.txt", **context),
            text=templating.render(f"mail/notice_{notice.kind}.txt", **context),
            html=templating.render(f"mail/notice_{notice.kind}.html", **context),
        ), account_id=step.account_id, customer_id=step.customer_id,
            kind=f"notice_{notice.kind}")
    except Suppressed as exc:
        return Outcome.done({"skipped": f"suppressed: {exc.reason}"}, outbox=events)
    except MailFailed as exc:
        store.release_sending(step.account_id, notice.sent_keys)
        if step.attempts >= MAIL_ATTEMPTS:
            return Outcome.failed({"error": exc.code}, outbox=events)
        logger.warning("notice: SES refused the message; trying later",
                       extra={"step_id": step.step_id, "error": exc.code})
        return Outcome.later(timeutil.iso(now + timedelta(minutes=MAIL_RETRY_MINUTES)))
    return Outcome.done({"sent": message_id}, outbox=events)


def _planned(step: Step, record: dict, settings: dict, kind: str, at: datetime) -> dict:
    """The step's data, with the id of its "planned" history entry (written once)."""
    if "planned_mail" in step.data or not record.get("email") or \
            not settings["enabled"].get(kind, False):
        return step.data
    try:
        mail_id = history.plan(step.account_id, step.customer_id, f"notice_{kind}",
                               subject=_SUBJECTS.get(kind, kind), to=record["email"],
                               planned_for=timeutil.iso(at))
    except Exception:  # noqa: BLE001 - the notice goes out whether or not it shows as planned
        logger.exception("notice: could not note the planned e-mail",
                         extra={"step_id": step.step_id})
        return step.data
    return {**step.data, "planned_mail": mail_id}


# --- deciding each kind -------------------------------------------------------------------

def _when(local: date, settings: dict, now: datetime, deadline: datetime | None = None) -> None:
    """Raise _Later before the notice's sending time, _Skip when it is too late."""
    at = timing.send_time(local, settings["time_zone"], settings["hour"])
    if now < at:
        raise _Later(at)
    if now - at > timedelta(days=LATE_DAYS) or (deadline is not None and now >= deadline):
        raise _Skip("too late: the date has passed", record_it=False)


def _card(step: Step, record: dict, settings: dict, now: datetime, locale: str) -> Notice:
    data = step.data
    notice, month, year = data["notice"], int(data["exp_month"]), int(data["exp_year"])
    local = date.fromisoformat(data["local_date"])
    tz = settings["time_zone"]
    expires_at = timing.card_valid_until(month, year, tz)
    card = next((c for c in record.get("cards") or [] if c.get("id") == data["card_fact"]),
                None)
    _when(local, settings, now, None if notice == "expired" else expires_at)
    if card is None:
        raise _Skip("card removed")
    if (card.get("exp_month"), card.get("exp_year")) != (month, year):
        raise _Skip("card updated")
    if not _charged_after(record, data["card_fact"], expires_at):
        raise _Skip("no charge after the card expires")
    kind = "card_expired" if notice == "expired" else "card_expiring"
    last_day = timing.last_valid_day(month, year)
    event_type = "card.expired" if notice == "expired" else "card.expiring"
    return Notice(
        kind=kind,
        context={"card": card, "valid_through": formatting_date(last_day, locale),
                 "days": (timing.first_day_after(month, year) - local).days},
        sent_keys=[step.step_id],
        outbox=[_event(step, event_type, card, record, now,
                       expires_on=timing.first_day_after(month, year).isoformat(),
                       notice=notice)])


def _charged_after(record: dict, card_fact: str, expires_at: datetime) -> bool:
    """A charge on this card falls at or after ``expires_at``: a subscription that renews on
    it (not set to end), or a planned instalment on it due then or later."""
    for sub in record.get("subscriptions") or []:
        if sub.get("card_id") == card_fact and sub.get("status") in ANNOUNCED \
                and sub.get("next_billing_at"):
            return True
    plans = {p["id"]: p for p in record.get("payment_plans") or []}
    for planned in record.get("planned_payments") or []:
        plan = plans.get(planned.get("subscription_id"))
        if plan and plan.get("card_id") == card_fact and _parse(planned["due_at"]) >= expires_at:
            return True
    return False


def _upcoming(step: Step, record: dict, settings: dict, now: datetime, locale: str) -> Notice:
    data = step.data
    instalment = step.kind == "notice.instalment"
    period_end = datetime.fromtimestamp(int(data["period_end"]), UTC)
    days = settings["instalment_days" if instalment else "renewal_days"]
    local = timing.days_before(period_end, settings["time_zone"], days)
    subs = record.get("payment_plans" if instalment else "subscriptions") or []
    sub = next((s for s in subs if s["id"] == data["subscription_fact"]), None)
    if sub is None or sub.get("status") not in ANNOUNCED:
        raise _Skip(f"subscription {sub['status']}" if sub else "subscription not found")
    if sub.get("next_billing_at") is None:
        raise _Skip("subscription set to cancel")
    if _parse(sub["next_billing_at"]) != period_end:
        raise _Skip("billing date changed")
    _when(local, settings, now, period_end)
    context = {"subscription": sub,
               "due_date": formatting_date(timing.local_date(period_end,
                                                             settings["time_zone"]), locale),
               "amount": formatting.money(sub.get("amount"), sub.get("currency"), locale)}
    if instalment:
        planned = next((p for p in record.get("planned_payments") or []
                        if p.get("subscription_id") == sub["id"]
                        and _parse(p["due_at"]) == period_end), None)
        if planned is None:
            raise _Skip("no instalment due")
        k, n = planned["instalment"], planned["instalments_total"]
        context.update(instalment=k, instalments_total=n, last=k == n)
        return Notice("instalment", context, [step.step_id])
    return Notice("renewal", context, [step.step_id])


def _receipt(step: Step, record: dict, settings: dict, now: datetime, locale: str) -> Notice:
    # The payment as the record shows it: the group of facts (an invoice, its intent and
    # charge) that holds this one, found by the processor ids they share.
    refs = set(step.data.get("refs") or [])
    payment = next((p for p in record.get("payments") or []
                    if p["id"] == step.data["payment_fact"]
                    or refs & set(p.get("processor_refs") or [])), None)
    if payment is None or payment.get("status") != "succeeded":
        raise _Skip("payment not found or not paid", record_it=False)
    paid_at = payment.get("paid_at")
    if paid_at and now - _parse(paid_at) > timedelta(days=LATE_DAYS):
        # An old payment the record learns of late (a first sync, a replay): no receipt.
        raise _Skip("paid long ago", record_it=False)
    keys = [f"receipt:{ref}" for ref in payment.get("processor_refs") or []] or \
        [f"receipt:{payment['id']}"]
    return Notice(
        "receipt",
        {"payment": payment, "paid_on": formatting.date(payment.get("paid_at"), locale),
         "amount": formatting.money(payment.get("amount"), payment.get("currency"), locale),
         "footer": settings["receipt_footer"], "receipt_path": f"receipts/{payment['id']}"},
        keys)


_DECIDE = {"card_expiring": _card, "card_expired": _card, "renewal": _upcoming,
           "instalment": _upcoming, "receipt": _receipt}
_SUBJECTS = {"card_expiring": "Your card expires soon", "card_expired": "Your card has expired",
             "renewal": "Your subscription renews soon", "instalment": "Your next instalment",
             "receipt": "Your receipt"}


def _event(step: Step, event_type: str, card: dict, record: dict, now: datetime,
           **extra) -> dict:
    from chalicelib.integrations import catalogue

    return {"event_id": ids.stable_id("evt", step.account_id, step.step_id),
            "type": event_type, "account_id": step.account_id,
            "customer_id": step.customer_id, "occurred_at": timeutil.iso(now),
            "data": catalogue.event_data(event_type, card, record, **extra)}


def formatting_date(day: date, locale: str) -> str:
    """A local calendar date for the customer (not converted: it is already theirs)."""
    from babel.dates import format_date

    return format_date(day, format="long", locale=locale)


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
