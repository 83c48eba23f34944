"""The dashboard's forms for the subscription actions (chalicelib/actions/subscriptions.py):
a confirmation page per action saying what will happen, and its POST.

  GET/POST /dashboard/{slug}/customers/{id}/subscriptions/{sub}/cancel   at=now|period_end
  GET/POST …/subscriptions/{sub}/recover      take back a scheduled cancellation
  GET/POST …/subscriptions/{sub}/pause        pause collection (void, keep as draft, …),
           optionally until a date (``resumes_on``, YYYY-MM-DD in the account's time zone:
           the notices' setting; collection resumes at the start of that day)
  GET/POST …/subscriptions/{sub}/resume
  GET/POST …/subscriptions/{sub}/plan         a picker of the processor's active recurring
           prices in the subscription's currency (the current one marked; a typed price id
           only when the list cannot be loaded); step 1 (no action id): the processor's
           proration preview; step 2 (with the preview's proration date): the change
  GET/POST /dashboard/{slug}/customers/{id}/payments/{payment}/retry   the card on file or
           another of the customer's cards; the answer (paid, declined with the reason,
           needs the customer's authentication) is shown at once

Each POST carries the session's CSRF token and the form's one-time action id (a double
submission answers the first result and acts once); the role is checked per action on the
server (``web.require``). Done → 303 to the record with a notice; refused → the form again
with the message and the status.

The forms offer only what the subscription's processor can do (``registry.capabilities_of``:
no proration on a PayPal cancel, suspend only and no resume date on a PayPal pause, no
PayPal plan change, a PayPal retry captures the outstanding balance); the gateways refuse
the rest (NotSupported, 422) whatever is posted.
"""
from __future__ import annotations

import datetime as dt
import re

from chalice import Blueprint

from chalicelib.actions import web as actions_web
from chalicelib.actions.subscriptions import SubscriptionActions
from chalicelib.dashboard import web
from chalicelib.domain.events import Ref
from chalicelib.errors import AppError, BadRequest, NotFound
from chalicelib.notices import settings as notice_settings
from chalicelib.notices import timing
from chalicelib.processors.gateway import NotSupported, PriceOption, ProcessorError
from chalicelib.processors.registry import ProcessorNotConfigured, capabilities_of, gateway_for
from chalicelib.records import service as records
from chalicelib.selfservice.service import SelfService
from chalicelib.store import accounts as account_store

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
SUB_PATH = "/dashboard/{slug}/customers/{customer_id}/subscriptions/{subscription_id}/{action}"
RETRY_PATH = "/dashboard/{slug}/customers/{customer_id}/payments/{payment_id}/retry"
SUB_ACTIONS = ("cancel", "recover", "pause", "resume", "plan")

# The record page's notice after each action (``?done=``; routes.customer shows it).
NOTICES = {
    "canceled": "The subscription is cancelled.",
    "canceling": "The subscription stays active until the next rebill date, then ends.",
    "recovered": "The scheduled cancellation is taken back: the subscription renews as usual.",
    "paused": "Collection of the subscription is paused.",
    "paused_until": ("Collection of the subscription is paused; it resumes by itself on the "
                     "date you chose."),
    "resumed": "Collection of the subscription is resumed.",
    "plan_changed": "The subscription's plan is changed.",
    "billing_link_sent": ("A sign-in link is on its way to the customer: it opens the card "
                          "page of this subscription. It works for 15 minutes, once."),
}
PAUSE_LABELS = {
    "void": "Do not bill while paused (invoices are voided)",
    "keep_as_draft": "Keep the invoices as drafts to collect later",
    "mark_uncollectible": "Mark the invoices as uncollectible",
}
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# The latest resume date offered: inside the pause action's two years from now
# (actions.subscriptions.MAX_PAUSE_DAYS) in every time zone.
MAX_RESUME_DAYS = 730


def _permission(action: str, at: str | None) -> str:
    if action == "cancel":
        return "cancel_now" if at == "now" else "cancel_at_period_end"
    if action == "recover":
        return "cancel_at_period_end"
    return "change_subscription"


def _read_context(visit):
    """A context for the pages' reads; a POST's carries the form's action id."""
    return actions_web.dashboard_context(visit, {actions_web.ACTION_ID_FIELD:
                                                 actions_web.action_id()})


def _record(visit, customer_id: str) -> dict:
    record = records.get_record(visit.account_id, customer_id, consistent=True)
    if record is None or not records.customer_belongs(visit.account_id, customer_id):
        raise NotFound("No such customer.")
    return record


def _subscription(record: dict, subscription_id: str) -> dict:
    for sub in record["subscriptions"] + record["payment_plans"]:
        if sub["id"] == subscription_id:
            return sub
    raise NotFound("No such subscription for this customer.")


