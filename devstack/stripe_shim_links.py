"""Payment Links as Stripe documents them, where localstripe has none (part of
devstack/stripe_shim.py; dev stack and tests only).

- ``POST /v1/payment_links``: ``line_items[0][price_data][currency|unit_amount]``,
  ``line_items[0][price_data][product_data][name]``, ``line_items[0][quantity]``,
  ``metadata[…]``, ``payment_intent_data[metadata][…]``,
  ``restrictions[completed_sessions][limit]``; answers a ``payment_link`` object (``id``
  ``plink_…``, ``url``, ``active``, ``currency``, ``metadata``). A missing or bad line item
  is Stripe's ``parameter_missing`` / ``parameter_invalid_integer`` (400).
- ``GET /v1/payment_links/{id}`` (``resource_missing`` 404 for an unknown one) and
  ``GET /v1/payment_links/{id}/line_items``.
- ``POST /v1/payment_links/{id}``: ``active=false|true``, ``metadata[…]``.
- Idempotency keys: the same key with the same parameters answers the first answer again;
  with other parameters Stripe's ``idempotency_error`` (400).

Test control (never Stripe's path):
  POST /_shim/payment_links/{id}/pay   email, name → the ``checkout.session.completed``
       event Stripe sends when a customer pays the link (``payment_link``, ``metadata`` of
       the link, ``amount_total``, ``payment_intent``, ``customer_details``); with
       ``webhook_url`` and ``webhook_secret`` it is also sent there, signed as Stripe signs
       (``Stripe-Signature: t=…,v1=HMAC-SHA256``). An inactive link, or one whose
       ``completed_sessions`` limit is reached, cannot be paid (400), as on Stripe's page.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse

from aiohttp import ClientError, ClientSession

_links: dict[str, dict] = {}
_line_items: dict[str, dict] = {}
_completed: dict[str, int] = {}
_sending: set[asyncio.Task] = set()
# (authorization, idempotency key) → (the request's parameters, the answer)
_answered: dict[tuple[str, str], tuple[dict, tuple[int, bytes, str]]] = {}


def _json(obj: dict, status: int = 200) -> tuple[int, bytes, str]:
    return status, json.dumps(obj).encode(), "application/json"


def _error(message: str, *, code: str, param: str | None = None,
           status: int = 400, kind: str = "invalid_request_error") -> tuple[int, bytes, str]:
    error = {"type": kind, "code": code, "message": message}
    if param:
        error["param"] = param
    return _json({"error": error}, status)


def _prefixed(params: dict[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix):-1]: v for k, v in params.items()
            if k.startswith(prefix) and k.endswith("]") and "[" not in k[len(prefix):-1]}


def _create(params: dict[str, str]) -> tuple[int, bytes, str]:
    item = "line_items[0]"
    for name in ("[price_data][currency]", "[price_data][unit_amount]",
                 "[price_data][product_data][name]"):
        if not params.get(item + name):
            return _error(f"Missing required param: {item}{name}.", code="parameter_missing",
                          param=item + name)
    amount, quantity = params[item + "[price_data][unit_amount]"], params.get(
        item + "[quantity]", "1")
    if not amount.isdigit() or not quantity.isdigit() or int(quantity) < 1:
        return _error("Invalid integer.", code="parameter_invalid_integer",
                      param=item + "[price_data][unit_amount]")
    link_id = "plink_" + secrets.token_hex(12)
    limit = params.get("restrictions[completed_sessions][limit]")
    link = {"id": link_id, "object": "payment_link", "active": True,
            "currency": params[item + "[price_data][currency]"].lower(),
            "livemode": False, "metadata": _prefixed(params, "metadata["),
            "payment_intent_data": {"metadata": _prefixed(
                params, "payment_intent_data[metadata][")},
            "restrictions": {"completed_sessions": {"count": 0, "limit": int(limit)}}
            if limit and limit.isdigit() else None,
            "url": f"https://buy.stripe.com/test_{secrets.token_hex(8)}"}
    _links[link_id] = link
    _line_items[link_id] = {
        "object": "list", "has_more": False, "url": f"/v1/payment_links/{link_id}/line_items",
        "data": [{"id": "li_" + secrets.token_hex(12), "object": "item",
                  "amount_total": int(amount) * int(quantity), "currency": link["currency"],
                  "description": params[item + "[price_data][product_data][name]"],
                  "quantity": int(quantity),
                  "price": {"object": "price", "unit_amount": int(amount),
                            "currency": link["currency"]}}]}
    return _json(link)


def _update(link: dict, params: dict[str, str]) -> tuple[int, bytes, str]:
    if "active" in params:
        if params["active"] not in ("true", "false"):
            return _error("Invalid boolean.", code="parameter_invalid_boolean", param="active")
        link["active"] = params["active"] == "true"
    link["metadata"].update(_prefixed(params, "metadata["))
    return _json(link)


def _once(request, params: dict[str, str], answer) -> tuple[int, bytes, str]:
    key = request.headers.get("Idempotency-Key")
    if not key:
        return answer()
    slot = (request.headers.get("Authorization", ""), key)
    if slot in _answered:
        first, result = _answered[slot]
        if first != params:
            return _error("Keys for idempotent requests can only be used with the same "
                          "parameters they were first used with.", code="idempotency_error",
                          kind="idempotency_error")
        return result
    result = answer()
    if result[0] < 500:
        _answered[slot] = (params, result)
    return result


def _sign(body: bytes, secret: str) -> str:
    now = int(time.time())
    mac = hmac.new(secret.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={now},v1={mac}"


async def _send(url: str, secret: str, event: dict) -> None:
    body = json.dumps(event).encode()
    try:
        async with ClientSession() as session, session.post(url, data=body, headers={
                "Content-Type": "application/json",
                "Stripe-Signature": _sign(body, secret)}) as resp:
            await resp.read()
    except (OSError, ClientError):
        pass  # like a webhook endpoint that was down: the test can deliver the answer itself


def _pay(link: dict, params: dict[str, str]) -> tuple[int, bytes, str]:
    limit = (link.get("restrictions") or {}).get("completed_sessions") or {}
    if not link["active"] or (limit and _completed.get(link["id"], 0) >= limit["limit"]):
        return _error("This payment link is no longer active.", code="payment_link_inactive")
    _completed[link["id"]] = _completed.get(link["id"], 0) + 1
    if limit:
        limit["count"] = _completed[link["id"]]
    total = sum(i["amount_total"] for i in _line_items[link["id"]]["data"])
    now = int(time.time())
    session = {
        "id": "cs_test_" + secrets.token_hex(12), "object": "checkout.session",
        "mode": "payment", "status": "complete", "payment_status": "paid",
        "payment_link": link["id"], "metadata": dict(link["metadata"]),
        "amount_total": total, "amount_subtotal": total, "currency": link["currency"],
        "payment_intent": "pi_" + secrets.token_hex(12), "customer": None,
        "customer_email": None, "created": now, "livemode": False,
        "customer_details": {"email": params.get("email"), "name": params.get("name"),
                             "phone": None, "address": None},
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}}
    event = {"id": "evt_" + secrets.token_hex(12), "object": "event",
             "type": "checkout.session.completed", "created": now, "livemode": False,
             "api_version": "2024-06-20", "data": {"object": session}}
    if params.get("webhook_url") and params.get("webhook_secret"):
        # Sent after this answer, as Stripe does (the app may call the shim back meanwhile).
        task = asyncio.get_running_loop().create_task(
            _send(params["webhook_url"], params["webhook_secret"], event))
        _sending.add(task)
        task.add_done_callback(_sending.discard)
    return _json(event)


def handle(request, parts: list[str], body: bytes) -> tuple[int, bytes, str] | None:
    """The Payment Link calls and the shim's "pay" control; None for anything else."""
    method = request.method
    if parts[:2] == ["_shim", "payment_links"]:
        if method == "POST" and len(parts) == 4 and parts[3] == "pay":
            link = _links.get(parts[2])
            if link is None:
                return _error("No such payment link.", code="resource_missing", status=404)
            form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
            return _pay(link, {k: v[0] for k, v in form.items()})
        return None
    if parts[1:2] != ["payment_links"]:
        return None
    params = {k: v[0] for k, v in sorted(urllib.parse.parse_qs(
        body.decode(), keep_blank_values=True).items())} if body else {}
    if method == "POST" and len(parts) == 2:
        return _once(request, params, lambda: _create(params))
    link = _links.get(parts[2]) if len(parts) >= 3 else None
    if link is None:
        return _error(f"No such payment_link: '{parts[2] if len(parts) > 2 else ''}'",
                      code="resource_missing", param="id", status=404)
    if method == "GET" and len(parts) == 3:
        return _json(link)
    if method == "GET" and parts[3:] == ["line_items"]:
        return _json(_line_items[link["id"]])
    if method == "POST" and len(parts) == 3:
        return _once(request, params, lambda: _update(link, params))
    return None
