"""PayPal webhook verification (chalicelib/processors/paypal/webhook.py, fetch.py): the
real signed deliveries, tampering, foreign certificate URLs refused before any fetch,
self-signed and foreign-CA certificates, AIA, the SSRF guard, and the dev override that
the deployment never sets."""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from chalicelib import outbound as fetch
from chalicelib.processors.errors import InvalidSignature
from chalicelib.processors.paypal import webhook

REPO = Path(__file__).resolve().parent.parent
FIXTURES = json.loads((REPO / "tests/fixtures/paypal/signed-deliveries.json").read_text())
DELIVERIES = FIXTURES["deliveries"]
WEBHOOK_ID = FIXTURES["webhook_id"]
INSIDE = dt.datetime(2024, 9, 1, tzinfo=dt.UTC)  # the leaf is valid 2024-03-08..2025-03-07
CERT_URL = DELIVERIES[0]["headers"]["paypal-cert-url"]


class Fetcher:
    """Serves certificates by URL and records every fetch."""

    def __init__(self, served: dict[str, bytes] | None = None):
        self.served = served if served is not None else {
            url: pem.encode() for url, pem in FIXTURES["certs"].items()}
        self.calls: list[str] = []

    def __call__(self, url, hosts, schemes=None):
        self.calls.append(url)
        if url not in self.served:
            raise InvalidSignature("404")
        return self.served[url]


@pytest.fixture(autouse=True)
def _no_cached_certificates():
    webhook.forget_cached()
    yield
    webhook.forget_cached()


def _body(delivery) -> bytes:
    return base64.b64decode(delivery["body_base64"])


@pytest.mark.parametrize("delivery", DELIVERIES, ids=[d["name"] for d in DELIVERIES])
def test_every_real_delivery_verifies(delivery):
    fetcher = Fetcher()
    webhook.verify(_body(delivery), delivery["headers"], WEBHOOK_ID, "live", now=INSIDE,
                   fetch_cert=fetcher)
    assert fetcher.calls == [delivery["headers"]["paypal-cert-url"]]


def test_certificates_are_cached_until_they_expire():
    fetcher = Fetcher()
    for delivery in DELIVERIES:
        webhook.verify(_body(delivery), delivery["headers"], WEBHOOK_ID, "live", now=INSIDE,
                       fetch_cert=fetcher)
    assert len(fetcher.calls) == 1
    # After the leaf's end the cached one is not used: it is fetched again, and refused.
    with pytest.raises(InvalidSignature, match="not valid"):
        webhook.verify(_body(DELIVERIES[0]), DELIVERIES[0]["headers"], WEBHOOK_ID, "live",
                       now=dt.datetime(2025, 3, 8, tzinfo=dt.UTC), fetch_cert=fetcher)
    assert len(fetcher.calls) == 2


