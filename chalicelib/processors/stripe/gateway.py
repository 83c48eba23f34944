"""The Stripe gateway: the stripe library with the merchant's key and a configurable API base.

Production talks to Stripe; ``make dev`` and the tests set ``STRIPE_API_BASE`` to
localstripe. Stripe's errors become the gateway's own: a declined card is a
``CardDeclined`` with Stripe's customer-safe message, a network or 5xx failure is
``ProcessorUnavailable``; nothing else of Stripe leaks past this module.
"""
from __future__ import annotations

from typing import ClassVar

from chalicelib.domain.events import Card, Owner, Ref
from chalicelib.processors.gateway import (
    AmountNotAccepted,
    CardDeclined,
    CardSetup,
    PaymentOutcome,
    ProcessorError,
    ProcessorUnavailable,
    SavedCard,
)
from chalicelib.processors.stripe import currencies

PROCESSOR = "stripe"
# Codes with which Stripe says a payment needs the customer to authenticate (3-D Secure).
_ACTION_CODES = {"authentication_required", "invoice_payment_intent_requires_action"}


def _ref(stripe_id: str) -> Ref:
    return Ref(PROCESSOR, stripe_id)


def _own(ref: Ref) -> str:
    if ref.processor != PROCESSOR:
        raise ValueError(f"not a Stripe object: {ref}")
    return ref.id


