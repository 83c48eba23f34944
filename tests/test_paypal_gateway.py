"""The PayPal gateway (chalicelib/processors/paypal/gateway.py) against devstack's PayPal
stand-in over HTTPS: cancel, suspend / activate, capture of the outstanding balance,
refunds of v2 captures and v1 sales with PayPal-Request-Id, a subscription's transactions;
each request body checked against the schema copied from PayPal's OpenAPI documents
(tests/fixtures/paypal/request-schemas.json); what PayPal does not have is refused before
any call with "PayPal does not support …"."""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import jsonschema
import pytest
from test_paypal_webhooks import PayPalStory, PayPalStub

from chalicelib.domain.events import Ref
from chalicelib.processors.gateway import (
    AmountNotAccepted,
    CustomerChanges,
    NotSupported,
    ProcessorUnavailable,
    RefundRefused,
)
from chalicelib.processors.paypal.gateway import (
    CANCEL_LEAD_SECONDS,
    PayPalGateway,
    PayPalRefused,
    due_cancel_time,
    paypal_amount,
)

SCHEMAS = json.loads((Path(__file__).parent / "fixtures" / "paypal" /
                      "request-schemas.json").read_text())["requests"]


@pytest.fixture(scope="module")
def stub(stack) -> PayPalStub:
    return PayPalStub(stack.paypal.url)


@pytest.fixture(scope="module")
def gateway(stack) -> PayPalGateway:
    return PayPalGateway("AZgw" + secrets.token_hex(6), "EJgw" + secrets.token_hex(8), "sandbox")


