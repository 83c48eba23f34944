"""A thin proxy in front of localstripe that fills two of its gaps, for `make dev` only.

localstripe answers 500 to two calls that Stripe supports and the product makes:
updating a subscription's ``default_payment_method`` and paying an invoice with a given
``payment_method``. Rather than teach the product about localstripe, the dev stack puts
this proxy between them: it makes the card the customer's default (which localstripe
charges) and forwards the call without the parameter, then reports the card on the
subscription as Stripe would. It also drops parameters localstripe does not take (a
cancellation's ``cancellation_details``, a payment's ``off_session``). Everything else
passes through untouched.

    python -m devstack.stripe_shim --port 8421 --upstream http://127.0.0.1:8420
"""
from __future__ import annotations

import argparse
import json
import urllib.parse

from aiohttp import ClientSession, web

# subscription id → the card the product asked for (localstripe cannot hold it).
_subscription_cards: dict[str, str] = {}


_PASSED_HEADERS = ("authorization", "content-type", "idempotency-key", "stripe-version")


async def _forward(request: web.Request, method: str, path: str,
                   body: bytes) -> tuple[int, bytes, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() in _PASSED_HEADERS}
    if method == "GET":
        headers.pop("Content-Type", None)
    async with ClientSession() as session, session.request(
            method, request.app["upstream"] + path, data=body or None, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "application/json")


async def _set_customer_default(request: web.Request, customer: str, card: str) -> None:
    form = urllib.parse.urlencode({"invoice_settings[default_payment_method]": card}).encode()
    await _forward(request, "POST", f"/v1/customers/{customer}", form)


async def _lookup(request: web.Request, path: str) -> dict:
    status, body, _ = await _forward(request, "GET", path, b"")
    return json.loads(body) if status == 200 else {}


async def proxy(request: web.Request) -> web.Response:
    body = await request.read()
    method = request.method
    parts = request.path.strip("/").split("/")
    if method == "POST" and len(parts) == 3 and parts[1] == "subscriptions":
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        card = form.pop("default_payment_method", [None])[0]
        dropped = [k for k in form if k.startswith("cancellation_details")]
        for key in dropped:  # a cancel reason: localstripe does not take it
            del form[key]
        if card:
            subscription = await _lookup(request, f"/v1/subscriptions/{parts[2]}")
            await _set_customer_default(request, subscription.get("customer", ""), card)
            _subscription_cards[parts[2]] = card
        if card or dropped:
            body = urllib.parse.urlencode(form, doseq=True).encode()
            if not body:
                method = "GET"  # nothing else to change: localstripe refuses an empty update
    elif method == "POST" and len(parts) == 4 and parts[1] == "invoices" and parts[3] == "pay":
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        card = form.get("payment_method", [None])[0]
        if card:
            invoice = await _lookup(request, f"/v1/invoices/{parts[2]}")
            await _set_customer_default(request, invoice.get("customer", ""), card)
        body = b""  # localstripe's pay takes no parameters at all (off_session, …)
    status, payload, content_type = await _forward(request, method, request.path_qs, body)
    if parts[1:2] == ["subscriptions"] and status == 200 and "json" in content_type:
        payload = _with_cards(json.loads(payload))
    return web.Response(status=status, body=payload, content_type="application/json")


def _with_cards(obj: dict) -> bytes:
    objects = obj.get("data") if obj.get("object") == "list" else [obj]
    for sub in objects or []:
        if sub.get("id") in _subscription_cards:
            sub["default_payment_method"] = _subscription_cards[sub["id"]]
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
