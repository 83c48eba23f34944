"""A thin proxy in front of localstripe that fills its gaps, for `make dev` and the tests only.

localstripe answers 500 to calls that Stripe supports and the product makes, and it
misses a few things Stripe does by itself. Rather than teach the product about
localstripe, the dev stack puts this proxy between them (``STRIPE_API_BASE`` and the
browser's Stripe.js stand-in, ``STRIPE_JS_URL = <proxy>/js.stripe.com/v3/``, both point
here):

- A subscription's ``default_payment_method``: localstripe refuses it. The proxy keeps
  the card per subscription and reports it on the subscription as Stripe would; the
  customer's default is left alone (localstripe never renews on its own, so which card
  it would charge matters only when an invoice is paid, below).
- Paying an invoice with a ``payment_method`` (or, without one, with the card of the
  invoice's subscription): localstripe pays only with the customer's default. The proxy
  makes the card the default for the payment and puts the previous default back a
  second later (so that the webhook of the restore is dated after the one of the
  change and the app ends with the customer's real default).
- Confirming a SetupIntent (Stripe.js's ``confirmCardSetup``): Stripe attaches the new
  card to the intent's customer; localstripe does not. The proxy attaches it.
- Parameters localstripe does not take are dropped (a cancellation's
  ``cancellation_details``, a payment's ``off_session``).
- Browsers reach it from the app's pages: it answers CORS like localstripe does.
- An invoice's ``auto_advance`` (whether Stripe collects it by itself): localstripe does
  not take it. The proxy keeps it per invoice and reports it on the invoice.
- Paying an invoice again with the same ``Idempotency-Key``: Stripe answers with its first
  answer (for 24 hours) and charges nothing; localstripe ignores keys. The proxy keeps the
  answers, and counts the payments that reached localstripe per invoice, for the tests
  (``GET /_shim/invoice_payments``; ``POST /_shim/forget_idempotency_keys`` is Stripe
  forgetting them after 24 hours).

- Pausing collection, plan changes with Stripe's time-based proration and their invoice
  preview, cancelling now with ``prorate``/``invoice_now``, and Radar value lists:
  devstack/stripe_shim_billing.py.
- Refunds (remaining amount, reasons, idempotency keys) and disputes:
  devstack/stripe_shim_refunds.py.
- Payment Links (localstripe has none) and paying one: devstack/stripe_shim_links.py.
- Many distinct cards that decline on charge, each with its own number and fingerprint
  (a test control): devstack/stripe_shim_cards.py.

Everything else passes through untouched.

    python -m devstack.stripe_shim --port 8421 --upstream http://127.0.0.1:8420
"""
from __future__ import annotations

import argparse
import asyncio
import json
import urllib.parse

from aiohttp import ClientSession, web

from devstack import stripe_shim_billing as billing
from devstack import stripe_shim_cards as cards
from devstack import stripe_shim_links as links
from devstack import stripe_shim_refunds as refunds

# subscription id → the card the product asked for (localstripe cannot hold it).
_subscription_cards: dict[str, str] = {}
# customer → their own default card while a payment has put another in its place, and
# a counter of such payments (only the last one's restore runs).
_borrowed: dict[str, str] = {}
_generation: dict[str, int] = {}
# Background restores of a customer's default card, kept so they are not collected.
_pending: set[asyncio.Task] = set()
# The proxy's own calls (localstripe accepts any secret key; the browser's calls carry
# only a publishable key).
_OWN_KEY = "Bearer sk_test_devstack_shim"
RESTORE_DELAY = 1.1  # seconds: Stripe's (and localstripe's) timestamps are whole seconds

# Invoice payments: idempotency key → the first answer (or the payment in flight), and
# invoice id → payments forwarded to localstripe.
_pay_answers: dict[str, asyncio.Future] = {}
_invoice_payments: dict[str, int] = {}
# invoice id → auto_advance as last set.
_auto_advance: dict[str, bool] = {}

_PASSED_HEADERS = ("authorization", "content-type", "idempotency-key", "stripe-version")