def _yes(fields: dict, name: str) -> bool:
    return fields.get(name) in ("yes", "on", "true", "1")


def _time_zone(account_id: str) -> str:
    """The account's time zone (its notices' setting; UTC until set)."""
    return notice_settings.get(account_id)["time_zone"]


def _resumes_at(fields: dict, tz: str, today: dt.date) -> int | None:
    """The pause form's ``resumes_on`` (a date in ``tz``) as the instant collection resumes:
    the start of that day there. Empty: None (resumed by hand). 400 for anything that is not
    a date after ``today`` (the account's today)."""
    text = (fields.get("resumes_on") or "").strip()
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text) if DATE_RE.match(text) else None
    except ValueError:
        day = None
    if day is None:
        raise BadRequest("Enter the resume date as a date, e.g. 2027-01-31.", code="bad_request")
    if day <= today:
        raise BadRequest(f"The resume date must be after today ({today.isoformat()} in {tz}).",
                         code="bad_request")
    if day > today + dt.timedelta(days=MAX_RESUME_DAYS):
        raise BadRequest("The resume date must be within two years.", code="bad_request")
    return int(timing.send_time(day, tz, 0).timestamp())


def _plan_choices(visit, sub: dict) -> dict:
    """The plan picker: the processor's active recurring prices in the subscription's
    currency and the one it bills now; on a processor failure no list and why (the form
    then asks for the price id)."""
    ref = Ref(*(sub.get("processor_ref") or ":").split(":", 1))
    try:
        gateway = gateway_for(account_store.get(visit.account_id), ref.processor)
        listed = gateway.list_prices(sub.get("currency") or "")
        current = gateway.current_price(ref)
    except (ProcessorError, ProcessorNotConfigured, NotSupported):
        return {"prices": None, "current_price": None,
                "prices_problem": "The list of your prices could not be loaded from the "
                                  "payment processor: enter the new price's id instead."}
    currency = (sub.get("currency") or "").lower()
    prices: list[PriceOption] = [p for p in listed if p.currency == currency]
    prices.sort(key=lambda p: (p.price != current, (p.product or "").lower(), p.amount or 0))
    return {"prices": prices, "current_price": current, "prices_problem": None}


def _sub_page(request, visit, customer_id: str, subscription_id: str, action: str, *,
              status: int = 200,
              problem: str | None = None, fields: dict | None = None,
              action_id: str | None = None, preview=None):
    record = _record(visit, customer_id)
    sub = _subscription(record, subscription_id)
    fields = fields or {}
    caps = capabilities_of(sub.get("processor_ref"))
    extra: dict = {}
    if action == "plan":
        if not caps.change_plan:
            raise NotSupported("This subscription's payment processor does not support "
                               "changing its plan here.")
        extra = _plan_choices(visit, sub)
    if action == "pause":
        tz = _time_zone(visit.account_id)
        today = timing.local_date(dt.datetime.now(dt.UTC), tz)
        extra = {"time_zone": tz,
                 "min_resume_day": (today + dt.timedelta(days=1)).isoformat(),
                 "max_resume_day": (today + dt.timedelta(days=MAX_RESUME_DAYS)).isoformat()}
    return web.page(request, visit, f"action_subscription_{action}.html", status=status,
                    current="customers", customer=record, customer_id=customer_id,
                    sub=sub, payment_plan="installments_total" in sub, problem=problem,
                    fields=fields, action_id=action_id or actions_web.action_id(),
                    preview=preview, pause_labels=PAUSE_LABELS, caps=caps, **extra)


def _action(action: str) -> str:
    if action not in SUB_ACTIONS:
        raise NotFound("Not found.")
    return action


@bp.route(SUB_PATH, methods=["GET"])
@web.dashboard_view(bp)
def subscription_form(request, slug: str, customer_id: str, subscription_id: str, action: str):
    visit = web.staff_visit(request, slug)
    action = _action(action)
    at = (request.query_params or {}).get("at") or "period_end"
    if at not in ("now", "period_end"):
        raise BadRequest('"at" must be "now" or "period_end".')
    web.require(visit, _permission(action, at))
    return _sub_page(request, visit, customer_id, subscription_id, action, fields={"at": at})


