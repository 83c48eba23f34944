"""Dunning's data: an account's settings, each failed invoice's dunning state, and the
per-card counters of merchant-initiated retries (chalicelib/dunning).

  ``ACCT#<acct>#DUNNING`` / ``SETTINGS``            the account's dunning settings
  ``ACCT#<acct>#DUNNING#<invoice ref>`` / ``STATE``  one invoice's dunning: its status
        (active, recovered, exhausted, stopped), the attempts made (time, card, outcome,
        decline reason), the next attempt; created once per invoice (``attribute_not_
        exists``), then updated on the condition of its ``version``
  ``ACCT#<acct>#CARDCAP#<card>`` / ``CAP``          the retries we made on one card in the
        last 30 days (attempt key → time): a retry is counted on the condition that the
        caps still allow it (``version``); counting the same attempt key twice is a no-op
  ``ACCT#<acct>#RECOVERY`` / ``<YYYY-MM>#<cur>#<shard>``  the recovery report's monthly aggregate
        of the invoices whose payment first failed in that month (the account's time zone
        when the dunning opened: the state's ``report_month``) in that currency:
        failed count and amount, recovered count and amount per channel, and a bounded
        histogram of times to recovery (``RECOVERY_BUCKET_HOURS``); ADDed to in the same
        transaction as the state change it counts (``failed_op``, ``recovered_op``), so
        once per invoice, never scanned; split over ``RECOVERY_SHARDS`` items by invoice
        so that concurrent sweeps rarely touch the same one (read: summed)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError

from chalicelib.store import keys
from chalicelib.store.table import TableItem
from chalicelib.timeutil import iso

STATE_RETENTION_DAYS = 400
# How a recovery is counted (dunning.steps): our scheduled retry, the customer in the
# portal, a staff member's retry (dashboard or merchant API), or news from the processor
# (its own retry in "processor" mode, a payment on its hosted page).
CHANNELS = ("automatic_retry", "customer", "staff", "processor")
# Upper bounds (hours) of the time-to-recovery histogram's buckets; the last is open.
RECOVERY_BUCKET_HOURS = (1, 3, 6, 12, 24, 48, 72, 96, 120, 168, 240, 336, 504, 720, 1440)
RECOVERY_BUCKETS = len(RECOVERY_BUCKET_HOURS) + 1
RECOVERY_SHARDS = 8


class DunningSettingsItem(TableItem, discriminator="DunningSettings"):
    account_id = UnicodeAttribute()
    settings = JSONAttribute(default=dict)
    updated_at = UnicodeAttribute()


class DunningStateItem(TableItem, discriminator="DunningState"):
    account_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    invoice = UnicodeAttribute()  # the processor's ref, "stripe:in_…"
    state = JSONAttribute(default=dict)
    version = NumberAttribute(default=0)


class CardCapItem(TableItem, discriminator="CardCap"):
    account_id = UnicodeAttribute()
    attempts = JSONAttribute(default=dict)  # attempt key → ISO time
    version = NumberAttribute(default=0)


class RecoveryMonthItem(TableItem, discriminator="RecoveryMonth"):
    """Only ever ADDed to (``update`` ops), so concurrent invoices never conflict."""

    account_id = UnicodeAttribute(null=True)
    month = UnicodeAttribute(null=True)  # YYYY-MM
    currency = UnicodeAttribute(null=True)
    failed_count = NumberAttribute(null=True)
    failed_amount = NumberAttribute(null=True)
    recovered_count = NumberAttribute(null=True)
    recovered_automatic_retry = NumberAttribute(null=True)
    recovered_customer = NumberAttribute(null=True)
    recovered_staff = NumberAttribute(null=True)
    recovered_processor = NumberAttribute(null=True)
    h00 = NumberAttribute(null=True)
    h01 = NumberAttribute(null=True)
    h02 = NumberAttribute(null=True)
    h03 = NumberAttribute(null=True)
    h04 = NumberAttribute(null=True)
    h05 = NumberAttribute(null=True)
    h06 = NumberAttribute(null=True)
    h07 = NumberAttribute(null=True)
    h08 = NumberAttribute(null=True)
    h09 = NumberAttribute(null=True)
    h10 = NumberAttribute(null=True)
    h11 = NumberAttribute(null=True)
    h12 = NumberAttribute(null=True)
    h13 = NumberAttribute(null=True)
    h14 = NumberAttribute(null=True)
    h15 = NumberAttribute(null=True)


class Conflict(Exception):
    """Someone else wrote first: read again."""


def _failed_condition(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


# --- settings ---------------------------------------------------------------------------

def get_settings(account_id: str) -> dict | None:
    pk, sk = keys.dunning_settings(account_id)
    try:
        return DunningSettingsItem.get(pk, sk).settings
    except DoesNotExist:
        return None


def put_settings(account_id: str, settings: dict, at: str) -> None:
    pk, sk = keys.dunning_settings(account_id)
    DunningSettingsItem(pk, sk, account_id=account_id, settings=settings, updated_at=at).save()


# --- one invoice's dunning ----------------------------------------------------------------

@dataclass
class State:
    account_id: str
    customer_id: str
    invoice: str  # "stripe:in_…"
    data: dict = field(default_factory=dict)
    version: int = 0


def get_state(account_id: str, invoice: str) -> State | None:
    pk, sk = keys.dunning_state(account_id, invoice)
    try:
        item = DunningStateItem.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None
    return State(item.account_id, item.customer_id, item.invoice, item.state or {},
                 int(item.version or 0))


def get_states(account_id: str, invoices: list[str]) -> dict[str, State]:
    """The dunning of each invoice that has one (one BatchGetItem)."""
    wanted = [keys.dunning_state(account_id, i) for i in dict.fromkeys(invoices)][:100]
    out = {}
    for item in DunningStateItem.batch_get(wanted):
        if item.account_id == account_id:
            out[item.invoice] = State(item.account_id, item.customer_id, item.invoice,
                                      item.state or {}, int(item.version or 0))
    return out


def state_op(state: State) -> tuple[str, DunningStateItem, object]:
    """Write the state (its version + 1) on the condition that it is still the version read
    (a new state: that none exists), as a transaction op."""
    pk, sk = keys.dunning_state(state.account_id, state.invoice)
    item = DunningStateItem(pk, sk, account_id=state.account_id, customer_id=state.customer_id,
                            invoice=state.invoice, state=state.data, version=state.version + 1,
                            ttl=timedelta(days=STATE_RETENTION_DAYS))
    condition = TableItem.PK.does_not_exist() if state.version == 0 else \
        DunningStateItem.version == state.version
    return ("dunning", item, condition)


def save_state(state: State) -> State:
    _, item, condition = state_op(state)
    try:
        item.save(condition=condition)
    except PutError as exc:
        if _failed_condition(exc):
            raise Conflict(state.invoice) from exc
        raise
    return State(state.account_id, state.customer_id, state.invoice, state.data,
                 state.version + 1)


# --- the recovery report's monthly aggregates ---------------------------------------------

def _month_item(account_id: str, month: str, currency: str, invoice: str
                ) -> tuple[RecoveryMonthItem, list]:
    shard = int.from_bytes(hashlib.sha256(invoice.encode()).digest()[:4], "big") \
        % RECOVERY_SHARDS
    pk, sk = keys.recovery_month(account_id, month, currency, shard)
    return RecoveryMonthItem(pk, sk), [
        RecoveryMonthItem.T.set(RecoveryMonthItem), RecoveryMonthItem.account_id.set(account_id),
        RecoveryMonthItem.month.set(month), RecoveryMonthItem.currency.set(currency)]


def failed_op(account_id: str, month: str, currency: str, amount: int, invoice: str) -> tuple:
    """Count one invoice's failed payment (its dunning opened), as a transaction op: put
    it beside the ``state_op`` that creates the state, so it is counted once."""
    item, actions = _month_item(account_id, month, currency, invoice)
    actions += [RecoveryMonthItem.failed_count.add(1),
                RecoveryMonthItem.failed_amount.add(int(amount))]
    return ("update", item, (actions, None))


def recovery_bucket(hours: float) -> int:
    return next((i for i, upper in enumerate(RECOVERY_BUCKET_HOURS) if hours < upper),
                len(RECOVERY_BUCKET_HOURS))


def recovered_op(account_id: str, month: str, currency: str, amount: int, invoice: str,
                 channel: str, hours: float) -> tuple:
    """Count one recovery (under the month its payment failed in), as a transaction op
    beside the ``state_op`` that marks the state recovered."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown recovery channel {channel!r}")
    item, actions = _month_item(account_id, month, currency, invoice)
    bucket = getattr(RecoveryMonthItem, f"h{recovery_bucket(hours):02d}")
    actions += [RecoveryMonthItem.recovered_count.add(1),
                getattr(RecoveryMonthItem, f"recovered_{channel}").add(int(amount)),
                bucket.add(1)]
    return ("update", item, (actions, None))