@pytest.mark.parametrize("delivery", DELIVERIES[::3], ids=[d["name"] for d in DELIVERIES[::3]])
def test_any_byte_changed_fails(delivery):
    body = _body(delivery)
    positions = sorted({0, 1, len(body) // 7, len(body) // 3, len(body) // 2,
                        2 * len(body) // 3, len(body) - 2, len(body) - 1})
    for position in positions:
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        with pytest.raises(InvalidSignature):
            webhook.verify(bytes(tampered), delivery["headers"], WEBHOOK_ID, "live", now=INSIDE,
                           fetch_cert=Fetcher())
    for header in ("paypal-transmission-id", "paypal-transmission-time"):
        changed = {**delivery["headers"], header: delivery["headers"][header][:-1] + "0"}
        if changed[header] == delivery["headers"][header]:
            changed[header] = delivery["headers"][header][:-1] + "1"
        with pytest.raises(InvalidSignature):
            webhook.verify(body, changed, WEBHOOK_ID, "live", now=INSIDE, fetch_cert=Fetcher())
    signature = bytearray(base64.b64decode(delivery["headers"]["paypal-transmission-sig"]))
    signature[10] ^= 0x80
    with pytest.raises(InvalidSignature):
        webhook.verify(body, {**delivery["headers"], "paypal-transmission-sig":
                              base64.b64encode(bytes(signature)).decode()},
                       WEBHOOK_ID, "live", now=INSIDE, fetch_cert=Fetcher())


def test_wrong_webhook_id_mode_or_clock_fails():
    delivery = DELIVERIES[1]
    for webhook_id in ("WEBHOOK_ID2", "webhook_id", "8PT597110X687430LW"):
        with pytest.raises(InvalidSignature):
            webhook.verify(_body(delivery), delivery["headers"], webhook_id, "live", now=INSIDE,
                           fetch_cert=Fetcher())
    fetcher = Fetcher()
    with pytest.raises(InvalidSignature):  # a live certificate URL for a sandbox account
        webhook.verify(_body(delivery), delivery["headers"], WEBHOOK_ID, "sandbox", now=INSIDE,
                       fetch_cert=fetcher)
    assert fetcher.calls == []
    for outside in (dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2025, 4, 1, tzinfo=dt.UTC)):
        webhook.forget_cached()
        with pytest.raises(InvalidSignature, match="not valid"):
            webhook.verify(_body(delivery), delivery["headers"], WEBHOOK_ID, "live", now=outside,
                           fetch_cert=Fetcher())


FOREIGN_URLS = [
    "http://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1a5f47cb",
    "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-360caa42-fca2a594-1a5f47cb",
    "https://evil.example/v1/notifications/certs/CERT-360caa42-fca2a594-1a5f47cb",
    "https://api.paypal.com@evil.example/v1/notifications/certs/CERT-360caa42",
    "https://user@api.paypal.com/v1/notifications/certs/CERT-360caa42",
    "https://user:pw@api.paypal.com/v1/notifications/certs/CERT-360caa42",
    "https://api.paypal.com:8443/v1/notifications/certs/CERT-360caa42",
    "https://api.paypal.com:443/v1/notifications/certs/CERT-360caa42",
    "https://api.paypal.com./v1/notifications/certs/CERT-360caa42",
    "https://API.PAYPAL.COM:/v1/notifications/certs/CERT-360caa42",
    "https://api.paypal.com/v1/notifications/certs/CERT-360caa42?x=1",
    "https://api.paypal.com/v1/notifications/certs/CERT-360caa42#x",
    "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
    "https://api.paypal.com/v1/notifications/webhooks",
    "https://api.paypal.com\\@evil.example/v1/notifications/certs/CERT-1",
    "https://127.0.0.1/v1/notifications/certs/CERT-1",
    "https://169.254.169.254/v1/notifications/certs/CERT-1",
    "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-1",
    "file:///etc/passwd",
    "https://api.paypal.com%2eevil.example/v1/notifications/certs/CERT-1",
    "https://xn--api-paypal-com/v1/notifications/certs/CERT-1",
]


@pytest.mark.parametrize("url", FOREIGN_URLS)
def test_a_certificate_url_off_the_allow_list_is_refused_before_any_fetch(url, monkeypatch):
    resolved = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: resolved.append(a) or [])
    fetcher = Fetcher({url: FIXTURES["certs"][CERT_URL].encode()})
    delivery = DELIVERIES[1]
    with pytest.raises(InvalidSignature, match="refused"):
        webhook.verify(_body(delivery), {**delivery["headers"], "paypal-cert-url": url},
                       WEBHOOK_ID, "live", now=INSIDE, fetch_cert=fetcher)
    assert fetcher.calls == [] and resolved == []


def test_other_algorithms_and_missing_headers_fail():
    delivery = DELIVERIES[1]
    for change in ({"paypal-auth-algo": "SHA1withRSA"}, {"paypal-transmission-sig": "%%%"},
                   {"paypal-transmission-id": ""}, {"paypal-cert-url": ""}):
        fetcher = Fetcher()
        with pytest.raises(InvalidSignature):
            webhook.verify(_body(delivery), {**delivery["headers"], **change}, WEBHOOK_ID,
                           "live", now=INSIDE, fetch_cert=fetcher)
        assert fetcher.calls == []


# --- certificates made here ----------------------------------------------------------------


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(subject, key, issuer, issuer_key, *, ca=False, dns=(), aia=None, days=30):
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns]),
                                        critical=False).add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if aia:
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(aia))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


SANDBOX_URL = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-test"
SANDBOX_NAME = "messageverificationcerts.sandbox.paypal.com"


