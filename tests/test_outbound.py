"""The SSRF guard of sends to merchants' endpoints (chalicelib/outbound.py): every blocked
range through a stub resolver, IPv6 forms embedding IPv4, names mixing addresses, DNS
rebinding (the checked address is the one connected), URL checks, and refusals logged.
No network: the resolver is a stub and ``socket.create_connection`` records its address."""
from __future__ import annotations

import logging
import socket

import pytest

from chalicelib import outbound

URL = "https://hooks.merchant.example/in"

BLOCKED = [
    "0.0.0.0", "0.1.2.3",  # unspecified, "this network"
    "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",  # private
    "100.64.0.1", "100.127.255.254",  # CGNAT
    "127.0.0.1", "127.9.9.9",  # loopback
    "169.254.169.254",  # link-local: the instance metadata service
    "192.0.0.8",  # IETF protocol assignments
    "192.0.2.1", "198.51.100.7", "203.0.113.9",  # documentation
    "192.88.99.1",  # 6to4 relay
    "198.18.0.1", "198.19.255.1",  # benchmarking
    "224.0.0.1", "239.255.255.250",  # multicast
    "240.0.0.1", "255.255.255.255",  # reserved, broadcast
    "::", "::1",  # unspecified, loopback
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
    "::127.0.0.1", "::10.0.0.1",  # IPv4-compatible
    "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b:1::1",  # NAT64 of private, local NAT64
    "100::1",  # discard-only
    "2001::1", "2001:2::1",  # Teredo, benchmarking
    "2001:db8::1", "3fff::1",  # documentation
    "2002:a00:1::1",  # 6to4
    "fc00::1", "fd12:3456::1",  # unique local
    "fe80::1", "fe80::1%eth0",  # link-local
    "fec0::1",  # site-local
    "ff02::1",  # multicast
]


@pytest.fixture
def network(monkeypatch):
    """A stub resolver (host → addresses, counting calls) and a recorder of connections."""
    state = {"answers": {}, "calls": [], "connected": []}

    def resolve(host, port):
        state["calls"].append(host)
        answers = state["answers"][host]
        return answers.pop(0) if isinstance(answers[0], list) else answers

    def connect(address, timeout=None, *args, **kwargs):
        state["connected"].append(address)
        raise OSError("no network in tests")

    outbound.set_resolver(resolve)
    monkeypatch.setattr(socket, "create_connection", connect)
    yield state
    outbound.set_resolver(None)


@pytest.mark.parametrize("address", BLOCKED)
def test_a_host_resolving_to_a_blocked_address_is_refused_before_connecting(
        network, address, caplog):
    network["answers"]["hooks.merchant.example"] = [address]
    with caplog.at_level(logging.WARNING), pytest.raises(outbound.Refused):
        outbound.post_to_endpoint(URL, b"{}", {})
    assert network["connected"] == []
    assert "outbound request refused" in caplog.text


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                                     "::ffff:93.184.215.14", "64:ff9b::5db8:d70e"])
def test_a_public_address_is_connected_to(network, address):
    network["answers"]["hooks.merchant.example"] = [address]
    with pytest.raises(outbound.Unavailable):
        outbound.post_to_endpoint(URL, b"{}", {})
    assert [a[0] for a in network["connected"]] == [address]


def test_a_name_mixing_public_and_internal_addresses_is_refused(network):
    network["answers"]["hooks.merchant.example"] = ["93.184.215.14", "10.0.0.7"]
    with pytest.raises(outbound.Refused):
        outbound.post_to_endpoint(URL, b"{}", {})
    assert network["connected"] == []


def test_dns_rebinding_cannot_redirect_the_connection(network):
    # The name answers a public address when checked, then (rebound) an internal one.
    network["answers"]["hooks.merchant.example"] = [["93.184.215.14"], ["127.0.0.1"]]
    with pytest.raises(outbound.Unavailable):
        outbound.post_to_endpoint(URL, b"{}", {})
    assert network["calls"] == ["hooks.merchant.example"]  # resolved once
    assert network["connected"] == [("93.184.215.14", 443)]  # the checked address


def test_the_reverse_rebinding_is_refused_without_connecting(network):
    network["answers"]["hooks.merchant.example"] = [["169.254.169.254"], ["93.184.215.14"]]
    with pytest.raises(outbound.Refused):
        outbound.post_to_endpoint(URL, b"{}", {})
    assert network["connected"] == [] and network["calls"] == ["hooks.merchant.example"]


@pytest.mark.parametrize("url", [
    "http://hooks.merchant.example/in", "https://u:p@hooks.merchant.example/in",
    "https://hooks.merchant.example@10.0.0.1/in", "https://10.0.0.1/in",
    "https://[::ffff:7f00:1]/in", "https://localhost/in", "https://metadata/in",
    "https://0x7f.1/in", "gopher://hooks.merchant.example/", "https://hooks.merchant.example/\n",
])
def test_urls_refused_before_resolving(network, url):
    with pytest.raises(outbound.Refused):
        outbound.post_to_endpoint(url, b"{}", {})
    assert network["calls"] == [] and network["connected"] == []


def test_the_development_setting_allows_loopback_only(network):
    # http to loopback is allowed only with the setting, and then only to loopback.
    with pytest.raises(outbound.Refused):
        outbound.endpoint_url("http://127.0.0.1:8000/in")
    assert outbound.endpoint_url("http://127.0.0.1:8000/in", allow_http_loopback=True).loopback
    with pytest.raises(outbound.Refused):
        outbound.endpoint_url("http://hooks.merchant.example/in", allow_http_loopback=True)
    network["answers"]["localhost"] = ["10.0.0.1"]  # a hosts file pointing elsewhere
    with pytest.raises(outbound.Refused):
        outbound.post_to_endpoint("http://localhost:8000/in", b"{}", {},
                                  allow_http_loopback=True)
    assert network["connected"] == []


def test_no_deployment_allows_http_loopback_endpoints(monkeypatch):
    from pathlib import Path

    from chalicelib.settings import get_settings

    template = (Path(__file__).resolve().parents[1] / "infra" / "template.yaml").read_text()
    assert "ALLOW_HTTP_LOOPBACK_ENDPOINTS" not in template
    monkeypatch.delenv("ALLOW_HTTP_LOOPBACK_ENDPOINTS", raising=False)
    get_settings.cache_clear()
    try:
        assert get_settings().allow_http_loopback_endpoints is False
    finally:
        get_settings.cache_clear()
