"""Refunds of a customer's payment, in full or in part, on the one action mechanism.

The amount can never exceed what remains refundable, even under concurrent requests from
two staff members or two API clients: each payment has a refund ledger
(``store.actions``: ``available = paid - refunded - reserved``) and a refund

1. counts in the ledger every refund the record already knows (the processor's webhooks
   ``refund.created|updated`` and ``charge.refunded`` put them there; each is counted once,
   by its id), so the ledger converges with the processor's own view;
2. reserves its amount with a conditional write (``available >= amount``) BEFORE calling
   the processor: of concurrent requests, those that would go above the remaining amount
   are refused here and never reach the processor;
3. calls the processor with ``<key>:refund`` as the idempotency key, then confirms the
   reservation (the refund counted once) — or releases it on a definite refusal only. A
   timeout has an unknown outcome: the reservation stays pending (its amount held) and the
   action can be sent again with the same key (the processor answers the refund it made,
   or makes it now: never twice). A pending reservation whose action was abandoned is
   settled by the next refund of the payment, with the same processor key.

A disputed charge is refunded only while the processor says it still can be (Stripe's
``is_charge_refundable``), with a warning that a lost dispute would take the money a second
time; otherwise 409. Support staff refund up to the account's limit
(``roles.support_refund_limit``); above it the action needs ``refund_over_limit`` (admins
and owners; on the dashboard with a step-up code).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from chalicelib import money
from chalicelib.actions import service as actions
from chalicelib.actions.service import (
    ActionContext,
    ActionSpec,
    Result,
    Step,
    account_of,
    customer_record,
)
from chalicelib.domain.events import Ref, RefundChanged
from chalicelib.errors import AppError, BadRequest, Conflict, NotFound
from chalicelib.observability import logger
from chalicelib.processors.gateway import (
    REFUND_REASONS,
    AmountNotAccepted,
    Gateway,
    ProcessorError,
    ProcessorUnavailable,
    RefundRefused,
)
from chalicelib.processors.registry import gateway_for
from chalicelib.records import service as records
from chalicelib.records.view import REFUND_COUNTS
from chalicelib.staff import roles
from chalicelib.store import actions as store

# What a form or request may name as the reason: the processor's three and "other" (sent
# as no reason).
REASONS = (*REFUND_REASONS, "other")
REASON_LABELS = {
    "requested_by_customer": "Requested by the customer",
    "duplicate": "Duplicate payment",
    "fraudulent": "Fraudulent payment",
    "other": "Other",
}
FRAUDULENT_WARNING = ("Marking a refund as fraudulent also adds the card and the customer's "
                      "e-mail address to Stripe's block lists (Radar): future payments by them "
                      "will be blocked.")
DISPUTE_WARNING = ("This payment is disputed. If the dispute is lost, the bank takes the "
                   "disputed amount as well: the money would be paid back twice.")
MAX_NOTE = 2000
# A pending reservation older than this whose action is not running is settled by the
# next refund of the payment (the action's own lease: actions.service.LEASE_SECONDS).
SETTLE_AFTER_SECONDS = actions.LEASE_SECONDS
# Stripe forgets idempotency keys after 24 hours: a pending reservation is retried with
# its key only within this age (older ones wait for the processor's webhooks).
RETRY_WITHIN_SECONDS = 23 * 3600
REFUNDABLE_STATUSES = ("succeeded",)
_AMOUNT_RE = re.compile(r"^[0-9]{1,15}(?:\.[0-9]{1,6})?$")

# (account, processor) → that processor's gateway for the account.
GatewayFor = Callable[[dict, str], Gateway]


class RefundPending(AppError):
    """The processor did not answer: the refund may or may not have been made."""

    status = 503
    code = "refund_pending"


def find_payment(record: dict, payment_id: str) -> dict:
    for payment in record["payments"]:
        if payment["id"] == payment_id:
            return payment
    raise NotFound("No such payment for this customer.")


def processor_payment(payment: dict) -> Ref | None:
    """The processor object to refund: the charge, else the intent (Stripe); PayPal's
    capture or sale (``txn_``)."""
    refs = [Ref(*r.split(":", 1)) for r in payment.get("processor_refs") or [] if ":" in r]
    for prefix in ("ch_", "py_", "pi_", "txn_"):
        for ref in refs:
            if ref.id.startswith(prefix):
                return ref
    return None


def parse_reason(value) -> str:
    if not isinstance(value, str) or value not in REASONS:
        raise BadRequest(f"The reason must be one of {', '.join(REASONS)}.",
                         code="bad_reason")
    return value


def parse_note(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("The note must be text.", code="bad_note")
    value = value.strip()
    if len(value) > MAX_NOTE:
        raise BadRequest(f"The note is longer than {MAX_NOTE} characters.", code="bad_note")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise BadRequest("The note has control characters.", code="bad_note")
    return value or None


def parse_minor_amount(value) -> int | None:
    """The API's ``amount``: a positive integer of the currency's minor unit, or absent
    (None: all that remains)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("The amount must be a whole number of the currency's minor unit "
                         "(cents), e.g. 1250 for 12.50.", code="bad_amount")
    if value <= 0:
        raise BadRequest("The amount must be more than 0.", code="bad_amount")
    return value


