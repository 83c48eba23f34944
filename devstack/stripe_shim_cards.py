"""Cards that decline on charge, each with its own number (part of devstack/stripe_shim.py;
dev stack and tests only).

On Stripe every card number has its own fingerprint, and only Stripe's few test numbers
decline; localstripe does the same, so every declining card there is the one number
4000000000000341 with the one fingerprint, and per-card rules (the dunning caps: retries
per card and day) see one card where a merchant would have many customers' cards.

Test control (never Stripe's path), like a test clock:
  POST /_shim/declining_cards   number (16 digits), decline_code (Stripe's, default
       ``generic_decline``) → from then on a card created with that number
       (``POST /v1/payment_methods``) attaches and then declines every charge with that
       decline code, as a real card in that state would.

How: the card is created at localstripe as its declining test card, and the proxy reports
it as the card it stands for: its own ``last4`` and ``fingerprint`` on payment methods,
and the ``decline_code`` on the ``last_payment_error`` of its payment intents and on its
charges (Stripe's ``card_declined`` with a decline code). Webhooks go from localstripe to
the app directly and still show the test card's last4 and fingerprint.
"""
from __future__ import annotations

import hashlib
import json
import urllib.parse

DECLINES_ON_CHARGE = "4000000000000341"  # localstripe: attaches, every charge fails

# card number → decline code (marked by the control); payment method → (number, code).
_declining_numbers: dict[str, str] = {}
_declining_methods: dict[str, tuple[str, str]] = {}


def _json(obj: dict, status: int = 200) -> tuple[int, bytes, str]:
    return status, json.dumps(obj).encode(), "application/json"


def _fingerprint(number: str) -> str:
    # As localstripe computes a card's: one per number.
    return hashlib.sha1(number.encode()).hexdigest()[:16]


def control(method: str, parts: list[str], body: bytes) -> tuple[int, bytes, str] | None:
    if method != "POST" or parts != ["_shim", "declining_cards"]:
        return None
    form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    number = form.get("number", "")
    code = form.get("decline_code") or "generic_decline"
    if len(number) != 16 or not number.isdigit():
        return _json({"error": {"type": "invalid_request_error", "param": "number",
                                "message": "number: 16 digits"}}, 400)
    _declining_numbers[number] = code
    return _json({"number": number, "decline_code": code, "fingerprint": _fingerprint(number)})


def create_request(body: bytes) -> tuple[bytes, tuple[str, str] | None]:
    """A ``POST /v1/payment_methods`` body: a marked number is created as localstripe's
    declining card; the body to forward and the (number, code) it stands for."""
    form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
    number = (form.get("card[number]") or [""])[0]
    if number not in _declining_numbers:
        return body, None
    form["card[number]"] = [DECLINES_ON_CHARGE]
    return urllib.parse.urlencode(form, doseq=True).encode(), (
        number, _declining_numbers[number])


def created(payload: dict, stands_for: tuple[str, str] | None) -> None:
    if stands_for and payload.get("id"):
        _declining_methods[payload["id"]] = stands_for


def _as_card(pm: dict) -> None:
    found = _declining_methods.get(pm.get("id") or "")
    if found and isinstance(pm.get("card"), dict):
        number, _ = found
        pm["card"].update(last4=number[-4:], fingerprint=_fingerprint(number))


def _with_decline_code(obj: dict) -> None:
    method = obj.get("payment_method")
    method = method.get("id") if isinstance(method, dict) else method
    found = _declining_methods.get(method or "")
    if not found:
        return
    error = obj.get("last_payment_error")
    if isinstance(error, dict) and error.get("code") == "card_declined":
        error["decline_code"] = found[1]
    if obj.get("object") == "charge" and obj.get("failure_code") == "card_declined":
        obj.setdefault("outcome", {})
        if isinstance(obj["outcome"], dict):
            obj["outcome"]["reason"] = found[1]


def decorate(parts: list[str], payload: bytes) -> bytes:
    """A localstripe answer as Stripe would give it for the marked cards."""
    if not _declining_methods or parts[1:2] not in (
            ["payment_methods"], ["payment_intents"], ["charges"]):
        return payload
    obj = json.loads(payload)
    objects = obj.get("data") if obj.get("object") == "list" else [obj]
    for item in objects or []:
        if not isinstance(item, dict):
            continue
        if item.get("object") == "payment_method":
            _as_card(item)
        else:
            _with_decline_code(item)
    return json.dumps(obj).encode()
