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
    BLOCK_KINDS,
    PAUSE_BEHAVIORS,
    REFUND_REASONS,
    AmountNotAccepted,
    Capabilities,
    CardDeclined,
    CardSetup,
    CustomerChanges,
    DisputeState,
    InvoiceState,
    PaymentLink,
    PaymentOutcome,
    PlanChangePreview,
    PreviewLine,
    PriceOption,
    ProcessorError,
    ProcessorUnavailable,
    RefundOutcome,
    RefundRefused,
    SavedCard,
)
from chalicelib.processors.stripe import currencies

PROCESSOR = "stripe"
# Codes with which Stripe says a payment needs the customer to authenticate (3-D Secure).
_ACTION_CODES = {"authentication_required", "invoice_payment_intent_requires_action"}
# The Radar value lists blocks are pushed to (one per kind, created on first use), with
# Stripe's item type of each.
VALUE_LISTS = {
    "email": ("bp_blocked_emails", "Blocked e-mails (billing portal)", "email"),
    "card_fingerprint": ("bp_blocked_cards", "Blocked cards (billing portal)",
                         "card_fingerprint"),
    "customer_id": ("bp_blocked_customers", "Blocked customers (billing portal)",
                    "customer_id"),
}
ADDRESS_FIELDS = ("line1", "line2", "postal_code", "city", "state", "country")
# The most prices a plan change offers (Stripe lists 100 a page): past it the form asks for
# the price id instead.
MAX_PRICES = 300


def _options(idempotency_key: str | None) -> dict:
    return {"idempotency_key": idempotency_key} if idempotency_key else {}


def _ref(stripe_id: str) -> Ref:
    return Ref(PROCESSOR, stripe_id)


def _own(ref: Ref) -> str:
    if ref.processor != PROCESSOR:
        raise ValueError(f"not a Stripe object: {ref}")
    return ref.id


