"""Dunning as the scheduler runs it (kind ``dunning.*``; scheduler.kinds):

  dunning.start      an invoice's payment failed: open its dunning once (store.dunning's
                     state, created on the condition that none exists), plan the e-mail
                     and, mode "ours", the first retry (and stop the processor's own
                     automatic collection of the invoice: only one engine retries)
  dunning.retry      attempt n: the invoice still open (its paid state is the guard once
                     the processor has forgotten the idempotency key, after 24 hours), the
                     card-network caps allow it (store.dunning.count_retry), then pay it
                     with the key ``dunning:<invoice>:<n>:<card>``; record the attempt and
                     plan the next one, or the final action
  dunning.final      the schedule ran out: the account's final action, the e-mails, the
                     merchant's alert, and the outbox events ``dunning.exhausted`` /
                     ``payment_plan.defaulted`` (with the step's outcome, so once)
  dunning.recovered  the invoice was paid after it had failed: close the dunning, drop the
                     pending retry, plan the recovered e-mail
  dunning.mail       one e-mail (dunning.mail), a step of its own: never sent twice

Each handler reads what it needs now and returns an Outcome (scheduler.service), whose
writes (the dunning state under its version, the next steps) go in one transaction with
the step's new state, held by the step's claim. A handler that raises (the processor did
not answer) leaves the claim: the step is run again when its lease ends, with the same
idempotency key.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib import timeutil
from chalicelib.dunning import planning, report
from chalicelib.dunning import settings as dunning_settings
from chalicelib.scheduler.service import Outcome
from chalicelib.store import dunning as store
from chalicelib.store import steps as steps_store
from chalicelib.store.steps import Step

# Our own policy, far below the card networks' caps (Visa 15 per 30 days, Mastercard 10 a
# day and 35 per 30 days): merchant-initiated retries per card.
RETRIES_PER_DAY = 2
RETRIES_PER_30_DAYS = 8
# Decline codes after which a retry of the same card cannot succeed (Stripe's hard
# declines, which its Smart Retries do not retry either): the customer must act.
HARD_DECLINES = frozenset({
    "authentication_required", "card_not_supported", "currency_not_supported",
    "expired_card", "fraudulent", "incorrect_number", "invalid_account", "lost_card",
    "merchant_blacklist", "new_account_information_available", "pickup_card",
    "restricted_card", "revocation_of_all_authorizations", "revocation_of_authorization",
    "security_violation", "service_not_allowed", "stolen_card", "stop_payment_order",
    "transaction_not_allowed",
})
ACTION_CODES = frozenset({"authentication_required", "invoice_payment_intent_requires_action"})
# Payment plans marked defaulted that "keep trying": one more attempt this often.
KEEP_TRYING_DAYS = 14
KEEP_TRYING_MAX = 6
OPEN = ("active", "defaulted")  # statuses in which retries go on


def handle(step: Step, now: datetime) -> Outcome:
    what = step.kind.split(".", 1)[1]
    handler = _HANDLERS.get(what)
    if handler is None:
        return Outcome.failed({"error": f"unknown dunning step {what}"})
    return handler(step, now)


# --- shared --------------------------------------------------------------------------------

def _account(account_id: str) -> dict | None:
    from chalicelib.store import accounts as account_store

    return account_store.get(account_id)


def _gateway(account: dict):
    from chalicelib.processors.registry import gateway_for

    return gateway_for(account)


def _ref(value: str):
    from chalicelib.domain.events import Ref

    processor, _, ext = value.partition(":")
    return Ref(processor, ext)


def _iso(at: datetime) -> str:
    return timeutil.iso(at)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _mail_op(step: Step, invoice: str, mail: str, due: datetime, n: int | None = None,
             **data) -> tuple:
    return steps_store.plan_op(Step(
        step.account_id, planning.mail_step_id(invoice, mail, n), "dunning.mail", _iso(due),
        step.customer_id, {"invoice": invoice, "mail": mail, **data}))


def _subscription_of(record: dict, sub_ref: str | None) -> tuple[dict | None, bool]:
    for plan in record.get("payment_plans") or []:
        if sub_ref and plan.get("processor_ref") == sub_ref:
            return plan, True
    for sub in record.get("subscriptions") or []:
        if sub_ref and sub.get("processor_ref") == sub_ref:
            return sub, False
    return None, False


def _override_keys(subscription: dict | None) -> list[str]:
    if not subscription:
        return []
    keys = [subscription.get("product"), (subscription.get("processor_ref") or "")
            .partition(":")[2], subscription.get("id")]
    return [k for k in keys if k]


# --- start -----------------------------------------------------------------------------------

def _start(step: Step, now: datetime) -> Outcome:
    from chalicelib.records import service as records

    invoice = step.data["invoice"]
    if store.get_state(step.account_id, invoice) is not None:
        return Outcome.done({"skipped": "dunning already open"})
    account = _account(step.account_id)
    record = records.get_record(step.account_id, step.customer_id, consistent=True) \
        if account and step.customer_id else None
    if account is None or record is None:
        return Outcome("canceled", {"skipped": "no such account or customer"})
    settings = dunning_settings.get(step.account_id)
    payment = next((p for p in record["payments"] if p.get("invoice") == invoice), {})
    if payment.get("status") == "succeeded":
        return Outcome.done({"skipped": "already paid"})
    subscription, is_plan = _subscription_of(record, step.data.get("subscription")
                                             or payment.get("subscription"))
    override_keys = _override_keys(subscription)
    schedule = dunning_settings.schedule_for(settings, override_keys)
    processor = invoice.partition(":")[0]
    mode = settings["mode"] if processor == "stripe" else "processor"
    decline_code, message = None, step.data.get("failure_message")
    gateway = None
    if processor == "stripe":
        gateway = _gateway(account)
        found = gateway.invoice_state(_ref(invoice))
        if found.status != "open":
            return Outcome.done({"skipped": f"invoice {found.status}"})
        decline_code, message = found.decline_code, found.failure_message or message
    needs_action = step.data.get("status") == "requires_action" or decline_code in ACTION_CODES
    hard = decline_code in HARD_DECLINES
    data = {
        "status": "active", "mode": mode, "started_at": _iso(now),
        "schedule_days": schedule, "attempts": [], "next_attempt_at": None,
        "is_plan": is_plan,
        "final_action": dunning_settings.final_action_for(settings, override_keys, is_plan),
        "subscription": (subscription or {}).get("processor_ref") or step.data.get(
            "subscription"),
        "subscription_fact": (subscription or {}).get("id"),
        "payment_fact": step.data.get("payment_fact"),
        "amount": payment.get("amount"), "currency": payment.get("currency"),
        "first_failure": {"status": step.data.get("status"), "decline_code": decline_code,
                          "message": message},
    }
    # The recovery report's month: the account's, fixed now (dunning.report).
    data["report_month"] = report.month_of(now, report.time_zone_of(step.account_id))
    ops = []
    if mode == "ours" and not needs_action and not hard:
        gateway.stop_automatic_collection(_ref(invoice), f"dunning:{invoice}:take-over")
        next_at = now + timedelta(days=schedule[0])
        data["next_attempt_at"] = _iso(next_at)
        ops.append(steps_store.plan_op(Step(
            step.account_id, planning.retry_step_id(invoice), "dunning.retry", _iso(next_at),
            step.customer_id, {"invoice": invoice, "attempt": 1})))
    elif mode == "processor":
        data["next_attempt_at"] = payment.get("due_at")
    if needs_action or hard:
        data["status"] = "action_needed"
    mail = "action_needed" if needs_action else ("update_card" if hard else "payment_failed")
    ops.append(_mail_op(step, invoice, mail, now, 1 if mail == "payment_failed" else None))
    state = store.State(step.account_id, step.customer_id, invoice, data)
    ops.append(store.state_op(state))
    if isinstance(data["amount"], int) and data["currency"]:
        # The recovery report's count, in the write that opens the dunning: once.
        ops.append(store.failed_op(step.account_id, data["report_month"], data["currency"],
                                   data["amount"], invoice))
    return Outcome.done({"mode": mode, "mail": mail, "decline_code": decline_code}, ops=ops)


# --- retry -----------------------------------------------------------------------------------

def _retry(step: Step, now: datetime) -> Outcome:
    invoice, n = step.data["invoice"], int(step.data["attempt"])
    state = store.get_state(step.account_id, invoice)
    if state is None or state.data.get("status") not in OPEN or state.data.get("mode") != "ours":
        return Outcome.done({"skipped": "dunning not open"})
    account = _account(step.account_id)
    if account is None:
        return Outcome("canceled", {"skipped": "no such account"})
    gateway = _gateway(account)
    # The guard past the processor's idempotency memory: a paid invoice is not paid again.
    found = gateway.invoice_state(_ref(invoice))
    if found.status != "open":
        return Outcome.done({"skipped": f"invoice {found.status}"})
    if found.payment_method is None:
        state.data["status"] = "action_needed"
        return Outcome.done({"skipped": "no card to charge"}, ops=[
            store.state_op(state), _mail_op(step, invoice, "update_card", now)])
    card = found.card_fingerprint or str(found.payment_method)
    wait = store.count_retry(step.account_id, card, f"{invoice}:{n}", now,
                             RETRIES_PER_DAY, RETRIES_PER_30_DAYS)
    if wait is not None:
        # The card's caps: the same attempt later (nothing charged, nothing counted).
        state.data["next_attempt_at"] = _iso(wait)
        return Outcome.later(_iso(wait), ops=[store.state_op(state)])
    key = f"dunning:{invoice}:{n}:{found.payment_method.id}"
    paid = gateway.pay_invoice(_ref(invoice), found.payment_method, key)
    attempt = {"n": n, "at": _iso(now), "card": str(found.payment_method),
               "outcome": paid.status, "decline_code": paid.decline_code,
               "message": paid.message}
    data = state.data
    data["attempts"] = [a for a in data.get("attempts") or [] if a.get("n") != n] + [attempt]
    ops = []
    result = {"attempt": n, "outcome": paid.status, "decline_code": paid.decline_code}
    if paid.status == "paid":
        data.update(status="recovered", recovered_at=_iso(now), channel="automatic_retry",
                    next_attempt_at=None)
        ops.append(_mail_op(step, invoice, "recovered", now))
        ops.append(store.state_op(state))
        ops += _recovery_count(state, now)
        return Outcome.done(result, ops=ops)
    if paid.status == "requires_action" or paid.decline_code in HARD_DECLINES:
        data.update(status="action_needed", next_attempt_at=None)
        mail = "action_needed" if paid.status == "requires_action" else "update_card"
        ops += [store.state_op(state), _mail_op(step, invoice, mail, now)]
        return Outcome.done(result, ops=ops)
    schedule = data["schedule_days"]
    started = _parse(data["started_at"])
    if data.get("status") == "defaulted":
        # A defaulted plan that keeps trying: every KEEP_TRYING_DAYS, a bounded number.
        if n >= len(schedule) + KEEP_TRYING_MAX:
            data["next_attempt_at"] = None
            return Outcome.done(result, ops=[store.state_op(state)])
        next_at = now + timedelta(days=KEEP_TRYING_DAYS)
    elif n < len(schedule):
        next_at = max(started + timedelta(days=schedule[n]), now + timedelta(hours=1))
    else:
        # The last attempt failed: the final action, now.
        data["next_attempt_at"] = None
        ops.append(steps_store.plan_op(Step(
            step.account_id, planning.final_step_id(invoice), "dunning.final", _iso(now),
            step.customer_id, {"invoice": invoice})))
        ops.append(store.state_op(state))
        return Outcome.done(result, ops=ops)
    data["next_attempt_at"] = _iso(next_at)
    if data.get("status") == "active":
        last = n + 1 == len(schedule)
        ops.append(_mail_op(step, invoice, "final_warning" if last else "payment_failed", now,
                            None if last else n + 1))
    ops.append(store.state_op(state))
    return Outcome.later(_iso(next_at), {"invoice": invoice, "attempt": n + 1}, ops=ops,
                         result=result)


# --- final action ----------------------------------------------------------------------------

def _final(step: Step, now: datetime) -> Outcome:
    invoice = step.data["invoice"]
    state = store.get_state(step.account_id, invoice)
    if state is None or state.data.get("status") != "active":
        return Outcome.done({"skipped": "dunning not open"})
    account = _account(step.account_id)
    if account is None:
        return Outcome("canceled", {"skipped": "no such account"})
    data = state.data
    action = data.get("final_action")
    gateway = _gateway(account) if invoice.startswith("stripe:") else None
    if gateway is not None and gateway.invoice_state(_ref(invoice)).status != "open":
        return Outcome.done({"skipped": "invoice no longer open"})
    ops, events = [], []
    common = {"invoice": invoice, "payment_fact": data.get("payment_fact"),
              "subscription": data.get("subscription_fact"), "amount": data.get("amount"),
              "currency": data.get("currency"), "attempts": len(data.get("attempts") or []),
              "final_action": action}
    if data.get("is_plan"):
        data.update(status="defaulted", defaulted_at=_iso(now))
        events.append(_event(step, "payment_plan.defaulted", now, common))
        if action == "keep_trying" and data.get("mode") == "ours":
            n = len(data["schedule_days"]) + 1
            next_at = now + timedelta(days=KEEP_TRYING_DAYS)
            data["next_attempt_at"] = _iso(next_at)
            ops.append(steps_store.plan_op(Step(
                step.account_id, f"{planning.retry_step_id(invoice)}:more", "dunning.retry",
                _iso(next_at), step.customer_id, {"invoice": invoice, "attempt": n})))
        ops.append(_mail_op(step, invoice, "defaulted", now))
    else:
        if action == "cancel" and data.get("subscription") and gateway is not None:
            gateway.cancel_now(_ref(data["subscription"]), prorate=False, invoice_now=False,
                               reason="dunning", idempotency_key=f"dunning:{invoice}:cancel")
        elif action == "unpaid" and data.get("subscription") and gateway is not None and \
                data.get("mode") == "ours":
            # Stripe's "unpaid": the invoice stays open and is not attempted (its
            # auto_advance is off since the dunning opened), and the next cycles' invoices
            # are generated but stay drafts. Stripe sets that status only at the end of its
            # own retries; ours end here, so collection is paused with keep_as_draft (and
            # resumed when the invoice is paid: _recovered).
            gateway.pause_collection(_ref(data["subscription"]), "keep_as_draft", None,
                                     f"dunning:{invoice}:unpaid")
            data["collection_paused"] = True
        data.update(status="exhausted", exhausted_at=_iso(now), next_attempt_at=None)
        if action == "cancel":
            ops.append(_mail_op(step, invoice, "ended", now))
    events.append(_event(step, "dunning.exhausted", now, common))
    ops.append(_mail_op(step, invoice, "merchant_alert", now))
    ops.append(store.state_op(state))
    return Outcome.done({"final_action": action}, ops=ops, outbox=events)


def _event(step: Step, event_type: str, now: datetime, data: dict) -> dict:
    from chalicelib import ids

    return {"event_id": ids.stable_id("evt", step.account_id, f"{event_type}:{step.step_id}"),
            "type": event_type, "account_id": step.account_id,
            "customer_id": step.customer_id, "occurred_at": _iso(now), "data": data}


# --- recovered -------------------------------------------------------------------------------

def _recovered(step: Step, now: datetime) -> Outcome:
    invoice = step.data["invoice"]
    state = store.get_state(step.account_id, invoice)
    if state is None:
        return Outcome.done({"skipped": "no dunning"})
    data = state.data
    if data.get("status") == "recovered":
        return Outcome.done({"skipped": "already recovered"})
    last = (data.get("attempts") or [{}])[-1]
    # Our retry, the customer in the portal, a staff member's retry action, or news from
    # the processor (its own retry in "processor" mode, a payment on its hosted page).
    channel = "automatic_retry" if last.get("outcome") == "paid" else \
        {"confirmed": "customer", "staff": "staff"}.get(step.data.get("source"), "processor")
    if data.get("collection_paused") and data.get("subscription"):
        # Left "unpaid" (its collection paused by _final): paid now, so collection
        # resumes (the drafts of the cycles in between stay drafts, as on Stripe).
        account = _account(step.account_id)
        if account is not None:
            _gateway(account).resume_collection(_ref(data["subscription"]),
                                                f"dunning:{invoice}:resume")
        data["collection_paused"] = False
    data.update(status="recovered", recovered_at=_iso(now), channel=channel,
                next_attempt_at=None)
    for step_id in (planning.retry_step_id(invoice), f"{planning.retry_step_id(invoice)}:more",
                    planning.final_step_id(invoice)):
        steps_store.cancel(step.account_id, step_id, now, reason="recovered")
    return Outcome.done({"channel": channel}, ops=[
        store.state_op(state), _mail_op(step, invoice, "recovered", now),
        *_recovery_count(state, now)])


def _recovery_count(state: store.State, now: datetime) -> list[tuple]:
    """The recovery report's count of a state just marked recovered, for the same write
    (under the month its payment failed in, so a month's rate never passes 100%)."""
    data = state.data
    if not isinstance(data.get("amount"), int) or not data.get("currency") or \
            not data.get("started_at"):
        return []
    hours = max(0.0, (now - _parse(data["started_at"])).total_seconds() / 3600)
    # Where the failure was counted (a dunning opened before months were the account's:
    # the UTC month it started in).
    month = data.get("report_month") or data["started_at"][:7]
    return [store.recovered_op(state.account_id, month, data["currency"],
                               data["amount"], state.invoice, data["channel"], hours)]


def _mail(step: Step, now: datetime) -> Outcome:
    from chalicelib.dunning import mail

    return mail.handle(step, now)


_HANDLERS = {"start": _start, "retry": _retry, "final": _final, "recovered": _recovered,
             "mail": _mail}


def open_invoices_of(account_id: str, invoices: list[str]) -> dict[str, dict]:
    """Each invoice's dunning as pages show it (attempts, next attempt, status)."""
    return {ref: s.data for ref, s in store.get_states(account_id, invoices).items()}

