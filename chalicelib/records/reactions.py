"""What else a record's change writes, in the same transaction: reactions.

A webhook or a confirmed self-service change that changes a record's facts may mean more:
a product event for the integrations (``payment.failed`` → the outbox), a due step for the
scheduler (a failed payment plans its retry and e-mail; a card plans its expiry notices).
Written in the record's own transaction, they happen exactly once per change whatever the
redeliveries: a redelivered event changes no fact, so it reacts to nothing.

Each reaction is a plain function ``react(context, changes) -> Effects`` of the feature
that owns it, listed in ``_reactions`` (imported there, not here, so that records depend on
no feature at import time). A reaction reads nothing from the table and calls nobody: it
only describes writes, from the change it is given.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Change:
    """One processor object's fact as this write changes it."""

    kind: str  # records.facts.FACT_KINDS: CUS, SUB, PAY, REFUND, DISPUTE, PM
    fact_id: str  # the object's public id (``pay_…``, ``sub_…``)
    before: dict | None  # its values before this write; None: the record did not know it
    after: dict

    def became(self, name: str) -> bool:
        """The field ``name`` has a value now that it did not have before."""
        return self.after.get(name) != (self.before or {}).get(name) and \
            self.after.get(name) is not None


@dataclass(frozen=True)
class Context:
    account_id: str
    customer_id: str
    email: str | None  # the record's e-mail after the write
    # "webhook" (a processor event), "confirmed" (a self-service answer to the customer)
    # or "staff" (the processor's answer to a merchant's action: dashboard or API)
    source: str
    now: str  # ISO time of the write
    record: Callable[[], dict]  # the record as the merchant API shows it after the write
    # The blocked details of the payments this write makes succeed, by the payment fact's
    # id (blocks.blocked_for_payments): read by the writer, only when a payment succeeds.
    blocked: dict = field(default_factory=dict)


@dataclass
class Effects:
    # {"event_id", "type", "occurred_at", "data"}: outbox events of this customer.
    outbox: list[dict] = field(default_factory=list)
    # (kind, item, condition) store operations for the same transaction. A condition must
    # never fail for a reason a retry would not cure: a failed one aborts the record's write.
    ops: list[tuple] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        self.outbox.extend(other.outbox)
        self.ops.extend(other.ops)


def _reactions() -> list[Callable[[Context, list[Change]], Effects]]:
    """The features that react to record changes (each adds its line here)."""
    from chalicelib.actions import disputes
    from chalicelib.blocks import service as blocks
    from chalicelib.dunning import planning as dunning
    from chalicelib.integrations import reactions as integrations
    from chalicelib.notices import planning as notices
    from chalicelib.selfservice import late_payments, pending_cancel

    return [integrations.react, notices.react, pending_cancel.react, dunning.react,
            disputes.react, blocks.react, late_payments.react]


def effects_of(context: Context, changes: list[Change]) -> Effects:
    effects = Effects()
    if not changes:
        return effects
    for react in _reactions():
        effects.extend(react(context, changes))
    return effects