@bp.route(SUB_PATH, methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def subscription_action(request, slug: str, customer_id: str, subscription_id: str,
                        action: str):
    visit = web.staff_visit(request, slug)
    action = _action(action)
    web.require(visit, _permission(action, None))  # the least any form of it needs
    fields = web.form(request, visit)
    at = fields.get("at") or "period_end"
    web.require(visit, _permission(action, at))
    kept = {k: fields.get(k, "") for k in ("at", "prorate", "reason", "note", "behavior",
                                           "price", "proration_date", "resumes_on")}
    preview = None
    try:
        if action == "plan" and not fields.get(actions_web.ACTION_ID_FIELD):
            # Step 1: the processor's preview (a read; nothing is changed).
            preview = SubscriptionActions(_read_context(visit), customer_id).preview_plan_change(
                subscription_id, (fields.get("price") or "").strip(), _yes(fields, "prorate"))
            return _sub_page(request, visit, customer_id, subscription_id, action,
                             fields=kept, preview=preview)
        ctx = actions_web.dashboard_context(visit, fields)
        acting = SubscriptionActions(ctx, customer_id)
        reason, note = fields.get("reason") or None, fields.get("note") or None
        if action == "cancel":
            body = acting.cancel(subscription_id, at, prorate=at == "now" and
                                 _yes(fields, "prorate"), reason=reason, note=note)
            done = body["subscription"]["status"]
        elif action == "recover":
            acting.recover(subscription_id, note=note)
            done = "recovered"
        elif action == "pause":
            tz = _time_zone(visit.account_id)
            resumes_at = _resumes_at(fields, tz, timing.local_date(dt.datetime.now(dt.UTC), tz))
            acting.pause(subscription_id, fields.get("behavior") or "void", resumes_at,
                         reason=reason, note=note)
            done = "paused_until" if resumes_at else "paused"
        elif action == "resume":
            acting.resume(subscription_id, note=note)
            done = "resumed"
        else:
            try:
                proration_date = int(fields.get("proration_date") or "")
            except ValueError:
                raise BadRequest("Preview the change again before confirming it.") from None
            acting.change_plan(subscription_id, (fields.get("price") or "").strip(),
                               _yes(fields, "prorate"), proration_date, reason=reason,
                               note=note)
            done = "plan_changed"
    except AppError as exc:
        # A processor failure or refusal is shown on the form (nothing was changed).
        if exc.status == 404 or exc.code in ("csrf", "forbidden"):
            raise
        return _sub_page(request, visit, customer_id, subscription_id, action, status=exc.status,
                         problem=exc.message, fields=kept)
    return web.redirect(f"{visit.root}/customers/{customer_id}?done={done}"
                        f"#sub-{subscription_id}", request)


# --- retrying a failed payment -------------------------------------------------------------

def _retry_page(request, visit, customer_id: str, payment_id: str, *, status: int = 200,
                problem: str | None = None, outcome: dict | None = None,
                action_id: str | None = None):
    record = _record(visit, customer_id)
    payment = next((p for p in record["payments"] if p["id"] == payment_id), None)
    if payment is None:
        raise NotFound("No such payment for this customer.")
    account = account_store.get(visit.account_id)
    caps = capabilities_of(payment.get("subscription") or payment.get("invoice"))
    cards = []
    if caps.retry_other_card:
        try:
            cards = SelfService(account, customer_id, gateway_for(account)).cards(record)
        except NotFound:
            cards = []
    # The subscription the invoice belongs to: "needs authentication" offers the update
    # billing link, which lands the customer on its page (where the portal lets them pay).
    sub = next((s for s in record["subscriptions"] + record["payment_plans"]
                if payment.get("subscription") and
                s.get("processor_ref") == payment["subscription"]), None)
    return web.page(request, visit, "action_subscription_retry.html", status=status,
                    current="customers", customer=record, customer_id=customer_id,
                    payment=payment, cards=cards, problem=problem, outcome=outcome,
                    caps=caps,
                    subscription_id=sub["id"] if sub else None,
                    action_id=action_id or actions_web.action_id())


@bp.route(RETRY_PATH, methods=["GET"])
@web.dashboard_view(bp)
def retry_form(request, slug: str, customer_id: str, payment_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "retry_payment")
    return _retry_page(request, visit, customer_id, payment_id)


@bp.route(RETRY_PATH, methods=["POST"], content_types=FORM)
@web.dashboard_view(bp)
def retry(request, slug: str, customer_id: str, payment_id: str):
    visit = web.staff_visit(request, slug)
    web.require(visit, "retry_payment")
    fields = web.form(request, visit)
    try:
        ctx = actions_web.dashboard_context(visit, fields)
        card = (fields.get("card") or "").strip()
        body = SubscriptionActions(ctx, customer_id).retry_payment(
            payment_id, None if card in ("", "default") else card, note=fields.get("note") or None)
    except AppError as exc:
        # A processor failure or refusal is shown on the form (nothing was changed).
        if exc.status == 404 or exc.code in ("csrf", "forbidden"):
            raise
        return _retry_page(request, visit, customer_id, payment_id, status=exc.status,
                           problem=exc.message)
    # The answer is shown at once (a decline is an answer, not an error); the same form
    # sent again shows the same stored answer; a new try on this page is a new action.
    return _retry_page(request, visit, customer_id, payment_id, outcome=body["payment"])
