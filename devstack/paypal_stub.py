"""A stateful PayPal stand-in for `make dev` and the tests (no PayPal sandbox is reachable
here). It serves, over HTTPS with a certificate of the dev stack's own CA:

- ``POST /v1/oauth2/token``: client-credentials tokens (any id and secret; counted);
- ``GET /v1/notifications/certs/<name>``: the message verification certificates:
  ``CERT-devstack`` (``messageverificationcerts.sandbox.paypal.com``, issued by the dev CA),
  and for tests ``CERT-selfsigned`` (the right name, self-signed) and ``CERT-otherca``
  (the right name, issued by a CA nobody trusts: the "PayPal changed CA" case);
- ``POST /v1/notifications/verify-webhook-signature``: PayPal's own check, against the
  bytes the stand-in signed for that transmission;
- ``GET`` of the objects the product reads: subscriptions (and legacy agreements),
  checkout orders, captures, sales, v1 payments, disputes (and PayPal's List disputes by
  ``disputed_transaction_id``), from its state.
- the gateway's calls, as PayPal documents them (status checks, 422
  ``UNPROCESSABLE_ENTITY`` with PayPal's ``issue``, ``PayPal-Request-Id`` answering the
  first answer again): a subscription's cancel, suspend, activate, capture of the
  outstanding balance and transactions; refunds of v2 captures and of v1 sales. Each change
  queues the webhooks PayPal would send (``/_stub/events``), sent signed to the target set
  with ``PUT /_stub/webhook-target`` when there is one (the dev stack's app).

And for the dev stack and tests (``/_stub/…``): put an object into the state, open or
move a dispute on a capture or sale (with PayPal's CUSTOMER.DISPUTE.* webhook), sign a
webhook (answering the headers), send a signed webhook to a URL, list the requests it
served, reset.

The dev CA lives in ``.devstack/paypal-ca/`` (made once by ``ensure_dev_ca``); the app
trusts it only through ``PAYPAL_DEV_CA_PEM`` and ``PAYPAL_DEV_CERT_HOSTS``, which the
deployment never sets. Configuration, not a code branch: the product verifies the
stand-in's deliveries exactly as PayPal's, with the dev CA as one more anchor.

    python -m devstack.paypal_stub --port 8431 --ca-dir .devstack/paypal-ca
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import fcntl
import json
import secrets
import ssl
import tempfile
import time
import urllib.request
import uuid
import zlib
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LEAF_NAME = "messageverificationcerts.sandbox.paypal.com"
CA_NAME = "billing-portal devstack PayPal CA"


# --- certificates ---------------------------------------------------------------------------

def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(subject: str, key, issuer_name: str, issuer_key, *, ca: bool, dns: list[str] = (),
          ips: list[str] = (), days: int = 30) -> x509.Certificate:
    import ipaddress

    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        names = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = (builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]),
                                  critical=False)
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, key_encipherment=True, key_cert_sign=False,
                       crl_sign=False, content_commitment=False, data_encipherment=False,
                       key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure_dev_ca(ca_dir: Path) -> str:
    """The dev CA's certificate (PEM), made once in ``ca_dir`` (key kept beside it, 0600)."""
    ca_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = ca_dir / "ca.pem", ca_dir / "ca.key"
    with open(ca_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cert_path.exists() or not key_path.exists():
            key = _key()
            cert = _cert(CA_NAME, key, CA_NAME, key, ca=True, days=3650)
            key_path.touch(mode=0o600)
            key_path.write_bytes(_key_pem(key))
            cert_path.write_bytes(_pem(cert))
    return cert_path.read_text()


class Stub:
    def __init__(self, ca_dir: Path, port: int):
        ensure_dev_ca(ca_dir)
        self.ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
        self.ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
        self.port = port
        self.base = f"https://127.0.0.1:{port}"
        self.tls_key = _key()
        self.tls_cert = _cert("localhost", self.tls_key, CA_NAME, self.ca_key, ca=False,
                              dns=["localhost"], ips=["127.0.0.1"])
        # name → (key, certificate PEM) of the message verification certificates.
        self.signers: dict[str, tuple] = {}
        leaf_key = _key()
        self.signers["CERT-devstack"] = (leaf_key, _pem(_cert(
            LEAF_NAME, leaf_key, CA_NAME, self.ca_key, ca=False, dns=[LEAF_NAME])))
        self_key = _key()
        self.signers["CERT-selfsigned"] = (self_key, _pem(_cert(
            LEAF_NAME, self_key, LEAF_NAME, self_key, ca=False, dns=[LEAF_NAME])))
        other_ca_key, other_key = _key(), _key()
        self.signers["CERT-otherca"] = (other_key, _pem(_cert(
            LEAF_NAME, other_key, "Some Other CA", other_ca_key, ca=False, dns=[LEAF_NAME])))
        self.reset()

    def reset(self) -> None:
        self.objects: dict[str, dict[str, dict]] = {}
        self.tokens: set[str] = set()
        self.signed: dict[str, bytes] = {}  # transmission id → body
        self.requests: list[dict] = []
        # (path, PayPal-Request-Id) → the first answer (status, body).
        self.answered: dict[tuple[str, str], tuple[int, dict]] = {}
        self.events: list[dict] = []  # the webhooks PayPal would have sent, in order
        self.target: dict | None = None  # {"url", "webhook_id"}: where to send them

    def emit(self, event_type: str, resource_type: str, resource: dict,
             version: str | None = "2.0") -> dict:
        """Queue the webhook PayPal would send now (a copy of ``resource``), and send it to
        the target when one is set (in the background, as PayPal does after answering)."""
        event = {"id": "WH-" + secrets.token_hex(10).upper(), "event_version": "1.0",
                 "create_time": _now(), "resource_type": resource_type,
                 "event_type": event_type, "summary": event_type.lower().replace(".", " "),
                 "resource": json.loads(json.dumps(
                     {k: v for k, v in resource.items() if not k.startswith("_stub")}))}
        if version:
            event["resource_version"] = version
        self.events.append(event)
        if self.target is not None:
            import asyncio

            target = dict(self.target)
            asyncio.get_running_loop().run_in_executor(None, self.send, event, target["url"],
                                                       target["webhook_id"])
        return event

    def send(self, event: dict, url: str, webhook_id: str, cert: str = "CERT-devstack"
             ) -> tuple[int, bytes]:
        body = json.dumps(event).encode()
        headers = self.sign(body, webhook_id, cert)
        outgoing = urllib.request.Request(url, data=body, headers=headers, method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(outgoing, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:
            return 0, str(exc).encode()

    def cert_url(self, name: str = "CERT-devstack") -> str:
        return f"{self.base}/v1/notifications/certs/{name}"

    def sign(self, body: bytes, webhook_id: str, cert: str = "CERT-devstack") -> dict:
        key, _ = self.signers[cert]
        tid = str(uuid.uuid4())
        ttime = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = f"{tid}|{ttime}|{webhook_id}|{zlib.crc32(body)}".encode()
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        self.signed[tid] = body
        return {"paypal-transmission-id": tid, "paypal-transmission-time": ttime,
                "paypal-transmission-sig": base64.b64encode(signature).decode(),
                "paypal-cert-url": self.cert_url(cert), "paypal-auth-algo": "SHA256withRSA",
                "paypal-auth-version": "v2", "content-type": "application/json"}

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = Path(tmp) / "tls.pem", Path(tmp) / "tls.key"
            cert_file.write_bytes(_pem(self.tls_cert) + _pem(self.ca_cert))
            key_file.write_bytes(_key_pem(self.tls_key))
            context.load_cert_chain(cert_file, key_file)
        return context


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decimal(value):
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(-1)


def _money(value, currency: str) -> str:
    """PayPal's string of an amount: no decimals for JPY, HUF and TWD, else two."""
    from decimal import Decimal

    places = Decimal(1) if currency in ("JPY", "HUF", "TWD") else Decimal("0.01")
    return str(value.quantize(places))


# --- the HTTP side ------------------------------------------------------------------------------

_PATHS = {"subscriptions": "/v1/billing/subscriptions/", "agreements": "/v1/payments/billing-agreements/",
          "orders": "/v2/checkout/orders/", "captures": "/v2/payments/captures/",
          "sales": "/v1/payments/sale/", "payments": "/v1/payments/payment/",
          "disputes": "/v1/customer/disputes/"}
# What PayPal's List disputes gives of each dispute (the details have the rest).
_DISPUTE_SUMMARY = ("dispute_id", "create_time", "update_time", "reason", "status",
                    "dispute_state", "dispute_amount", "dispute_life_cycle_stage",
                    "dispute_channel", "links")


def build_app(stub: Stub) -> web.Application:
    routes = web.RouteTableDef()

    def error(status: int, name: str) -> web.Response:
        return web.json_response({"name": name, "message": name.replace("_", " ").lower(),
                                  "debug_id": secrets.token_hex(6)}, status=status)

    def authorized(request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in stub.tokens

    @web.middleware
    async def log(request, handler):
        if not request.path.startswith("/_stub/"):
            entry = {"method": request.method, "path": request.path, "at": time.time(),
                     "query": request.query_string,
                     "request_id": request.headers.get("PayPal-Request-Id")}
            if request.body_exists and request.content_type == "application/json":
                try:
                    entry["body"] = json.loads(await request.read())
                except ValueError:
                    entry["body"] = None
            stub.requests.append(entry)
        return await handler(request)

    @routes.post("/v1/oauth2/token")
    async def token(request):
        auth = request.headers.get("Authorization", "")
        try:
            client_id, _, secret = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        except ValueError:
            client_id = secret = ""
        form = await request.post()
        if not auth.startswith("Basic ") or not client_id or not secret or \
                form.get("grant_type") != "client_credentials":
            return error(401, "invalid_client")
        value = "A21AA" + secrets.token_urlsafe(24)
        stub.tokens.add(value)
        return web.json_response({"scope": "https://uri.paypal.com/services/subscriptions",
                                  "access_token": value, "token_type": "Bearer",
                                  "app_id": "APP-devstack", "expires_in": 32400,
                                  "nonce": secrets.token_hex(8)})

    @routes.get("/v1/notifications/certs/{name}")
    async def cert(request):
        signer = stub.signers.get(request.match_info["name"])
        if signer is None:
            return error(404, "RESOURCE_NOT_FOUND")
        return web.Response(body=signer[1], content_type="application/x-pem-file")

    @routes.post("/v1/notifications/verify-webhook-signature")
    async def verify(request):
        if not authorized(request):
            return error(401, "AUTHENTICATION_FAILURE")
        data = await request.json()
        status = "FAILURE"
        body = stub.signed.get(data.get("transmission_id"))
        name = str(data.get("cert_url", "")).rsplit("/", 1)[-1]
        if body is not None and name in stub.signers and \
                json.loads(body) == data.get("webhook_event"):
            message = (f"{data['transmission_id']}|{data['transmission_time']}|"
                       f"{data['webhook_id']}|{zlib.crc32(body)}").encode()
            try:
                stub.signers[name][0].public_key().verify(
                    base64.b64decode(data.get("transmission_sig", "")), message,
                    padding.PKCS1v15(), hashes.SHA256())
                status = "SUCCESS"
            except Exception:  # noqa: BLE001 - any failure is PayPal's FAILURE
                status = "FAILURE"
        return web.json_response({"verification_status": status})

    def reader(kind: str):
        async def read(request):
            if not authorized(request):
                return error(401, "AUTHENTICATION_FAILURE")
            found = stub.objects.get(kind, {}).get(request.match_info["id"])
            if not found:
                return error(404, "RESOURCE_NOT_FOUND")
            return web.json_response({k: v for k, v in found.items() if not k.startswith("_stub")})
        return read

    for kind, prefix in _PATHS.items():
        routes.get(prefix + "{id}")(reader(kind))

    # --- the gateway's calls ---

    def unprocessable(issue: str, description: str) -> web.Response:
        return web.json_response({
            "name": "UNPROCESSABLE_ENTITY", "debug_id": secrets.token_hex(6),
            "message": "The requested action could not be performed, semantically incorrect, "
                       "or failed business validation.",
            "details": [{"issue": issue, "description": description}]}, status=422)

    def invalid(issue: str, field: str) -> web.Response:
        return web.json_response({
            "name": "INVALID_REQUEST", "debug_id": secrets.token_hex(6),
            "message": "Request is not well-formed, syntactically incorrect, or violates schema.",
            "details": [{"field": field, "issue": issue}]}, status=400)

    async def body_of(request) -> dict | None:
        try:  # read() is cached: the log middleware may have read it already
            data = json.loads(await request.read() or b"{}")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def idempotent(handler):
        """PayPal-Request-Id: the same id on the same path answers the first answer."""
        async def wrapped(request):
            if not authorized(request):
                return error(401, "AUTHENTICATION_FAILURE")
            key = request.headers.get("PayPal-Request-Id")
            if key and (request.path, key) in stub.answered:
                status, body = stub.answered[(request.path, key)]
                return web.json_response(body, status=status)
            response = await handler(request)
            if key and response.status < 500:
                stub.answered[(request.path, key)] = (
                    response.status, json.loads(response.body) if response.body else {})
            return response
        return wrapped

    def reason_of(data: dict | None, required: bool) -> web.Response | None:
        if data is None:
            return invalid("MALFORMED_REQUEST_JSON", "/")
        reason = data.get("reason")
        if reason is None and not required:
            return None
        if not isinstance(reason, str) or not reason:
            return invalid("MISSING_REQUIRED_PARAMETER", "/reason")
        if len(reason) > 128:
            return invalid("INVALID_STRING_MAX_LENGTH", "/reason")
        return None

    def subscription_of(request) -> dict | None:
        return stub.objects.get("subscriptions", {}).get(request.match_info["id"])

    def changed(sub: dict, status: str, event_type: str) -> None:
        sub["status"] = status
        sub["status_update_time"] = _now()
        stub.emit(event_type, "subscription", sub)

    _STATE_CHANGES = {  # action: (from, to, event, PayPal's description of the 422)
        "cancel": (("ACTIVE", "SUSPENDED"), "CANCELLED", "BILLING.SUBSCRIPTION.CANCELLED",
                   "Invalid subscription status for cancel action; subscription status should "
                   "be active or suspended."),
        "suspend": (("ACTIVE",), "SUSPENDED", "BILLING.SUBSCRIPTION.SUSPENDED",
                    "Invalid subscription status for suspend action; subscription status "
                    "should be active."),
        "activate": (("SUSPENDED",), "ACTIVE", "BILLING.SUBSCRIPTION.ACTIVATED",
                     "Invalid subscription status for activate action; subscription status "
                     "should be suspended."),
    }

    def state_change(action: str):
        allowed, to, event_type, description = _STATE_CHANGES[action]

        async def handle(request):
            if not authorized(request):
                return error(401, "AUTHENTICATION_FAILURE")
            refused = reason_of(await body_of(request), required=action != "activate")
            if refused is not None:
                return refused
            sub = subscription_of(request)
            if sub is None:
                return error(404, "RESOURCE_NOT_FOUND")
            if sub.get("status") not in allowed:
                return unprocessable("SUBSCRIPTION_STATUS_INVALID", description)
            changed(sub, to, event_type)
            return web.Response(status=204)
        return handle

    for action in _STATE_CHANGES:
        routes.post(f"/v1/billing/subscriptions/{{id}}/{action}")(state_change(action))

    @routes.post("/v1/billing/subscriptions/{id}/capture")
    @idempotent
    async def capture_outstanding(request):
        data = await body_of(request)
        if data is None:
            return invalid("MALFORMED_REQUEST_JSON", "/")
        for name in ("note", "capture_type", "amount"):
            if name not in data:
                return invalid("MISSING_REQUIRED_PARAMETER", f"/{name}")
        if data["capture_type"] != "OUTSTANDING_BALANCE":
            return invalid("INVALID_PARAMETER_VALUE", "/capture_type")
        sub = subscription_of(request)
        if sub is None:
            return error(404, "RESOURCE_NOT_FOUND")
        if sub.get("status") not in ("ACTIVE", "SUSPENDED", "EXPIRED"):
            return unprocessable("SUBSCRIPTION_STATUS_INVALID",
                                 "Invalid subscription status for capture action; subscription "
                                 "status should be active or suspended or expired.")
        billing = sub.setdefault("billing_info", {})
        balance = billing.get("outstanding_balance") or {"currency_code": "USD", "value": "0"}
        amount = data["amount"] if isinstance(data["amount"], dict) else {}
        if amount.get("currency_code") != balance["currency_code"]:
            return unprocessable("CURRENCY_MISMATCH", "The currency code is different from "
                                 "the subscription's currency code.")
        if _decimal(balance["value"]) <= 0:
            return unprocessable("ZERO_OUTSTANDING_BALANCE",
                                 "Current outstanding balance should be greater than zero.")
        if _decimal(amount.get("value")) > _decimal(balance["value"]):
            return unprocessable("AMOUNT_GREATER_THAN_OUTSTANDING_BALANCE",
                                 "The capture amount can not be greater than the current "
                                 "outstanding balance.")
        txn = {"id": secrets.token_hex(8).upper(), "time": _now(),
               "amount_with_breakdown": {"gross_amount": dict(amount)},
               "payer_email": (sub.get("subscriber") or {}).get("email_address")}
        stub.objects.setdefault("transactions", {}).setdefault(sub["id"], []).append(txn)
        if sub.get("_stub_decline_capture"):  # a test's switch: the payer's funding fails
            txn["status"] = "DECLINED"
            return web.json_response(txn)
        txn["status"] = "COMPLETED"
        left = _decimal(balance["value"]) - _decimal(amount["value"])
        billing["outstanding_balance"] = {"currency_code": balance["currency_code"],
                                          "value": _money(left, balance["currency_code"])}
        billing["last_payment"] = {"amount": dict(amount), "time": txn["time"]}
        sale = {"id": txn["id"], "state": "completed", "billing_agreement_id": sub["id"],
                "amount": {"total": amount["value"], "currency": amount["currency_code"]},
                "create_time": txn["time"], "update_time": txn["time"]}
        stub.objects.setdefault("sales", {})[sale["id"]] = sale
        stub.emit("PAYMENT.SALE.COMPLETED", "sale", sale, version=None)
        stub.emit("BILLING.SUBSCRIPTION.UPDATED", "subscription", sub)
        return web.json_response(txn)

    @routes.get("/v1/billing/subscriptions/{id}/transactions")
    async def transactions(request):
        if not authorized(request):
            return error(401, "AUTHENTICATION_FAILURE")
        if "start_time" not in request.query or "end_time" not in request.query:
            return invalid("MISSING_REQUIRED_PARAMETER", "start_time")
        sub = subscription_of(request)
        if sub is None:
            return error(404, "RESOURCE_NOT_FOUND")
        found = [{k: v for k, v in t.items() if k != "payer_email" or v}
                 for t in stub.objects.get("transactions", {}).get(sub["id"], [])
                 if request.query["start_time"] <= t["time"] <= request.query["end_time"]]
        return web.json_response({"transactions": found, "total_items": len(found),
                                  "total_pages": 1})

    @routes.post("/v2/payments/captures/{id}/refund")
    @idempotent
    async def refund_capture(request):
        data = await body_of(request)
        if data is None:
            return invalid("MALFORMED_REQUEST_JSON", "/")
        capture = stub.objects.get("captures", {}).get(request.match_info["id"])
        if capture is None:
            return error(404, "RESOURCE_NOT_FOUND")
        paid = capture["amount"]
        code = paid["currency_code"]
        refunded = _decimal(capture.get("_stub_refunded", "0"))
        left = _decimal(paid["value"]) - refunded
        if capture.get("status") not in ("COMPLETED", "PARTIALLY_REFUNDED") or left <= 0:
            return unprocessable("CAPTURE_FULLY_REFUNDED",
                                 "The capture has already been fully refunded")
        amount = data.get("amount")
        if amount is None:
            value = left
        else:
            if not isinstance(amount, dict) or "value" not in amount or "currency_code" not in amount:
                return invalid("MISSING_REQUIRED_PARAMETER", "/amount")
            if amount["currency_code"] != code:
                return unprocessable("REFUND_CAPTURE_CURRENCY_MISMATCH",
                                     "Refund must be in the same currency as the capture")
            if "." in str(amount["value"]) and code in ("JPY", "HUF", "TWD"):
                return unprocessable("DECIMALS_NOT_SUPPORTED",
                                     "Currency does not support decimals.")
            value = _decimal(amount["value"])
            if value <= 0:
                return unprocessable("CANNOT_BE_ZERO_OR_NEGATIVE",
                                     "Must be greater than zero.")
            if value > left:
                return unprocessable("REFUND_AMOUNT_EXCEEDED",
                                     "The refund amount must be less than or equal to the "
                                     "capture amount that has not yet been refunded.")
        capture["_stub_refunded"] = str(refunded + value)
        capture["status"] = "REFUNDED" if value == left else "PARTIALLY_REFUNDED"
        refund_id = secrets.token_hex(8).upper()
        refund = {"id": refund_id, "status": "COMPLETED",
                  "amount": {"currency_code": code, "value": _money(value, code)},
                  "create_time": _now(), "update_time": _now(),
                  "links": [{"href": f"{stub.base}/v2/payments/refunds/{refund_id}",
                             "rel": "self", "method": "GET"},
                            {"href": f"{stub.base}/v2/payments/captures/{capture['id']}",
                             "rel": "up", "method": "GET"}]}
        stub.emit("PAYMENT.CAPTURE.REFUNDED", "refund", refund)
        return web.json_response(refund, status=201)

    @routes.post("/v1/payments/sale/{id}/refund")
    @idempotent
    async def refund_sale(request):
        data = await body_of(request)
        if data is None:
            return invalid("MALFORMED_REQUEST_JSON", "/")
        sale = stub.objects.get("sales", {}).get(request.match_info["id"])
        if sale is None:
            return error(404, "INVALID_RESOURCE_ID")
        code = sale["amount"]["currency"]
        refunded = _decimal(sale.get("_stub_refunded", "0"))
        left = _decimal(sale["amount"]["total"]) - refunded
        if sale.get("state") not in ("completed", "partially_refunded") or left <= 0:
            return web.json_response({"name": "TRANSACTION_REFUSED", "debug_id": secrets.token_hex(6),
                                      "message": "The request was refused."}, status=400)
        amount = data.get("amount")
        value = left if amount is None else _decimal((amount or {}).get("total"))
        if amount is not None and (amount.get("currency") != code or value <= 0 or value > left):
            return web.json_response({"name": "TRANSACTION_REFUSED", "debug_id": secrets.token_hex(6),
                                      "message": "Refund amount exceeds transaction amount or "
                                                 "is invalid."}, status=400)
        sale["_stub_refunded"] = str(refunded + value)
        sale["state"] = "refunded" if value == left else "partially_refunded"
        refund = {"id": secrets.token_hex(8).upper(), "state": "completed", "sale_id": sale["id"],
                  "amount": {"total": _money(value, code), "currency": code},
                  "create_time": _now(), "update_time": _now()}
        stub.emit("PAYMENT.SALE.REFUNDED", "refund", {
            **refund, "amount": {"total": "-" + refund["amount"]["total"], "currency": code}},
            version=None)
        return web.json_response(refund, status=201)

    # --- the dev stack's and tests' controls ---

    @routes.post("/_stub/bill/{id}")
    async def bill(request):
        """PayPal bills the subscription's next cycle now (its price, or ``amount``): a
        completed transaction and sale, the next billing time a month on, and PayPal's
        PAYMENT.SALE.COMPLETED and BILLING.SUBSCRIPTION.UPDATED."""
        sub = subscription_of(request)
        if sub is None:
            return error(404, "RESOURCE_NOT_FOUND")
        data = await body_of(request) or {}
        cycle = next((c for c in (sub.get("plan") or {}).get("billing_cycles") or []
                      if c.get("tenure_type") == "REGULAR"), {})
        price = data.get("amount") or (cycle.get("pricing_scheme") or {}).get("fixed_price") \
            or {"currency_code": "USD", "value": "10.00"}
        txn = {"id": secrets.token_hex(8).upper(), "time": _now(), "status": "COMPLETED",
               "amount_with_breakdown": {"gross_amount": dict(price)}}
        stub.objects.setdefault("transactions", {}).setdefault(sub["id"], []).append(txn)
        sale = {"id": txn["id"], "state": "completed", "billing_agreement_id": sub["id"],
                "amount": {"total": price["value"], "currency": price["currency_code"]},
                "create_time": txn["time"], "update_time": txn["time"]}
        stub.objects.setdefault("sales", {})[sale["id"]] = sale
        billing = sub.setdefault("billing_info", {})
        billing["last_payment"] = {"amount": dict(price), "time": txn["time"]}
        billing["next_billing_time"] = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
                                        ).strftime("%Y-%m-%dT%H:%M:%SZ")
        stub.emit("PAYMENT.SALE.COMPLETED", "sale", sale, version=None)
        stub.emit("BILLING.SUBSCRIPTION.UPDATED", "subscription", sub)
        return web.json_response(txn)

    @routes.get("/v1/customer/disputes")
    async def list_disputes(request):
        """PayPal's List disputes, filtered by ``disputed_transaction_id`` (a capture's or
        sale's id), summaries only, as PayPal answers."""
        if not authorized(request):
            return error(401, "AUTHENTICATION_FAILURE")
        txn = request.query.get("disputed_transaction_id")
        found = [d for d in stub.objects.get("disputes", {}).values()
                 if txn is None or txn in {t.get("seller_transaction_id")
                                           for t in d.get("disputed_transactions") or []}]
        return web.json_response({
            "items": [{k: d[k] for k in _DISPUTE_SUMMARY if k in d} for d in found],
            "links": [{"href": f"{stub.base}/v1/customer/disputes", "rel": "self",
                       "method": "GET"}]})

    @routes.post("/_stub/disputes/{id}")
    async def dispute(request):
        """A payer opens a dispute on a capture or sale, or PayPal moves it on: the
        dispute's details (``transaction_id``, ``stage``: INQUIRY or CHARGEBACK,
        ``status``, ``outcome`` when RESOLVED, ``amount``), and PayPal's
        CUSTOMER.DISPUTE.CREATED, .UPDATED or .RESOLVED."""
        data = await request.json()
        known = stub.objects.setdefault("disputes", {})
        dispute_id = request.match_info["id"]
        before = known.get(dispute_id)
        status = data.get("status", "WAITING_FOR_SELLER_RESPONSE")
        found = {**(before or {}), "dispute_id": dispute_id, "update_time": _now(),
                 "reason": data.get("reason", "MERCHANDISE_OR_SERVICE_NOT_RECEIVED"),
                 "status": status, "dispute_life_cycle_stage": data.get("stage", "INQUIRY"),
                 "dispute_channel": "INTERNAL",
                 "dispute_state": "RESOLVED" if status == "RESOLVED" else "REQUIRED_ACTION",
                 "dispute_amount": data["amount"],
                 "disputed_transactions": [{"seller_transaction_id": data["transaction_id"],
                                            "seller_protection_eligible": True}],
                 "links": [{"href": f"{stub.base}/v1/customer/disputes/{dispute_id}",
                            "rel": "self", "method": "GET"}]}
        found.setdefault("create_time", found["update_time"])
        if data.get("outcome"):
            found["dispute_outcome"] = {"outcome_code": data["outcome"]}
        known[dispute_id] = found
        event_type = "CUSTOMER.DISPUTE.CREATED" if before is None else \
            "CUSTOMER.DISPUTE.RESOLVED" if status == "RESOLVED" else "CUSTOMER.DISPUTE.UPDATED"
        stub.emit(event_type, "dispute", found, version=None)
        return web.json_response(found)

    @routes.get("/_stub/events")
    async def events(request):
        return web.json_response(stub.events)

    @routes.put("/_stub/webhook-target")
    async def webhook_target(request):
        data = await request.json()
        stub.target = {"url": data["url"], "webhook_id": data["webhook_id"]} if data else None
        return web.json_response({"ok": True})

    @routes.put("/_stub/objects/{kind}/{id}")
    async def put_object(request):
        kind = request.match_info["kind"]
        if kind not in _PATHS:
            return error(404, "UNKNOWN_KIND")
        stub.objects.setdefault(kind, {})[request.match_info["id"]] = await request.json()
        return web.json_response({"ok": True})

    @routes.post("/_stub/sign")
    async def sign(request):
        data = await request.json()
        body = base64.b64decode(data["body_base64"]) if "body_base64" in data else \
            json.dumps(data["event"]).encode()
        headers = stub.sign(body, data["webhook_id"], data.get("cert", "CERT-devstack"))
        return web.json_response({"headers": headers, "body_base64": base64.b64encode(body).decode()})

    @routes.post("/_stub/send")
    async def send(request):
        import asyncio

        data = await request.json()
        status, answer = await asyncio.get_running_loop().run_in_executor(
            None, stub.send, data["event"], data["url"], data["webhook_id"],
            data.get("cert", "CERT-devstack"))
        return web.json_response({"status": status, "body": answer.decode(errors="replace")})

    @routes.get("/_stub/requests")
    async def requests_served(request):
        return web.json_response(stub.requests)

    @routes.post("/_stub/reset")
    async def reset(request):
        stub.reset()
        return web.json_response({"ok": True})

    @routes.get("/")
    async def root(request):
        return web.json_response({"paypal_stub": True})

    app = web.Application(middlewares=[log])
    app.add_routes(routes)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca-dir", type=Path, required=True)
    args = parser.parse_args()
    stub = Stub(args.ca_dir, args.port)
    web.run_app(build_app(stub), host="127.0.0.1", port=args.port,
                ssl_context=stub.tls_context(), print=None)


if __name__ == "__main__":
    main()