def recovery_months(account_id: str, first: str, last: str) -> list[dict]:
    """The monthly aggregates from month ``first`` to ``last`` (YYYY-MM, inclusive), in
    month then currency order (the shards summed): one Query."""
    pk, _ = keys.recovery_month(account_id, first, "", 0)
    out: dict[tuple[str, str], dict] = {}
    for item in RecoveryMonthItem.query(pk, RecoveryMonthItem.SK.between(
            f"{first}#", f"{last}#~")):
        if item.account_id != account_id:
            continue
        row = out.setdefault((item.month, item.currency), {
            "month": item.month, "currency": item.currency, "failed_count": 0,
            "failed_amount": 0, "recovered_count": 0, "recovered": dict.fromkeys(CHANNELS, 0),
            "histogram": [0] * RECOVERY_BUCKETS})
        row["failed_count"] += int(item.failed_count or 0)
        row["failed_amount"] += int(item.failed_amount or 0)
        row["recovered_count"] += int(item.recovered_count or 0)
        for c in CHANNELS:
            row["recovered"][c] += int(getattr(item, f"recovered_{c}") or 0)
        for i in range(RECOVERY_BUCKETS):
            row["histogram"][i] += int(getattr(item, f"h{i:02d}") or 0)
    return [out[k] for k in sorted(out)]


