"""Verify a PayPal webhook delivery offline, and parse its envelope.

PayPal signs ``<transmission id>|<transmission time>|<webhook id>|<crc32 of the raw
body, unsigned decimal>`` with SHA256withRSA, using the key of the certificate at
``paypal-cert-url``. Verifying (``verify``):

1. The headers are all there and the algorithm is SHA256withRSA.
2. The certificate URL is exactly ``https://<PayPal's certificate host>/v1/notifications/
   certs/<id>`` for the account's mode (live or sandbox): anything else (``http``, another
   host, ``api.paypal.com.evil.example``, user info, a port, a query) is refused *before*
   any fetch. The fetch itself is SSRF-guarded (``fetch.py``).
3. The signature is checked against that certificate's key first (a forged delivery costs
   no chain building, nor any fetch beyond its certificate, which is cached).
4. The certificate: named ``messageverificationcerts[.sandbox].paypal.com`` (its SAN),
   valid at the delivery's time, not self-signed, and chained to a DigiCert root PayPal
   names as a trust anchor (``certs/``, constants). The known intermediate is bundled; a
   missing one is fetched from the leaf's AIA address, on DigiCert's host only.
5. Only when the signature verifies but the chain cannot be built to those roots (PayPal
   changed CA again) is PayPal's verify-webhook-signature API asked instead of refusing.

Certificates (with the outcome of their chain) are cached per container until they
expire. The dev stack's own CA and hosts are a separately named override
(``fetch.dev_override``) the deployment never sets.
"""
from __future__ import annotations

import base64
import binascii
import re
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature as BadKeySignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from chalicelib import outbound as fetch
from chalicelib.errors import RetryLater
from chalicelib.observability import logger
from chalicelib.processors.errors import InvalidSignature

LIVE, SANDBOX = "live", "sandbox"
MODES = (LIVE, SANDBOX)
CERT_HOSTS = {
    LIVE: frozenset({"api.paypal.com", "api-m.paypal.com"}),
    SANDBOX: frozenset({"api.sandbox.paypal.com", "api-m.sandbox.paypal.com"}),
}
LEAF_NAMES = {LIVE: "messageverificationcerts.paypal.com",
              SANDBOX: "messageverificationcerts.sandbox.paypal.com"}
CERT_PATH = re.compile(r"/v1/notifications/certs/[A-Za-z0-9-]{1,128}")
# Where a missing intermediate may come from (the leaf's caIssuers address), and its shape.
AIA_HOSTS = frozenset({"cacerts.digicert.com"})
AIA_PATH = re.compile(r"/[A-Za-z0-9._-]{1,120}\.(?:crt|cer|der|pem)")
AUTH_ALGO = "SHA256withRSA"

_CERTS_DIR = Path(__file__).with_name("certs")
ROOT_FILES = ("DigiCertHighAssuranceEVRootCA.pem", "DigiCertGlobalRootG2.pem")
INTERMEDIATE_FILES = ("DigiCertSHA2ExtendedValidationServerCA.pem",)
_CACHE_MAX = 100


def _load(names) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate((_CERTS_DIR / n).read_bytes()) for n in names]


ROOTS = _load(ROOT_FILES)
KNOWN_INTERMEDIATES = _load(INTERMEDIATE_FILES)


@dataclass(frozen=True)
class Transmission:
    id: str
    time: str
    signature: bytes
    cert_url: str
    auth_algo: str


@dataclass
class _Cached:
    leaf: x509.Certificate
    chain: str  # "trusted" or "unbuildable"
    until: datetime


_certificates: dict[str, _Cached] = {}
_intermediates: dict[str, x509.Certificate] = {}
_lock = threading.Lock()


def forget_cached() -> None:
    """Drop every certificate this container holds (tests; a CA change)."""
    with _lock:
        _certificates.clear()
        _intermediates.clear()


def transmission(headers: Mapping[str, str]) -> Transmission:
    """The ``paypal-*`` headers of a delivery (names in lower case)."""
    def header(name: str, limit: int) -> str:
        value = headers.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise InvalidSignature(f"missing or malformed {name}")
        return value.strip()

    tid = header("paypal-transmission-id", 100)
    ttime = header("paypal-transmission-time", 64)
    if "|" in tid or "|" in ttime:
        raise InvalidSignature("malformed transmission headers")
    try:
        signature = base64.b64decode(header("paypal-transmission-sig", 2048), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature("the signature is not base64") from None
    return Transmission(tid, ttime, signature, header("paypal-cert-url", 2000),
                        header("paypal-auth-algo", 40))


def signed_message(t: Transmission, webhook_id: str, body: bytes) -> bytes:
    return f"{t.id}|{t.time}|{webhook_id}|{zlib.crc32(body)}".encode()


def check_cert_url(url: str, mode: str) -> None:
    """Refuse (InvalidSignature) a certificate URL that is not PayPal's for ``mode``."""
    try:
        _, _, _, path, _ = fetch.checked_url(url, CERT_HOSTS[mode])
    except fetch.Refused as exc:
        raise InvalidSignature(f"certificate URL refused: {exc}") from None
    if not CERT_PATH.fullmatch(path):
        raise InvalidSignature("certificate URL refused: not PayPal's certificate path")


def _default_fetch(url: str, hosts: frozenset[str], schemes=frozenset({"https"})) -> bytes:
    answer = fetch.request("GET", url, hosts=hosts, schemes=schemes, max_bytes=64 * 1024)
    if answer.status != 200:
        raise InvalidSignature(f"the certificate URL answered {answer.status}")
    return answer.body


def _parse_certs(data: bytes) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise InvalidSignature("the certificate URL did not serve a certificate") from None


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in san.get_values_for_type(x509.DNSName)]


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, BadKeySignature):
        return False
    return True