class StripeGateway:
    # Seconds to wait for Stripe's answer (the library's default, 80, outlives API
    # Gateway's 29 s): past it the outcome is unknown and the call is retried with the
    # same idempotency key (``max_network_retries``), then reported as unavailable.
    TIMEOUT_SECONDS: ClassVar[float] = 20
    capabilities: ClassVar[Capabilities] = Capabilities(
        cancel_now_prorate=True, pause_behaviors=PAUSE_BEHAVIORS, pause_resumes_at=True,
        change_plan=True, retry_other_card=True, block_lists=True)

    def __init__(self, secret_key: str, api_base: str = "", http_client=None,
                 max_network_retries: int = 2):
        import stripe  # heavy; only the self-service paths need it

        self._stripe = stripe
        kwargs = {"max_network_retries": max_network_retries}
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        kwargs["http_client"] = http_client if http_client is not None else \
            stripe.RequestsClient(timeout=self.TIMEOUT_SECONDS)
        self._client = stripe.StripeClient(secret_key, **kwargs).v1

    # --- errors --------------------------------------------------------------------

    def _call(self, fn, *args, **kwargs):
        stripe = self._stripe
        try:
            return fn(*args, **kwargs)
        except stripe.CardError as exc:
            declined = CardDeclined(exc.user_message or "Your card was declined.")
            declined.processor_code = exc.code
            declined.decline_code = getattr(exc.error, "decline_code", None) \
                if exc.error else None
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
                exp_month=card.get("exp_month"), exp_year=card.get("exp_year")),
                fingerprint=card.get("fingerprint") or None))
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
            return PaymentOutcome("declined", declined.message,
                                  decline_code=getattr(declined, "decline_code", None)
                                  or declined.processor_code)
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
        return PaymentOutcome("declined", error.get("message") or "The payment did not go through.",
                              decline_code=error.get("decline_code") or error.get("code"))

    def invoice_state(self, invoice: Ref) -> InvoiceState:
        found = self._call(self._client.invoices.retrieve, _own(invoice)).to_dict()
        intent = found.get("payment_intent")
        if isinstance(intent, str):
            try:
                intent = self._call(self._client.payment_intents.retrieve, intent).to_dict()
            except ProcessorError:
                intent = None
        error = (intent if isinstance(intent, dict) else {}).get("last_payment_error") or {}
        card = found.get("default_payment_method")
        subscription = found.get("subscription")
        if not card and isinstance(subscription, str):
            card = self._call(self._client.subscriptions.retrieve,
                              subscription).to_dict().get("default_payment_method")
        if not card and isinstance(found.get("customer"), str):
            customer = self._call(self._client.customers.retrieve, found["customer"]).to_dict()
            card = (customer.get("invoice_settings") or {}).get("default_payment_method")
        card = card.get("id") if isinstance(card, dict) else card
        fingerprint = None
        if card:
            method = self._call(self._client.payment_methods.retrieve, card).to_dict()
            fingerprint = (method.get("card") or {}).get("fingerprint") or None
        return InvoiceState(
            status=found.get("status") or "open", amount_due=found.get("amount_due"),
            currency=found.get("currency"), attempt_count=found.get("attempt_count") or 0,
            decline_code=error.get("decline_code") or error.get("code"),
            failure_message=error.get("message"),
            payment_method=_ref(card) if card else None, card_fingerprint=fingerprint)

    def stop_automatic_collection(self, invoice: Ref, idempotency_key: str) -> None:
        self._call(self._client.invoices.update, _own(invoice),
                   params={"auto_advance": False}, options=_options(idempotency_key))

    def create_refund(self, payment: Ref, amount: int | None, currency: str,
                      reason: str | None, idempotency_key: str,
                      metadata: dict[str, str] | None = None) -> RefundOutcome:
        params = {"payment_intent" if payment.id.startswith("pi_") else "charge": _own(payment)}
        if amount is not None:
            try:
                params["amount"] = currencies.from_stored(amount, currency)
            except ValueError as exc:
                raise AmountNotAccepted(str(exc)) from None
        if reason is not None:
            if reason not in REFUND_REASONS:
                raise ValueError(f"not a refund reason: {reason!r}")
            params["reason"] = reason
        if metadata:
            params["metadata"] = metadata
        try:
            refund = self._call(self._client.refunds.create, params=params,
                                options={"idempotency_key": idempotency_key})
        except ProcessorUnavailable:
            raise
        except ProcessorError as exc:
            cause = exc.__cause__
            if isinstance(cause, self._stripe.InvalidRequestError | self._stripe.CardError):
                detail = getattr(cause, "user_message", None) or \
                    (cause.error.message if getattr(cause, "error", None) else None)
                refused = RefundRefused(f"Stripe refused the refund: {detail or 'no reason given'}")
                refused.processor_code = getattr(cause, "code", None)
                raise refused from None
            raise
        found = refund.to_dict()
        return RefundOutcome(
            refund=_ref(found["id"]),
            amount=currencies.to_stored(int(found.get("amount") or 0), found.get("currency") or
                                        currency),
            currency=(found.get("currency") or currency).lower(),
            status=found.get("status") or "pending")

    def disputes_of(self, payment: Ref) -> list[DisputeState]:
        """The disputes of a charge (or of an intent's charge), as Stripe has them now."""
        charge = _own(payment)
        if charge.startswith("pi_"):
            intent = self._call(self._client.payment_intents.retrieve, charge).to_dict()
            latest = intent.get("latest_charge")
            charge = latest.get("id") if isinstance(latest, dict) else latest
            if not charge:
                return []
        page = self._call(self._client.disputes.list, params={"charge": charge, "limit": 100})
        found = [d.to_dict() for d in page.data]
        return [DisputeState(dispute=_ref(d["id"]), status=d.get("status") or "",
                             refundable=bool(d.get("is_charge_refundable")))
                for d in found]

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

    def cancel_at_period_end(self, subscription: Ref, reason: str | None,
                             idempotency_key: str | None = None) -> None:
        params: dict = {"cancel_at_period_end": True}
        if reason:
            params["cancellation_details"] = {"comment": reason[:500]}
        self._call(self._client.subscriptions.update, _own(subscription), params=params,
                   options=_options(idempotency_key))

    def undo_cancel(self, subscription: Ref, idempotency_key: str | None = None) -> None:
        self._call(self._client.subscriptions.update, _own(subscription),
                   params={"cancel_at_period_end": False}, options=_options(idempotency_key))

    def cancel_now(self, subscription: Ref, *, prorate: bool, invoice_now: bool,
                   reason: str | None, idempotency_key: str) -> None:
        # A DELETE: Stripe ignores idempotency keys on it (deleting twice is refused by
        # the subscription's own state), so none is sent.
        del idempotency_key
        params: dict = {"prorate": prorate, "invoice_now": invoice_now}
        if reason:
            params["cancellation_details"] = {"comment": reason[:500]}
        self._call(self._client.subscriptions.cancel, _own(subscription), params=params)

    def _item_id(self, subscription: Ref) -> str:
        sub = self._call(self._client.subscriptions.retrieve, _own(subscription)).to_dict()
        items = (sub.get("items") or {}).get("data") or []
        if len(items) != 1:
            raise ProcessorError("Only a subscription of one price can change its plan here.")
        return items[0]["id"]

    def _behavior(self, prorate: bool) -> str:
        return "create_prorations" if prorate else "none"

    def preview_plan_change(self, subscription: Ref, price: str, prorate: bool,
                            proration_date: int) -> PlanChangePreview:
        invoice = self._call(self._client.invoices.create_preview, params={
            "subscription": _own(subscription),
            "subscription_details": {
                "items": [{"id": self._item_id(subscription), "price": price}],
                "proration_behavior": self._behavior(prorate),
                "proration_date": proration_date,
            }}).to_dict()
        currency = invoice.get("currency") or ""
        lines = []
        for line in (invoice.get("lines") or {}).get("data") or []:
            # Older API versions say proration on the line, newer ones on its parent.
            parent = (line.get("parent") or {})
            details = parent.get("subscription_item_details") or \
                parent.get("invoice_item_details") or {}
            proration = bool(line.get("proration") or details.get("proration"))
            lines.append(PreviewLine(description=line.get("description") or "",
                                     amount=currencies.to_stored(line.get("amount") or 0,
                                                                 currency),
                                     proration=proration))
        return PlanChangePreview(
            currency=currency, proration_date=proration_date,
            proration_amount=sum(line.amount for line in lines if line.proration),
            amount_due=currencies.to_stored(invoice.get("amount_due") or 0, currency),
            next_payment_at=invoice.get("next_payment_attempt"), lines=tuple(lines))

    def change_plan(self, subscription: Ref, price: str, prorate: bool, proration_date: int,
                    idempotency_key: str) -> None:
        self._call(self._client.subscriptions.update, _own(subscription), params={
            "items": [{"id": self._item_id(subscription), "price": price}],
            "proration_behavior": self._behavior(prorate), "proration_date": proration_date,
        }, options=_options(idempotency_key))

    def list_prices(self, currency: str) -> list[PriceOption]:
        """Stripe's active recurring prices in ``currency``, with their product's name
        (``expand[]=data.product``); prices of an archived product are left out. At most
        MAX_PRICES: more raise ProcessorError (the form then asks for the id)."""
        page = self._call(self._client.prices.list, params={
            "active": True, "type": "recurring", "currency": currency.lower(), "limit": 100,
            "expand": ["data.product"]})
        out: list[PriceOption] = []
        for price in self._call(lambda: list(page.auto_paging_iter())):
            found = price.to_dict()
            product = found.get("product")
            product = product if isinstance(product, dict) else {}
            if product.get("active") is False or product.get("deleted"):
                continue
            recurring = found.get("recurring") or {}
            unit = found.get("unit_amount")
            code = (found.get("currency") or currency).lower()
            out.append(PriceOption(
                price=found["id"], product=product.get("name") or found.get("nickname"),
                amount=currencies.to_stored(unit, code) if isinstance(unit, int) else None,
                currency=code, interval=recurring.get("interval"),
                interval_count=int(recurring.get("interval_count") or 1)))
            if len(out) > MAX_PRICES:
                raise ProcessorError(f"There are more than {MAX_PRICES} prices in "
                                     f"{currency.upper()} to choose from.")
        return out

    def current_price(self, subscription: Ref) -> str | None:
        sub = self._call(self._client.subscriptions.retrieve, _own(subscription)).to_dict()
        items = (sub.get("items") or {}).get("data") or []
        if len(items) != 1:
            return None
        price = items[0].get("price") or items[0].get("plan") or {}
        return price.get("id") if isinstance(price, dict) else None

    def pause_collection(self, subscription: Ref, behavior: str, resumes_at: int | None,
                         idempotency_key: str) -> None:
        if behavior not in PAUSE_BEHAVIORS:
            raise ValueError(f"unknown pause behaviour {behavior!r}")
        pause: dict = {"behavior": behavior}
        if resumes_at:
            pause["resumes_at"] = resumes_at
        self._call(self._client.subscriptions.update, _own(subscription),
                   params={"pause_collection": pause}, options=_options(idempotency_key))

    def resume_collection(self, subscription: Ref, idempotency_key: str) -> None:
        # An empty value unsets the field (Stripe's way to resume collection).
        self._call(self._client.subscriptions.update, _own(subscription),
                   params={"pause_collection": ""}, options=_options(idempotency_key))

    # --- customers ----------------------------------------------------------------------

    def update_customer(self, customer: Ref, changes: CustomerChanges,
                        idempotency_key: str) -> None:
        params: dict = {name: getattr(changes, name) for name in ("name", "email", "phone")
                        if getattr(changes, name) is not None}
        if changes.address is not None:
            params["address"] = {k: str(changes.address.get(k) or "") for k in ADDRESS_FIELDS}
        if not params:
            return
        self._call(self._client.customers.update, _own(customer), params=params,
                   options=_options(idempotency_key))

    # --- Radar block lists ------------------------------------------------------------

    def _value_list(self, kind: str) -> str:
        if kind not in BLOCK_KINDS:
            raise ValueError(f"unknown block kind {kind!r}")
        alias, name, item_type = VALUE_LISTS[kind]
        found = self._call(self._client.radar.value_lists.list, params={"alias": alias})
        if found.data:
            return found.data[0].id
        try:
            return self._call(self._client.radar.value_lists.create, params={
                "alias": alias, "name": name, "item_type": item_type}).id
        except ProcessorError:
            # Created meanwhile by a concurrent block: use that one.
            found = self._call(self._client.radar.value_lists.list, params={"alias": alias})
            if found.data:
                return found.data[0].id
            raise

    def _listed(self, value_list: str, value: str) -> list:
        return self._call(self._client.radar.value_list_items.list, params={
            "value_list": value_list, "value": value}).data

    def block_value(self, kind: str, value: str, idempotency_key: str) -> None:
        value_list = self._value_list(kind)
        if self._listed(value_list, value):
            return
        try:
            self._call(self._client.radar.value_list_items.create, params={
                "value_list": value_list, "value": value}, options=_options(idempotency_key))
        except ProcessorError:
            if not self._listed(value_list, value):  # not a concurrent add of the same
                raise

    def unblock_value(self, kind: str, value: str) -> None:
        value_list = self._value_list(kind)
        for item in self._listed(value_list, value):
            self._call(self._client.radar.value_list_items.delete, item.id)

    # --- payment links (a lost dispute's repayment) ---------------------------------------

    def create_payment_link(self, amount: int, currency: str, description: str,
                            metadata: dict[str, str], idempotency_key: str) -> PaymentLink:
        try:
            unit_amount = currencies.from_stored(amount, currency)
        except ValueError as exc:
            raise AmountNotAccepted(str(exc)) from None
        link = self._call(self._client.payment_links.create, params={
            "line_items": [{"price_data": {"currency": currency.lower(),
                                           "unit_amount": unit_amount,
                                           "product_data": {"name": description[:250]}},
                            "quantity": 1}],
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            # Paid once: a second payment of the same link would take the money twice.
            "restrictions": {"completed_sessions": {"limit": 1}},
        }, options={"idempotency_key": idempotency_key}).to_dict()
        return PaymentLink(link=_ref(link["id"]), url=link["url"],
                           active=bool(link.get("active")))

    def deactivate_payment_link(self, link: Ref, idempotency_key: str) -> None:
        self._call(self._client.payment_links.update, _own(link), params={"active": False},
                   options=_options(idempotency_key))
