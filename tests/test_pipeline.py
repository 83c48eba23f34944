"""The outbox → delivery pipeline end to end, locally: a webhook's commit writes an outbox
item; DynamoDB Local's stream hands it to the fan-out handler (app.outbox_fanout, through
devstack.stream_worker as Lambda's mapping would); one message per delivery on moto's SQS;
the sender handler (app.delivery_sender) attempts it; devstack's receiver verifies it with
the standardwebhooks library. And the sweeper that finds what the stream path missed; and
a stream of events with about 10% of DynamoDB, SQS and receiver calls failing."""
from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream

from bench import ddbhooks
from chalicelib import timeutil
from chalicelib.integrations import delivery, endpoints, pipeline
from chalicelib.scheduler import service as scheduler
from chalicelib.settings import get_settings
from chalicelib.store import customers as customers_store
from chalicelib.store import endpoints as endpoints_store
from chalicelib.store import steps as steps_store
from devstack import stream_worker
from devstack.receiver import Receiver

# A fresh table per module: its stream then holds only this module's writes.
pytestmark = pytest.mark.usefixtures("table_of_its_own")


@pytest.fixture(scope="module")
def receiver(table_of_its_own):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALLOW_HTTP_LOOPBACK_ENDPOINTS", "1")
        get_settings.cache_clear()
        server = Receiver()
        yield server
        server.close()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def workers(receiver):
    url = stream_worker.ensure_delivery_queues(visibility_timeout=30)
    assert url == get_settings().delivery_queue_url
    stream_worker._client("sqs").purge_queue(QueueUrl=url)
    return stream_worker.StreamWorker(start="TRIM_HORIZON"), stream_worker.SenderWorker()


def _endpoint(receiver, account_id: str, name: str, types: list[str]) -> str:
    created = endpoints.create(account_id, url=receiver.url(name), event_types=types)
    receiver.register(name, created["secret"])
    return created["id"]


def _run(workers, rounds: int = 20) -> None:
    stream, sender = workers
    for _ in range(rounds):
        if not stream.drain() + sender.drain():
            return


def test_a_webhook_reaches_the_subscribed_endpoint_verified_and_no_other(
        app_client, receiver, workers):  # noqa: F811
    merchant = make_merchant(app_client)
    paid = _endpoint(receiver, merchant.account_id, "paid", ["payment.succeeded",
                                                             "customer.created"])
    _endpoint(receiver, merchant.account_id, "disputes", ["dispute.opened"])
    s = Stream("pipe")
    cus = s.customer("pipe@example.com", "Pipe")
    s.one_time(cus, 2500)
    for event in s.events:
        assert merchant.deliver(event).status_code == 200
    _run(workers)

    got = receiver.received("paid")
    assert sorted(d["type"] for d in got) == ["customer.created", "payment.succeeded"]
    outbox = {e["event_id"]: e for e in customers_store.list_outbox(merchant.account_id)}
    for d in got:
        assert d["event_id"] in outbox
        assert d["webhook_id"] == delivery.webhook_id_of(merchant.account_id, d["event_id"],
                                                         paid)
        assert d["body"]["data"]["object"]["id"]
    assert receiver.received("disputes", verified=False) == []
    # The stream did it: every event's sweeper step is canceled, not left to run.
    for event_id in outbox:
        step = steps_store.get(merchant.account_id, customers_store.outbox_step_id(event_id))
        assert step is not None and step.status == "canceled"
    # Fanned out again (a stream record handed twice): nothing more is sent.
    for event in outbox.values():
        pipeline.fan_out_event({**event, "account_id": merchant.account_id}, timeutil.now())
    _run(workers)
    assert len(receiver.received("paid")) == 2


def test_the_sweeper_fans_out_what_the_stream_missed(app_client, receiver, workers,  # noqa: F811
                                                     monkeypatch):
    stream, sender = workers
    stream.drain()  # earlier writes done
    merchant = make_merchant(app_client)
    _endpoint(receiver, merchant.account_id, "missed", ["customer.created"])
    s = Stream("missed")
    s.customer("missed@example.com", "Missed")
    assert merchant.deliver(s.events[0]).status_code == 200
    # The stream's records are lost (aged out, the mapping disabled): read past them.
    stream.handler = lambda event, context: {"batchItemFailures": []}
    try:
        stream.drain()
    finally:
        stream.handler = stream_worker._fanout_handler()
    [event] = customers_store.list_outbox(merchant.account_id)
    step = steps_store.get(merchant.account_id, customers_store.outbox_step_id(event["event_id"]))
    assert step.status == "pending" and step.kind == customers_store.OUTBOX_STEP_KIND
    # Not before its time; then the scheduler's sweep runs it (scheduler.kinds: "outbox").
    now = timeutil.now()
    assert steps_store.claim(step, now, 60) is None
    later = now + customers_store.OUTBOX_SWEEP_AFTER + timedelta(seconds=1)
    counts = scheduler.sweep(later, shards=[steps_store.shard_of(merchant.account_id,
                                                                 step.step_id)])
    assert counts["done"] >= 1, counts
    # The sender's clock is the sweep's (the delivery is due then; its signature still
    # carries the real time, which the receiver checks).
    monkeypatch.setattr(sender, "handler",
                        lambda event, context: pipeline.send_records(event["Records"], later))
    sender.drain()
    [got] = receiver.received("missed")
    assert got["type"] == "customer.created" and got["event_id"] == event["event_id"]


