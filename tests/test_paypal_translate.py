"""Golden translations of each PayPal event family (chalicelib/processors/paypal/translate.py),
from the real bodies in tests/fixtures/paypal (and two synthetic ones built from PayPal's
OpenAPI schemas), plus PayPal's money and time forms."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from chalicelib.domain.events import Ref
from chalicelib.processors import paypal
from chalicelib.processors.errors import MalformedPayload
from chalicelib.processors.paypal.translate import translate
from chalicelib.processors.paypal.values import amount, parse_time

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "paypal"
SIGNED = {d["name"]: base64.b64decode(d["body_base64"]) for d in
          json.loads((FIXTURES / "signed-deliveries.json").read_text())["deliveries"]}


def P(paypal_id: str) -> Ref:
    return Ref("paypal", paypal_id)


def _translate(name: str):
    body = SIGNED[name] if name in SIGNED else (FIXTURES / "webhooks" / name).read_bytes()
    return translate(paypal.parse(body))


def _events(name: str) -> list[tuple[str, dict]]:
    t = _translate(name)
    return [] if t is None else [(type(e).__name__, {"customer": e.customer, "email": e.email,
                                                     **e.values()}) for e in t.events]


def _only(name: str, kind: str) -> dict:
    found = [values for k, values in _events(name) if k == kind]
    assert len(found) == 1, _events(name)
    return found[0]


def test_v2_subscription_created_and_its_subscriber():
    customer = _only("HOOK_SUBSCRIPTION_CREATED_v2", "CustomerChanged")
    assert customer == {"customer": None, "email": "customer@example.com", "name": "John Doe",
                        "address": customer["address"]}
    assert customer["address"].city == "San Jose" and customer["address"].country == "US"
    sub = _only("HOOK_SUBSCRIPTION_CREATED_v2", "SubscriptionChanged")
    assert sub["subscription"] == P("I-BW452GLLEP1G") and sub["status"] == "incomplete"
    assert sub["email"] == "customer@example.com" and sub["currency"] == "usd"
    assert sub["product"] == "P-5ML4271244454362WXNWU5NQ"
    assert sub["current_period_end"] == parse_time("2019-01-01T00:20:49Z")
    assert sub["started_at"] == parse_time("2018-11-01T00:00:00Z")
    # The simulator's create_time (month 19) is no date: the resource's time is used.
    assert _translate("HOOK_SUBSCRIPTION_CREATED_v2").occurred_at == parse_time("2018-12-10T21:20:49Z")


@pytest.mark.parametrize("name,status", [
    ("HOOK_SUBSCRIPTION_ACTIVATED_v2", "past_due"),  # active with 10.00 outstanding
    ("HOOK_SUBSCRIPTION_SUSPENDED_V2", "paused"),
    ("HOOK_SUBSCRIPTION_CANCELLED_V2", "canceled"),
    ("HOOK_SUBSCRIPTION_EXPIRED_V2", "canceled"),
])
def test_v2_subscription_statuses(name, status):
    sub = _only(name, "SubscriptionChanged")
    assert sub["status"] == status
    if status == "canceled":
        assert sub["canceled_at"] == parse_time("2018-12-10T21:20:49Z")
        assert "current_period_end" not in sub


def test_v2_subscription_payment_failed_is_a_missed_payment_of_the_subscription():
    payment = _only("HOOK_SUBSCRIPTION_PAYMENT_FAILED_V2", "PaymentChanged")
    failed_at = parse_time("2019-01-01T01:20:49Z")
    assert payment == {"customer": P("payer_2J6QB8YJQSJRJ"), "email": "customer@example.com",
                       "payment": P(f"due_I-BW452GLLEP1G_{failed_at}"), "status": "failed",
                       "amount": 50000, "currency": "usd", "subscription": P("I-BW452GLLEP1G"),
                       "one_time": False, "description": "P-5ML4271244454362WXNWU5NQ",
                       "due_at": failed_at, "failure_message": "PAYMENT_DENIED"}


@pytest.mark.parametrize("name,status", [
    ("HOOK_SUBSCRIPTION_CREATED_v1", "incomplete"), ("HOOK_SUBSCRIPTION_CANCELLED_V1", "canceled"),
    ("billing.subscription.suspended.json", "paused"),
    ("billing.subscription.re-activated.json", "active"),
])
def test_legacy_agreements(name, status):
    sub = _only(name, "SubscriptionChanged")
    assert sub["subscription"] == P("I-PE7JWXKGVN0R") and sub["status"] == status
    assert sub["customer"] == P("payer_XLHKRXRA4H7QY") and sub["email"] == "coolbuyer@example.com"
    # REGULAR: 10.00 USD a month, 15 cycles: a payment plan of 15.
    assert (sub["amount"], sub["currency"], sub["interval"], sub["interval_count"],
            sub["installments"]) == (1000, "usd", "month", 1, 15)
    assert _only(name, "CustomerChanged")["name"] == "Cool Buyer"


def test_v1_sales():
    sale = _only("HOOK_PAYMENT_SALE_COMPLETED", "PaymentChanged")
    assert sale == {"customer": None, "email": None, "payment": P("txn_80021663DE681814L"),
                    "charge": P("txn_80021663DE681814L"),
                    "intent": P("payment_PAY-1PA12106FU478450MKRETS4A"), "status": "succeeded",
                    "amount": 48, "currency": "usd", "one_time": True,
                    "paid_at": parse_time("2014-10-23T17:22:56Z")}
    assert _translate("HOOK_PAYMENT_SALE_COMPLETED").owner_hints == (
        P("payment_PAY-1PA12106FU478450MKRETS4A"), P("txn_80021663DE681814L"))
    from_sub = _only("payment.sale.completed--from-subscription.json", "PaymentChanged")
    assert from_sub["subscription"] == P("I-W0Y05RHBK9VG") and from_sub["one_time"] is False
    assert "intent" not in from_sub and from_sub["amount"] == 499
    assert _translate("payment.sale.completed--from-subscription.json").owner_hints[0] == \
        P("I-W0Y05RHBK9VG")
    assert _only("payment.sale.denied.json", "PaymentChanged")["status"] == "failed"
    assert _only("payment.sale.denied.json", "PaymentChanged")["currency"] == "eur"
    pending = _only("payment.sale.pending.json", "PaymentChanged")
    assert pending["status"] == "pending"
    assert pending["failure_message"] == "RECEIVING_PREFERENCE_MANDATES_MANUAL_ACTION"


def test_sale_refunds_negative_totals_are_positive_refunds():
    signed = _only("HOOK_PAYMENT_SALE_REFUNDED", "RefundChanged")
    assert signed == {"customer": None, "email": None, "refund": P("refund_6YX43824R4443062K"),
                      "amount": 1, "currency": "usd", "status": "succeeded",
                      "charge": P("txn_9T0916710M1105906"),
                      "created_at": parse_time("2014-10-31T15:41:51Z")}
    unsigned = _only("payment.sale.refunded.json", "RefundChanged")
    assert unsigned["amount"] == 2 and unsigned["reason"] == "refund"
    # A reversal that names no sale has nothing to be filed under: recorded, ignored.
    assert _events("HOOK_PAYMENT_SALE_REVERSED") == []
    assert _events("payment.sale.reversed.json") == []


def test_v2_captures():
    capture = _only("HOOK_PAYMENT_CAPTURE_COMPLETED_V2", "PaymentChanged")
    assert capture == {"customer": None, "email": None, "payment": P("txn_12A34567BC123456S"),
                       "charge": P("txn_12A34567BC123456S"), "intent": P("order_1AB234567A1234567"),
                       "status": "succeeded", "amount": 3000, "currency": "usd", "one_time": True,
                       "paid_at": parse_time("2022-08-23T18:29:50Z")}
    assert _translate("HOOK_PAYMENT_CAPTURE_COMPLETED_V2").owner_hints[0] == P("order_1AB234567A1234567")
    pending = _only("HOOK_PAYMENT_CAPTURE_PENDING_V2", "PaymentChanged")
    assert (pending["status"], pending["failure_message"], pending["intent"]) == (
        "pending", "unilateral", P("order_8PR65097T8571330M"))  # from the up link
    declined = _only("HOOK_PAYMENT_CAPTURE_DECLINED_V2", "PaymentChanged")
    assert declined["status"] == "failed" and declined["amount"] == 18510
    assert declined["intent"] == P("order_48R416400V564864N")  # related_ids, not the up link
    v1 = _only("payment.capture.completed.json", "PaymentChanged")
    assert v1["status"] == "succeeded" and v1["intent"] == P("payment_PAY-3YE025760C441402AKTRY2PQ")


def test_v2_refunds_and_reversals_name_their_capture_by_the_up_link():
    refund = _only("HOOK_PAYMENT_CAPTURE_REFUNDED_V2", "RefundChanged")
    assert refund == {"customer": None, "email": None, "refund": P("refund_1Y107995YT783435V"),
                      "amount": 99, "currency": "usd", "status": "succeeded",
                      "charge": P("txn_0JF852973C016714D"),
                      "created_at": parse_time("2018-08-15T12:13:29-07:00")}
    assert refund["created_at"] == parse_time("2018-08-15T19:13:29Z")
    reversal = _only("HOOK_PAYMENT_CAPTURE_REVERSED_V2", "RefundChanged")
    assert reversal["reason"] == "reversal" and reversal["charge"] == P("txn_4L335234718889942")
    v1 = _only("payment.capture.refunded.json", "RefundChanged")  # v1 shape, "-0.15"
    assert (v1["amount"], v1["charge"]) == (15, P("txn_5LK72275CG489890D"))


def test_checkout_order_synthetic():
    events = _events("checkout.order.completed--synthetic.json")
    kinds = [k for k, _ in events]
    assert kinds == ["CustomerChanged", "PaymentChanged", "PaymentChanged"]
    order, capture = events[1][1], events[2][1]
    assert order["payment"] == order["intent"] == P("order_5O190127TN364715T")
    assert (order["status"], order["amount"], order["currency"], order["description"]) == (
        "succeeded", 3000, "jpy", "Sunset print")  # JPY: no decimals
    assert order["lines"][0].amount == 3000 and order["lines"][0].quantity == 2
    assert order["customer"] == P("payer_QYR5Z8XDVJNXQ") and order["email"] == "ada.buyer@example.com"
    assert capture["payment"] == P("txn_3C679366HH908993F") and capture["intent"] == order["intent"]


def test_disputes():
    for name in ("customer.dispute.created.json", "customer.dispute.created--2019-11.json",
                 "customer.dispute.created--ppra214.json"):
        dispute = _only(name, "DisputeChanged")
        assert dispute["dispute"] == P("dispute_PP-000-001-341-393")
        assert (dispute["amount"], dispute["currency"], dispute["reason"]) == (1156, "usd", "unauthorized")
        assert dispute["charge"] == P("txn_45V487086B989905H")
        assert _translate(name).owner_hints == (P("txn_45V487086B989905H"),)
    assert _only("customer.dispute.created.json", "DisputeChanged")["status"] == "open"
    assert _only("customer.dispute.created--ppra214.json", "DisputeChanged")["status"] == "under_review"
    resolved = _only("customer.dispute.resolved.json", "DisputeChanged")
    assert resolved["status"] == "lost"  # RESOLVED_BUYER_FAVOUR
    legacy = _only("risk.dispute.created.json", "DisputeChanged")
    assert (legacy["amount"], legacy["charge"], legacy["created_at"]) == (
        100100, P("txn_93U280418G152174E"), 1430132049)


def test_vault_tokens():
    token = _only("vault.payment-token.created--synthetic.json", "PaymentMethodChanged")
    assert token["customer"] == P("vault_customer_4029352050") and token["email"] is None
    assert token["payment_method"] == P("token_8kk8451t") and token["attached"] is True
    assert (token["card"].brand, token["card"].last4, token["card"].exp_month,
            token["card"].exp_year) == ("VISA", "1111", 2, 2027)
    # The v1 samples' keys carry stray spaces: nothing readable, recorded and ignored.
    assert _events("vault.credit-card.created.json") == []


@pytest.mark.parametrize("name", ["HOOK_PLAN_CREATED_V2", "HOOK_PLAN_UPDATED_V1",
                                  "payment.order.created.json", "payment.authorization.created.json"])
def test_other_types_are_ignored(name):
    assert _translate(name) is None


def test_every_fixture_translates_without_crashing():
    for path in sorted((FIXTURES / "webhooks").glob("*.json")):
        _translate(path.name)
    for name in SIGNED:
        _translate(name)


def test_money_in_every_currency_form():
    assert amount({"value": "1000", "currency_code": "HUF"}) == (100000, "huf")
    assert amount({"value": "1000", "currency_code": "JPY"}) == (1000, "jpy")
    assert amount({"value": "30", "currency_code": "TWD"}) == (3000, "twd")
    assert amount({"total": "-0.49", "currency": "USD"}) == (-49, "usd")
    assert amount({"value": "5.00"}, "USD") == (500, "usd")
    assert amount({"value": "10.5", "currency_code": "JPY"}) == (None, "jpy")
    assert amount({"value": "1e3", "currency_code": "USD"}) == (None, "usd")
    assert amount(None) == (None, None)


@pytest.mark.parametrize("text,expected", [
    ("2018-08-15T20:03:06.086Z", 1534363386),
    ("2018-08-15T12:13:29-07:00", 1534360409),
    ("2016-07-10T20:38:52.000", 1468183132),  # no zone: UTC
    ("2019-01-01", 1546300800),
    ("2014-10-23T17:22:56 PDT", 1414110176),  # = 2014-10-24T00:22:56Z
    ("2020-01-01T00:00:00 America/Los_Angeles", 1577865600),
    ("10:12:34 Jan 01, 2014 PST", 1388599954),
    (1430132049000, 1430132049),
    ("2018-19-12T22:20:32.000Z", None), ("2024-02-30T00:00:00Z", None),
    ("2024-01-01T00:00:00 Not/AZone", None), ("", None), ("soon", None), (None, None),
])
def test_times_in_every_form(text, expected):
    assert parse_time(text) == expected


def test_an_event_without_any_readable_time_is_malformed():
    body = json.dumps({"id": "WH-1", "event_type": "PAYMENT.SALE.COMPLETED",
                       "create_time": "2018-19-12", "resource": {"id": "X"}}).encode()
    with pytest.raises(MalformedPayload):
        paypal.parse(body)