def _closed(schema: dict) -> dict:
    """The documented schema, also refusing fields it does not name (PayPal's documents
    leave additionalProperties open; the gateway should send only documented fields)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def assert_documented(request: dict, operation: str) -> None:
    spec = SCHEMAS[operation]
    jsonschema.validate(request.get("body") or {}, _closed(spec["body"]))
    if request.get("request_id"):
        assert "PayPal-Request-Id" in spec["headers"], operation


def _served(stub: PayPalStub, path: str) -> list[dict]:
    return [r for r in stub.served() if r["path"] == path]


def _events(stub: PayPalStub, resource_id: str) -> list[str]:
    return [e["event_type"] for e in stub.call("GET", "/_stub/events")
            if e["resource"].get("id") == resource_id
            or e["resource"].get("billing_agreement_id") == resource_id]


def _subscription(stub: PayPalStub, status="ACTIVE", outstanding="0.00", currency="USD") -> str:
    story = PayPalStory(f"gw.{secrets.token_hex(4)}@example.com")
    obj = story.subscription_object(status=status, outstanding=outstanding)
    obj["billing_info"]["outstanding_balance"]["currency_code"] = currency
    stub.put("subscriptions", story.sub_id, obj)
    return story.sub_id


def _capture(stub: PayPalStub, value="20.00", currency="USD") -> str:
    capture_id = secrets.token_hex(8).upper()
    stub.put("captures", capture_id, {"id": capture_id, "status": "COMPLETED",
                                      "amount": {"currency_code": currency, "value": value}})
    return capture_id


def test_registry_gives_the_paypal_gateway_for_paypal_objects():
    from chalicelib.processors.registry import gateway_for

    account = {"paypal": {"client_id": "AZx", "mode": "sandbox"}, "paypal_client_secret": "EJx"}
    assert isinstance(gateway_for(account, "paypal"), PayPalGateway)


def test_cancel_now_cancels_at_paypal_once_with_the_documented_body(gateway, stub):
    sub_id = _subscription(stub)
    ref = Ref("paypal", sub_id)
    gateway.cancel_now(ref, prorate=False, invoice_now=False, reason="x" * 300,
                       idempotency_key="k1")
    [request] = _served(stub, f"/v1/billing/subscriptions/{sub_id}/cancel")
    assert_documented(request, "POST /v1/billing/subscriptions/{id}/cancel")
    assert len(request["body"]["reason"]) == 128
    assert gateway.subscription(sub_id)["status"] == "CANCELLED"
    assert _events(stub, sub_id) == ["BILLING.SUBSCRIPTION.CANCELLED"]
    # Sent again after an unknown outcome: PayPal's 422 on a cancelled one is success.
    gateway.cancel_now(ref, prorate=False, invoice_now=False, reason=None, idempotency_key="k1")
    assert len(_served(stub, f"/v1/billing/subscriptions/{sub_id}/cancel")) == 2
    assert _events(stub, sub_id) == ["BILLING.SUBSCRIPTION.CANCELLED"]


def test_cancel_of_a_subscription_paypal_does_not_bill_is_refused_with_paypals_issue(gateway, stub):
    sub_id = _subscription(stub, status="APPROVAL_PENDING")
    with pytest.raises(PayPalRefused) as refused:
        gateway.cancel_now(Ref("paypal", sub_id), prorate=False, invoice_now=False,
                           reason=None, idempotency_key="k")
    assert refused.value.issue == "SUBSCRIPTION_STATUS_INVALID"
    assert refused.value.status == 409 and "active or suspended" in refused.value.message
    with pytest.raises(PayPalRefused):
        gateway.cancel_at_period_end(Ref("paypal", sub_id), None)
    with pytest.raises(PayPalRefused):
        gateway.cancel_now(Ref("paypal", "I-NOSUCHSUB" + secrets.token_hex(3).upper()),
                           prorate=False, invoice_now=False, reason=None, idempotency_key="k")


def test_prorated_cancel_is_not_supported_and_calls_nothing(gateway, stub):
    sub_id = _subscription(stub)
    with pytest.raises(NotSupported, match="PayPal does not support prorating"):
        gateway.cancel_now(Ref("paypal", sub_id), prorate=True, invoice_now=True, reason=None,
                           idempotency_key="k")
    assert _served(stub, f"/v1/billing/subscriptions/{sub_id}/cancel") == []
    assert gateway.subscription(sub_id)["status"] == "ACTIVE"


def test_period_end_cancel_is_kept_by_us_and_due_48_hours_before_the_next_billing(gateway, stub):
    sub_id = _subscription(stub)
    gateway.cancel_at_period_end(Ref("paypal", sub_id), "too expensive")
    gateway.undo_cancel(Ref("paypal", sub_id))
    assert gateway.subscription(sub_id)["status"] == "ACTIVE"  # nothing asked of PayPal
    assert _served(stub, f"/v1/billing/subscriptions/{sub_id}/cancel") == []
    sub = {"processor_ref": f"paypal:{sub_id}", "cancel_at_period_end": True,
           "current_period_end": 1_800_000_000}
    assert due_cancel_time(sub) == 1_800_000_000 - CANCEL_LEAD_SECONDS == 1_800_000_000 - 172800
    assert due_cancel_time({**sub, "cancel_at_period_end": False}) is None
    assert due_cancel_time({**sub, "processor_ref": "stripe:sub_1"}) is None
    assert due_cancel_time({**sub, "current_period_end": None}) is None
    # Once PayPal has ended it, it cannot be kept.
    gateway.cancel_now(Ref("paypal", sub_id), prorate=False, invoice_now=False, reason=None,
                       idempotency_key="k")
    with pytest.raises(PayPalRefused, match="cannot be kept"):
        gateway.undo_cancel(Ref("paypal", sub_id))


def test_pause_is_suspend_and_resume_is_activate(gateway, stub):
    sub_id = _subscription(stub)
    ref = Ref("paypal", sub_id)
    gateway.pause_collection(ref, "void", None, idempotency_key="k")
    assert gateway.subscription(sub_id)["status"] == "SUSPENDED"
    [request] = _served(stub, f"/v1/billing/subscriptions/{sub_id}/suspend")
    assert_documented(request, "POST /v1/billing/subscriptions/{id}/suspend")
    gateway.pause_collection(ref, "void", None, idempotency_key="k")  # again: already so
    gateway.resume_collection(ref, idempotency_key="k2")
    assert gateway.subscription(sub_id)["status"] == "ACTIVE"
    [request] = _served(stub, f"/v1/billing/subscriptions/{sub_id}/activate")
    assert_documented(request, "POST /v1/billing/subscriptions/{id}/activate")
    assert _events(stub, sub_id) == ["BILLING.SUBSCRIPTION.SUSPENDED",
                                     "BILLING.SUBSCRIPTION.ACTIVATED"]
    with pytest.raises(NotSupported, match="PayPal does not support resuming"):
        gateway.pause_collection(ref, "void", int(time.time()) + 86400, idempotency_key="k3")
    with pytest.raises(NotSupported, match="PayPal does not support keeping"):
        gateway.pause_collection(ref, "keep_as_draft", None, idempotency_key="k3")
    assert len(_served(stub, f"/v1/billing/subscriptions/{sub_id}/suspend")) == 2


def test_capture_outstanding_pays_once_per_request_id(gateway, stub):
    sub_id = _subscription(stub, outstanding="10.00")
    ref = Ref("paypal", sub_id)
    key = "act_" + secrets.token_hex(6) + ":pay"
    outcome = gateway.pay_invoice(Ref("paypal", f"due_{sub_id}_1735812000"), None, key)
    assert outcome.status == "paid"
    [request] = _served(stub, f"/v1/billing/subscriptions/{sub_id}/capture")
    assert_documented(request, "POST /v1/billing/subscriptions/{id}/capture")
    assert request["request_id"] == key
    assert request["body"]["amount"] == {"currency_code": "USD", "value": "10.00"}
    assert gateway.subscription(sub_id)["billing_info"]["outstanding_balance"]["value"] == "0.00"
    assert _events(stub, sub_id) == ["PAYMENT.SALE.COMPLETED", "BILLING.SUBSCRIPTION.UPDATED"]
    # A repeat of the action finds nothing outstanding: paid, nothing captured twice.
    assert gateway.capture_outstanding(ref, key).status == "paid"
    [txn] = gateway.transactions(ref, int(time.time()) - 3600, int(time.time()) + 3600)
    assert (txn.status, txn.amount, txn.currency) == ("COMPLETED", 1000, "usd")
    [listed] = _served(stub, f"/v1/billing/subscriptions/{sub_id}/transactions")
    assert "start_time=" in listed["query"] and "end_time=" in listed["query"]


def test_capture_outstanding_declined_and_a_card_choice_not_supported(gateway, stub):
    sub_id = _subscription(stub, outstanding="5.00")
    obj = gateway.subscription(sub_id)
    stub.put("subscriptions", sub_id, {**obj, "_stub_decline_capture": True})
    outcome = gateway.capture_outstanding(Ref("paypal", sub_id), "k-decl")
    assert outcome.status == "declined" and "PayPal declined" in outcome.message
    with pytest.raises(NotSupported, match="PayPal does not support choosing the payment"):
        gateway.pay_invoice(Ref("paypal", f"due_{sub_id}_1"), Ref("paypal", "card_X"), "k")


def test_refund_of_a_v2_capture_partial_then_the_rest_idempotent(gateway, stub):
    capture_id = _capture(stub, "20.00")
    payment = Ref("paypal", f"txn_{capture_id}")
    first = gateway.create_refund(payment, 750, "usd", "requested_by_customer", "key-1")
    again = gateway.create_refund(payment, 750, "usd", "requested_by_customer", "key-1")
    assert first == again and (first.amount, first.currency, first.status) == (750, "usd",
                                                                               "succeeded")
    assert first.refund.id.startswith("refund_")
    served = _served(stub, f"/v2/payments/captures/{capture_id}/refund")
    assert [r["request_id"] for r in served] == ["key-1", "key-1"]
    for request in served:
        assert_documented(request, "POST /v2/payments/captures/{capture_id}/refund")
    assert served[0]["body"] == {"amount": {"currency_code": "USD", "value": "7.50"}}
    with pytest.raises(RefundRefused) as refused:
        gateway.create_refund(payment, 1300, "usd", None, "key-2")
    assert refused.value.processor_code == "REFUND_AMOUNT_EXCEEDED"
    rest = gateway.create_refund(payment, None, "usd", None, "key-3")
    assert rest.amount == 1250
    assert _served(stub, f"/v2/payments/captures/{capture_id}/refund")[-1]["body"] == {}
    assert gateway.capture(capture_id)["status"] == "REFUNDED"
    assert _events(stub, capture_id) == []  # refunds name their capture in the up link
    refunds = [e for e in stub.call("GET", "/_stub/events")
               if e["event_type"] == "PAYMENT.CAPTURE.REFUNDED" and
               any(capture_id in link["href"] for link in e["resource"]["links"])]
    assert len(refunds) == 2


def test_refund_amounts_in_paypals_units(gateway, stub):
    assert paypal_amount(100000, "huf") == "1000" and paypal_amount(1234, "jpy") == "1234"
    assert paypal_amount(5, "usd") == "0.05" and paypal_amount(1234, "kwd") == "1.234"
    capture_id = _capture(stub, "1000", "HUF")
    with pytest.raises(AmountNotAccepted):
        gateway.create_refund(Ref("paypal", f"txn_{capture_id}"), 50050, "huf", None, "k")
    assert _served(stub, f"/v2/payments/captures/{capture_id}/refund") == []
    outcome = gateway.create_refund(Ref("paypal", f"txn_{capture_id}"), 50000, "huf", None, "k")
    assert (outcome.amount, outcome.currency) == (50000, "huf")


def test_refund_of_a_subscriptions_v1_sale(gateway, stub):
    sub_id = _subscription(stub, outstanding="10.00")
    gateway.capture_outstanding(Ref("paypal", sub_id), "k-sale")
    [txn] = gateway.transactions(Ref("paypal", sub_id), int(time.time()) - 60,
                                 int(time.time()) + 60)
    sale_id = txn.payment.id.removeprefix("txn_")
    outcome = gateway.create_refund(txn.payment, 400, "usd", None, "k-refund")
    assert (outcome.amount, outcome.status) == (400, "succeeded")
    # The capture refund does not know a sale (404); the sale's own refund call made it.
    assert len(_served(stub, f"/v2/payments/captures/{sale_id}/refund")) == 1
    [request] = _served(stub, f"/v1/payments/sale/{sale_id}/refund")
    assert request["request_id"] == "k-refund"
    assert_documented(request, "POST /v1/payments/sale/{sale_id}/refund")
    assert request["body"] == {"amount": {"currency": "USD", "total": "4.00"}}
    assert gateway.sale(sale_id)["state"] == "partially_refunded"
    with pytest.raises(RefundRefused):
        gateway.create_refund(txn.payment, 700, "usd", None, "k-too-much")
    with pytest.raises(RefundRefused, match="does not know"):
        gateway.create_refund(Ref("paypal", "txn_NOSUCH" + secrets.token_hex(4).upper()), None,
                              "usd", None, "k")


def test_disputes_of_a_payment_as_paypals_disputes_api_has_them(gateway, stub):
    """A refund of a disputed payment asks this (actions.refunds): refundable while the
    payer and the merchant settle it (inquiry) or once the merchant won; not in a claim
    (PayPal holds the money) nor once lost."""
    from chalicelib.processors.gateway import DisputeState

    capture_id = _capture(stub)
    payment = Ref("paypal", f"txn_{capture_id}")
    assert gateway.disputes_of(payment) == []
    # One list call for this payment (the stand-in is the session's: other tests list too).
    [listed] = [r for r in _served(stub, "/v1/customer/disputes") if capture_id in r["query"]]
    assert listed["query"] == f"disputed_transaction_id={capture_id}"
    dispute_id = "PP-D-" + secrets.token_hex(4).upper()
    other = _capture(stub)  # another payment's dispute is not this one's
    stub.call("POST", f"/_stub/disputes/PP-D-{secrets.token_hex(4).upper()}", {
        "transaction_id": other, "amount": {"currency_code": "USD", "value": "20.00"}})
    ref = Ref("paypal", f"dispute_{dispute_id}")
    for change, expected in [
            ({}, DisputeState(ref, "waiting_for_seller_response", True)),
            ({"stage": "CHARGEBACK", "status": "UNDER_REVIEW"},
             DisputeState(ref, "under_review", False)),
            ({"stage": "CHARGEBACK", "status": "RESOLVED", "outcome": "RESOLVED_SELLER_FAVOUR"},
             DisputeState(ref, "won", True)),
            ({"stage": "CHARGEBACK", "status": "RESOLVED", "outcome": "RESOLVED_BUYER_FAVOUR"},
             DisputeState(ref, "lost", False))]:
        stub.call("POST", f"/_stub/disputes/{dispute_id}", {
            "transaction_id": capture_id, "amount": {"currency_code": "USD", "value": "20.00"},
            **change})
        assert gateway.disputes_of(payment) == [expected], change
    assert _served(stub, f"/v1/customer/disputes/{dispute_id}")
    # A dispute that leaves nothing to refund is not refundable, whatever its stage.
    stub.put("disputes", dispute_id, {
        **gateway._get(f"/v1/customer/disputes/{dispute_id}"), "status": "OPEN",
        "dispute_life_cycle_stage": "INQUIRY",
        "refund_details": {"allowed_refund_amount": {"currency_code": "USD", "value": "0.00"}}})
    assert gateway.disputes_of(payment) == [DisputeState(ref, "open", False)]


@pytest.mark.parametrize("call", [
    lambda g: g.create_card_setup(Ref("paypal", "payer_X")),
    lambda g: g.list_cards(Ref("paypal", "payer_X")),
    lambda g: g.set_subscription_card(Ref("paypal", "I-X"), Ref("paypal", "card_X")),
    lambda g: g.preview_plan_change(Ref("paypal", "I-X"), "P-2", True, 0),
    lambda g: g.change_plan(Ref("paypal", "I-X"), "P-2", True, 0, "k"),
    lambda g: g.update_customer(Ref("paypal", "payer_X"), CustomerChanges(name="A"), "k"),
    lambda g: g.block_value("email", "a@example.com", "k"),
    lambda g: g.create_payment_link(1000, "usd", "Repayment", {}, "k"),
])
def test_what_paypal_does_not_have_is_a_clear_422(gateway, call):
    with pytest.raises(NotSupported) as refused:
        call(gateway)
    assert refused.value.status == 422 and refused.value.message.startswith(
        "PayPal does not support")


@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_an_unknown_outcome_is_unavailable_never_a_refusal(gateway, monkeypatch, status):
    """409 (an earlier call with this request id still running), 429 and 5xx: the refund
    may be made; the refund action keeps its hold and retries with the same key."""
    monkeypatch.setattr(gateway, "_call", lambda *a, **k: (status, {"name": "X"}))
    with pytest.raises(ProcessorUnavailable):
        gateway.create_refund(Ref("paypal", "txn_ABC"), 100, "usd", None, "k")
    if status != 409:  # a read has no request id
        with pytest.raises(ProcessorUnavailable):
            gateway.subscription("I-ABC")
