"""The OpenAPI document describes the routes the app serves, and its answers fit it."""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from app_fixtures import app_client, merchant  # noqa: F401
from stripe_events import Stream

SPEC = yaml.safe_load((Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml").read_text())


def test_every_api_route_is_documented_and_nothing_more():
    from app import app

    served = {path for path in app.routes if path.startswith("/api/")}
    assert served == set(SPEC["paths"])


def _check(value, schema):
    """A small structural check of a JSON value against the spec's schemas."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return _check(value, SPEC["components"]["schemas"][name])
    if "allOf" in schema:
        for part in schema["allOf"]:
            _check(value, part)
        return
    if value is None:
        assert schema.get("nullable"), schema
        return
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict)
        for key in schema.get("required", []):
            assert key in value, key
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(value[key], sub)
    elif kind == "array":
        assert isinstance(value, list)
        for item in value:
            _check(item, schema["items"])
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool)
    elif kind == "string":
        assert isinstance(value, str)
        if "enum" in schema:
            assert value in schema["enum"], value
    elif kind == "boolean":
        assert isinstance(value, bool)


def test_answers_fit_the_documented_schemas(merchant):  # noqa: F811
    s = Stream("oas")
    cus = s.customer("oas@example.com", "Open Api")
    s.card(cus)
    sub = s.subscription(cus, 900)
    s.invoice(cus, sub, 900, type_="invoice.payment_failed")
    plan = s.subscription(cus, 3000, installments=3)
    s.invoice(cus, plan, 3000)
    pi, charge = s.one_time(cus, 1200)
    s.refund(cus, pi, charge, 200)
    for event in s.events:
        assert merchant.deliver(event).status_code == 200
    ok = SPEC["paths"]
    listing = merchant.get_json("/api/v1/customers")
    _check(listing, ok["/api/v1/customers"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"])
    record = merchant.get_json(f"/api/v1/customers/{listing['data'][0]['id']}")
    _check(record, {"$ref": "#/components/schemas/CustomerRecord"})
    order = merchant.get_json(f"/api/v1/orders/{record['orders'][0]['id']}")
    _check(order, ok["/api/v1/orders/{order_id}"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"])
    deliveries = merchant.get_json("/api/v1/webhook-deliveries")
    _check(deliveries, ok["/api/v1/webhook-deliveries"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"])
    error = json.loads(merchant.get("/api/v1/customers/cst_nope").body)
    _check(error, {"$ref": "#/components/schemas/Error"})
