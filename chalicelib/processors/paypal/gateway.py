"""The PayPal gateway: what the product asks of a processor (``processors.gateway.Gateway``),
done with PayPal's REST API for subscriptions (v1 billing) and payments (v2 captures).

What PayPal does differently from Stripe, and how it is met here:

- Cancelling is immediate and final at PayPal. "Cancel at the end of the period" is kept by
  us: the action records the pending cancel on the subscription's fact
  (``cancel_at_period_end``) and a due step cancels at PayPal at ``due_cancel_time`` (48 h
  before the next billing time, so PayPal starts no new cycle); "keep my subscription"
  only drops the mark. Both calls here check that PayPal still has the subscription running.
- Pausing is PayPal's suspend (nothing is billed while suspended; PayPal has no automatic
  resume date) and resuming its activate.
- A failed payment is paid by capturing the subscription's outstanding balance
  (``capture_outstanding``; ``pay_invoice`` of a missed payment ``due_<sub>_<time>``).
- Refunds: a v2 capture through ``/v2/payments/captures/{id}/refund``; a subscription's v1
  sale (PayPal's transaction ids are one namespace) through ``/v1/payments/sale/{id}/refund``.
  Both with ``PayPal-Request-Id`` as the idempotency key: a retry answers the same refund.
- Cards, plan changes with a proration preview, customer details and block lists do not
  exist for a PayPal subscription (the payer manages the funding source in PayPal):
  ``NotSupported`` (422, "PayPal does not support …"), before any call.

PayPal's answers become the gateway's errors: 5xx or no answer is ProcessorUnavailable
(retry with the same request id), 422 UNPROCESSABLE_ENTITY a definite refusal naming
PayPal's issue; nothing else of PayPal's leaks past this package.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from chalicelib import money
from chalicelib.domain.events import Ref
from chalicelib.observability import logger
from chalicelib.processors.gateway import (
    AmountNotAccepted,
    Capabilities,
    CardSetup,
    CustomerChanges,
    DisputeState,
    NotSupported,
    PaymentOutcome,
    PlanChangePreview,
    PriceOption,
    ProcessorError,
    ProcessorUnavailable,
    RefundOutcome,
    RefundRefused,
    SavedCard,
)
from chalicelib.processors.paypal.client import PayPalClient
from chalicelib.processors.paypal.translate import PROCESSOR, dispute_status, ref
from chalicelib.processors.paypal.values import amount as money_of
from chalicelib.processors.paypal.values import parse_time

# PayPal takes no decimals for these, though ISO gives them two (HUF, TWD).
NO_DECIMALS = {"JPY", "HUF", "TWD"}
# Where a payer manages a subscription's funding source ("automatic payments" in their
# PayPal account): a merchant cannot change it.
AUTOPAY_URLS = {"live": "https://www.paypal.com/myaccount/autopay/",
                "sandbox": "https://www.sandbox.paypal.com/myaccount/autopay/"}
# A pending "cancel at period end" is carried out this long before the next billing time.
CANCEL_LEAD_SECONDS = 48 * 3600
# PayPal's limit on the reason of a cancel, suspend or activate, and a capture's note.
MAX_REASON = 128
RUNNING = ("ACTIVE", "SUSPENDED")
_REFUND_STATUS = {"COMPLETED": "succeeded", "PENDING": "pending", "FAILED": "failed",
                  "CANCELLED": "canceled", "completed": "succeeded", "pending": "pending",
                  "failed": "failed", "cancelled": "canceled"}


class PayPalRefused(ProcessorError):
    """PayPal definitely refused (422): nothing was changed; ``message`` names why."""

    status = 409
    code = "processor_refused"
    issue: str | None = None


def autopay_url(mode: str | None) -> str:
    """PayPal's automatic payments page for the account's mode (live unless sandbox)."""
    return AUTOPAY_URLS["sandbox" if mode == "sandbox" else "live"]


def not_supported(what: str) -> NotSupported:
    return NotSupported(f"PayPal does not support {what}.")


def due_cancel_time(sub: dict) -> int | None:
    """When a PayPal subscription's pending "cancel at period end" is carried out at PayPal:
    ``CANCEL_LEAD_SECONDS`` before its next billing time. ``sub``: ``processor_ref``,
    ``cancel_at_period_end`` and ``current_period_end`` (epoch seconds, as the
    subscription's fact holds them). None when nothing is pending or no billing time is
    known. The scheduler's step: ``selfservice.pending_cancel``."""
    if not sub.get("cancel_at_period_end") or not str(sub.get("processor_ref") or "").startswith(
            PROCESSOR + ":"):
        return None
    next_billing = sub.get("current_period_end")
    if isinstance(next_billing, bool) or not isinstance(next_billing, int):
        return None
    return next_billing - CANCEL_LEAD_SECONDS


def paypal_amount(stored: int, currency: str) -> str:
    """A stored amount as PayPal's decimal string for ``currency``; AmountNotAccepted when
    PayPal's unit cannot hold it exactly (HUF 10.50: PayPal takes whole forints)."""
    code = currency.upper()
    digits = 0 if code in NO_DECIMALS else money.exponent(code)
    try:
        units = money.rescale(stored, money.exponent(code), digits)
    except ValueError:
        raise AmountNotAccepted(f"PayPal takes {code} amounts in whole units "
                                f"only.") from None
    whole, fraction = divmod(units, 10 ** digits)
    return f"{whole}.{fraction:0{digits}d}" if digits else str(whole)


def _own(ref: Ref, kind: str | None = None) -> str:
    """PayPal's id of one of its refs (a subscription's ``I-…``, else ``<kind>_<id>``)."""
    if ref.processor != PROCESSOR:
        raise ValueError(f"not a PayPal object: {ref}")
    if kind is None:
        return ref.id
    prefix, _, paypal_id = ref.id.partition("_")
    if prefix != kind or not paypal_id:
        raise ValueError(f"not a PayPal {kind}: {ref}")
    return paypal_id


def _issue(data: dict) -> str | None:
    details = data.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        issue = details[0].get("issue")
        return issue if isinstance(issue, str) else None
    name = data.get("name")
    return name if isinstance(name, str) else None


def _describe(data: dict) -> str:
    details = data.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        text = details[0].get("description")
        if isinstance(text, str) and text:
            return text[:300]
    text = data.get("message")
    return text[:300] if isinstance(text, str) and text else "no reason given"


# Where a dispute is between the payer and the merchant (PayPal has not taken the money).
SETTLED_BETWEEN_THEM = ("INQUIRY",)


def _refundable(dispute: dict) -> bool:
    """Whether PayPal still lets the merchant refund a disputed payment (see disputes_of)."""
    allowed, _ = money_of((dispute.get("refund_details") or {}).get("allowed_refund_amount"))
    if allowed is not None and allowed <= 0:
        return False
    status = dispute_status(dispute)
    if status in ("won", "warning_closed"):
        return True
    if status == "lost":
        return False
    return str(dispute.get("dispute_life_cycle_stage") or "").upper() in SETTLED_BETWEEN_THEM


@dataclass(frozen=True)
class Transaction:
    """One of a PayPal subscription's transactions (its sales), as PayPal lists them."""

    payment: Ref
    status: str  # PayPal's: COMPLETED, DECLINED, PARTIALLY_REFUNDED, PENDING, REFUNDED
    amount: int | None  # stored minor units (gross)
    currency: str | None
    at: int | None


class PayPalGateway(PayPalClient):
    """The gateway (``processors.gateway.Gateway``) for an account's PayPal credentials; also
    the client's reads, owners and signature check (``PayPalClient``)."""

    # What the dashboard offers for a PayPal subscription (the module's list of what PayPal
    # does differently): cancel without proration, pause = suspend (nothing billed, no
    # resume date), no plan change, a retry captures the outstanding balance (no card).
    capabilities = Capabilities(
        cancel_now_prorate=False, pause_behaviors=("void",), pause_resumes_at=False,
        change_plan=False, retry_other_card=False, block_lists=False)

    # --- transport ----------------------------------------------------------------------

    def _act(self, method: str, path: str, payload: dict | None = None,
             request_id: str | None = None) -> tuple[int, dict]:
        """A call that changes something: 5xx is ProcessorUnavailable (unknown outcome);
        401/403 (after one token renewal) a ProcessorError; the rest is the caller's."""
        headers = {"PayPal-Request-Id": request_id[:108]} if request_id else None
        status, data = self._call(method, path, payload, headers=headers)
        # 409: PayPal is still carrying out an earlier call with this request id; its
        # outcome is not known yet (never a refusal: a refund's hold must stay).
        if status >= 500 or status in (409, 429):
            logger.warning("PayPal failed a change", extra={"status": status,
                                                            "debug_id": data.get("debug_id")})
            raise ProcessorUnavailable("PayPal had a problem. Nothing may have changed; please "
                                       "try again.")
        if status in (401, 403):
            logger.error("PayPal refused this account's credentials for a change",
                         extra={"status": status})
            raise ProcessorError("PayPal refused this shop's credentials. Please contact support.")
        return status, data

    def _refused(self, what: str, status: int, data: dict) -> PayPalRefused:
        issue = _issue(data)
        logger.info("PayPal refused", extra={"what": what, "status": status, "issue": issue,
                                             "debug_id": data.get("debug_id")})
        refused = PayPalRefused(f"PayPal refused to {what}: {_describe(data)}")
        refused.issue = issue
        return refused

    def _subscription_path(self, subscription: Ref, action: str = "") -> str:
        path = f"/v1/billing/subscriptions/{quote(_own(subscription), safe='')}"
        return f"{path}/{action}" if action else path

    def _running_subscription(self, subscription: Ref) -> dict:
        found = self.subscription(_own(subscription))
        if found is None:
            raise PayPalRefused("PayPal does not know this subscription.")
        return found

    def _state_change(self, subscription: Ref, action: str, reason: str,
                      done_when: tuple[str, ...]) -> None:
        """POST cancel, suspend or activate. A 422 when PayPal's subscription is already in
        the wanted state is success (a repeat after an unknown outcome: PayPal takes no
        request id on these calls, its state makes them idempotent)."""
        path = self._subscription_path(subscription, action)
        status, data = self._act("POST", path, {"reason": reason[:MAX_REASON] or action})
        if status in (200, 204):
            return
        if status == 422:
            found = self.subscription(_own(subscription)) or {}
            if found.get("status") in done_when:
                return
        if status == 404:
            raise PayPalRefused("PayPal does not know this subscription.")
        raise self._refused(f"{action} the subscription", status, data)

    # --- subscriptions ------------------------------------------------------------------

    def cancel_now(self, subscription: Ref, *, prorate: bool, invoice_now: bool,
                   reason: str | None, idempotency_key: str) -> None:
        del idempotency_key  # PayPal's cancel takes no request id (see _state_change)
        if prorate or invoice_now:
            raise not_supported("prorating or billing the unused time when a subscription "
                                "is cancelled")
        self._state_change(subscription, "cancel", reason or "Cancelled by the merchant",
                           ("CANCELLED",))

    def cancel_at_period_end(self, subscription: Ref, reason: str | None,
                             idempotency_key: str | None = None) -> None:
        """Nothing at PayPal (see the module): only that PayPal still bills it."""
        del reason, idempotency_key
        found = self._running_subscription(subscription)
        if found.get("status") not in RUNNING:
            raise PayPalRefused("PayPal no longer bills this subscription "
                                f"({str(found.get('status')).lower()}).")

    def undo_cancel(self, subscription: Ref, idempotency_key: str | None = None) -> None:
        """Drops our pending cancel: possible while PayPal has not cancelled it yet."""
        del idempotency_key
        found = self._running_subscription(subscription)
        if found.get("status") not in RUNNING:
            raise PayPalRefused("PayPal has already ended this subscription; it cannot be "
                                "kept.")

    def pause_collection(self, subscription: Ref, behavior: str, resumes_at: int | None,
                         idempotency_key: str) -> None:
        del idempotency_key
        if resumes_at:
            raise not_supported("resuming a paused subscription on a date (resume it by hand)")
        if behavior != "void":
            raise not_supported("keeping the paused periods' payments as drafts or unpaid "
                                "(a suspended PayPal subscription bills nothing: pause with "
                                "\"void\")")
        self._state_change(subscription, "suspend", "Paused by the merchant", ("SUSPENDED",))

    def resume_collection(self, subscription: Ref, idempotency_key: str) -> None:
        del idempotency_key
        self._state_change(subscription, "activate", "Resumed by the merchant", ("ACTIVE",))

    def transactions(self, subscription: Ref, start: int, end: int) -> list[Transaction]:
        """The subscription's transactions between two times (epoch seconds)."""
        import datetime as dt

        def iso(at: int) -> str:
            return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

        query = urlencode({"start_time": iso(start), "end_time": iso(end)})
        found = self._get(f"{self._subscription_path(subscription, 'transactions')}?{query}")
        out = []
        for t in (found or {}).get("transactions") or []:
            if not isinstance(t, dict) or not isinstance(t.get("id"), str):
                continue
            gross, currency = money_of((t.get("amount_with_breakdown") or {}).get("gross_amount"))
            out.append(Transaction(payment=Ref(PROCESSOR, f"txn_{t['id']}"),
                                   status=str(t.get("status") or ""), amount=gross,
                                   currency=currency, at=parse_time(t.get("time"))))
        return out

    # --- payments -----------------------------------------------------------------------

    def capture_outstanding(self, subscription: Ref, idempotency_key: str) -> PaymentOutcome:
        """Charge the subscription's outstanding balance now (retry its failed payments).
        ``paid``, ``declined`` with PayPal's reason, or ``pending`` (PayPal took the request
        and will say by webhook). Nothing outstanding is ``paid``: a repeat of a capture that
        went through finds the balance settled."""
        found = self._running_subscription(subscription)
        balance = (found.get("billing_info") or {}).get("outstanding_balance")
        outstanding, currency = money_of(balance)
        if not outstanding or outstanding <= 0 or currency is None:
            return PaymentOutcome("paid", "Nothing is outstanding on this subscription.")
        status, data = self._act("POST", self._subscription_path(subscription, "capture"), {
            "note": "Outstanding balance", "capture_type": "OUTSTANDING_BALANCE",
            "amount": {"currency_code": currency.upper(),
                       "value": paypal_amount(outstanding, currency)}},
            request_id=idempotency_key)
        if status == 202:
            return PaymentOutcome("pending", "PayPal is processing the payment.")
        if status == 200:
            state = str(data.get("status") or "").upper()
            if state in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"):
                return PaymentOutcome("paid")
            if state == "PENDING":
                return PaymentOutcome("pending", "PayPal is processing the payment.")
            return PaymentOutcome("declined", "PayPal declined the payment.")
        if status == 422:
            if _issue(data) == "ZERO_OUTSTANDING_BALANCE":
                return PaymentOutcome("paid", "Nothing is outstanding on this subscription.")
            return PaymentOutcome("declined", f"PayPal declined the payment: {_describe(data)}")
        if status == 404:
            raise PayPalRefused("PayPal does not know this subscription.")
        raise self._refused("capture the outstanding balance", status, data)

    def pay_invoice(self, invoice: Ref, payment_method: Ref | None,
                    idempotency_key: str) -> PaymentOutcome:
        """Pay a missed subscription payment (``due_<subscription>_<time>``): PayPal has no
        invoices, only the subscription's outstanding balance, captured as a whole."""
        if payment_method is not None:
            raise not_supported("choosing the payment method (the payer chooses it in PayPal)")
        due = _own(invoice, "due")
        subscription, _, at = due.rpartition("_")
        if not subscription or not at.isdigit():
            raise ValueError(f"not a missed PayPal payment: {invoice}")
        return self.capture_outstanding(Ref(PROCESSOR, subscription), idempotency_key)

    def create_refund(self, payment: Ref, amount: int | None, currency: str,
                      reason: str | None, idempotency_key: str,
                      metadata: dict[str, str] | None = None) -> RefundOutcome:
        """Refund a capture (v2) or a sale (v1), in full (``amount`` None) or in part, with
        ``PayPal-Request-Id`` = ``idempotency_key``. The reason stays ours: PayPal's
        ``note_to_payer`` would show it to the payer."""
        del reason, metadata
        txn = _own(payment, "txn")
        value = paypal_amount(amount, currency) if amount is not None else None
        path = f"/v2/payments/captures/{quote(txn, safe='')}/refund"
        body: dict = {"amount": {"currency_code": currency.upper(), "value": value}} \
            if value is not None else {}
        status, data = self._act("POST", path, body, request_id=idempotency_key)
        v1 = False
        if status == 404 and self.sale(txn) is not None:
            v1 = True
            path = f"/v1/payments/sale/{quote(txn, safe='')}/refund"
            body = {"amount": {"currency": currency.upper(), "total": value}} \
                if value is not None else {}
            status, data = self._act("POST", path, body, request_id=idempotency_key)
        if status == 404:
            raise RefundRefused("PayPal does not know this payment.")
        if status not in (200, 201):
            refused = RefundRefused(f"PayPal refused the refund: {_describe(data)}")
            refused.processor_code = _issue(data)
            logger.info("PayPal refused a refund", extra={"status": status,
                                                          "issue": refused.processor_code})
            raise refused
        refund_id = data.get("id")
        if not isinstance(refund_id, str) or not refund_id:
            raise ProcessorUnavailable("PayPal's answer named no refund; please try again.")
        found, found_currency = money_of(data.get("amount"))
        state = data.get("state") if v1 else data.get("status")
        return RefundOutcome(
            refund=Ref(PROCESSOR, f"refund_{refund_id}"),
            amount=abs(found) if found is not None else (amount or 0),
            currency=found_currency or currency.lower(),
            status=_REFUND_STATUS.get(str(state), "pending"))

    def disputes_of(self, payment: Ref) -> list[DisputeState]:
        """The disputes of a capture or sale, as PayPal's Disputes API has them now (List
        disputes by ``disputed_transaction_id``, then each one's details for its outcome
        and what it still lets be refunded). ``refundable`` (``_refundable``): while the
        payer and the merchant settle it between them (the inquiry stage) or once it is
        closed in the merchant's favour; not once PayPal has taken the money back (a claim
        or chargeback under review, or lost), when a refund would pay the payer twice."""
        txn = _own(payment, "txn")
        status, data = self._call("GET", "/v1/customer/disputes?" + urlencode(
            {"disputed_transaction_id": txn}))
        if status >= 500 or status == 429:
            raise ProcessorUnavailable("PayPal did not answer. Nothing was changed; please "
                                       "try again.")
        if status != 200:
            logger.warning("PayPal refused to list disputes", extra={"status": status})
            raise ProcessorError("PayPal refused to say whether this payment is disputed "
                                 "(the shop's PayPal app needs the Disputes feature).")
        out = []
        for item in data.get("items") or []:
            dispute_id = item.get("dispute_id") if isinstance(item, dict) else None
            found = ref("dispute", dispute_id)
            if found is None:
                continue
            details = self._get(f"/v1/customer/disputes/{quote(dispute_id, safe='')}") or item
            out.append(DisputeState(dispute=found, status=dispute_status(details) or "open",
                                    refundable=_refundable(details)))
        return out

    # --- what PayPal does not have ------------------------------------------------------

    def create_card_setup(self, customer: Ref) -> CardSetup:
        raise not_supported("changing a subscription's card (the payer manages the payment "
                            "method in PayPal)")

    def list_cards(self, customer: Ref) -> list[SavedCard]:
        raise not_supported("listing a payer's cards (the payer manages them in PayPal)")

    def detach_card(self, payment_method: Ref) -> None:
        raise not_supported("removing a payer's card (the payer manages it in PayPal)")

    def set_default_card(self, customer: Ref, payment_method: Ref) -> None:
        raise not_supported("choosing a payer's card (the payer manages it in PayPal)")

    def set_subscription_card(self, subscription: Ref, payment_method: Ref) -> None:
        raise not_supported("changing a subscription's card (the payer manages the payment "
                            "method in PayPal)")

    def preview_plan_change(self, subscription: Ref, price: str, prorate: bool,
                            proration_date: int) -> PlanChangePreview:
        raise not_supported("changing a subscription's plan with a proration preview")

    def change_plan(self, subscription: Ref, price: str, prorate: bool, proration_date: int,
                    idempotency_key: str) -> None:
        raise not_supported("changing a subscription's plan with a proration preview")

    def list_prices(self, currency: str) -> list[PriceOption]:
        raise not_supported("changing a subscription's plan with a proration preview")

    def current_price(self, subscription: Ref) -> str | None:
        raise not_supported("changing a subscription's plan with a proration preview")

    def update_customer(self, customer: Ref, changes: CustomerChanges,
                        idempotency_key: str) -> None:
        raise not_supported("changing a payer's details (the payer changes them in PayPal)")

    def block_value(self, kind: str, value: str, idempotency_key: str) -> None:
        raise not_supported("block lists")

    def unblock_value(self, kind: str, value: str) -> None:
        raise not_supported("block lists")

    def create_payment_link(self, amount: int, currency: str, description: str,
                            metadata: dict[str, str], idempotency_key: str):
        raise not_supported("payment links")

    def deactivate_payment_link(self, link, idempotency_key: str) -> None:
        raise not_supported("payment links")
