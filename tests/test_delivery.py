"""Delivery to merchants' endpoints (chalicelib/integrations/delivery.py): Standard Webhooks
signatures checked by the PyPI library in a real HTTP receiver, fan-out idempotence, retries
on a fake clock, Retry-After, 410, the 5-day streak, rotation, replay, isolation.

The receiver listens on loopback over http, which only the development setting
``ALLOW_HTTP_LOOPBACK_ENDPOINTS`` allows (set for this module, as make dev sets it)."""
from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chalicelib.errors import NotFound
from chalicelib.integrations import catalogue, delivery, endpoints
from chalicelib.settings import get_settings
from chalicelib.store import endpoints as store
from chalicelib.store import steps as steps_store

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class Receiver:
    """A merchant's endpoint: records every request, answers what a test queued per path
    (200 when nothing is queued)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: dict[str, list[tuple[int, dict, bytes]]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                              "body": body})
                    queue = receiver.answers.get(self.path) or []
                    status, headers, answer = queue.pop(0) if queue else (200, {}, b"ok")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def queue(self, path: str, *answers: tuple[int, dict, bytes]) -> None:
        with self._lock:
            self.answers.setdefault(path, []).extend(answers)

    def at(self, path: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"] == path]


@pytest.fixture(scope="module")
def receiver():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALLOW_HTTP_LOOPBACK_ENDPOINTS", "1")
        get_settings.cache_clear()
        assert get_settings().allow_http_loopback_endpoints
        server = Receiver()
        yield server
        server.server.shutdown()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def account(app_client):  # noqa: F811
    return make_merchant(app_client).account_id


def _path() -> str:
    return f"/hook/{uuid.uuid4().hex[:10]}"


def _event(account_id: str, event_type: str = "payment.succeeded", at: datetime = T0) -> dict:
    return {"account_id": account_id, "event_id": f"evt_{uuid.uuid4().hex}", "type": event_type,
            "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "customer_id": "cus_test",
            "data": {"amount": 1250, "currency": "EUR", "note": "café"}}


def _endpoint(receiver, account_id, types=("payment.succeeded",), kind="webhook"):
    path = _path()
    created = endpoints.create(account_id, url=receiver.url(path), event_types=list(types),
                               kind=kind)
    return created, path


def _verify(request: dict, secret: str) -> dict:
    return Webhook(secret).verify(request["body"], request["headers"])


def test_the_signer_reproduces_the_standard_webhooks_test_vector():
    headers = delivery.signature_headers(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", b'{"test": 2432232314}',
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], datetime.fromtimestamp(1614265330, UTC))
    assert headers == {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                       "webhook-timestamp": "1614265330",
                       "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}


def test_the_schedule_covers_72_hours_in_about_ten_attempts():
    assert delivery.MAX_ATTEMPTS == 10
    shortest = sum(delivery.RETRY_DELAYS, timedelta(0))
    assert shortest >= timedelta(hours=72)
    # Jitter only lengthens a wait, by at most JITTER.
    for n in range(1, delivery.MAX_ATTEMPTS):
        base = delivery.RETRY_DELAYS[n - 1]
        for _ in range(20):
            assert base <= delivery.next_delay(n) <= base * (1 + delivery.JITTER)
    assert delivery.next_delay(1, timedelta(hours=2)) == timedelta(hours=2)
    assert delivery.next_delay(1, timedelta(days=30)) == delivery.RETRY_AFTER_CAP


def test_fan_out_is_idempotent_and_reaches_only_subscribed_endpoints(receiver, account):
    first, _ = _endpoint(receiver, account, ["refund.created"])
    everything, _ = _endpoint(receiver, account, ["*"])
    other, _ = _endpoint(receiver, account, ["order.created"])
    event = _event(account, "refund.created")
    made = delivery.fan_out(event, T0)
    again = delivery.fan_out(event, T0 + timedelta(minutes=3))
    assert {d["endpoint_id"] for d in made} >= {first["id"], everything["id"]}
    assert other["id"] not in {d["endpoint_id"] for d in made}
    assert again == made
    for endpoint_id in (first["id"], everything["id"]):
        [stored] = [d for d in store.list_deliveries(account, endpoint_id)
                    if d.event_id == event["event_id"]]
        assert stored.webhook_id.startswith("msg_")
    assert store.list_deliveries(account, other["id"]) == []
    # Each delivery's first attempt has a backstop step on the scheduler.
    step = steps_store.get(account, delivery.step_id_of(made[0]["id"], 1))
    assert step is not None and step.kind == "delivery.attempt"


def test_a_delivery_is_verified_by_the_standard_webhooks_library(receiver, account):
    created, path = _endpoint(receiver, account)
    event = _event(account)
    [made] = [d for d in delivery.fan_out(event, T0) if d["endpoint_id"] == created["id"]]
    result = delivery.attempt(account, made["id"], T0)
    assert result["attempted"] and result["status"] == "succeeded"
    [request] = receiver.at(path)
    assert _verify(request, created["secret"]) == catalogue.payload(event)
    assert request["headers"]["webhook-id"] == made["webhook_id"]
    assert request["body"] == json.dumps(catalogue.payload(event), separators=(",", ":"),
                                         ensure_ascii=False).encode()
    with pytest.raises(WebhookVerificationError):
        _verify(request, endpoints.create(account, url=receiver.url(_path()),
                                          event_types=["order.created"])["secret"])
    # Done: a second attempt sends nothing.
    assert delivery.attempt(account, made["id"], T0 + timedelta(hours=1))["attempted"] is False
    assert len(receiver.at(path)) == 1
    log = delivery.get(account, made["id"])["attempts_log"]
    assert [(a["number"], a["status"], a["response"]) for a in log] == [(1, 200, "ok")]


def test_failures_are_retried_on_the_schedule_with_retry_after_and_the_same_webhook_id(
        receiver, account):
    created, path = _endpoint(receiver, account)
    receiver.queue(path, (500, {}, b"x" * 10_000), (503, {"Retry-After": "7200"}, b""),
                   (302, {"Location": receiver.url("/elsewhere")}, b""))
    [made] = [d for d in delivery.fan_out(_event(account), T0)
              if d["endpoint_id"] == created["id"]]
    first = delivery.attempt(account, made["id"], T0)
    assert first["status"] == "pending" and first["attempts"] == 1
    due = datetime.fromisoformat(first["next_attempt_at"])
    assert T0 + timedelta(seconds=5) <= due <= T0 + timedelta(seconds=6)
    step = steps_store.get(account, delivery.step_id_of(made["id"], 2))
    assert step is not None and datetime.fromisoformat(step.due_at) == due
    # Not due yet: nothing is sent.
    assert delivery.attempt(account, made["id"], T0 + timedelta(seconds=1))["attempted"] is False
    second = delivery.attempt(account, made["id"], due)
    due = datetime.fromisoformat(second["next_attempt_at"])
    assert due - datetime.fromisoformat(first["next_attempt_at"]) == timedelta(hours=2)
    third = delivery.attempt(account, made["id"], due)
    assert third["status"] == "pending" and third["last_error"] == "redirect not followed"
    assert receiver.at("/elsewhere") == []
    fourth = delivery.attempt(account, made["id"], datetime.fromisoformat(third["next_attempt_at"]))
    assert fourth["status"] == "succeeded" and fourth["attempts"] == 4
    sent = receiver.at(path)
    assert len(sent) == 4 and len({r["headers"]["webhook-id"] for r in sent}) == 1
    for request in sent:
        _verify(request, created["secret"])
    log = delivery.get(account, made["id"])["attempts_log"]
    assert [a["status"] for a in log] == [500, 503, 302, 200]
    assert len(log[0]["response"]) == 4096


def test_the_tenth_failure_gives_up(receiver, account):
    created, path = _endpoint(receiver, account)
    receiver.queue(path, *[(500, {}, b"down")] * 10)
    [made] = [d for d in delivery.fan_out(_event(account), T0)
              if d["endpoint_id"] == created["id"]]
    now = T0
    for _ in range(10):
        result = delivery.attempt(account, made["id"], now)
        assert result["attempted"]
        if result["next_attempt_at"]:
            now = datetime.fromisoformat(result["next_attempt_at"])
    assert result["status"] == "failed" and result["attempts"] == 10
    assert now - T0 >= timedelta(hours=72)
    assert endpoints.get(account, created["id"])["enabled"] is True  # under 5 days


def test_a_410_disables_the_endpoint_at_once(receiver, account):
    created, path = _endpoint(receiver, account)
    receiver.queue(path, (410, {}, b"gone"))
    [made] = [d for d in delivery.fan_out(_event(account), T0)
              if d["endpoint_id"] == created["id"]]
    result = delivery.attempt(account, made["id"], T0)
    assert result["status"] == "failed" and result["next_attempt_at"] is None
    found = endpoints.get(account, created["id"])
    assert found["enabled"] is False and "410" in found["disabled_reason"]
    assert created["id"] not in [d["endpoint_id"] for d in delivery.fan_out(_event(account), T0)]


def test_a_zapier_hook_answering_410_is_removed(receiver, account):
    created, path = _endpoint(receiver, account, kind="zapier")
    receiver.queue(path, (410, {}, b""))
    [made] = [d for d in delivery.fan_out(_event(account), T0)
              if d["endpoint_id"] == created["id"]]
    delivery.attempt(account, made["id"], T0)
    assert endpoints.get(account, created["id"]) is None


def test_five_days_of_failures_disable_the_endpoint_and_mail_the_merchant_one_success_resets(
        receiver, account, sent_emails, stack):
    stack.verify_sender("shop.test")  # the merchant's support address sends it
    created, path = _endpoint(receiver, account)
    receiver.queue(path, (500, {}, b""), (200, {}, b""), (500, {}, b""), (500, {}, b""))

    def one(at):
        [made] = [d for d in delivery.fan_out(_event(account, at=at), at)
                  if d["endpoint_id"] == created["id"]]
        return delivery.attempt(account, made["id"], at)

    one(T0)  # the streak starts
    assert endpoints.get(account, created["id"])["failing_since"]
    one(T0 + timedelta(days=1))  # a success ends it
    assert endpoints.get(account, created["id"])["failing_since"] is None
    one(T0 + timedelta(days=2))  # a new streak
    one(T0 + timedelta(days=6))  # four days later: still enabled
    assert endpoints.get(account, created["id"])["enabled"] is True
    receiver.queue(path, (500, {}, b""))
    last = one(T0 + timedelta(days=7, minutes=1))  # five days and a minute of failures
    assert last["status"] == "failed"
    found = endpoints.get(account, created["id"])
    assert found["enabled"] is False and "5 days" in found["disabled_reason"]
    mails = [m for m in sent_emails() if created["id"] in json.dumps(m.get("body"))]
    assert len(mails) == 1 and "disabled" in mails[0]["subject"]


def test_rotation_signs_with_both_secrets_for_the_grace_period(receiver, account):
    created, path = _endpoint(receiver, account)
    new = endpoints.rotate_secret(account, created["id"], T0)
    [made] = [d for d in delivery.fan_out(_event(account), T0)
              if d["endpoint_id"] == created["id"]]
    delivery.attempt(account, made["id"], T0)
    [request] = receiver.at(path)
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    _verify(request, created["secret"])
    _verify(request, new)
    # After the grace period only the new secret signs.
    later = T0 + timedelta(hours=25)
    [made] = [d for d in delivery.fan_out(_event(account, at=later), later)
              if d["endpoint_id"] == created["id"]]
    delivery.attempt(account, made["id"], later)
    request = receiver.at(path)[-1]
    assert len(request["headers"]["webhook-signature"].split(" ")) == 1
    _verify(request, new)
    with pytest.raises(WebhookVerificationError):
        _verify(request, created["secret"])


def test_replay_keeps_the_webhook_id_and_replay_failed_sends_the_failed_since(receiver, account):
    created, path = _endpoint(receiver, account)
    [made] = [d for d in delivery.fan_out(_event(account), T0)
              if d["endpoint_id"] == created["id"]]
    delivery.attempt(account, made["id"], T0)
    later = T0 + timedelta(hours=1)
    replayed = delivery.replay(account, made["id"], later)
    assert replayed["status"] == "pending" and replayed["next_attempt_at"]
    # The scheduler's step, due at once, sends it.
    step = steps_store.get(account, delivery.step_id_of(made["id"], 2))
    assert datetime.fromisoformat(step.due_at) == later
    assert delivery.handle_due_attempt(step, later).result == {"attempted": True,
                                                               "status": "succeeded"}
    sent = receiver.at(path)
    assert len(sent) == 2 and sent[0]["headers"]["webhook-id"] == sent[1]["headers"]["webhook-id"]
    # Disabled: two deliveries fail without being sent; enabled again, replay_failed.
    endpoints.disable(account, created["id"], "maintenance")
    failed = []
    for _ in range(2):
        event = _event(account, at=T0 + timedelta(hours=2))
        made_one = store.create_delivery(store.Delivery(
            account_id=account, delivery_id=delivery.delivery_id_of(account, event["event_id"],
                                                                  created["id"]),
            endpoint_id=created["id"], event_id=event["event_id"], event_type=event["type"],
            webhook_id=delivery.webhook_id_of(account, event["event_id"], created["id"]),
            event=event, status="pending", attempts=0, next_attempt_at=0, last_status=None,
            last_error=None, created_at="2026-11-02T11:00:00.000000Z",
            updated_at="2026-11-02T11:00:00.000000Z"), expires_at=2_000_000_000)[0]
        assert delivery.attempt(account, made_one.delivery_id, T0)["status"] == "failed"
        failed.append(made_one)
    assert len(receiver.at(path)) == 2
    endpoints.update(account, created["id"], enabled=True)
    now = T0 + timedelta(hours=3)
    ids = delivery.replay_failed(account, created["id"], T0 + timedelta(hours=1), now)
    assert sorted(ids) == sorted(d.delivery_id for d in failed)
    for d in failed:  # the scheduler's step runs each at once
        step = steps_store.get(account, delivery.step_id_of(d.delivery_id, 2))
        assert step is not None and datetime.fromisoformat(step.due_at) == now
        assert delivery.attempt(account, d.delivery_id, now)["status"] == "succeeded"
    webhook_ids = [r["headers"]["webhook-id"] for r in receiver.at(path)[2:]]
    assert sorted(webhook_ids) == sorted(d.webhook_id for d in failed)


def test_the_scheduler_handler_attempts_a_due_delivery(receiver, account):
    created, path = _endpoint(receiver, account)
    [made] = [d for d in delivery.fan_out(_event(account), T0)
              if d["endpoint_id"] == created["id"]]
    step = steps_store.get(account, delivery.step_id_of(made["id"], 1))
    outcome = delivery.handle_due_attempt(step, T0 + timedelta(minutes=1))
    assert outcome.status == "done" and outcome.result["attempted"] is True
    assert len(receiver.at(path)) == 1


def test_another_accounts_delivery_is_not_found(receiver, account, app_client):  # noqa: F811
    other = make_merchant(app_client).account_id
    created, path = _endpoint(receiver, account)
    [made] = [d for d in delivery.fan_out(_event(account), T0)
              if d["endpoint_id"] == created["id"]]
    with pytest.raises(NotFound):
        delivery.get(other, made["id"])
    with pytest.raises(NotFound):
        delivery.replay(other, made["id"], T0)
    with pytest.raises(NotFound):
        delivery.replay_failed(other, created["id"], T0, T0)
    with pytest.raises(NotFound):
        delivery.list_for_endpoint(other, created["id"])
    assert delivery.attempt(other, made["id"], T0)["attempted"] is False
    assert receiver.at(path) == []


def test_a_worker_dying_mid_attempt_leaves_the_delivery_to_the_scheduler(receiver, account):
    created, path = _endpoint(receiver, account)
    [made] = [d for d in delivery.fan_out(_event(account), T0)
              if d["endpoint_id"] == created["id"]]
    # A sender claims the first attempt, then dies before sending or recording anything.
    assert store.claim(account, made["id"], int(T0.timestamp()), delivery.LEASE_SECONDS)
    step = steps_store.get(account, delivery.step_id_of(made["id"], 1))
    early = delivery.handle_due_attempt(step, T0 + timedelta(seconds=30))
    assert early.status == "pending"  # back when the lease ends
    due = datetime.fromisoformat(early.due_at)
    assert due == T0 + timedelta(seconds=delivery.LEASE_SECONDS + 1)
    assert receiver.at(path) == []
    done = delivery.handle_due_attempt(step, due)
    assert done.status == "done" and done.result == {"attempted": True, "status": "succeeded"}
    assert len(receiver.at(path)) == 1
    # A step whose attempt was made (here: a second run of it) ends without sending.
    assert delivery.handle_due_attempt(step, due + timedelta(minutes=5)).status == "done"
    assert len(receiver.at(path)) == 1


def test_the_scheduler_sweep_runs_the_retries(receiver, account):
    """Through scheduler.kinds: the sweep finds the delivery's steps and runs them."""
    from chalicelib.scheduler import service as scheduler

    created, path = _endpoint(receiver, account)
    receiver.queue(path, (500, {}, b"down"))
    [made] = [d for d in delivery.fan_out(_event(account), T0)
              if d["endpoint_id"] == created["id"]]

    def sweep(at, number):
        shard = steps_store.shard_of(account, delivery.step_id_of(made["id"], number))
        scheduler.sweep(at, shards=[shard])
        return delivery.get(account, made["id"])

    assert sweep(T0 + timedelta(seconds=30), 1)["attempts"] == 0  # the backstop is not due
    first = sweep(T0 + timedelta(seconds=61), 1)  # the pipeline's sender never came
    assert first["attempts"] == 1 and first["status"] == "pending"
    second = sweep(datetime.fromisoformat(first["next_attempt_at"]), 2)
    assert second["status"] == "succeeded" and second["attempts"] == 2
    assert [a["status"] for a in second["attempts_log"]] == [500, 200]
    assert steps_store.get(account, delivery.step_id_of(made["id"], 2)).status == "done"