def parse_major_amount(value: str | None, currency: str) -> int | None:
    """The form's amount, in the currency's major unit ("12.50"); empty: all that remains.
    An amount the currency cannot hold (12.345 euros, 1.5 yen) is refused, never rounded."""
    text = (value or "").strip().replace(",", ".")
    if not text:
        return None
    if not _AMOUNT_RE.match(text):
        raise BadRequest("Enter the amount as a number, e.g. 12.50.", code="bad_amount")
    try:
        minor = money.from_decimal_string(text, currency)
    except ValueError:
        raise AmountNotAccepted(f"{currency.upper()} amounts have at most "
                                f"{money.exponent(currency)} decimals.") from None
    if minor <= 0:
        raise BadRequest("The amount must be more than 0.", code="bad_amount")
    return minor


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _age_seconds(iso: str) -> float:
    try:
        at = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return (datetime.now(UTC) - at).total_seconds()


class Refunds:
    """Refunds of one customer's payments, for one staff member or API client."""

    def __init__(self, ctx: ActionContext, customer_id: str,
                 gateway_factory: GatewayFor = gateway_for):
        self.ctx = ctx
        self.customer_id = customer_id
        self._gateway_factory = gateway_factory
        self._gateways: dict[str, Gateway] = {}
        self._account: dict | None = None

    @property
    def account(self) -> dict:
        if self._account is None:
            self._account = account_of(self.ctx.account_id)
        return self._account

    def gateway_of(self, ref: Ref) -> Gateway:
        """The gateway of the processor that holds the payment ``ref``."""
        if ref.processor not in self._gateways:
            self._gateways[ref.processor] = self._gateway_factory(self.account, ref.processor)
        return self._gateways[ref.processor]

    # --- what the form shows ------------------------------------------------------------

    def state(self, payment_id: str) -> dict:
        """The payment as a refund form shows it: paid, refunded, what remains refundable
        (less amounts held by refunds still waiting for the processor), its refunds, the
        support limit, and the warnings that apply."""
        record = customer_record(self.ctx.account_id, self.customer_id)
        payment = find_payment(record, payment_id)
        currency = payment.get("currency") or ""
        paid = payment.get("amount") or 0
        refunded = payment.get("refunded") or 0
        ledger, reservations, _ = store.read_ledger(self.ctx.account_id, payment_id)
        pending = sum(r.amount for r in reservations if r.status == "pending")
        if ledger is not None:
            refunded = max(refunded, ledger.refunded)
        remaining = max(0, paid - refunded)
        return {
            "payment": payment, "currency": currency, "paid": paid, "refunded": refunded,
            "pending": pending, "remaining": remaining,
            "refundable": max(0, remaining - pending)
            if payment.get("status") in REFUNDABLE_STATUSES and processor_payment(payment)
            else 0,
            "status_refundable": payment.get("status") in REFUNDABLE_STATUSES,
            "disputed": bool(payment.get("disputes")),
            "support_limit": roles.support_refund_limit(self.account.get("settings"), currency),
            "reasons": [(r, REASON_LABELS[r]) for r in REASONS],
            "fraudulent_warning": FRAUDULENT_WARNING,
            "dispute_warning": DISPUTE_WARNING if payment.get("disputes") else None,
        }

    # --- the action ---------------------------------------------------------------------

    def permission_for(self, amount: int, currency: str) -> str:
        limit = roles.support_refund_limit(self.account.get("settings"), currency)
        return "refund" if amount <= limit else "refund_over_limit"

    def refund(self, payment_id: str, amount: int | None, reason: str, note: str | None,
               before_perform: Callable[[], None] | None = None) -> Result:
        """Refund ``amount`` (stored minor units; None: all that remains) of the payment.
        ``before_perform``: the dashboard's step-up check above the support limit."""
        reason = parse_reason(reason)
        note = parse_note(note)
        record = customer_record(self.ctx.account_id, self.customer_id)
        payment = find_payment(record, payment_id)
        currency = payment.get("currency") or ""
        # The permission is decided by what is asked (for "all that remains", by what the
        # record says remains), so a stored answer is given to the same request again.
        asked = amount if amount is not None else max(
            0, (payment.get("amount") or 0) - (payment.get("refunded") or 0))
        spec = ActionSpec(name="refund", customer_id=self.customer_id,
                          permission=self.permission_for(asked, currency),
                          request={"payment_id": payment_id, "amount": amount, "reason": reason,
                                   "note": note},
                          reason=reason, note=note)
        return actions.run(self.ctx, spec,
                           lambda step: self._perform(step, payment_id, amount, reason),
                           before_perform=before_perform)

    def _perform(self, step: Step, payment_id: str, amount: int | None, reason: str) -> Result:
        account_id = self.ctx.account_id
        record = customer_record(account_id, self.customer_id)
        payment = find_payment(record, payment_id)
        currency = (payment.get("currency") or "").lower()
        target = processor_payment(payment)
        if payment.get("status") not in REFUNDABLE_STATUSES or target is None or not currency:
            raise Conflict("Only a successful payment can be refunded.", code="not_refundable")
        paid = payment.get("amount") or 0
        store.open_ledger(account_id, self.customer_id, payment_id, currency, paid)
        self._count_known_refunds(payment)
        self._settle_abandoned(payment_id, step.key_hash)
        warning = None
        if payment.get("disputes"):
            disputes = self.gateway_of(target).disputes_of(target)
            if any(not d.refundable for d in disputes):
                raise Conflict("This payment is disputed and the processor no longer takes a "
                               "refund of it.", code="charge_disputed")
            if disputes:
                warning = DISPUTE_WARNING
        ledger, _, _ = store.read_ledger(account_id, payment_id)
        before = {"paid": paid, "refunded": ledger.refunded, "available": ledger.available}
        wanted = amount if amount is not None else ledger.available
        reservation = store.get_reservation(account_id, payment_id, step.key_hash)
        if reservation is not None and reservation.status == "released":
            raise RefundRefused("This refund was refused by the processor. Start a new one.")
        if reservation is None:
            if wanted <= 0:
                raise Conflict("Nothing remains to be refunded on this payment.",
                               code="nothing_to_refund")
            if wanted > ledger.available:
                raise BadRequest(self._above_remaining(ledger, currency), code="amount_above_remaining")
            try:
                reservation = store.reserve(
                    account_id, self.customer_id, payment_id, step.key_hash, wanted,
                    step.key("refund"),
                    {"payment": str(target), "amount": wanted, "currency": currency,
                     "reason": None if reason == "other" else reason,
                     "full": amount is None}, _now_iso())
            except store.NotEnough:
                ledger, _, _ = store.read_ledger(account_id, payment_id)
                raise BadRequest(self._above_remaining(ledger, currency),
                                 code="amount_above_remaining") from None
        outcome = self._call_processor(payment_id, reservation)
        fact_id = records.fact_id(account_id, "REFUND", outcome.refund)
        store.confirm(account_id, payment_id, step.key_hash, reservation.amount, fact_id,
                      outcome.amount)
        ledger, _, _ = store.read_ledger(account_id, payment_id)
        remaining = max(0, ledger.paid - ledger.refunded)
        refs = {r.split(":", 1)[1][:3]: Ref(*r.split(":", 1))
                for r in payment.get("processor_refs") or [] if ":" in r}
        body = {
            "refund": {"id": fact_id, "processor_ref": str(outcome.refund),
                       "amount": outcome.amount, "currency": outcome.currency,
                       "status": outcome.status, "reason": reason},
            "payment": {"id": payment_id, "amount": paid, "refunded": ledger.refunded,
                        "remaining": remaining},
            "warning": warning,
        }
        event = RefundChanged(occurred_at=int(time.time()), customer=None, email=None,
                              refund=outcome.refund, amount=outcome.amount,
                              currency=outcome.currency, status=outcome.status,
                              reason=None if reason == "other" else reason,
                              intent=refs.get("pi_"),
                              # Stripe's charge; PayPal's capture or sale (txn_…)
                              charge=refs.get("ch_") or refs.get("py_") or refs.get("txn"),
                              created_at=int(time.time()))
        return Result(body=body, status=201, events=[event],
                      outbox=[{"type": "refund.created", "data": {
                          "customer_id": self.customer_id, "payment_id": payment_id,
                          "refund_id": fact_id, "amount": outcome.amount,
                          "currency": outcome.currency, "reason": reason,
                          "remaining": remaining}}],
                      before=before,
                      after={"paid": paid, "refunded": ledger.refunded,
                             "available": ledger.available, "refund": fact_id},
                      target=self.customer_id)

    @staticmethod
    def _above_remaining(ledger: store.Ledger, currency: str) -> str:
        from chalicelib.formatting import money as show

        return (f"The amount is more than remains refundable on this payment "
                f"({show(max(0, ledger.available), currency)}).")

    def _call_processor(self, payment_id: str, reservation: store.Reservation):
        """Ask the processor for the reserved refund; confirm or release per its answer."""
        request = reservation.request
        try:
            target = Ref(*request["payment"].split(":", 1))
            return self.gateway_of(target).create_refund(
                target,
                reservation.amount,
                request["currency"], request.get("reason"), reservation.processor_key)
        except ProcessorUnavailable:
            logger.warning("refund outcome unknown", extra={
                "account_id": self.ctx.account_id, "payment_id": payment_id})
            raise RefundPending(
                "The payment service did not answer in time, so this refund is pending: it "
                "may have been made. Send the same request again (the same action) to confirm "
                "it; it will never be made twice.") from None
        except (RefundRefused, AmountNotAccepted) as refused:
            store.release_reservation(self.ctx.account_id, payment_id, reservation.key_hash,
                                      reservation.amount)
            raise refused from None
        except ProcessorError as failed:
            if failed.status < 500:  # a card error or another definite refusal
                store.release_reservation(self.ctx.account_id, payment_id,
                                          reservation.key_hash, reservation.amount)
            raise

    def _count_known_refunds(self, payment: dict) -> None:
        """Count in the ledger the refunds the record knows (the processor's webhooks):
        each once, by its id; ours are counted already when they were confirmed."""
        for refund in payment.get("refunds") or []:
            if refund.get("status") in REFUND_COUNTS and refund.get("amount"):
                store.count_refund(self.ctx.account_id, payment["id"], refund["id"],
                                   int(refund["amount"]))

    def _settle_abandoned(self, payment_id: str, own_key_hash: str) -> None:
        """Retry, with their own processor keys, the pending reservations of refunds whose
        action was abandoned after an unknown outcome: the processor answers the refund it
        made (confirmed) or makes it now, or refuses (released)."""
        _, reservations, _ = store.read_ledger(self.ctx.account_id, payment_id)
        for reservation in reservations:
            age = _age_seconds(reservation.created_at)
            if reservation.status != "pending" or reservation.key_hash == own_key_hash or \
                    not SETTLE_AFTER_SECONDS < age < RETRY_WITHIN_SECONDS:
                continue
            try:
                outcome = self._call_processor(payment_id, reservation)
            except Exception:  # noqa: BLE001 - left pending, or released by _call_processor
                logger.warning("could not settle a pending refund",
                               extra={"account_id": self.ctx.account_id,
                                      "payment_id": payment_id})
                continue
            store.confirm(self.ctx.account_id, payment_id, reservation.key_hash,
                          reservation.amount, records.fact_id(self.ctx.account_id, "REFUND",
                                                              outcome.refund), outcome.amount)
