"""Refunds and disputes as Stripe documents them, where localstripe does not (part of
devstack/stripe_shim.py; dev stack and tests only).

- ``POST /v1/refunds``: Stripe refuses an amount above what remains refundable on the
  charge (``amount_too_large``; ``charge_already_refunded`` when nothing remains), a
  ``reason`` other than ``duplicate``, ``fraudulent`` or ``requested_by_customer``, and a
  refund of a disputed charge its dispute says is no longer refundable
  (``charge_disputed``). localstripe checks none of them and refuses ``reason``: the shim
  checks, forwards without ``reason`` and reports it on the refund.
- Idempotency keys (``Idempotency-Key``): the same key with the same parameters answers
  the first response again (also while the first is in flight: it waits); with other
  parameters Stripe's ``idempotency_error`` (400). Keys are forgotten when the shim stops
  (Stripe: after 24 hours).
- Refund creations of one charge are serialized, as Stripe does, so "what remains" is
  exact under concurrent requests.
- Disputes: ``GET /v1/disputes/{id}`` and ``GET /v1/disputes?charge=`` from disputes the
  tests create through the test controls below (localstripe has none).

Test controls (never Stripe's paths; under ``/_shim/``):
  GET  /_shim/refunds/received   every refund request the shim received, in order:
                                 {charge, amount, remaining, key, outcome, refund}
  POST /_shim/refunds/delay      count=N&seconds=S: the next N successful refund answers
                                 (made at localstripe, or replayed for their idempotency
                                 key) come S seconds late: the client times out, and its
                                 retries with the same key too while N lasts
  POST /_shim/disputes           charge, amount, status, is_charge_refundable → a dispute
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.parse

from aiohttp import web

REASONS = ("duplicate", "fraudulent", "requested_by_customer")

_received: list[dict] = []
_delays: list[float] = []  # seconds, one per next refund creation
_charge_locks: dict[str, asyncio.Lock] = {}
_key_locks: dict[str, asyncio.Lock] = {}
# idempotency key → (the request's parameters, the response)
_answered: dict[str, tuple[dict, tuple[int, bytes, str]]] = {}
_reasons: dict[str, str] = {}  # refund id → reason
_disputes: dict[str, dict] = {}


def _json(obj: dict, status: int = 200) -> tuple[int, bytes, str]:
    return status, json.dumps(obj).encode(), "application/json"


def _error(message: str, *, code: str | None = None, param: str | None = None,
           kind: str = "invalid_request_error", status: int = 400) -> tuple[int, bytes, str]:
    error = {"type": kind, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return _json({"error": error}, status)


def _flat(form: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in sorted(form.items())}


async def _lookup(forward, request, path: str) -> tuple[int, dict]:
    status, body, _ = await forward(request, "GET", path, b"", own_key=True)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


def _with_reason(payload: bytes) -> bytes:
    obj = json.loads(payload)
    objects = obj.get("data") if obj.get("object") == "list" else [obj]
    for refund in objects or []:
        if isinstance(refund, dict) and refund.get("object") == "refund":
            refund["reason"] = _reasons.get(refund.get("id"))
    return json.dumps(obj).encode()


async def _create(forward, request, params: dict[str, str], key: str | None
                  ) -> tuple[int, bytes, str]:
    charge_id = params.get("charge")
    if not charge_id and params.get("payment_intent"):
        status, intent = await _lookup(forward, request,
                                       f"/v1/payment_intents/{params['payment_intent']}")
        if status != 200:
            return _error(f"No such payment_intent: '{params['payment_intent']}'",
                          code="resource_missing", param="payment_intent", status=404)
        latest = intent.get("latest_charge")
        charge_id = latest.get("id") if isinstance(latest, dict) else latest
    if not charge_id:
        return _error("One of `charge` or `payment_intent` is required.")
    reason = params.get("reason")
    if reason is not None and reason not in REASONS:
        return _error("Invalid reason: must be one of duplicate, fraudulent, or "
                      "requested_by_customer", param="reason")
    lock = _charge_locks.setdefault(charge_id, asyncio.Lock())
    async with lock:
        status, charge = await _lookup(forward, request, f"/v1/charges/{charge_id}")
        if status != 200:
            return _error(f"No such charge: '{charge_id}'", code="resource_missing",
                          param="charge", status=404)
        remaining = int(charge.get("amount") or 0) - int(charge.get("amount_refunded") or 0)
        amount = params.get("amount")
        entry = {"charge": charge_id, "amount": int(amount) if amount and amount.isdigit() else
                 amount, "remaining": remaining, "key": key, "reason": reason,
                 "at": time.time()}
        _received.append(entry)
        dispute = next((d for d in _disputes.values() if d["charge"] == charge_id), None)
        if dispute is not None and not dispute["is_charge_refundable"]:
            entry["outcome"] = "charge_disputed"
            return _error(f"Charge {charge_id} has been charged back; it cannot be refunded.",
                          code="charge_disputed", param="charge")
        if remaining <= 0:
            entry["outcome"] = "charge_already_refunded"
            return _error(f"Charge {charge_id} has already been refunded.",
                          code="charge_already_refunded", param="charge")
        if amount is not None and (not amount.isdigit() or int(amount) > remaining):
            entry["outcome"] = "amount_too_large"
            return _error(f"Refund amount ({amount}) is greater than unrefunded amount on "
                          f"charge ({remaining}).", code="amount_too_large", param="amount")
        forwarded = {k: v for k, v in params.items() if k not in ("reason", "payment_intent")}
        forwarded["charge"] = charge_id
        body = urllib.parse.urlencode(forwarded).encode()
        result = await forward(request, "POST", "/v1/refunds", body, own_key=True)
        status, payload, content_type = result
        if status == 200:
            refund = json.loads(payload)
            if params.get("payment_intent"):
                refund["payment_intent"] = params["payment_intent"]
            _reasons[refund["id"]] = reason
            refund["reason"] = reason
            entry["outcome"], entry["refund"] = "created", refund["id"]
            result = (status, json.dumps(refund).encode(), content_type)
        else:
            entry["outcome"] = f"localstripe {status}"
        return result


async def create_refund(forward, request, form: dict[str, list[str]]
                        ) -> tuple[int, bytes, str]:
    params = _flat(form)
    key = request.headers.get("Idempotency-Key")
    if not key:
        return await _create(forward, request, params, None)
    async with _key_locks.setdefault(key, asyncio.Lock()):
        if key in _answered:
            first_params, response = _answered[key]
            if first_params != params:
                return _error("Keys for idempotent requests can only be used with the same "
                              "parameters they were first used with. Try using a key other "
                              f"than '{key}' if you meant to execute a different request.",
                              kind="idempotency_error")
            _received.append({"key": key, "outcome": "replayed", "at": time.time(),
                              "amount": params.get("amount"), "charge": params.get("charge")})
        else:
            response = await _create(forward, request, params, key)
            if response[0] < 500:  # Stripe keeps the result of a request it executed
                _answered[key] = (params, response)
    if _delays and response[0] == 200:
        # Made (or replayed), then answered too late: the client cannot know the outcome.
        await asyncio.sleep(_delays.pop(0))
    return response


def _dispute_list(charge: str | None) -> dict:
    data = [d for d in _disputes.values() if charge is None or d["charge"] == charge]
    return {"object": "list", "data": data, "has_more": False, "url": "/v1/disputes"}


async def handle(forward, request: web.Request, parts: list[str],
                 body: bytes) -> tuple[int, bytes, str] | None:
    """The calls this module answers (or decorates) itself; None for the rest."""
    method = request.method
    form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True) if body else {}
    query = urllib.parse.parse_qs(request.query_string, keep_blank_values=True)
    if parts[:1] == ["_shim"]:
        return _control(method, parts[1:], {**_flat(query), **_flat(form)})
    if method == "POST" and parts[1:] == ["refunds"]:
        return await create_refund(forward, request, form)
    if method == "GET" and parts[1:2] == ["refunds"]:
        status, payload, content_type = await forward(request, "GET", request.path_qs, b"")
        return status, (_with_reason(payload) if status == 200 else payload), content_type
    if parts[1:2] == ["disputes"] and method == "GET":
        if len(parts) == 3:
            dispute = _disputes.get(parts[2])
            if dispute is None:
                return _error(f"No such dispute: '{parts[2]}'", code="resource_missing",
                              param="id", status=404)
            return _json(dispute)
        return _json(_dispute_list(_flat(query).get("charge")))
    return None


def _control(method: str, parts: list[str], params: dict[str, str]) -> tuple[int, bytes, str]:
    if method == "GET" and parts == ["refunds", "received"]:
        return _json({"data": _received})
    if method == "POST" and parts == ["refunds", "delay"]:
        _delays.clear()
        _delays.extend([float(params.get("seconds", "5"))] * int(params.get("count", "1")))
        return _json({"pending_delays": len(_delays)})
    if method == "POST" and parts == ["disputes"]:
        dispute = {"id": f"dp_{secrets.token_hex(12)}", "object": "dispute",
                   "charge": params["charge"], "amount": int(params.get("amount", "0")),
                   "currency": params.get("currency", "eur"),
                   "status": params.get("status", "needs_response"),
                   "reason": params.get("reason", "fraudulent"),
                   "is_charge_refundable": params.get("is_charge_refundable") == "true",
                   "created": int(time.time())}
        _disputes[dispute["id"]] = dispute
        return _json(dispute)
    return _error("Unknown test control.", status=404)
