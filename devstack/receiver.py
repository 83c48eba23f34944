"""A development receiver of merchants' webhooks: it accepts deliveries, verifies each with
the ``standardwebhooks`` library from PyPI (as a merchant's code would), and shows what was
delivered, next to the dev mailbox.

  POST /in/<name>        a delivery to the endpoint named <name> (its secret registered
                         with ``Receiver.register``, or PUT /_receiver/secrets/<name>)
  GET  /                 the page of deliveries, newest first
  GET  /_receiver/deliveries   the same as JSON

``fail_rate`` (with a seeded random generator) answers some deliveries 500 before looking
at them: the fault tests' flaky merchant. make dev runs one (devstack/dev.py) and points
the app's endpoints at it over loopback http, which the development setting
``ALLOW_HTTP_LOOPBACK_ENDPOINTS`` allows.
"""
from __future__ import annotations

import html
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 64 * 1024
KEPT = 500  # deliveries kept for the page


class Receiver:
    def __init__(self, port: int = 0, fail_rate: float = 0.0, seed: int = 0):
        self.secrets: dict[str, str] = {}
        self.deliveries: list[dict] = []  # verified or not, in arrival order
        self.fail_rate = fail_rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, name="dev-receiver",
                                       daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/in/{name}"

    def register(self, name: str, secret: str) -> None:
        with self._lock:
            self.secrets[name] = secret

    def received(self, name: str | None = None, verified: bool = True) -> list[dict]:
        with self._lock:
            return [d for d in self.deliveries if (name is None or d["endpoint"] == name)
                    and (d["verified"] or not verified)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- one request ---------------------------------------------------------------------

    def accept(self, name: str, headers: dict, body: bytes) -> tuple[int, str]:
        with self._lock:
            if self.fail_rate and self._rng.random() < self.fail_rate:
                return 500, "flaky receiver: try again"
            secret = self.secrets.get(name)
        entry = {"endpoint": name, "arrived": time.monotonic(),
                 "webhook_id": headers.get("webhook-id"),
                 "timestamp": headers.get("webhook-timestamp"), "verified": False,
                 "type": None, "event_id": None, "error": None, "body": None}
        try:
            if secret is None:
                raise WebhookVerificationError("no secret registered for this endpoint")
            payload = Webhook(secret).verify(body, headers)
            entry.update(verified=True, type=payload.get("type"), event_id=payload.get("id"),
                         body=payload)
        except (WebhookVerificationError, ValueError) as exc:
            entry["error"] = str(exc)[:200]
        with self._lock:
            self.deliveries.append(entry)
            del self.deliveries[:-KEPT]
        return (200, "ok") if entry["verified"] else (400, entry["error"] or "unverified")

    def page(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(d['endpoint'])}</td><td>{html.escape(str(d['type']))}</td>"
            f"<td><code>{html.escape(str(d['webhook_id']))}</code></td>"
            f"<td>{'verified' if d['verified'] else 'refused: ' + html.escape(str(d['error']))}"
            f"</td><td><details><summary>body</summary><pre>"
            f"{html.escape(json.dumps(d['body'], indent=2, ensure_ascii=False))}</pre>"
            f"</details></td></tr>"
            for d in reversed(self.received(verified=False)))
        return ("<!doctype html><html lang=en><meta charset=utf-8><title>Dev receiver</title>"
                "<h1>Webhook deliveries</h1><p>Each checked with the standardwebhooks library "
                "against its endpoint's secret.</p><table><thead><tr><th>Endpoint<th>Type"
                "<th>webhook-id<th>Verified<th>Payload</thead><tbody>"
                f"{rows}</tbody></table></html>")


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: str, content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes | None:
            length = int(self.headers.get("Content-Length") or 0)
            return None if length > MAX_BODY else self.rfile.read(length)

        def do_POST(self):
            name = self.path.removeprefix("/in/")
            body = self._body()
            if not self.path.startswith("/in/") or body is None:
                self._answer(404 if body is not None else 413, "no such endpoint")
                return
            status, text = receiver.accept(name, {k.lower(): v for k, v in self.headers.items()},
                                           body)
            self._answer(status, text)

        def do_PUT(self):
            body = self._body()
            if not self.path.startswith("/_receiver/secrets/") or body is None:
                self._answer(404, "not found")
                return
            receiver.register(self.path.removeprefix("/_receiver/secrets/"), body.decode().strip())
            self._answer(204, "")

        def do_GET(self):
            if self.path == "/_receiver/deliveries":
                self._answer(200, json.dumps(receiver.received(verified=False)),
                             "application/json")
            elif self.path == "/":
                self._answer(200, receiver.page(), "text/html")
            else:
                self._answer(404, "not found")

        def log_message(self, *args):
            pass

    return Handler