def _signed(key, webhook_id="WH-1", body=b'{"id":"WH-x"}'):
    headers = {"paypal-transmission-id": "6b6b4a50-0000-11ef-0000-000000000001",
               "paypal-transmission-time": "2024-09-01T00:00:00Z",
               "paypal-cert-url": SANDBOX_URL, "paypal-auth-algo": "SHA256withRSA"}
    message = f"{headers['paypal-transmission-id']}|{headers['paypal-transmission-time']}|" \
              f"{webhook_id}|{__import__('zlib').crc32(body)}".encode()
    headers["paypal-transmission-sig"] = base64.b64encode(
        key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return body, headers


class Asked:
    def __init__(self, answer: bool):
        self.answer, self.calls = answer, 0

    def __call__(self, transmission):
        self.calls += 1
        return self.answer


def test_a_self_signed_certificate_with_the_right_name_is_refused_without_asking_paypal():
    key = _key()
    fetcher = Fetcher({SANDBOX_URL: _pem(_cert(SANDBOX_NAME, key, SANDBOX_NAME, key, dns=[SANDBOX_NAME]))})
    asked = Asked(True)
    body, headers = _signed(key)
    with pytest.raises(InvalidSignature, match="self-signed"):
        webhook.verify(body, headers, "WH-1", "sandbox", fetch_cert=fetcher, ask_paypal=asked)
    assert asked.calls == 0


def test_a_wrongly_named_certificate_is_refused():
    ca_key, key = _key(), _key()
    fetcher = Fetcher({SANDBOX_URL: _pem(_cert("evil.example", key, "Some CA", ca_key,
                                               dns=["evil.example"]))})
    body, headers = _signed(key)
    with pytest.raises(InvalidSignature, match="not PayPal's"):
        webhook.verify(body, headers, "WH-1", "sandbox", fetch_cert=fetcher, ask_paypal=Asked(True))


def test_a_chain_that_cannot_be_built_asks_paypal_and_only_then():
    ca_key, key = _key(), _key()
    leaf = _cert(SANDBOX_NAME, key, "Some Other CA", ca_key, dns=[SANDBOX_NAME])
    body, headers = _signed(key)
    yes, no = Asked(True), Asked(False)
    webhook.verify(body, headers, "WH-1", "sandbox", fetch_cert=Fetcher({SANDBOX_URL: _pem(leaf)}),
                   ask_paypal=yes)
    assert yes.calls == 1
    with pytest.raises(InvalidSignature):
        webhook.verify(body, headers, "WH-1", "sandbox", fetch_cert=Fetcher({SANDBOX_URL: _pem(leaf)}),
                       ask_paypal=no)
    with pytest.raises(InvalidSignature):  # nobody to ask: refused
        webhook.verify(body, headers, "WH-1", "sandbox", fetch_cert=Fetcher({SANDBOX_URL: _pem(leaf)}))
    # A signature that does not verify is refused before anything is asked.
    _, forged = _signed(_key())
    asked = Asked(True)
    with pytest.raises(InvalidSignature, match="does not verify"):
        webhook.verify(body, forged, "WH-1", "sandbox", fetch_cert=Fetcher({SANDBOX_URL: _pem(leaf)}),
                       ask_paypal=asked)
    assert asked.calls == 0


def _dev_ca():
    from devstack import servers

    key = serialization.load_pem_private_key((servers.PAYPAL_CA_DIR / "ca.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((servers.PAYPAL_CA_DIR / "ca.pem").read_bytes())
    return key, cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_a_missing_intermediate_is_fetched_from_the_aia_address_on_digicerts_host_only():
    """The dev CA (an anchor through the dev override the tests set) issues an
    intermediate the verifier does not know; the leaf names it by AIA."""
    assert fetch.dev_override() is not None
    ca_key, ca_name = _dev_ca()
    mid_key, key = _key(), _key()
    intermediate = _cert("Test Intermediate", mid_key, ca_name, ca_key, ca=True)
    aia = "http://cacerts.digicert.com/TestIntermediate.crt"
    leaf = _cert(SANDBOX_NAME, key, "Test Intermediate", mid_key, dns=[SANDBOX_NAME], aia=aia)
    body, headers = _signed(key)
    fetcher = Fetcher({SANDBOX_URL: _pem(leaf),
                       aia: intermediate.public_bytes(serialization.Encoding.DER)})
    asked = Asked(False)
    webhook.verify(body, headers, "WH-1", "sandbox", fetch_cert=fetcher, ask_paypal=asked)
    assert fetcher.calls == [SANDBOX_URL, aia] and asked.calls == 0
    # An AIA address elsewhere is never fetched: the chain cannot be built, PayPal is asked.
    webhook.forget_cached()
    elsewhere = "http://169.254.169.254/latest/meta-data.crt"
    leaf = _cert(SANDBOX_NAME, key, "Test Intermediate", mid_key, dns=[SANDBOX_NAME], aia=elsewhere)
    fetcher = Fetcher({SANDBOX_URL: _pem(leaf), elsewhere: intermediate.public_bytes(
        serialization.Encoding.DER)})
    with pytest.raises(InvalidSignature):
        webhook.verify(body, headers, "WH-1", "sandbox", fetch_cert=fetcher, ask_paypal=asked)
    assert fetcher.calls == [SANDBOX_URL] and asked.calls == 1


# --- the SSRF guard ---------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["10.0.0.5", "127.0.0.1", "169.254.169.254", "192.168.1.1",
                                     "100.64.0.1", "0.0.0.0", "::1", "::ffff:127.0.0.1",
                                     "fe80::1", "fc00::1", "224.0.0.1", "240.0.0.1"])
def test_an_allowed_host_resolving_to_an_internal_address_is_refused_before_connecting(
        address, monkeypatch):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
        (family, socket.SOCK_STREAM, 6, "", (address, 443))])
    connected = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connected.append(a))
    with pytest.raises(fetch.Refused):
        fetch.request("GET", "https://api.paypal.com/v1/notifications/certs/CERT-1",
                      hosts=webhook.CERT_HOSTS["live"])
    assert connected == []


