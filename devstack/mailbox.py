"""`make dev` only: the mail the app sent, read from moto's SES (``/moto-api/data.json``).

Two ways to see it, neither part of the product app:
  * a tiny web page on 127.0.0.1 (``serve``), newest first, with each mail's sign-in
    links and codes pulled out, and its HTML shown in a sandboxed frame;
  * a background thread (``watch``) that prints each new mail on the terminal.

Run alone:  .venv/bin/python -m devstack.mailbox --moto-url http://127.0.0.1:8002 --port 8025
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO

from devstack import servers

LINK_RE = re.compile(r"""https?://[^\s"'<>]+""")
CODE_RE = re.compile(r"(?<![\d#&;])\b(\d{6})\b(?![\d;])")


def fetch(moto_url: str) -> list[dict]:
    """Every mail moto's SES accepted, oldest first (each with ``links`` and ``codes``)."""
    mails = servers.sent_emails(moto_url)
    for mail in mails:
        body = mail.get("body") or ""
        links = []
        for link in LINK_RE.findall(body):
            link = html.unescape(link).rstrip(".,)")
            if link not in links:
                links.append(link)
        mail["links"] = links
        text = LINK_RE.sub(" ", re.sub(r"<[^>]+>", " ", body))
        mail["codes"] = list(dict.fromkeys(CODE_RE.findall(html.unescape(text))))
    return mails


def _to(mail: dict) -> str:
    return ", ".join((mail.get("destinations") or {}).get("ToAddresses", []))


def summary(mail: dict) -> str:
    """A few lines for the terminal: who, what, and the sign-in link and code if any."""
    lines = [f"✉  {mail.get('subject') or '(no subject)'}",
             f"   to {_to(mail)}  from {mail.get('source', '')}"]
    portal_links = [link for link in mail["links"] if "/portal/" in link] or mail["links"][:1]
    for link in portal_links:
        lines.append(f"   link: {link}")
    for code in mail["codes"]:
        lines.append(f"   code: {code}")
    return "\n".join(lines)


def watch(moto_url: str, out: TextIO = sys.stdout, interval: float = 1.0,
          stop: threading.Event | None = None, skip_existing: bool = True) -> threading.Thread:
    """Print every new mail on ``out`` until ``stop`` is set; returns the (daemon) thread."""
    stop = stop or threading.Event()

    def run():
        seen: set[str] = set()
        first = True
        while not stop.is_set():
            try:
                mails = fetch(moto_url)
            except OSError:
                mails = []  # moto restarting or gone: try again
            for mail in mails:
                key = mail.get("id") or json.dumps(mail, sort_keys=True, default=str)
                if key in seen:
                    continue
                seen.add(key)
                if not (first and skip_existing):
                    print(f"\n{summary(mail)}\n", file=out, flush=True)
            first = False
            stop.wait(interval)

    thread = threading.Thread(target=run, name="mail-watcher", daemon=True)
    thread.start()
    return thread


def render_page(mails: list[dict], moto_url: str) -> str:
    items = []
    for n, mail in enumerate(reversed(mails)):
        links = "".join(f'<li><a href="{html.escape(link)}">{html.escape(link)}</a></li>'
                        for link in mail["links"])
        codes = "".join(f"<li><code>{html.escape(code)}</code></li>" for code in mail["codes"])
        body = mail.get("body") or ""
        looks_html = "<html" in body.lower() or "<table" in body.lower() or "<p" in body.lower()
        shown = (f'<iframe title="Message {n + 1}" sandbox srcdoc="{html.escape(body)}"></iframe>'
                 if looks_html else f"<pre>{html.escape(body)}</pre>")
        items.append(f"""
<article>
  <h2>{html.escape(mail.get('subject') or '(no subject)')}</h2>
  <p class="meta">To {html.escape(_to(mail))} · from {html.escape(mail.get('source', ''))}</p>
  {f'<h3>Links</h3><ul>{links}</ul>' if links else ''}
  {f'<h3>Codes</h3><ul>{codes}</ul>' if codes else ''}
  <details><summary>Message</summary>{shown}</details>
</article>""")
    empty = "<p>No mail yet. Ask for a sign-in link in the portal.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dev mailbox ({len(mails)})</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 900px; padding: 1rem;
       color: #1f2328; }}
article {{ border: 1px solid #d0d7de; border-radius: 8px; padding: .5rem 1rem; margin: 1rem 0; }}
h2 {{ font-size: 1.1rem; margin: .5rem 0 0; }} h3 {{ font-size: .9rem; margin: .5rem 0 0; }}
.meta {{ color: #57606a; margin: 0; }} code {{ font-size: 1.2rem; letter-spacing: .15em; }}
iframe {{ width: 100%; height: 560px; border: 1px solid #d0d7de; }}
a {{ word-break: break-all; }}
</style></head>
<body>
<header><h1>Dev mailbox</h1>
<p class="meta">Mail the app sent through moto's SES ({html.escape(moto_url)}/moto-api/data.json),
newest first. <a href="/">Refresh</a> · <a href="/messages.json">JSON</a>. Development only.</p></header>
<main>{''.join(items) or empty}</main>
</body></html>"""


def make_handler(moto_url: str) -> Callable:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            try:
                mails = fetch(moto_url)
            except OSError as e:
                self._send(502, "text/plain; charset=utf-8", f"moto is not answering: {e}")
                return
            if self.path.split("?")[0] == "/messages.json":
                self._send(200, "application/json", json.dumps(mails, default=str, indent=2))
            elif self.path.split("?")[0] == "/":
                self._send(200, "text/html; charset=utf-8", render_page(mails, moto_url))
            else:
                self._send(404, "text/plain; charset=utf-8", "not found")

        def _send(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy",
                             "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; "
                             "frame-src 'self'; form-action 'none'")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # quiet: the terminal shows the mail itself
            pass

    return Handler


def serve(moto_url: str, port: int) -> ThreadingHTTPServer:
    """Start the mailbox page on 127.0.0.1:``port`` in a daemon thread; return the server."""
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(moto_url))
    threading.Thread(target=server.serve_forever, name="mailbox", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moto-url", required=True)
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    server = serve(args.moto_url, args.port)
    print(f"Dev mailbox on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    watch(args.moto_url, skip_existing=False)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