def _anchors() -> list[x509.Certificate]:
    dev = fetch.dev_override()
    if dev is None:
        return ROOTS
    return ROOTS + x509.load_pem_x509_certificates(dev.ca_pem.encode())


def _aia_url(cert: x509.Certificate) -> str | None:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for access in aia:
        if access.access_method == AuthorityInformationAccessOID.CA_ISSUERS and \
                isinstance(access.access_location, x509.UniformResourceIdentifier):
            return access.access_location.value
    return None


def _build_chain(leaf: x509.Certificate, served: list[x509.Certificate], name: str,
                 at: datetime, fetch_cert) -> tuple[str, datetime]:
    """``("trusted", until)`` when the leaf chains to an anchor at ``at``; else
    ``("unbuildable", leaf's end)``. A missing intermediate is fetched from the leaf's AIA
    address when that is on DigiCert's host."""
    anchors = _anchors()

    def attempt(extra):
        verifier = PolicyBuilder().store(Store(anchors)).time(at) \
            .build_server_verifier(x509.DNSName(name))
        chain = verifier.verify(leaf, served + KNOWN_INTERMEDIATES + extra)
        return min(c.not_valid_after_utc for c in chain)

    with _lock:
        fetched = list(_intermediates.values())
    try:
        return "trusted", attempt(fetched)
    except VerificationError as exc:
        first_error = str(exc)
    known_subjects = {c.subject for c in anchors + served + KNOWN_INTERMEDIATES + fetched}
    url = _aia_url(leaf)
    if leaf.issuer not in known_subjects and url:
        try:
            _, _, _, path, _ = fetch.checked_url(url, AIA_HOSTS, frozenset({"http", "https"}))
            if not AIA_PATH.fullmatch(path):
                raise fetch.Refused("not a CA certificate path")
            issuers = [c for c in _parse_certs(fetch_cert(url, AIA_HOSTS, frozenset({"http", "https"})))
                       if c.subject == leaf.issuer]
        except (fetch.Refused, InvalidSignature) as exc:
            logger.warning("the leaf's issuer could not be fetched", extra={"error": str(exc)})
            issuers = []
        if issuers:
            try:
                until = attempt(fetched + issuers)
            except VerificationError as exc:
                first_error = str(exc)
            else:
                with _lock:
                    if len(_intermediates) >= _CACHE_MAX:
                        _intermediates.clear()
                    _intermediates[url] = issuers[0]
                return "trusted", until
    logger.warning("PayPal's certificate does not chain to a known root",
                   extra={"error": first_error[:300], "issuer": leaf.issuer.rfc4514_string()[:300]})
    return "unbuildable", leaf.not_valid_after_utc


def _certificate(url: str, mode: str, now: datetime, fetch_cert) -> _Cached:
    with _lock:
        hit = _certificates.get(url)
    if hit is not None and now <= hit.until:
        return hit
    certs = _parse_certs(fetch_cert(url, CERT_HOSTS[mode]))
    leaf, served = certs[0], certs[1:]
    name = LEAF_NAMES[mode]
    if name not in _names(leaf):
        raise InvalidSignature("the certificate is not PayPal's message verification certificate")
    if _self_signed(leaf):
        raise InvalidSignature("the certificate is self-signed")
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise InvalidSignature("the certificate is not valid at the delivery's time")
    chain, until = _build_chain(leaf, served, name, now, fetch_cert)
    entry = _Cached(leaf, chain, min(until, leaf.not_valid_after_utc))
    with _lock:
        if len(_certificates) >= _CACHE_MAX:
            _certificates.clear()
        _certificates[url] = entry
    return entry


def verify(body: bytes, headers: Mapping[str, str], webhook_id: str, mode: str, *,
           now: datetime | None = None,
           fetch_cert: Callable[..., bytes] | None = None,
           ask_paypal: Callable[[Transmission], bool] | None = None) -> None:
    """Accept the delivery if PayPal signed it for ``webhook_id``; InvalidSignature
    otherwise (see the module). RetryLater when the certificate cannot be fetched now.

    ``now``: the delivery's time (the clock by default). ``fetch_cert(url, hosts[,
    schemes])``: the certificate fetcher (the guarded one by default). ``ask_paypal``:
    asks PayPal's verify-webhook-signature API, used only when the chain cannot be built.
    """
    if mode not in MODES or not webhook_id:
        raise InvalidSignature("PayPal is not set up for this account")
    now = now or datetime.now(UTC)
    t = transmission(headers)
    if t.auth_algo != AUTH_ALGO:
        raise InvalidSignature("unsupported signature algorithm")
    check_cert_url(t.cert_url, mode)
    try:
        entry = _certificate(t.cert_url, mode, now, fetch_cert or _default_fetch)
    except fetch.Refused as exc:
        raise InvalidSignature(f"certificate URL refused: {exc}") from None
    except fetch.Unavailable as exc:
        logger.warning("PayPal's certificate could not be fetched", extra={"error": str(exc)})
        raise RetryLater("PayPal's certificate could not be fetched; it will be retried") from None
    if not entry.leaf.not_valid_before_utc <= now <= entry.leaf.not_valid_after_utc:
        raise InvalidSignature("the certificate is not valid at the delivery's time")
    key = entry.leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidSignature("the certificate's key is not RSA")
    try:
        key.verify(t.signature, signed_message(t, webhook_id, body), padding.PKCS1v15(),
                   hashes.SHA256())
    except BadKeySignature:
        raise InvalidSignature("the signature does not verify") from None
    if entry.chain == "trusted":
        return
    if ask_paypal is None or not ask_paypal(t):
        raise InvalidSignature("the certificate does not chain to PayPal's roots and PayPal "
                               "did not confirm the delivery")
