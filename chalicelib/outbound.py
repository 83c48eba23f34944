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

Merchants' endpoints (``post_to_endpoint``, chalicelib/integrations/delivery.py) take any
public host the merchant names, on any port, over https only; every address of the name is
checked against the blocked ranges below (IPv4 and IPv6, and an IPv4 address embedded in an
IPv6 one judged as that IPv4 address), and the answer's status is returned whatever it is
(3xx included: redirects are never followed) with its first bytes only. The one exception is
the development setting ``ALLOW_HTTP_LOOPBACK_ENDPOINTS``: http or https to a loopback
address (make dev's receiver, the tests'), and then nothing but loopback.

Names are resolved through ``resolver`` (``socket.getaddrinfo`` unless a test sets a stub
with ``set_resolver``); every refusal is logged with the host and the reason.
"""
from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Callable
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


# Never connected to, whatever name leads there (IANA special-purpose registries).
BLOCKED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    # IPv4
    "0.0.0.0/8",  # "this network", unspecified
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # private
    "100.64.0.0/10",  # shared address space (CGNAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local (the EC2/ECS metadata services)
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast address
    # IPv6 (forms embedding an IPv4 address are judged by that address: _embedded_ipv4)
    "::/128", "::1/128",  # unspecified, loopback
    "100::/64",  # discard-only
    "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID, …)
    "2001:db8::/32", "3fff::/20",  # documentation
    "2002::/16",  # 6to4 (an IPv4 address inside)
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated)
    "ff00::/8",  # multicast
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped (``::ffff:a.b.c.d``),
    IPv4-compatible (``::a.b.c.d``, deprecated but still routed by some stacks) or NAT64
    (``64:ff9b::a.b.c.d``)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    packed = int(ip)
    if packed >> 32 == 0 and packed > 1:  # ::/96 without :: and ::1
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if ip in _NAT64:
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def blocked_reason(address: str) -> str | None:
    """Why an address may not be connected to (None: it is a public unicast address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return f"{ip} is in 64:ff9b:1::/48 (local-use NAT64)"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = blocked_reason(str(embedded))
            return f"{ip} embeds {inner}" if inner else None
    for network in BLOCKED_NETWORKS:
        if ip.version == network.version and ip in network:
            return f"{ip} is in {network}"
    if not ip.is_global:
        return f"{ip} is not a global address"
    return None


def _public(address: str) -> bool:
    return blocked_reason(address) is None


def _system_resolver(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


resolver: Callable[[str, int], list[str]] = _system_resolver


def set_resolver(new_resolver: Callable[[str, int], list[str]] | None) -> None:
    """Resolve names with ``new_resolver(host, port) -> [address, …]`` (tests: a stub
    resolver); None: the system's again."""
    global resolver
    resolver = new_resolver or _system_resolver


def _refused(host: str, reason: str) -> Refused:
    logger.warning("outbound request refused", extra={"host": host, "reason": reason})
    return Refused(reason)


def _resolve(host: str, port: int, dev: bool) -> str:
    """The one address to connect to; Refused when any address the name has is not
    allowed (all are checked: a name must not mix public and internal addresses)."""
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise Unavailable(f"cannot resolve {host}: {exc}") from None
    if not addresses:
        raise Unavailable(f"{host} has no address")
    for address in addresses:
        if dev:
            try:
                loopback = ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise _refused(host, f"{host} resolves to {address}, not a loopback address")
        else:
            reason = blocked_reason(address)
            if reason:
                raise _refused(host, f"{host} resolves to a blocked address: {reason}")
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


def _connection(scheme: str, host: str, address: str, port: int, dev_ca_pem: str | None,
                timeout: float) -> http.client.HTTPConnection:
    if scheme == "https":
        return _PinnedHTTPSConnection(host, address, port, _tls_context(dev_ca_pem), timeout)
    return _PinnedHTTPConnection(host, address, port, timeout)


def _host_header(host: str, port: int) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port in (80, 443) else f"{name}:{port}"


def request(method: str, url: str, *, hosts: frozenset[str],
            schemes: frozenset[str] = frozenset({"https"}), headers: dict | None = None,
            body: bytes | None = None, timeout: float = TIMEOUT_SECONDS,
            max_bytes: int = MAX_ANSWER_BYTES) -> Answer:
    """One request to an allowed host (see the module). Refused before any connection
    for a URL or address that is not allowed; Unavailable when the host fails."""
    scheme, host, port, path, dev = checked_url(url, hosts, schemes)
    address = _resolve(host, port, dev)
    override = dev_override() if dev else None
    connection = _connection(scheme, host, address, port,
                             override.ca_pem if override else None, timeout)
    try:
        connection.request(method, path or "/", body=body, headers={
            "Host": _host_header(host, port),
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


# --- merchants' endpoints ---------------------------------------------------------------

ENDPOINT_TIMEOUT_SECONDS = 15
ENDPOINT_KEEP_BYTES = 4096
MAX_ENDPOINT_URL = 2000


@dataclass(frozen=True)
class EndpointAnswer:
    status: int
    body: bytes  # the first ENDPOINT_KEEP_BYTES bytes only
    headers: dict[str, str]  # lower-case names


@dataclass(frozen=True)
class EndpointUrl:
    scheme: str
    host: str
    port: int
    path: str
    loopback: bool  # allowed by the development setting only


def endpoint_url(url, *, allow_http_loopback: bool = False) -> EndpointUrl:
    """The parts of a merchant's endpoint URL; Refused (not logged: it is the merchant's
    input, answered with a 400) for anything but an https URL of a host name or a public
    IP address, without user info or fragment. With ``allow_http_loopback`` (development
    only) a URL of a loopback host (``localhost``, 127.0.0.0/8, ``::1``) may be http."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_ENDPOINT_URL or not url.isascii():
        raise Refused(f"an endpoint URL is an ASCII URL of at most {MAX_ENDPOINT_URL} characters")
    if any(c in _URL_FORBIDDEN or ord(c) < 0x20 or c == "\x7f" for c in url):
        raise Refused("the URL holds characters a URL may not hold")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("not a URL") from None
    host = (parts.hostname or "").lower().rstrip(".")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise Refused("an endpoint URL may not hold a user name or password")
    if parts.fragment:
        raise Refused("an endpoint URL may not hold a fragment (#…)")
    if not host or len(host) > 253 or port == 0:
        raise Refused("the URL names no host")
    loopback = _loopback_name(host)
    if parts.scheme == "http" and loopback and allow_http_loopback:
        pass
    elif parts.scheme != "https":
        raise Refused("an endpoint URL must be https")
    if not (loopback and allow_http_loopback):
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None and blocked_reason(str(literal)):
            raise Refused("the URL's address is not a public address")
        last_label = host.rsplit(".", 1)[-1]
        if literal is None and (host == "localhost" or host.endswith(".localhost")
                                or "." not in host or last_label.isdigit()
                                or last_label.startswith("0x")):
            # No public name ends in a number: "0x7f.1" or "127.1" is an address in
            # disguise (inet_aton's forms), refused rather than resolved.
            raise Refused("the URL's host is not a public host name")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return EndpointUrl(parts.scheme, host, port or (443 if parts.scheme == "https" else 80),
                       path or "/", loopback and allow_http_loopback)


def _loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def post_to_endpoint(url: str, body: bytes, headers: dict[str, str], *,
                     allow_http_loopback: bool = False,
                     timeout: float = ENDPOINT_TIMEOUT_SECONDS,
                     keep_bytes: int = ENDPOINT_KEEP_BYTES) -> EndpointAnswer:
    """POST ``body`` to a merchant's endpoint, whatever status it answers (redirects are
    not followed), keeping the first ``keep_bytes`` of the answer. Refused (logged) before
    any connection when the URL, or any address its host resolves to, is not allowed;
    Unavailable when no answer came within ``timeout`` seconds (the whole exchange)."""
    try:
        target = endpoint_url(url, allow_http_loopback=allow_http_loopback)
    except Refused as exc:
        raise _refused("(the endpoint's URL)", str(exc)) from None
    address = _resolve(target.host.strip("[]"), target.port, target.loopback)
    deadline = time.monotonic() + timeout
    connection = _connection(target.scheme, target.host, address, target.port, None, timeout)
    try:
        connection.request("POST", target.path, body=body, headers={
            "Host": _host_header(target.host, target.port), "User-Agent": "billing-portal",
            "Accept-Encoding": "identity", "Content-Type": "application/json",
            "Content-Length": str(len(body)), **headers})
        _tighten(connection, deadline)
        response = connection.getresponse()
        _tighten(connection, deadline)
        data = response.read(keep_bytes)
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        raise Unavailable(f"{target.host}: {type(exc).__name__}") from None
    finally:
        connection.close()
    return EndpointAnswer(response.status, data, answer_headers)


def _tighten(connection: http.client.HTTPConnection, deadline: float) -> None:
    """Give the socket only what is left of the whole exchange's time."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the endpoint took too long")
    if connection.sock is not None:
        connection.sock.settimeout(left)