# --- card-network caps ----------------------------------------------------------------------

def count_retry(account_id: str, card: str, attempt_key: str, now: datetime,
                per_day: int, per_30_days: int) -> datetime | None:
    """Count one merchant-initiated retry on ``card`` unless the caps forbid it now: None
    when it may go (counted, or counted before under the same ``attempt_key``: a retried
    run of the same attempt), else the earliest time it may. Conditional on the counter's
    version: two retries of one card at once are counted one after the other."""
    pk, sk = keys.card_cap(account_id, card)
    for _ in range(10):
        try:
            item = CardCapItem.get(pk, sk, consistent_read=True)
            attempts, version = dict(item.attempts or {}), int(item.version or 0)
        except DoesNotExist:
            attempts, version = {}, 0
        if attempt_key in attempts:
            return None
        month_ago, day_ago = iso(now - timedelta(days=30)), iso(now - timedelta(days=1))
        attempts = {k: at for k, at in attempts.items() if at > month_ago}
        last_day = sorted(at for at in attempts.values() if at > day_ago)
        last_month = sorted(attempts.values())
        # When the oldest retry that fills a window leaves it, one more may go.
        earliest = None
        if len(last_day) >= per_day:
            earliest = _parse(last_day[-per_day]) + timedelta(days=1)
        if len(last_month) >= per_30_days:
            month_free = _parse(last_month[-per_30_days]) + timedelta(days=30)
            earliest = max(earliest, month_free) if earliest else month_free
        if earliest is not None:
            return earliest + timedelta(seconds=1)
        attempts[attempt_key] = iso(now)
        condition = TableItem.PK.does_not_exist() if version == 0 else \
            CardCapItem.version == version
        try:
            CardCapItem(pk, sk, account_id=account_id, attempts=attempts, version=version + 1,
                        ttl=timedelta(days=31)).save(condition=condition)
        except PutError as exc:
            if _failed_condition(exc):
                continue  # another retry of this card counted first: read again
            raise
        return None
    raise Conflict(card)


def card_retries(account_id: str, card: str) -> dict[str, str]:
    pk, sk = keys.card_cap(account_id, card)
    try:
        return dict(CardCapItem.get(pk, sk, consistent_read=True).attempts or {})
    except DoesNotExist:
        return {}


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
