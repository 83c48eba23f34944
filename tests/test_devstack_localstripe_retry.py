"""devstack's localstripe retries a webhook delivery that failed as Stripe does (a dropped
connection, a 5xx) and takes a 4xx as final (devstack/localstripe_server.py)."""
from __future__ import annotations

import hashlib
import hmac
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devstack import servers

SECRET = "whsec_retry_test"


class Receiver(ThreadingHTTPServer):
    """Answers each delivery from a script: "drop" closes the connection unanswered, a
    number answers that status; once the script runs out, 200."""

    def __init__(self, script: list):
        self.script = list(script)
        self.deliveries: list[tuple[str, bytes, str]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Receiver = self.server
        with server.lock:
            answer = server.script.pop(0) if server.script else 200
            server.deliveries.append((self.path, body, self.headers["Stripe-Signature"]))
        if answer == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.send_response(answer)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory):
    server = servers.start_localstripe(log_dir=tmp_path_factory.mktemp("localstripe"))
    yield server.url
    server.stop()


def _serve(script: list) -> Receiver:
    receiver = Receiver(script)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    return receiver


def _create_customer(localstripe: str, email: str) -> None:
    request = urllib.request.Request(
        f"{localstripe}/v1/customers", data=urllib.parse.urlencode({"email": email}).encode(),
        headers={"Authorization": "Bearer sk_test_retry"}, method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def _wait_for(receiver: Receiver, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(receiver.deliveries) < count:
        time.sleep(0.1)


def _valid(signature: str, body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in signature.split(","))
    expected = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def test_a_dropped_connection_and_a_503_are_retried_until_delivered(localstripe):
    receiver = _serve(["drop", 503])
    try:
        servers.register_stripe_webhook(
            localstripe, f"http://127.0.0.1:{receiver.server_port}/hook", SECRET,
            webhook_id="retry", events=["customer.created"])
        _create_customer(localstripe, "retried@example.com")
        # Delivered after 1 s, retried after 1 s and 2 s more.
        _wait_for(receiver, 3, 30)
        assert len(receiver.deliveries) == 3
        bodies = {body for _, body, _ in receiver.deliveries}
        assert len(bodies) == 1  # the same event each time, signed each time
        assert all(_valid(sig, body) for _, body, sig in receiver.deliveries)
        time.sleep(2.5)  # past the next retry's time: a delivered event is not sent again
        assert len(receiver.deliveries) == 3
    finally:
        receiver.shutdown()


def test_a_4xx_is_final(localstripe):
    receiver = _serve([400])
    try:
        servers.register_stripe_webhook(
            localstripe, f"http://127.0.0.1:{receiver.server_port}/hook", SECRET,
            webhook_id="retry", events=["customer.created"])
        _create_customer(localstripe, "refused@example.com")
        _wait_for(receiver, 1, 30)
        time.sleep(2.5)  # past the first retry's time
        assert len(receiver.deliveries) == 1
    finally:
        receiver.shutdown()