def _flaky_sqs(real, rng: random.Random, rate: float, failed: list):
    """An SQS client whose sends, receives and deletes fail about ``rate`` of the time."""

    class Flaky:
        def __getattr__(self, name):
            method = getattr(real, name)
            if name not in ("send_message_batch", "receive_message", "delete_message"):
                return method

            def call(**kwargs):
                if rng.random() < rate:
                    failed.append(name)
                    raise ConnectionError(f"injected SQS failure: {name}")
                return method(**kwargs)
            return call
    return Flaky()


def _faulty_stream(app_client, receiver, workers, customers: int, seed: int) -> None:  # noqa: F811
    stream, _ = workers
    stream.drain()
    merchant = make_merchant(app_client)
    account = merchant.account_id
    subscribed = {"all": ["customer.created", "payment.succeeded", "order.created"],
                  "payments": ["payment.succeeded"], "none": ["dispute.opened"]}
    ids = {_endpoint(receiver, account, f"{name}{seed}", types): name
           for name, types in subscribed.items()}
    events = []
    for n in range(customers):
        s = Stream(f"flt{seed}x{n}")
        cus = s.customer(f"flaky{seed}.{n}@example.com", f"Flaky {n}")
        s.one_time(cus, 1000 + n)
        events += s.events
    merchant.deliver_until_applied(events)
    outbox = customers_store.list_outbox(account, 500)
    assert len(outbox) == 3 * customers

    rng = random.Random(seed)
    failed: list[str] = []
    receiver.fail_rate = 0.1
    real_sqs = pipeline._sqs()
    sender = stream_worker.SenderWorker()
    sender.sqs = _flaky_sqs(sender.sqs, rng, 0.1, failed)
    plan = ddbhooks.FaultPlan(rate=0.1, seed=seed)
    now = timeutil.now()
    try:
        pipeline._client = _flaky_sqs(real_sqs, rng, 0.1, failed)
        with ddbhooks.botocore_attempts(1), ddbhooks.faults(plan):
            for _ in range(40):
                try:
                    moved = stream.drain() + sender.drain()
                except Exception:  # noqa: BLE001 - the worker's own call failed: poll again
                    moved = 1
                # Retries are the scheduler's steps: run the due ones on a fake clock.
                now += timedelta(minutes=10)
                try:
                    swept = scheduler.sweep(now)
                except Exception:  # noqa: BLE001 - the sweep's own read failed: next time
                    swept = {"claimed": 1}
                if not moved and not swept["claimed"]:
                    try:
                        if all(d.status == "succeeded" for d in _deliveries(account)):
                            break
                    except Exception:  # noqa: BLE001 - an injected fault: look again
                        pass
    finally:
        pipeline._client = real_sqs
        receiver.fail_rate = 0.0
    assert plan.total_injected and failed, "no fault was injected"

    by_endpoint = defaultdict(list)
    for d in receiver.received():
        if d["endpoint"].endswith(str(seed)):
            by_endpoint[d["endpoint"][:-len(str(seed))]].append(d)
    for endpoint_id, name in ids.items():
        wanted = {e["event_id"] for e in outbox if e["type"] in subscribed[name]}
        got = by_endpoint[name]
        # Every subscribed event at least once, always under its one webhook-id.
        assert {d["event_id"] for d in got} == wanted, name
        for d in got:
            assert d["webhook_id"] == delivery.webhook_id_of(account, d["event_id"], endpoint_id)
    assert by_endpoint["none"] == []
    # Sent again only after a failed attempt: a delivery's successes are one.
    for d in _deliveries(account):
        assert d.status == "succeeded"


def _deliveries(account_id: str) -> list:
    out = []
    for endpoint in endpoints_store.list_endpoints(account_id):
        out += endpoints_store.list_deliveries(account_id, endpoint.endpoint_id)
    return out


def test_with_10_percent_of_calls_failing_every_event_reaches_every_subscribed_endpoint(
        app_client, receiver, workers):  # noqa: F811
    _faulty_stream(app_client, receiver, workers, customers=3, seed=1)


@pytest.mark.soak
def test_soak_with_10_percent_of_calls_failing(app_client, receiver, workers):  # noqa: F811
    _faulty_stream(app_client, receiver, workers, customers=60, seed=2)
