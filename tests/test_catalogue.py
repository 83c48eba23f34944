"""The event catalogue: its JSON Schema (served, and in docs/events) against real payloads
the app writes from PayPal's fixtures (Stripe's: tests/test_outbox_events.py); thin
payloads past 20 KB."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from test_paypal_webhooks import PayPalMerchant, PayPalStub, _story

from chalicelib.integrations import catalogue
from chalicelib.store import customers as store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def validator():
    schema = catalogue.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _payloads(account_id: str) -> list[dict]:
    return [catalogue.payload({**e, "account_id": account_id})
            for e in store.list_outbox(account_id, 500)]


def check_payloads(validator, payloads: list[dict]) -> None:
    for p in payloads:
        errors = sorted(validator.iter_errors(p), key=lambda e: e.path)
        # oneOf reports "not valid under any": check against the type's own definition.
        if errors:
            own = jsonschema.Draft202012Validator(
                {**catalogue.schema(), "$ref": f"#/$defs/{p['type']}", "oneOf": None})
            detail = [f"{list(e.path)}: {e.message}" for e in own.iter_errors(p)][:5]
            raise AssertionError(f"{p['type']} does not match the schema: {detail}")
        assert len(json.dumps(p)) <= catalogue.MAX_PAYLOAD_BYTES


def test_the_schema_is_served_and_documented(app_client):  # noqa: F811
    response = app_client.http.get("/api/v1/events/schema")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/schema+json"
    served = json.loads(response.body)
    assert served == catalogue.schema()
    assert set(served["$defs"]) == set(catalogue.EVENT_TYPES)
    # docs/events/schema.json is the same (regenerate: python -m chalicelib.integrations.catalogue)
    assert json.loads((ROOT / "docs/events/schema.json").read_text()) == served


@pytest.fixture(scope="module")
def stub(stack) -> PayPalStub:
    return PayPalStub(stack.paypal.url)


def test_paypal_payloads_match_the_schema(app_client, stub, validator):  # noqa: F811
    pm = PayPalMerchant(app_client, stub)
    for event in _story("schema.paypal@example.com").events:
        assert pm.deliver(event).status_code == 200
    payloads = _payloads(pm.m.account_id)
    assert {p["type"] for p in payloads} >= {
        "customer.created", "subscription.created", "payment.succeeded", "payment.failed",
        "payment.refunded", "order.created"}
    check_payloads(validator, payloads)


def test_every_types_example_matches_the_schema(validator):
    for event_type in catalogue.EVENT_TYPES:
        check_payloads(validator, [catalogue.payload({
            "event_id": "evt_example", "type": event_type, "account_id": "acct_example",
            "customer_id": "cst_01example0000000000000000",
            "occurred_at": "2026-01-01T00:00:00.000000Z",
            "data": catalogue.example_data(event_type)})])


def test_an_object_past_20_kb_is_sent_thin_with_its_api_url():
    record = {"id": "cst_01big", "email": "big@example.com", "name": "Big",
              "orders": [{"id": f"ord_{n}", "description": "x" * 200} for n in range(200)]}
    data = catalogue.event_data("customer.updated", record, record)
    assert data["thin"] is True
    assert data["object"] == {"id": "cst_01big", "url": "/api/v1/customers/cst_01big"}
    order = {"id": "ord_big", "description": "y" * 30_000}
    data = catalogue.event_data("order.created", order, record)
    assert data["object"] == {"id": "ord_big", "url": "/api/v1/orders/ord_big"}
    assert data["customer"] == {"id": "cst_01big", "email": "big@example.com", "name": "Big"}
    small = catalogue.event_data("order.created", {"id": "ord_small"}, record)
    assert "thin" not in small and small["object"] == {"id": "ord_small"}
