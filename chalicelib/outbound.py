"""Outbound HTTP(S) for the PayPal adapter, guarded against SSRF.

Every URL this package fetches comes, directly or not, from a webhook delivery anyone can
send (``paypal-cert-url``, a certificate's AIA address) or from a setting. So a request is
made only to a host on an explicit allow list (PayPal's hosts, DigiCert's, and the dev
stack's hosts when that override is set), with no user info and no port but the one
allowed; the name is resolved once, every address it resolves to must be public (not
private, loopback, link-local, reserved, multicast or shared), and the connection goes to
that checked address while TLS verifies the certificate for the host *name*. So a DNS
answer that changes between the check and the connection (rebinding) cannot redirect it.
Redirects are never followed; answers are read up to a size limit.

The dev stack's hosts (``PAYPAL_DEV_CERT_HOSTS``) are the one exception: they may resolve
to loopback and are verified against the dev stack's own CA (``PAYPAL_DEV_CA_PEM``) only.
The deployment template never sets either (tests/test_paypal_webhooks.py checks).
"""
from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from chalicelib.observability import logger

TIMEOUT_SECONDS = 5
MAX_ANSWER_BYTES = 256 * 1024
_URL_FORBIDDEN = set(" \t\r\n\\\"'<>`{}|^")


class Refused(Exception):
    """The URL or the address it resolves to is not one this adapter may fetch."""


class Unavailable(Exception):
    """The host did not answer usefully (network, timeout, 5xx, an answer too large)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True)
class DevOverride:
    """The dev stack's PayPal stand-in: its ``host:port`` names and its CA."""

    hosts: frozenset[tuple[str, int]]
    ca_pem: str


@lru_cache(maxsize=1)
def dev_override() -> DevOverride | None:
    """From ``PAYPAL_DEV_CERT_HOSTS`` (``host:port,…``) and ``PAYPAL_DEV_CA_PEM``; None
    unless both are set (production: never)."""
    hosts_text = os.environ.get("PAYPAL_DEV_CERT_HOSTS", "").strip()
    ca_pem = os.environ.get("PAYPAL_DEV_CA_PEM", "").strip()
    if not hosts_text or not ca_pem:
        return None
    hosts = set()
    for entry in hosts_text.split(","):
        host, _, port = entry.strip().rpartition(":")
        if host and port.isdigit():
            hosts.add((host.lower(), int(port)))
    if not hosts:
        return None
    logger.warning("PayPal dev override active: a development stand-in is trusted",
                   extra={"hosts": sorted(f"{h}:{p}" for h, p in hosts)})
    return DevOverride(frozenset(hosts), ca_pem)


def checked_url(url, hosts: frozenset[str], schemes: frozenset[str] = frozenset({"https"})
                ) -> tuple[str, str, int, str, bool]:
    """``(scheme, host, port, path_and_query, dev)`` of a URL this adapter may fetch;
    Refused otherwise. ``hosts``: the host names allowed, on their scheme's default port
    and no other. The dev stack's ``host:port`` pairs are allowed besides, over https."""
    if not isinstance(url, str) or not 0 < len(url) <= 2000 or not url.isascii():
        raise Refused("not a URL")
    if any(c in _URL_FORBIDDEN or ord(c) < 0x20 or c == "\x7f" for c in url):
        raise Refused("the URL holds characters no URL of this kind has")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("not a URL") from None
    host = (parts.hostname or "").lower()
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise Refused("user info in the URL")
    if parts.fragment or not host:
        raise Refused("not a URL of an allowed host")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    dev = dev_override()
    if dev is not None and parts.scheme == "https" and port is not None and (host, port) in dev.hosts:
        return parts.scheme, host, port, path, True
    if parts.scheme not in schemes:
        raise Refused(f"scheme {parts.scheme!r} is not allowed")
    if host not in hosts:
        raise Refused("host not on the allow list")
    if port is not None:
        raise Refused("an explicit port is not allowed")
    # The netloc must be exactly the host: no trailing dot, no case tricks left over.
    if parts.netloc.lower() != host:
        raise Refused("host not on the allow list")
    return parts.scheme, host, 443 if parts.scheme == "https" else 80, path, False


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback
                                 or ip.is_link_local or ip.is_private)


def _resolve(host: str, port: int, dev: bool) -> str:
    """The one address to connect to; Refused when any address the name has is not
    allowed (all are checked: a name must not mix public and internal addresses)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unavailable(f"cannot resolve {host}: {exc}") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise Unavailable(f"{host} has no address")
    for address in addresses:
        allowed = ipaddress.ip_address(address.split("%", 1)[0]).is_loopback if dev \
            else _public(address)
        if not allowed:
            raise Refused(f"{host} resolves to an address that is not allowed")
    return addresses[0]


@lru_cache(maxsize=2)
def _tls_context(dev_ca_pem: str | None) -> ssl.SSLContext:
    # With cadata, only the dev CA is trusted (the system's roots are not loaded).
    context = ssl.create_default_context(cadata=dev_ca_pem) if dev_ca_pem \
        else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address checked beforehand; TLS verifies the certificate for the
    host name (SNI and hostname check on ``host``)."""

    def __init__(self, host: str, address: str, port: int, context: ssl.SSLContext,
                 timeout: float):
        super().__init__(host, port, context=context, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def request(method: str, url: str, *, hosts: frozenset[str],
            schemes: frozenset[str] = frozenset({"https"}), headers: dict | None = None,
            body: bytes | None = None, timeout: float = TIMEOUT_SECONDS,
            max_bytes: int = MAX_ANSWER_BYTES) -> Answer:
    """One request to an allowed host (see the module). Refused before any connection
    for a URL or address that is not allowed; Unavailable when the host fails."""
    scheme, host, port, path, dev = checked_url(url, hosts, schemes)
    address = _resolve(host, port, dev)
    if scheme == "https":
        override = dev_override() if dev else None
        connection = _PinnedHTTPSConnection(host, address, port,
                                            _tls_context(override.ca_pem if override else None),
                                            timeout)
    else:
        connection = _PinnedHTTPConnection(host, address, port, timeout)
    try:
        connection.request(method, path or "/", body=body, headers={
            "Host": host if port in (80, 443) else f"{host}:{port}",
            "User-Agent": "billing-portal", "Accept-Encoding": "identity", **(headers or {})})
        response = connection.getresponse()
        data = response.read(max_bytes + 1)
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        raise Unavailable(f"{host}: {type(exc).__name__}") from None
    finally:
        connection.close()
    if len(data) > max_bytes:
        raise Unavailable(f"{host}: the answer is larger than {max_bytes} bytes")
    if response.status >= 500 or response.status == 429:
        raise Unavailable(f"{host} answered {response.status}")
    return Answer(response.status, data, response.getheader("Content-Type") or "")
