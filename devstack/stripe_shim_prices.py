"""Listing prices as Stripe documents it, where localstripe has only its older plans (part
of devstack/stripe_shim.py's proxy, through stripe_shim_billing.handle; dev stack and tests
only). Stripe answers a plan's id as a price id and the other way round; so does this.

- ``GET /v1/prices`` with ``active``, ``type`` (``recurring``; localstripe has no one-time
  prices, so ``one_time`` lists none), ``currency``, ``product``, ``limit`` (1-100, 10 by
  default), ``starting_after`` and ``expand[]=data.product`` (also ``expand[0]=``): a
  list of ``price`` objects, newest first (``id``, ``active``, ``currency``,
  ``unit_amount``, ``recurring {interval, interval_count, usage_type}``, ``type``,
  ``nickname``, ``product``: its id, or the product object when expanded), ``has_more``
  and ``url``. An unknown parameter or a bad value is Stripe's 400.
- ``GET /v1/prices/{id}``: one price (``resource_missing`` 404 for an unknown one).
"""
from __future__ import annotations

import json
import urllib.parse

LIST_PARAMS = {"active", "type", "currency", "product", "limit", "starting_after",
               "ending_before", "expand[]", "expand[0]"}


def _json(obj: dict, status: int = 200) -> tuple[int, bytes, str]:
    return status, json.dumps(obj).encode(), "application/json"


def _error(message: str, param: str | None, status: int = 400,
           code: str = "parameter_invalid") -> tuple[int, bytes, str]:
    error = {"type": "invalid_request_error", "code": code, "message": message}
    if param:
        error["param"] = param
    return _json({"error": error}, status)


def _active(plan: dict) -> bool:
    # localstripe keeps an update's "active=false" as the string it was sent.
    return plan.get("active", True) not in (False, "false")


def as_price(plan: dict, product: dict | str | None) -> dict:
    """A localstripe plan as Stripe's price object."""
    return {
        "id": plan["id"], "object": "price", "active": _active(plan),
        "billing_scheme": plan.get("billing_scheme") or "per_unit",
        "created": plan.get("created"), "currency": plan.get("currency"),
        "livemode": False, "lookup_key": None, "metadata": plan.get("metadata") or {},
        "nickname": plan.get("nickname"), "product": product or plan.get("product"),
        "recurring": {"interval": plan.get("interval"),
                      "interval_count": plan.get("interval_count") or 1,
                      "usage_type": plan.get("usage_type") or "licensed",
                      "aggregate_usage": None, "trial_period_days":
                          plan.get("trial_period_days")},
        "tax_behavior": "unspecified", "tiers_mode": plan.get("tiers_mode"),
        "type": "recurring",
        "unit_amount": plan.get("amount") if plan.get("billing_scheme", "per_unit") ==
        "per_unit" else None,
        "unit_amount_decimal": str(plan.get("amount")) if plan.get("amount") is not None
        else None,
    }


async def _all(forward, request, path: str) -> list[dict]:
    # localstripe's lists take any limit: one call holds them all.
    status, body, _ = await forward(request, "GET", f"{path}?limit=1000000", b"",
                                    own_key=True)
    if status != 200:
        raise RuntimeError(f"localstripe answered {status} to {path}")
    return json.loads(body).get("data") or []


def _one(query: dict, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


async def _list(forward, request, query: dict) -> tuple[int, bytes, str]:
    unknown = sorted(set(query) - LIST_PARAMS)
    if unknown:
        return _error(f"Received unknown parameter: {unknown[0]}", unknown[0],
                      code="parameter_unknown")
    active = _one(query, "active")
    if active not in (None, "true", "false"):
        return _error(f"Invalid boolean: {active}", "active")
    kind = _one(query, "type")
    if kind not in (None, "one_time", "recurring"):
        return _error("Invalid type: must be one of one_time or recurring", "type")
    limit_text = _one(query, "limit") or "10"
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
        return _error("Invalid limit: must be between 1 and 100", "limit")
    expand = (query.get("expand[]") or []) + (query.get("expand[0]") or [])
    if any(path != "data.product" for path in expand):
        return _error("This property cannot be expanded.", "expand")
    currency, product = _one(query, "currency"), _one(query, "product")
    prices = [] if kind == "one_time" else await _all(forward, request, "/v1/plans")
    prices = [p for p in prices
              if (active is None or _active(p) == (active == "true"))
              and (currency is None or p.get("currency") == currency.lower())
              and (product is None or p.get("product") == product)]
    # Stripe lists newest first (localstripe keeps creation order; created is in seconds).
    prices.reverse()
    prices.sort(key=lambda p: p.get("created") or 0, reverse=True)
    after = _one(query, "starting_after")
    if after is not None:
        ids = [p["id"] for p in prices]
        if after not in ids:
            return _error(f"No such price: '{after}'", "starting_after", 404,
                          code="resource_missing")
        prices = prices[ids.index(after) + 1:]
    page = prices[:int(limit_text)]
    products = {p["id"]: p for p in await _all(forward, request, "/v1/products")} \
        if expand else {}
    data = [as_price(p, products.get(p.get("product")) if expand else None) for p in page]
    return _json({"object": "list", "url": "/v1/prices", "data": data,
                  "has_more": len(prices) > len(page)})


async def handle(forward, request, parts: list[str]) -> tuple[int, bytes, str] | None:
    """``GET /v1/prices`` and ``GET /v1/prices/{id}``; None for the rest."""
    if request.method != "GET" or parts[1:2] != ["prices"]:
        return None
    query = urllib.parse.parse_qs(request.query_string, keep_blank_values=True)
    if len(parts) == 2:
        return await _list(forward, request, query)
    if len(parts) == 3:
        status, body, content_type = await forward(
            request, "GET", f"/v1/plans/{urllib.parse.quote(parts[2])}", b"", own_key=True)
        if status == 404:
            return _error(f"No such price: '{parts[2]}'", "id", 404, code="resource_missing")
        if status != 200:
            return status, body, content_type
        return _json(as_price(json.loads(body), None))
    return None
