"""Which notices a record's change plans: the reaction (records.reactions) of notices.

It only describes writes (due steps, store.steps) from the change it is given; it reads
no settings: a step is due at the first instant its notice could go out in any time
zone or lead time, and its handler (notices.service.handle) works out the account's real
sending time then, and asks the scheduler to come back at it. So a merchant changing the
time zone or the renewal lead moves every notice not sent yet.

Step ids name one notice of one occurrence, so a changed fact re-plans under a new id and
cancels the old one:
  ``notice:card:<card fact>:<yyyy-mm>:30d|7d|expired``  a card's expiry (a new expiry
        after an automatic update or a re-entered card is another id; the old ones go)
  ``notice:renewal:<sub fact>:<period end epoch>``       a subscription's next renewal
  ``notice:instalment:<sub fact>:<period end epoch>``    a payment plan's next instalment
  ``notice:receipt:<pay fact>``                          a payment that succeeded
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.notices import timing
from chalicelib.records.reactions import Change, Context, Effects
from chalicelib.store import steps as steps_store
from chalicelib.store.steps import Step
from chalicelib.timeutil import iso

# A subscription whose renewal or instalment can be announced.
ANNOUNCED_STATUSES = ("active", "trialing", "past_due")
SUB_FIELDS = ("current_period_end", "status", "cancel_at_period_end", "cancel_at",
              "installments")
PAY_REFS = ("payment", "invoice", "intent", "charge")
# A notice whose date passed more than this long ago when its fact arrives is not planned.
STALE_DAYS = 1


def react(context: Context, changes: list[Change]) -> Effects:
    effects = Effects()
    now = _parse(context.now)
    for change in changes:
        if change.kind == "PM":
            effects.ops.extend(_card_ops(context, change, now))
        elif change.kind == "SUB":
            effects.ops.extend(_subscription_ops(context, change, now))
        elif change.kind == "PAY" and change.became("status") and \
                change.after.get("status") == "succeeded":
            effects.ops.append(steps_store.plan_op(Step(
                context.account_id, f"notice:receipt:{change.fact_id}", "notice.receipt",
                context.now, context.customer_id,
                {"payment_fact": change.fact_id,
                 "refs": sorted({change.after[k] for k in PAY_REFS if change.after.get(k)})})))
    return effects


def card_step_ids(card_fact: str, exp_month: int, exp_year: int) -> dict[str, str]:
    label = timing.expiry_label(exp_month, exp_year)
    return {notice: f"notice:card:{card_fact}:{label}:{notice}"
            for notice in timing.card_notice_dates(exp_month, exp_year)}


def _expiry(values: dict | None) -> tuple[int, int] | None:
    card = (values or {}).get("card") or {}
    try:
        month, year = int(card.get("exp_month")), int(card.get("exp_year"))
    except (TypeError, ValueError):
        return None
    return (month, year) if 1 <= month <= 12 and 2000 <= year <= 2200 else None


def _card_ops(context: Context, change: Change, now: datetime) -> list[tuple]:
    ops = []
    old, new = _expiry(change.before), _expiry(change.after)
    attached = change.after.get("attached", True) is not False
    if old and (old != new or not attached):
        ops += [steps_store.cancel_op(context.account_id, sid)
                for sid in card_step_ids(change.fact_id, *old).values()]
    if not new or not attached:
        return ops
    was_attached = (change.before or {}).get("attached", True) is not False
    if old == new and was_attached:
        return ops  # another field changed (brand, …): the planned notices stand
    ids = card_step_ids(change.fact_id, *new)
    for notice, day in timing.card_notice_dates(*new).items():
        if day < now.date() - timedelta(days=STALE_DAYS):
            continue
        kind = "notice.card_expired" if notice == "expired" else "notice.card_expiring"
        ops.append(steps_store.plan_op(Step(
            context.account_id, ids[notice], kind, _due(timing.earliest_start(day), now),
            context.customer_id, {"card_fact": change.fact_id, "exp_month": new[0],
                                  "exp_year": new[1], "notice": notice,
                                  "local_date": day.isoformat()})))
    return ops


def _subscription_ops(context: Context, change: Change, now: datetime) -> list[tuple]:
    before, after = change.before or {}, change.after
    if all(before.get(f) == after.get(f) for f in SUB_FIELDS):
        return []
    kind = "instalment" if after.get("installments") else "renewal"
    ops = []
    old_end, end = before.get("current_period_end"), after.get("current_period_end")
    announced = after.get("status") in ANNOUNCED_STATUSES and not (
        kind == "renewal" and (after.get("cancel_at_period_end") or after.get("cancel_at")))
    if old_end and (old_end != end or not announced):
        old_kind = "instalment" if before.get("installments") else "renewal"
        ops.append(steps_store.cancel_op(
            context.account_id, f"notice:{old_kind}:{change.fact_id}:{old_end}"))
    if not announced or not isinstance(end, int):
        return ops
    period_end = datetime.fromtimestamp(end, UTC)
    if period_end <= now:
        return ops
    lead = timing.RENEWAL_DAYS_MAX if kind == "renewal" else timing.INSTALMENT_DAYS_MAX
    first = timing.earliest_start(period_end.date() - timedelta(days=lead + 1))
    ops.append(steps_store.plan_op(Step(
        context.account_id, f"notice:{kind}:{change.fact_id}:{end}", f"notice.{kind}",
        _due(first, now), context.customer_id,
        {"subscription_fact": change.fact_id, "period_end": end})))
    return ops


def _due(at: datetime, now: datetime) -> str:
    return iso(max(at, now))


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

