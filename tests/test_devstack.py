"""The stand-ins answer over real HTTP, and the clients find them through the
environment alone (the same code paths the app uses in production)."""
from __future__ import annotations

import os
import time
import uuid

import boto3
import pytest
import requests


def test_environment_points_at_loopback_stand_ins(stack):
    for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SESV2",
                 "AWS_ENDPOINT_URL_EVENTBRIDGE", "AWS_ENDPOINT_URL_SCHEDULER",
                 "STRIPE_API_BASE", "STRIPE_JS_URL"):
        assert os.environ[name].startswith("http://127.0.0.1:"), name
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"

    from chalicelib.settings import get_settings

    settings = get_settings()
    assert settings.table_name == os.environ["TABLE_NAME"]
    # The app talks to localstripe through devstack's proxy, which also serves the
    # Stripe.js stand-in.
    assert settings.stripe_api_base == stack.shim.url != stack.stripe_url
    assert settings.stripe_js_url == f"{stack.shim.url}/js.stripe.com/v3/"
    script = requests.get(settings.stripe_js_url, timeout=10)
    assert script.status_code == 200 and "confirmCardSetup" in script.text
    assert "javascript" in script.headers["Content-Type"]


def test_dynamodb_local_has_the_table(fresh_table):
    dynamodb = boto3.client("dynamodb")
    assert fresh_table in dynamodb.list_tables()["TableNames"]
    # DynamoDB Local, not moto: it names itself in the response headers.
    response = dynamodb.describe_table(TableName=fresh_table)
    assert response["Table"]["TableStatus"] == "ACTIVE"
    assert "Jetty" in response["ResponseMetadata"]["HTTPHeaders"].get("server", "")


def test_receipts_bucket_exists_and_is_private(stack):
    s3 = boto3.client("s3")
    bucket = os.environ["RECEIPTS_BUCKET"]
    s3.head_bucket(Bucket=bucket)
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    key = f"test/{uuid.uuid4()}.pdf"
    s3.put_object(Bucket=bucket, Key=key, Body=b"%PDF-1.4")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    assert requests.get(url, timeout=5).content == b"%PDF-1.4"


def test_sesv2_mail_shows_up_in_moto(sent_emails):
    to = f"zoë-{uuid.uuid4().hex[:8]}@example.com"
    boto3.client("sesv2").send_email(
        FromEmailAddress="Demo Shop <support@demo-shop.test>",
        Destination={"ToAddresses": [to]},
        Content={"Simple": {"Subject": {"Data": "Your sign-in link"},
                            "Body": {"Text": {"Data": "Hello Zoë, 12,00 €"}}}},
    )
    [mail] = [m for m in sent_emails() if to in m["destinations"]["ToAddresses"]]
    assert mail["subject"] == "Your sign-in link"
    assert mail["body"] == "Hello Zoë, 12,00 €"


def test_unverified_sender_is_refused(stack):
    sesv2 = boto3.client("sesv2")
    with pytest.raises(sesv2.exceptions.MessageRejected):
        sesv2.send_email(
            FromEmailAddress="someone@unverified.test",
            Destination={"ToAddresses": ["x@example.com"]},
            Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
        )


def test_moto_reset_keeps_bucket_and_senders(stack, moto_reset, sent_emails):
    stack.verify_sender("shop@extra.test")
    moto_reset()
    assert sent_emails() == []
    boto3.client("s3").head_bucket(Bucket=os.environ["RECEIPTS_BUCKET"])
    boto3.client("sesv2").send_email(
        FromEmailAddress="shop@extra.test",
        Destination={"ToAddresses": ["after-reset@example.com"]},
        Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
    )
    assert [m["source"] for m in sent_emails()] == ["shop@extra.test"]


def test_localstripe_creates_customers_through_the_stripe_library(stripe_client):
    customer = stripe_client.v1.customers.create(
        params={"email": "zoe@example.com", "name": "Zoë Łukasiewicz"})
    assert customer.id.startswith("cus_")
    again = stripe_client.v1.customers.retrieve(customer.id)
    assert again.name == "Zoë Łukasiewicz"


def test_seed_runs_against_localstripe(stack):
    import io

    from devstack import seed

    ids = seed.seed(stack.stripe_url, out=io.StringIO())
    assert ids["customer_subscription"].startswith("cus_")
    assert ids["subscription"].startswith("sub_")
    assert ids["payment_one_time"].startswith("pi_")


