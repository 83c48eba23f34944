"""What the product asks of a payment processor, independent of which one.

One gateway per processor implements this (``processors/stripe/gateway.py``); features
call it with the project's own types and get the project's own results and errors, so
a second processor is one more implementation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chalicelib.domain.events import Card, Owner, Ref
from chalicelib.errors import AppError


class ProcessorError(AppError):
    """The processor refused or failed; ``message`` is safe to show a customer."""

    status = 502
    code = "processor_error"


class CardDeclined(ProcessorError):
    status = 402
    code = "card_declined"
    processor_code: str | None = None  # the processor's own reason, for requires_action
    client_secret: str | None = None


class AmountNotAccepted(AppError):
    """An amount the processor cannot take exactly in its own unit (say KWD 5.124 at
    Stripe, whose last digit must be 0): never rounded, refused before any call."""

    status = 400
    code = "amount_not_accepted"


class ProcessorUnavailable(ProcessorError):
    status = 503
    code = "processor_unavailable"


@dataclass(frozen=True)
class SavedCard:
    payment_method: Ref
    card: Card


@dataclass(frozen=True)
class CardSetup:
    """What the browser needs to collect a card with the processor's own form."""

    client_secret: str
    setup: Ref


@dataclass(frozen=True)
class PaymentOutcome:
    status: str  # paid, declined, requires_action
    message: str | None = None
    # For requires_action: the secret the processor's browser library confirms with.
    client_secret: str | None = None


class Gateway(Protocol):
    def create_card_setup(self, customer: Ref) -> CardSetup: ...

    def list_cards(self, customer: Ref) -> list[SavedCard]: ...

    def detach_card(self, payment_method: Ref) -> None: ...

    def set_default_card(self, customer: Ref, payment_method: Ref) -> None: ...

    def set_subscription_card(self, subscription: Ref, payment_method: Ref) -> None: ...

    def pay_invoice(self, invoice: Ref, payment_method: Ref | None,
                    idempotency_key: str) -> PaymentOutcome: ...

    def cancel_at_period_end(self, subscription: Ref, reason: str | None) -> None: ...

    def undo_cancel(self, subscription: Ref) -> None: ...

    def refund(self, payment: Ref, amount: int | None, currency: str | None,
               idempotency_key: str) -> Ref:
        """``amount`` in the project's stored minor units of ``currency`` (None: all that is
        left); AmountNotAccepted when the processor's unit cannot hold it exactly."""
        ...

    def owner_of(self, obj: Ref) -> Owner | None: ...
