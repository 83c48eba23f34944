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


class NotSupported(AppError):
    """The processor has no such operation (PayPal: a card update, a plan change with a
    proration preview, block lists): refused before any call, nothing changed."""

    status = 422
    code = "not_supported_by_processor"


@dataclass(frozen=True)
class SavedCard:
    payment_method: Ref
    card: Card
    # The processor's fingerprint of the card number (the same card saved twice, or by
    # two customers, has one): what a card block matches.
    fingerprint: str | None = None


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
    # For declined: the processor's reason code (Stripe's decline_code, else its error
    # code), which tells a card that may work later from one that never will.
    decline_code: str | None = None


@dataclass(frozen=True)
class InvoiceState:
    """An invoice as the processor has it now (dunning: is it still open, what failed)."""

    status: str  # draft, open, paid, void, uncollectible
    amount_due: int | None = None  # the processor's minor units
    currency: str | None = None
    attempt_count: int = 0
    # The last payment's failure: reason code and message.
    decline_code: str | None = None
    failure_message: str | None = None
    # The card a retry charges (the subscription's, else the customer's default), and
    # its fingerprint (the same card saved twice has one): what the retry caps count.
    payment_method: Ref | None = None
    card_fingerprint: str | None = None


@dataclass(frozen=True)
class PreviewLine:
    description: str
    amount: int  # stored minor units; negative is a credit
    proration: bool


@dataclass(frozen=True)
class PlanChangePreview:
    """What a plan change would bill, as the processor computes it."""

    currency: str
    proration_date: int  # pass it to change_plan so the change bills what was shown
    proration_amount: int  # the proration lines' sum (stored minor units; < 0: a credit)
    amount_due: int  # the next invoice with the change (stored minor units)
    next_payment_at: int | None
    lines: tuple[PreviewLine, ...]


@dataclass(frozen=True)
class CustomerChanges:
    """A change of the processor customer's details: None leaves a field as it is, ""
    clears it; ``address`` is the whole address (line1, line2, postal_code, city, state,
    country)."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: dict | None = None


# What a block can push to the processor's own block lists.
BLOCK_KINDS = ("email", "card_fingerprint", "customer_id")
PAUSE_BEHAVIORS = ("void", "keep_as_draft", "mark_uncollectible")


# --- refunds and disputes (chalicelib/actions/refunds.py) ----------------------------------
# The reasons a processor takes for a refund (Stripe's three; "other" sends none).
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")


class RefundRefused(ProcessorError):
    """The processor definitely refused the refund (nothing was refunded): more than
    remains, a disputed charge, …; ``message`` is for the merchant's staff."""

    status = 409
    code = "refund_refused"


@dataclass(frozen=True)
class RefundOutcome:
    refund: Ref
    amount: int  # stored minor units
    currency: str
    status: str  # succeeded, pending, requires_action, failed, canceled


@dataclass(frozen=True)
class DisputeState:
    dispute: Ref
    status: str  # warning_needs_response, needs_response, under_review, won, lost, …
    refundable: bool  # the processor still takes a refund of the disputed charge


@dataclass(frozen=True)
class PaymentLink:
    """A processor-hosted page where a customer pays a fixed amount (Stripe's Payment Link)."""

    link: Ref
    url: str
    active: bool


@dataclass(frozen=True)
class Capabilities:
    """What a processor can do for the merchant's actions, so that the dashboard offers
    only those (one description per processor: ``capabilities`` on each gateway class,
    ``registry.capabilities_of``). The gateways still refuse the rest (NotSupported)."""

    cancel_now_prorate: bool  # credit the unused time / bill pending items on a cancel
    pause_behaviors: tuple[str, ...]  # of PAUSE_BEHAVIORS; the first is the default
    pause_resumes_at: bool  # a paused subscription resumes by itself on a date
    change_plan: bool  # a plan change with the processor's proration preview
    retry_other_card: bool  # a failed payment retried with another of the customer's cards
    block_lists: bool  # the processor's own block lists (Stripe Radar value lists)