def test_chalice_local_runs_an_app_with_the_stack_environment(tmp_path):
    # A throwaway app, so this works before (and independently of) the real app.py.
    from devstack import servers

    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(
        '{"version": "2.0", "app_name": "probe", "stages": {"dev": {}}}')
    (tmp_path / "app.py").write_text(
        "import os\n"
        "import boto3\n"
        "from chalice import Chalice\n"
        "app = Chalice(app_name='probe')\n"
        "@app.route('/')\n"
        "def index():\n"
        "    tables = boto3.client('dynamodb').list_tables()['TableNames']\n"
        "    return {'table': os.environ['TABLE_NAME'], 'tables': tables}\n")
    server = servers.start_chalice(env=dict(os.environ), project_dir=tmp_path,
                                   log_dir=tmp_path / "logs")
    try:
        body = requests.get(server.url + "/", timeout=10).json()
    finally:
        server.stop()
    assert body["table"] in body["tables"]
    assert not server.running()


def test_app_server_answers_over_http(app_server):
    response = requests.get(app_server + "/api/v1/customers", timeout=10)
    assert response.status_code in (401, 403)  # up, and wants an API key


def test_localstripe_webhooks_reach_the_app(stack, app_server, stripe_client):
    # The make dev chain: localstripe signs an event and POSTs it to the app, which
    # records the customer for the merchant whose secret verifies it.
    from chalicelib.accounts import service as accounts

    secret = "whsec_" + uuid.uuid4().hex
    created = accounts.create_account(
        name="Devstack Probe", support_email="support@example.com",
        stripe_secret_key="sk_test_probe", stripe_webhook_secrets=[secret],
        slug=f"probe-{uuid.uuid4().hex[:8]}")
    url = accounts.webhook_url(app_server, created.account["account_id"])
    # localstripe sends every event to every webhook, including events of other tests
    # made in the last second: take only what this test needs.
    stack.register_stripe_webhook(url, secret, webhook_id="devstack-probe",
                                  events=["customer.created"])
    try:
        email = f"probe-{uuid.uuid4().hex[:8]}@example.com"
        stripe_client.v1.customers.create(params={"email": email, "name": "Zoë Probe"})
        headers = {"Authorization": f"Bearer {created.api_key}"}
        deadline = time.monotonic() + 15  # localstripe waits ~1 s before sending
        while time.monotonic() < deadline:
            response = requests.get(app_server + "/api/v1/customers", headers=headers,
                                    timeout=10)
            if response.ok and email in response.text:
                break
            time.sleep(0.25)
        assert email in response.text, (response.status_code, response.text[:500])
    finally:
        stack.unregister_stripe_webhook("devstack-probe")


# --- make dev on a busy machine: seeding waits, retries, never stops the stack -----------

class _StubApp:
    """A stand-in for a slow or failing app on loopback: answers POSTs with ``statuses``
    in turn (the last one for ever after), any GET with 404, and records what came in."""

    def __init__(self, statuses=(200,), port: int = 0):
        import http.server
        import threading

        stub = self
        self.statuses = list(statuses)
        self.posts: list[tuple[dict, bytes]] = []
        self.gets = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.posts.append((dict(self.headers), body))
                status = stub.statuses[min(len(stub.posts), len(stub.statuses)) - 1]
                self._answer(status)

            def do_GET(self):
                stub.gets += 1
                self._answer(404)

            def _answer(self, status):
                payload = b'{"received": true}' if status < 300 else b'{"error": "busy"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _event(n: int = 1) -> dict:
    return {"id": f"evt_devstacktest{n}", "object": "event", "type": "invoice.payment_failed",
            "created": int(time.time()), "data": {"object": {"id": f"in_{n}"}}}