def test_the_connection_goes_to_the_checked_address_with_tls_for_the_host_name(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))])
    seen = {}

    def connect(address, timeout=None):
        seen["address"] = address
        raise OSError("no network in tests")

    monkeypatch.setattr(socket, "create_connection", connect)
    with pytest.raises(fetch.Unavailable):
        fetch.request("GET", "https://api.paypal.com/v1/notifications/certs/CERT-1",
                      hosts=webhook.CERT_HOSTS["live"])
    assert seen["address"] == ("93.184.215.14", 443)


# --- the dev override is the dev stack's only ------------------------------------------------


def test_the_deployment_never_sets_the_dev_override():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template_text = (REPO / "infra/template.yaml").read_text()
    config_text = (REPO / ".chalice/config.json").read_text()
    for text in (template_text, config_text):
        assert not re.search(r"PAYPAL_(DEV|API_BASE)", text)
    template = yaml.load(template_text, Loader=Loader)
    variables = {}
    for resource in (template.get("Resources") or {}).values():
        env = ((resource or {}).get("Properties") or {}).get("Environment") or {}
        variables.update(env.get("Variables") or {})
    assert variables and not [v for v in variables if v.startswith("PAYPAL_")]
    config = json.loads(config_text)
    stages = [config.get("environment_variables", {})] + [
        s.get("environment_variables", {}) for s in config.get("stages", {}).values()]
    assert not [v for stage in stages for v in stage if v.startswith("PAYPAL_")]


def test_without_the_override_only_paypals_hosts_and_roots(monkeypatch):
    monkeypatch.delenv("PAYPAL_DEV_CERT_HOSTS", raising=False)
    monkeypatch.delenv("PAYPAL_DEV_CA_PEM", raising=False)
    fetch.dev_override.cache_clear()
    try:
        assert fetch.dev_override() is None
        assert webhook._anchors() == webhook.ROOTS
        with pytest.raises(fetch.Refused):
            fetch.checked_url("https://127.0.0.1:8431/v1/notifications/certs/CERT-devstack",
                              webhook.CERT_HOSTS["sandbox"])
        assert {c.fingerprint(hashes.SHA256()).hex() for c in webhook.ROOTS} == {
            "7431e5f4c3c1ce4690774f0b61e05440883ba9a01ed00ba6abd7806ed3b118cf",
            "cb3ccbb76031e5e0138f8dd39a23f9de47ffc35e43c1144cea27d46a5ab1cb5f"}
    finally:
        fetch.dev_override.cache_clear()
