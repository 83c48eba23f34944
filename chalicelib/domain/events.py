"""The project's own domain events.

Processor adapters (``chalicelib/processors/<name>``) translate a processor's webhook
payload into these; ``records`` applies them and never sees a processor's dict, so a
second processor is one more adapter.

Every event carries ``occurred_at`` (the processor's event time, UTC epoch seconds):
it is the version used to keep stale deliveries from overwriting newer state. Fields
left ``None`` are unknown in this event and never overwrite what a record knows.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Ref:
    """A processor object: ``Ref("stripe", "cus_123")``."""

    processor: str
    id: str

    def __str__(self) -> str:
        return f"{self.processor}:{self.id}"


@dataclass(frozen=True)
class Owner:
    """Who a processor object belongs to, as the processor says when asked."""

    customer: Ref | None
    email: str | None


@dataclass(frozen=True)
class Address:
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


@dataclass(frozen=True)
class Card:
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class PauseCollection:
    """A subscription's paused collection: what happens to its invoices meanwhile
    (``keep_as_draft``, ``mark_uncollectible``, ``void``) and when it resumes by itself.
    An empty one (both None) says collection is not paused."""

    behavior: str | None = None
    resumes_at: int | None = None


@dataclass(frozen=True)
class LineItem:
    description: str
    amount: int
    quantity: int = 1


@dataclass(frozen=True)
class DomainEvent:
    occurred_at: int
    # The processor customer this event is about; None when the payload has none.
    customer: Ref | None
    # An e-mail the payload gives for that customer, if any (used to find or create the record).
    email: str | None

    def values(self) -> dict:
        """The event's known facts (None fields dropped), without the routing fields."""
        skip = {"occurred_at", "customer", "email"}
        out = {}
        for f in fields(self):
            if f.name in skip:
                continue
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = v
        return out


@dataclass(frozen=True)
class CustomerChanged(DomainEvent):
    name: str | None = None
    phone: str | None = None
    address: Address | None = None
    created_at: int | None = None
    default_payment_method: Ref | None = None


@dataclass(frozen=True)
class SubscriptionChanged(DomainEvent):
    subscription: Ref = None  # type: ignore[assignment]
    status: str | None = None  # active, trialing, past_due, unpaid, canceled, paused, incomplete…
    product: str | None = None
    amount: int | None = None
    currency: str | None = None
    interval: str | None = None
    interval_count: int | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None
    cancel_at_period_end: bool | None = None
    cancel_at: int | None = None
    canceled_at: int | None = None
    ended_at: int | None = None
    started_at: int | None = None
    # Set when the subscription is a payment plan that ends after this many payments.
    installments: int | None = None
    payment_method: Ref | None = None
    # Collection paused until a date (Stripe's pause_collection); PauseCollection() when the
    # processor says it is not (cleared, as ``cancel_at=0`` clears a scheduled end).
    pause: PauseCollection | None = None


@dataclass(frozen=True)
class PaymentChanged(DomainEvent):
    """A payment attempt's outcome: an invoice (subscription or plan) or a one-time payment."""

    # The identity of the payment: the invoice for invoiced payments, else the intent or charge.
    payment: Ref = None  # type: ignore[assignment]
    status: str | None = None  # succeeded, failed, requires_action, pending
    amount: int | None = None
    currency: str | None = None
    tax: int | None = None
    description: str | None = None
    lines: tuple[LineItem, ...] | None = None
    invoice: Ref | None = None
    intent: Ref | None = None
    charge: Ref | None = None
    subscription: Ref | None = None
    # True for a one-time order (a payment not raised by an invoice).
    one_time: bool | None = None
    payment_method: Ref | None = None
    card: Card | None = None
    # The processor's fingerprint of the card number (the same card saved twice, or by
    # someone else, has one): what a blocked card is matched by (chalicelib/blocks).
    # Kept apart from ``card``, which the record's JSON shows as it is.
    card_fingerprint: str | None = None
    failure_message: str | None = None
    amount_refunded: int | None = None
    paid_at: int | None = None
    due_at: int | None = None
    number: str | None = None
    # The processor-hosted payment link it was paid through (a lost dispute's repayment).
    payment_link: Ref | None = None


@dataclass(frozen=True)
class RefundChanged(DomainEvent):
    refund: Ref = None  # type: ignore[assignment]
    amount: int | None = None
    currency: str | None = None
    status: str | None = None  # pending, succeeded, failed, canceled
    reason: str | None = None
    intent: Ref | None = None
    charge: Ref | None = None
    created_at: int | None = None


@dataclass(frozen=True)
class DisputeChanged(DomainEvent):
    dispute: Ref = None  # type: ignore[assignment]
    amount: int | None = None
    currency: str | None = None
    status: str | None = None
    reason: str | None = None
    intent: Ref | None = None
    charge: Ref | None = None
    created_at: int | None = None


@dataclass(frozen=True)
class PaymentMethodChanged(DomainEvent):
    payment_method: Ref = None  # type: ignore[assignment]
    card: Card | None = None
    card_fingerprint: str | None = None  # as PaymentChanged's
    attached: bool | None = None
    created_at: int | None = None


@dataclass(frozen=True)
class Translation:
    """What an adapter made of one processor event."""

    event_id: str
    event_type: str
    occurred_at: int
    events: tuple[DomainEvent, ...] = field(default_factory=tuple)
    # Processor object refs that identify the customer when the payload names none
    # (a dispute names only its charge and intent).
    owner_hints: tuple[Ref, ...] = field(default_factory=tuple)
