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
  checkout orders, captures, sales, v1 payments, from its state.

And for the dev stack and tests (``/_stub/…``): put an object into the state, sign a
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


# --- the HTTP side ------------------------------------------------------------------------------

_PATHS = {"subscriptions": "/v1/billing/subscriptions/", "agreements": "/v1/payments/billing-agreements/",
          "orders": "/v2/checkout/orders/", "captures": "/v2/payments/captures/",
          "sales": "/v1/payments/sale/", "payments": "/v1/payments/payment/"}


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
            stub.requests.append({"method": request.method, "path": request.path,
                                  "at": time.time()})
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
            return web.json_response(found) if found else error(404, "RESOURCE_NOT_FOUND")
        return read

    for kind, prefix in _PATHS.items():
        routes.get(prefix + "{id}")(reader(kind))

    # --- the dev stack's and tests' controls ---

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
        data = await request.json()
        body = json.dumps(data["event"]).encode()
        headers = stub.sign(body, data["webhook_id"], data.get("cert", "CERT-devstack"))
        outgoing = urllib.request.Request(data["url"], data=body, headers=headers, method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(outgoing, timeout=30) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read()
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