async def _forward(request: web.Request, method: str, path: str,
                   body: bytes, *, own_key: bool = False) -> tuple[int, bytes, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() in _PASSED_HEADERS}
    if own_key:
        headers = {"Authorization": _OWN_KEY}
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
    if method == "GET":
        headers.pop("Content-Type", None)
    async with ClientSession() as session, session.request(
            method, request.app["upstream"] + path, data=body or None, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "application/json")


async def _set_customer_default(request: web.Request, customer: str, card: str) -> None:
    form = urllib.parse.urlencode({"invoice_settings[default_payment_method]": card}).encode()
    await _forward(request, "POST", f"/v1/customers/{customer}", form, own_key=True)


async def _lookup(request: web.Request, path: str) -> dict:
    status, body, _ = await _forward(request, "GET", path, b"", own_key=True)
    return json.loads(body) if status == 200 else {}


def _default_of(customer: dict) -> str | None:
    return (customer.get("invoice_settings") or {}).get("default_payment_method")


async def _restore_default_later(request: web.Request, customer: str, card: str,
                                 generation: int) -> None:
    await asyncio.sleep(RESTORE_DELAY)
    if _generation.get(customer) != generation:
        return  # a later payment borrowed the default again: its task restores it
    own = _borrowed.pop(customer, None)
    # Only if nobody chose another default meanwhile.
    if own and _default_of(await _lookup(request, f"/v1/customers/{customer}")) == card:
        await _set_customer_default(request, customer, own)


async def _subscription_update(request: web.Request, sub_id: str,
                               body: bytes) -> tuple[str, bytes]:
    form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
    # Pausing, plan changes (devstack/stripe_shim_billing.py); the rest goes on.
    rest = await billing.subscription_update(_forward, request, sub_id, form)
    handled = [k for k in form if k not in rest]
    form = rest
    card = form.pop("default_payment_method", [None])[0]
    dropped = [k for k in form if k.startswith("cancellation_details")]
    for key in dropped:  # a cancel reason: localstripe does not take it
        del form[key]
    dropped += handled
    if card:
        _subscription_cards[sub_id] = card
    if not (card or dropped):
        return "POST", body
    body = urllib.parse.urlencode(form, doseq=True).encode()
    # Nothing else to change: localstripe refuses an empty update.
    return ("POST" if body else "GET"), body


async def _pay_invoice(request: web.Request, invoice_id: str,
                       body: bytes) -> tuple[int, bytes, str]:
    form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
    invoice = await _lookup(request, f"/v1/invoices/{invoice_id}")
    card = form.get("payment_method", [None])[0] or _subscription_cards.get(
        invoice.get("subscription") or "")
    customer_id = invoice.get("customer") or ""
    generation = None
    if card and customer_id:
        current = _default_of(await _lookup(request, f"/v1/customers/{customer_id}"))
        # The customer's own default, even while an earlier payment still borrows it.
        own = _borrowed.get(customer_id, current)
        if current != card:
            await _set_customer_default(request, customer_id, card)
        if own and own != card:
            _borrowed[customer_id] = own
            generation = _generation[customer_id] = _generation.get(customer_id, 0) + 1
    # localstripe's pay takes no parameters at all (off_session, …).
    result = await _forward(request, "POST", request.path_qs, b"")
    if generation is not None:
        task = asyncio.get_running_loop().create_task(
            _restore_default_later(request, customer_id, card, generation))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
    return result


async def _pay_invoice_once(request: web.Request, invoice_id: str,
                            body: bytes) -> tuple[int, bytes, str]:
    key = request.headers.get("Idempotency-Key")
    if key:
        key = f"{request.headers.get('Authorization', '')}|{key}"
        if key in _pay_answers:
            return await asyncio.shield(_pay_answers[key])
        _pay_answers[key] = asyncio.get_running_loop().create_future()
    try:
        _invoice_payments[invoice_id] = _invoice_payments.get(invoice_id, 0) + 1
        result = await _pay_invoice(request, invoice_id, body)
    except BaseException as exc:
        if key:
            _pay_answers.pop(key).set_exception(exc)
        raise
    if key:
        _pay_answers[key].set_result(result)
    return result