def _signature_verifies(headers: dict, body: bytes, secret: str) -> bool:
    import hashlib
    import hmac

    parts = dict(p.split("=", 1) for p in headers["Stripe-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(parts["v1"], expected.hexdigest())


def test_seed_post_retries_a_busy_app_until_it_takes_the_event():
    from devstack import seed

    app = _StubApp(statuses=(503, 502, 200))
    try:
        status = seed.post_event(app.url + "/webhooks/stripe/acct", _event(), "whsec_x",
                                 backoff=0.05)
    finally:
        app.close()
    assert status == 200
    assert len(app.posts) == 3
    # The same event each time, signed like Stripe (the handler dedupes by event id).
    assert len({body for _, body in app.posts}) == 1
    assert all(_signature_verifies(headers, body, "whsec_x") for headers, body in app.posts)


def test_seed_waits_for_an_app_that_starts_listening_later():
    import threading

    from devstack import seed, servers

    port = servers.free_port()
    started: list[_StubApp] = []
    timer = threading.Timer(1.0, lambda: started.append(_StubApp(port=port)))
    timer.start()
    try:
        assert seed.wait_until_answering(f"http://127.0.0.1:{port}/api/v1/customers",
                                         timeout=120)
        assert seed.post_event(f"http://127.0.0.1:{port}/webhooks/stripe/acct", _event(),
                               "whsec_x", backoff=0.05) == 200
        assert started and started[0].gets >= 1 and len(started[0].posts) == 1
    finally:
        timer.cancel()
        timer.join()
        for app in started:
            app.close()


def test_seed_post_gives_up_after_its_attempts_and_says_why():
    from devstack import seed

    app = _StubApp(statuses=(503,))
    try:
        with pytest.raises(seed.SeedStepFailed, match=r"HTTP 503 after 3 attempts"):
            seed.post_event(app.url + "/webhooks/stripe/acct", _event(7), "whsec_x",
                            attempts=3, backoff=0.05)
        assert len(app.posts) == 3  # bounded
    finally:
        app.close()
    # A refusal (bad signature, unknown account) is final: not retried.
    app = _StubApp(statuses=(400,))
    try:
        with pytest.raises(seed.SeedStepFailed, match=r"evt_devstacktest8.*HTTP 400.*not retried"):
            seed.post_event(app.url + "/webhooks/stripe/acct", _event(8), "whsec_x",
                            attempts=3, backoff=0.05)
        assert len(app.posts) == 1
    finally:
        app.close()
    # Nobody listening at all: the reason is said, not a traceback.
    from devstack import servers

    with pytest.raises(seed.SeedStepFailed, match=r"no answer from .* after 2 attempts"):
        seed.post_event(f"http://127.0.0.1:{servers.free_port()}/webhooks/stripe/acct",
                        _event(9), "whsec_x", attempts=2, backoff=0.05)


def test_wait_until_answering_gives_up_in_time():
    from devstack import seed, servers

    assert not seed.wait_until_answering(f"http://127.0.0.1:{servers.free_port()}/", timeout=1)


# A second `make dev` while the default ports are held (by a first one, or anything), with
# a seed step the app refuses for good: it must come up on other ports, print URLs that
# work, report the failed step and keep serving. The wrapper makes the seed's extra
# failure events carry a wrong signature, so the real app answers 400 to them.
_DEV_WITH_REFUSED_SEED_EVENTS = """
import sys
from devstack import dev

real_run_seed = dev.run_seed

def run_seed(stack, app_url, webhook_url, webhook_secret, *args, **kwargs):
    return real_run_seed(stack, app_url, webhook_url, "whsec_not_the_accounts", *args, **kwargs)

dev.run_seed = run_seed
sys.exit(dev.main(sys.argv[1:]))
"""


def _hold_default_ports():
    """Listen on every default port of make dev that is free (the others are held already)."""
    import socket

    from devstack import dev

    held = []
    for port in dev.DEFAULT_PORTS.values():
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            held.append(s)
        except OSError:
            s.close()  # someone listens there already: held all the same
    return held


def _read_until(process, lines: list[str], marker: str, deadline: float) -> None:
    import queue
    import threading

    if not hasattr(process, "_lines"):
        process._lines = queue.Queue()

        def pump():
            for line in process.stdout:
                process._lines.put(line)
            process._lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    while time.monotonic() < deadline:
        try:
            line = process._lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError("make dev exited early:\n" + "".join(lines))
        lines.append(line)
        if marker in line:
            return
    raise AssertionError(f"no {marker!r} from make dev:\n" + "".join(lines))


def _summary_value(lines: list[str], label: str) -> str:
    import re

    for line in lines:
        found = re.search(rf"(?:^|\s){re.escape(label)}\s+(\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError(f"{label!r} not printed:\n" + "".join(lines))


def test_second_dev_stack_comes_up_on_free_ports_and_survives_a_failing_seed_step(
        stack, tmp_path):
    import fcntl
    import re
    import signal
    import subprocess
    import sys

    from devstack import dev, servers

    held = _hold_default_ports()
    # The first copy from this checkout holds the state folder's lock.
    first = open(tmp_path / "dev.lock", "a")  # noqa: SIM115
    fcntl.flock(first, fcntl.LOCK_EX)
    # The test session's own stand-ins are not the dev stack's: drop what points at them.
    env = {k: v for k, v in os.environ.items() if k not in stack.env}
    process = subprocess.Popen(
        [sys.executable, "-c", _DEV_WITH_REFUSED_SEED_EVENTS, "--state-dir", str(tmp_path)],
        cwd=servers.REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        _read_until(process, lines, "Ctrl-C stops everything.", time.monotonic() + 300)
        output = "".join(lines)
        # The failing step is named, and the stack went on to print where everything is.
        assert "Seed step failed: sending the payment failures" in output, output
        assert "HTTP 400" in output and "incomplete: a seed step failed" in output, output
        assert process.poll() is None

        urls = {label: _summary_value(lines, label) for label in (
            "App:", "Customer portal:", "Dev mailbox:", "Merchant API:", "DynamoDB Local:",
            "moto:", "localstripe:", "Stripe for app:")}
        api_key = _summary_value(lines, "Demo API key:")
        ports = {int(re.match(r"http://127\.0\.0\.1:(\d+)", url).group(1))
                 for url in urls.values()}
        assert not ports & set(dev.DEFAULT_PORTS.values()), urls
        assert len(ports) == 6, urls  # app (portal, API), mailbox, ddb, moto, localstripe, shim

        # What the seed did create before its refused step reaches the app and is served
        # (localstripe's own webhooks, about a second after each object).
        deadline = time.monotonic() + 120
        while True:
            api = requests.get(urls["Merchant API:"], timeout=30,
                               headers={"Authorization": f"Bearer {api_key}"})
            assert api.status_code == 200
            if "grace@example.com" in api.text or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "grace@example.com" in api.text
        assert requests.get(urls["Customer portal:"], timeout=30).status_code == 200
        mailbox = requests.get(urls["Dev mailbox:"], timeout=30)
        assert mailbox.status_code == 200 and "mail" in mailbox.text.lower()
        assert requests.get(urls["moto:"] + "/moto-api/", timeout=30).status_code == 200
        assert requests.get(urls["localstripe:"] + "/js.stripe.com/v3/",
                            timeout=30).status_code == 200
        assert requests.get(urls["Stripe for app:"] + "/js.stripe.com/v3/",
                            timeout=30).status_code == 200
        ddb = boto3.client("dynamodb", endpoint_url=urls["DynamoDB Local:"])
        assert ddb.list_tables()["TableNames"]

        # Its own env file and logs, not the first copy's; the env file names the same URLs.
        env_file = tmp_path / f"dev-{process.pid}.env"
        assert f"AWS_ENDPOINT_URL_DYNAMODB='{urls['DynamoDB Local:']}'" in env_file.read_text()
        assert (tmp_path / "logs" / f"dev-{process.pid}" / "seed.log").is_file()
        assert not (tmp_path / "dev.env").exists()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
        first.close()
        for s in held:
            s.close()
    assert code == 0, "".join(lines)
    assert not (tmp_path / f"dev-{process.pid}.env").exists()


def test_a_server_is_not_ready_because_someone_else_answers_on_its_port(tmp_path):
    # Two copies starting at the same moment can pick the same free port: the one whose
    # server fails to bind must not take the other's answer for its own server's.
    import subprocess
    import sys

    from devstack import servers

    other = _StubApp()
    port = int(other.url.rsplit(":", 1)[1])
    # Stands for a server that loses the race: it never listens, and exits with an error.
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1); exit(3)"],
                               start_new_session=True)
    server = servers.Server("loser", port, process, tmp_path / "loser.log")
    try:
        with pytest.raises(servers.ServerError, match="exited with code 3"):
            server.wait_until_ready(timeout=60)
    finally:
        server.stop()
        other.close()
