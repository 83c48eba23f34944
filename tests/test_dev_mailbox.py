"""devstack's mailbox (make dev): mail read back from moto's SES, on a page and the terminal."""
from __future__ import annotations

import io
import threading
import time
import uuid

import boto3
import requests

from devstack import mailbox, servers


def _send(to: str) -> None:
    link = "http://127.0.0.1:8000/portal/demo-shop/link?token=" + "A1b2" * 10 + "xyz"
    boto3.client("sesv2").send_email(
        FromEmailAddress="Demo Shop <support@demo-shop.test>",
        Destination={"ToAddresses": [to]},
        Content={"Simple": {"Subject": {"Data": "Your sign-in link for Demo Shop"}, "Body": {
            "Text": {"Data": f"{link}\ncode 123456"},
            "Html": {"Data": f'<p><a href="{link}">Sign in</a></p><p>Code: <b>654321</b></p>'
                             "<p>ul. Długa 1, 31-147 Kraków</p>"}}}})


def test_fetch_pulls_out_links_and_codes(stack):
    to = f"mailbox-{uuid.uuid4().hex[:8]}@example.com"
    _send(to)
    [mail] = [m for m in mailbox.fetch(stack.moto_url) if to in m["destinations"]["ToAddresses"]]
    assert mail["links"] == ["http://127.0.0.1:8000/portal/demo-shop/link?token=" + "A1b2" * 10 + "xyz"]
    assert mail["codes"] == ["654321"]
    text = mailbox.summary(mail)
    assert "link: http://127.0.0.1:8000/portal/demo-shop/link?token=" in text and "code: 654321" in text


def test_page_and_terminal_show_new_mail(stack):
    stop = threading.Event()
    out = io.StringIO()
    mailbox.watch(stack.moto_url, out=out, interval=0.1, stop=stop)
    server = mailbox.serve(stack.moto_url, servers.free_port())
    try:
        time.sleep(0.3)  # the watcher has seen what was there before
        to = f"mailbox-{uuid.uuid4().hex[:8]}@example.com"
        _send(to)
        deadline = time.monotonic() + 5
        while to not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"to {to}" in out.getvalue() and "code: 654321" in out.getvalue()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        page = requests.get(url + "/", timeout=5, proxies={"http": None, "https": None})
        assert page.status_code == 200 and to in page.text and "654321" in page.text
        assert 'sandbox srcdoc="' in page.text  # the HTML is shown inert
        messages = requests.get(url + "/messages.json", timeout=5,
                                proxies={"http": None, "https": None}).json()
        assert any(to in m["destinations"]["ToAddresses"] for m in messages)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