def _invoice_update(invoice_id: str, body: bytes) -> tuple[str, bytes]:
    form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
    value = form.pop("auto_advance", [None])[0]
    if value is None:
        return "POST", body
    _auto_advance[invoice_id] = value.lower() == "true"
    body = urllib.parse.urlencode(form, doseq=True).encode()
    return ("POST" if body else "GET"), body


def _with_auto_advance(obj: dict) -> bytes:
    objects = obj.get("data") if obj.get("object") == "list" else [obj]
    for invoice in objects or []:
        if invoice.get("id") in _auto_advance:
            invoice["auto_advance"] = _auto_advance[invoice["id"]]
    return json.dumps(obj).encode()


def _shim_state(method: str, parts: list[str]) -> tuple[int, bytes, str] | None:
    if method == "GET" and parts == ["_shim", "invoice_payments"]:
        return 200, json.dumps(_invoice_payments).encode(), "application/json"
    if method == "POST" and parts == ["_shim", "forget_idempotency_keys"]:
        _pay_answers.clear()
        return 200, b"{}", "application/json"
    return None


async def _confirm_setup(request: web.Request, body: bytes) -> tuple[int, bytes, str]:
    status, payload, content_type = await _forward(request, "POST", request.path_qs, body)
    if status == 200:
        intent = json.loads(payload)
        if intent.get("status") == "succeeded" and intent.get("customer") and \
                intent.get("payment_method"):
            form = urllib.parse.urlencode({"customer": intent["customer"]}).encode()
            await _forward(request, "POST",
                           f"/v1/payment_methods/{intent['payment_method']}/attach", form,
                           own_key=True)
    return status, payload, content_type


def _cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Accept"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS, DELETE"
    return response


async def proxy(request: web.Request) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return _cors(request, web.Response(status=204))
    body = await request.read()
    method = request.method
    parts = request.path.strip("/").split("/")
    own = _shim_state(method, parts) or cards.control(method, parts, body) or \
        links.handle(request, parts, body) or \
        await billing.handle(_forward, request, parts, body)
    if own is None:  # refunds' checks and idempotency, disputes (stripe_shim_refunds.py)
        own = await refunds.handle(_forward, request, parts, body)
    if own is not None:
        result = own
    elif method == "POST" and len(parts) == 3 and parts[1] == "subscriptions":
        try:
            method, body = await _subscription_update(request, parts[2], body)
        except billing.StripeRefusal as refusal:
            result = refusal.response()
        else:
            result = await _forward(request, method, request.path_qs, body)
    elif method == "POST" and len(parts) == 3 and parts[1] == "invoices":
        method, body = _invoice_update(parts[2], body)
        result = await _forward(request, method, request.path_qs, body)
    elif method == "POST" and len(parts) == 4 and parts[1] == "invoices" and parts[3] == "pay":
        result = await _pay_invoice_once(request, parts[2], body)
    elif method == "POST" and len(parts) == 4 and parts[1] == "setup_intents" and \
            parts[3] == "confirm":
        result = await _confirm_setup(request, body)
    elif method == "POST" and parts[1:] == ["payment_methods"]:
        body, stands_for = cards.create_request(body)
        result = await _forward(request, method, request.path_qs, body)
        if result[0] == 200:
            cards.created(json.loads(result[1]), stands_for)
    else:
        result = await _forward(request, method, request.path_qs, body)
    status, payload, content_type = result
    if parts[1:2] == ["subscriptions"] and status == 200 and "json" in content_type:
        payload = _with_cards(json.loads(payload))
    if parts[1:2] == ["invoices"] and status == 200 and "json" in content_type:
        payload = _with_auto_advance(json.loads(payload))
    if status == 200 and "json" in content_type:
        payload = cards.decorate(parts, payload)
    return _cors(request, web.Response(status=status, body=payload,
                                       headers={"Content-Type": content_type}))


def _with_cards(obj: dict) -> bytes:
    objects = obj.get("data") if obj.get("object") == "list" else [obj]
    for sub in objects or []:
        if sub.get("id") in _subscription_cards:
            sub["default_payment_method"] = _subscription_cards[sub["id"]]
        billing.decorate_subscription(sub)
    return json.dumps(obj).encode()


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app["upstream"] = upstream.rstrip("/")
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.upstream), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