@dataclass(frozen=True)
class PriceOption:
    """A recurring price the merchant sells at the processor (a plan change's target)."""

    price: str  # the processor's price id
    product: str | None  # the product's name (else the price's nickname)
    amount: int | None  # stored minor units per interval; None: not a fixed amount
    currency: str
    interval: str | None
    interval_count: int


class Gateway(Protocol):
    capabilities: Capabilities

    def create_card_setup(self, customer: Ref) -> CardSetup: ...

    def list_cards(self, customer: Ref) -> list[SavedCard]: ...

    def detach_card(self, payment_method: Ref) -> None: ...

    def set_default_card(self, customer: Ref, payment_method: Ref) -> None: ...

    def set_subscription_card(self, subscription: Ref, payment_method: Ref) -> None: ...

    def pay_invoice(self, invoice: Ref, payment_method: Ref | None,
                    idempotency_key: str) -> PaymentOutcome: ...

    def invoice_state(self, invoice: Ref) -> InvoiceState: ...

    def stop_automatic_collection(self, invoice: Ref, idempotency_key: str) -> None:
        """The processor no longer retries this invoice by itself (we do)."""
        ...

    def cancel_at_period_end(self, subscription: Ref, reason: str | None,
                             idempotency_key: str | None = None) -> None: ...

    def undo_cancel(self, subscription: Ref, idempotency_key: str | None = None) -> None: ...

    def cancel_now(self, subscription: Ref, *, prorate: bool, invoice_now: bool,
                   reason: str | None, idempotency_key: str) -> None:
        """Ends the subscription at once (also one already set to end at period end).
        ``prorate``: credit the unused time; ``invoice_now``: bill pending items now."""
        ...

    def preview_plan_change(self, subscription: Ref, price: str, prorate: bool,
                            proration_date: int) -> PlanChangePreview: ...

    def change_plan(self, subscription: Ref, price: str, prorate: bool, proration_date: int,
                    idempotency_key: str) -> None: ...

    def pause_collection(self, subscription: Ref, behavior: str, resumes_at: int | None,
                         idempotency_key: str) -> None: ...

    def list_prices(self, currency: str) -> list[PriceOption]:
        """The active recurring prices in ``currency`` a subscription may change to."""
        ...

    def current_price(self, subscription: Ref) -> str | None:
        """The price id the subscription bills now (None: several, or none)."""
        ...

    def resume_collection(self, subscription: Ref, idempotency_key: str) -> None: ...

    def update_customer(self, customer: Ref, changes: CustomerChanges,
                        idempotency_key: str) -> None: ...

    def block_value(self, kind: str, value: str, idempotency_key: str) -> None:
        """Put ``value`` (an e-mail, card fingerprint or processor customer id, per
        ``kind`` of BLOCK_KINDS) on the processor's block list of that kind."""
        ...

    def unblock_value(self, kind: str, value: str) -> None: ...

    def create_refund(self, payment: Ref, amount: int | None, currency: str,
                      reason: str | None, idempotency_key: str,
                      metadata: dict[str, str] | None = None) -> RefundOutcome:
        """``amount`` in the project's stored minor units of ``currency`` (None: all that is
        left; AmountNotAccepted when the processor's unit cannot hold it exactly), a reason
        of REFUND_REASONS (None: none); returns what the processor made. RefundRefused on a
        definite refusal; ProcessorUnavailable when the outcome is unknown (no answer, a
        5xx): retry with the same key."""
        ...

    def disputes_of(self, payment: Ref) -> list[DisputeState]: ...

    def owner_of(self, obj: Ref) -> Owner | None: ...

    def create_payment_link(self, amount: int, currency: str, description: str,
                            metadata: dict[str, str], idempotency_key: str) -> PaymentLink:
        """A hosted page that takes ``amount`` (stored minor units) once; ``metadata`` comes
        back on the completed payment's event."""
        ...

    def deactivate_payment_link(self, link: Ref, idempotency_key: str) -> None: ...