class StripeGateway:
    def __init__(self, secret_key: str, api_base: str = "", http_client=None,
                 max_network_retries: int = 2):
        import stripe  # heavy; only the self-service paths need it

        self._stripe = stripe
        kwargs = {"max_network_retries": max_network_retries}
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        if http_client is not None:
            kwargs["http_client"] = http_client
        self._client = stripe.StripeClient(secret_key, **kwargs).v1

    # --- errors --------------------------------------------------------------------

    def _call(self, fn, *args, **kwargs):
        stripe = self._stripe
        try:
            return fn(*args, **kwargs)
        except stripe.CardError as exc:
            declined = CardDeclined(exc.user_message or "Your card was declined.")
            declined.processor_code = exc.code
            intent = getattr(exc.error, "payment_intent", None) if exc.error else None
            declined.client_secret = getattr(intent, "client_secret", None)
            raise declined from None
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProcessorUnavailable(
                "The payment service did not answer. Nothing was changed; please try again."
            ) from exc
        except stripe.APIError as exc:
            raise ProcessorUnavailable(
                "The payment service had a problem. Nothing was changed; please try again."
            ) from exc
        except stripe.StripeError as exc:
            raise ProcessorError(
                "The payment service refused this change. Please contact support."
            ) from exc

    # --- cards ---------------------------------------------------------------------

    def create_card_setup(self, customer: Ref) -> CardSetup:
        intent = self._call(self._client.setup_intents.create, params={
            "customer": _own(customer), "payment_method_types": ["card"], "usage": "off_session"})
        return CardSetup(client_secret=intent.client_secret, setup=_ref(intent.id))

    def list_cards(self, customer: Ref) -> list[SavedCard]:
        page = self._call(self._client.payment_methods.list,
                          params={"customer": _own(customer), "type": "card", "limit": 100})
        cards = []
        for pm in page.data:
            card = pm.to_dict().get("card") or {}
            cards.append(SavedCard(payment_method=_ref(pm.id), card=Card(
                brand=card.get("brand"), last4=card.get("last4"),
                exp_month=card.get("exp_month"), exp_year=card.get("exp_year"))))
        return cards

    def detach_card(self, payment_method: Ref) -> None:
        self._call(self._client.payment_methods.detach, _own(payment_method))

    def set_default_card(self, customer: Ref, payment_method: Ref) -> None:
        self._call(self._client.customers.update, _own(customer), params={
            "invoice_settings": {"default_payment_method": _own(payment_method)}})

    def set_subscription_card(self, subscription: Ref, payment_method: Ref) -> None:
        self._call(self._client.subscriptions.update, _own(subscription), params={
            "default_payment_method": _own(payment_method)})

    # --- payments --------------------------------------------------------------------

    def pay_invoice(self, invoice: Ref, payment_method: Ref | None,
                    idempotency_key: str) -> PaymentOutcome:
        params = {"off_session": True}
        if payment_method is not None:
            params["payment_method"] = _own(payment_method)
        try:
            paid = self._call(self._client.invoices.pay, _own(invoice), params=params,
                              options={"idempotency_key": idempotency_key})
        except CardDeclined as declined:
            if declined.processor_code in _ACTION_CODES:
                return PaymentOutcome("requires_action",
                                      "Your bank asks you to confirm this payment.",
                                      client_secret=declined.client_secret)
            return PaymentOutcome("declined", declined.message)
        if paid.status == "paid":
            return PaymentOutcome("paid")
        return self._unpaid_outcome(paid)

    def _unpaid_outcome(self, invoice) -> PaymentOutcome:
        """An invoice still open after paying without an error: its PaymentIntent says
        why (it needs the customer's bank, or the card was declined). Stripe answers such
        payments with a card error, handled above; localstripe answers like this."""
        intent = invoice.to_dict().get("payment_intent")
        if isinstance(intent, str):
            try:
                intent = self._call(self._client.payment_intents.retrieve, intent).to_dict()
            except ProcessorError:
                intent = None
        intent = intent if isinstance(intent, dict) else {}
        if intent.get("status") == "requires_action":
            return PaymentOutcome("requires_action", "Your bank asks you to confirm this payment.",
                                  client_secret=intent.get("client_secret"))
        error = intent.get("last_payment_error") or {}
        return PaymentOutcome("declined", error.get("message") or "The payment did not go through.")

    def refund(self, payment: Ref, amount: int | None, currency: str | None,
               idempotency_key: str) -> Ref:
        params = {"payment_intent" if payment.id.startswith("pi_") else "charge": _own(payment)}
        if amount is not None:
            if not currency:
                raise AmountNotAccepted("A partial refund needs its currency.")
            try:
                params["amount"] = currencies.from_stored(amount, currency)
            except ValueError as exc:
                raise AmountNotAccepted(str(exc)) from None
        refund = self._call(self._client.refunds.create, params=params,
                            options={"idempotency_key": idempotency_key})
        return _ref(refund.id)

    # --- who owns an object -------------------------------------------------------------

    # The objects a webhook names that can lead to a customer, by id prefix, and the
    # fields holding an e-mail when the object has no customer (a guest payment).
    _OWNED: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "ch_": ("charges", ("billing_details.email", "receipt_email")),
        "py_": ("charges", ("billing_details.email", "receipt_email")),
        "pi_": ("payment_intents", ("receipt_email",)),
        "in_": ("invoices", ("customer_email",)),
        "sub_": ("subscriptions", ()),
    }

    def owner_of(self, obj: Ref) -> Owner | None:
        """The customer (and e-mail) of a charge, payment, invoice or subscription, as
        Stripe has it; None when Stripe does not know the object (deleted, or another
        account's). Network and 5xx failures raise ProcessorUnavailable."""
        kind = next((v for prefix, v in self._OWNED.items() if _own(obj).startswith(prefix)), None)
        if kind is None:
            return None
        resource, email_fields = kind
        try:
            found = self._call(getattr(self._client, resource).retrieve, obj.id).to_dict()
        except ProcessorError as exc:
            if isinstance(exc.__cause__, self._stripe.InvalidRequestError) and \
                    getattr(exc.__cause__, "http_status", None) == 404:
                return None
            raise
        customer = found.get("customer")
        if isinstance(customer, dict):
            customer = customer.get("id")
        email = None
        for path in email_fields:
            value = found
            for name in path.split("."):
                value = value.get(name) if isinstance(value, dict) else None
            if isinstance(value, str) and value:
                email = value
                break
        if isinstance(customer, str) and customer and email is None:
            try:
                email = self._call(self._client.customers.retrieve, customer).to_dict().get("email")
            except ProcessorError as exc:
                if getattr(exc.__cause__, "http_status", None) != 404:
                    raise
        return Owner(customer=_ref(customer) if isinstance(customer, str) and customer else None,
                     email=email if isinstance(email, str) else None)

    # --- subscriptions ----------------------------------------------------------------

    def cancel_at_period_end(self, subscription: Ref, reason: str | None) -> None:
        params: dict = {"cancel_at_period_end": True}
        if reason:
            params["cancellation_details"] = {"comment": reason[:500]}
        self._call(self._client.subscriptions.update, _own(subscription), params=params)

    def undo_cancel(self, subscription: Ref) -> None:
        self._call(self._client.subscriptions.update, _own(subscription),
                   params={"cancel_at_period_end": False})
