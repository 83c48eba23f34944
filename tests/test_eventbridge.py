"""The ``eventbridge`` endpoint kind (chalicelib/integrations/eventbridge.py): a bus ARN of
the deployment's own account and region only, no secret, one PutEvents per attempt on
moto's EventBridge (read back through a rule whose target is an SQS queue), failures
retried on the delivery schedule, and the sender's and sweep's roles allowing it."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    dashboard_settings,
    make_staff_shop,
    staff_sign_in,
)
from portal_helpers import PortalClient, text

from chalicelib.errors import BadRequest
from chalicelib.integrations import catalogue, delivery, endpoints, eventbridge
from chalicelib.settings import get_settings
from chalicelib.store import endpoints as store

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _aws(service: str):
    return boto3.client(service, region_name=get_settings().region)


def _bus_arn(name: str) -> str:
    settings = get_settings()
    return f"arn:aws:events:{settings.region}:{settings.deployment_account_id}:event-bus/{name}"


def _bus_with_queue(account_id: str) -> tuple[str, str]:
    """A bus on moto, and a queue its rule copies this account's events to."""
    events, sqs = _aws("events"), _aws("sqs")
    name = f"shop-{uuid.uuid4().hex[:10]}"
    arn = events.create_event_bus(Name=name)["EventBusArn"]
    queue_url = sqs.create_queue(QueueName=f"bus-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    events.put_rule(Name="shop-events", EventBusName=name, EventPattern=json.dumps(
        {"source": [eventbridge.source_of(account_id)]}))
    events.put_targets(Rule="shop-events", EventBusName=name,
                       Targets=[{"Id": "queue", "Arn": queue_arn}])
    return arn, queue_url


def _received(queue_url: str) -> list[dict]:
    answer = _aws("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def _event(account_id: str, event_type: str = "payment.succeeded") -> dict:
    return {"account_id": account_id, "event_id": f"evt_{uuid.uuid4().hex}", "type": event_type,
            "occurred_at": "2026-11-02T08:59:30.000000Z", "customer_id": "cus_test",
            "data": {"amount": 1250, "currency": "EUR", "note": "café"}}


@pytest.fixture(scope="module")
def account(app_client):  # noqa: F811
    return make_merchant(app_client).account_id


def _delivery_to(endpoint_id: str, event: dict) -> dict:
    [made] = [d for d in delivery.fan_out(event, T0) if d["endpoint_id"] == endpoint_id]
    return made


def test_only_a_bus_of_the_deployments_account_and_region_is_accepted(account):
    settings = get_settings()
    assert settings.deployment_account_id  # devstack sets moto's account
    good = _bus_arn("shop-bus")
    created = endpoints.create(account, url=good, event_types=["*"], kind="eventbridge")
    # IAM authenticates PutEvents: no secret is made or shown.
    assert "secret" not in created and created["secrets"] == []
    assert store.get_endpoint(account, created["id"]).secrets == []
    with pytest.raises(BadRequest, match="no secret"):
        endpoints.rotate_secret(account, created["id"], T0)
    before = len(endpoints.list_for(account))
    foreign = good.replace(settings.deployment_account_id, "210987654321")
    other_region = good.replace(f":{settings.region}:", ":eu-north-1:" if
                                settings.region != "eu-north-1" else ":us-west-2:")
    for bad in [foreign, other_region, "https://example.com/hook", good + " ",
                f"arn:aws:sqs:{settings.region}:{settings.deployment_account_id}:queue",
                good.replace("event-bus/shop-bus", "event-bus/"), None, 42]:
        with pytest.raises(BadRequest) as refused:
            endpoints.create(account, url=bad, event_types=["*"], kind="eventbridge")
        assert refused.value.status == 400
    with pytest.raises(BadRequest, match="another account is not supported"):
        endpoints.create(account, url=foreign, event_types=["*"], kind="eventbridge")
    assert len(endpoints.list_for(account)) == before  # nothing written
    # A change of the ARN is checked the same way; a webhook's URL is not an ARN.
    with pytest.raises(BadRequest):
        endpoints.update(account, created["id"], url=foreign)
    assert endpoints.update(account, created["id"], url=_bus_arn("other"))["url"] == \
        _bus_arn("other")
    with pytest.raises(BadRequest):
        endpoints.create(account, url=good, event_types=["*"], kind="webhook")


def test_the_api_accepts_the_kind_and_refuses_a_foreign_bus(app_client):  # noqa: F811
    merchant = make_merchant(app_client)

    def post(body):
        response = app_client.http.post("/api/v1/endpoints", body=json.dumps(body).encode(),
                                        headers={"Authorization": f"Bearer {merchant.api_key}",
                                                 "Content-Type": "application/json"})
        return response.status_code, json.loads(response.body)

    status, created = post({"url": _bus_arn("api-bus"), "event_types": ["order.created"],
                            "kind": "eventbridge"})
    assert status == 201 and created["kind"] == "eventbridge" and "secret" not in created
    foreign = _bus_arn("api-bus").replace(get_settings().deployment_account_id, "210987654321")
    status, refused = post({"url": foreign, "event_types": ["*"], "kind": "eventbridge"})
    assert status == 400 and "account" in json.dumps(refused)
    assert [e["id"] for e in json.loads(merchant.get("/api/v1/endpoints").body)["data"]] == \
        [created["id"]]


def test_an_event_is_put_on_the_bus_and_read_back(account):
    arn, queue_url = _bus_with_queue(account)
    created = endpoints.create(account, url=arn, event_types=["payment.succeeded"],
                               kind="eventbridge")
    event = _event(account)
    made = _delivery_to(created["id"], event)
    result = delivery.attempt(account, made["id"], T0)
    assert result["attempted"] and result["status"] == "succeeded"
    [message] = _received(queue_url)
    assert message["source"] == f"billing-portal.{account}"
    assert message["detail-type"] == "payment.succeeded"
    assert message["detail"] == catalogue.payload(event)
    assert message["detail"]["data"]["note"] == "café"
    [logged] = delivery.get(account, made["id"])["attempts_log"]
    assert logged["status"] == 200 and logged["error"] is None
    assert json.loads(logged["response"])["EventId"]
    # An event of another type is not fanned out to it.
    assert [d for d in delivery.fan_out(_event(account, "order.created"), T0)
            if d["endpoint_id"] == created["id"]] == []


def test_the_entry_is_what_the_catalogue_says():
    event = _event("acct_x")
    entry = eventbridge.entry_of(_bus_arn("b"), event)
    assert entry["Source"] == "billing-portal.acct_x" and entry["DetailType"] == event["type"]
    assert entry["Time"] == datetime(2026, 11, 2, 8, 59, 30, tzinfo=UTC)
    assert json.loads(entry["Detail"]) == catalogue.payload(event)


def test_a_missing_bus_is_a_failed_attempt_retried_until_it_exists(account):
    name = f"later-{uuid.uuid4().hex[:10]}"
    created = endpoints.create(account, url=_bus_arn(name), event_types=["*"],
                               kind="eventbridge")
    made = _delivery_to(created["id"], _event(account))
    first = delivery.attempt(account, made["id"], T0)
    assert first["status"] == "pending" and first["attempts"] == 1
    assert "ResourceNotFoundException" in first["last_error"]
    assert "no such event bus" in first["last_error"]
    assert store.get_endpoint(account, created["id"]).failing_since is not None
    due = datetime.fromisoformat(first["next_attempt_at"])
    assert T0 + timedelta(seconds=5) <= due <= T0 + timedelta(seconds=6)
    # The merchant creates the bus; the retry on the schedule succeeds and ends the streak.
    _aws("events").create_event_bus(Name=name)
    second = delivery.attempt(account, made["id"], due)
    assert second["status"] == "succeeded" and second["attempts"] == 2
    assert store.get_endpoint(account, created["id"]).failing_since is None
    log = delivery.get(account, made["id"])["attempts_log"]
    assert [a["status"] for a in log] == [None, 200]


class _Refusing:
    """An EventBridge client answering like AWS when the entry fails or the call is
    throttled (moto neither throttles nor fails a well-formed entry)."""

    def __init__(self, answer=None, error=None):
        self.answer, self.error, self.calls = answer, error, 0

    def put_events(self, Entries):
        from botocore.exceptions import ClientError

        self.calls += 1
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "nope"}}, "PutEvents")
        return self.answer


@pytest.mark.parametrize("client, expected", [
    (_Refusing(answer={"FailedEntryCount": 1, "Entries": [
        {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]}), "InternalFailure"),
    (_Refusing(error="ThrottlingException"), "ThrottlingException"),
    (_Refusing(error="AccessDeniedException"), "may not put events"),
])
def test_failed_entries_throttling_and_access_denied_are_retried(account, client, expected):
    created = endpoints.create(account, url=_bus_arn("any"), event_types=["*"],
                               kind="eventbridge")
    made = _delivery_to(created["id"], _event(account))
    eventbridge.set_client(client)
    try:
        result = delivery.attempt(account, made["id"], T0)
    finally:
        eventbridge.set_client(None)
    assert client.calls == 1
    assert result["status"] == "pending" and expected in result["last_error"]
    assert result["next_attempt_at"] is not None


def test_a_stored_foreign_bus_is_never_called(account):
    """Defence in depth: an item whose ARN is not the deployment's (written before a
    change of account, say) fails without a call."""
    created = endpoints.create(account, url=_bus_arn("mine"), event_types=["*"],
                               kind="eventbridge")
    store.update_endpoint(account, created["id"], "2026-11-02T09:00:00Z",
                          url=_bus_arn("mine").replace(get_settings().deployment_account_id,
                                                       "210987654321"))
    made = _delivery_to(created["id"], _event(account))
    client = _Refusing(answer={"FailedEntryCount": 0, "Entries": [{"EventId": "x"}]})
    eventbridge.set_client(client)
    try:
        result = delivery.attempt(account, made["id"], T0)
    finally:
        eventbridge.set_client(None)
    assert client.calls == 0 and result["last_error"].startswith("not sent:")


def test_the_fan_out_and_sender_roles_allow_what_their_flows_call(account, monkeypatch):
    """The fan-out (app.outbox_fanout) and the sender (app.delivery_sender) run as their own
    roles: what they call for an eventbridge endpoint, recorded as tests/test_iam_calls.py
    records, must be granted to them; the sweep, which retries, may put events too."""
    from test_iam_calls import granted, needs_of, recording
    from test_infra import TEMPLATE, load_template

    from chalicelib.integrations import pipeline

    template = load_template(TEMPLATE)
    sqs = _aws("sqs")
    queue_url = sqs.create_queue(QueueName=f"deliveries-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    monkeypatch.setenv("DELIVERY_QUEUE_URL", queue_url)
    get_settings.cache_clear()
    try:
        arn, bus_queue = _bus_with_queue(account)
        created = endpoints.create(account, url=arn, event_types=["refund.created"],
                                   kind="eventbridge")
        event = _event(account, "refund.created")
        with recording(monkeypatch) as fanout_rec:
            deliveries = pipeline.fan_out_event(event, T0)
        assert created["id"] in {d["endpoint_id"] for d in deliveries}
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
        with recording(monkeypatch) as sender_rec:
            assert pipeline.send_records(records, T0) == {"batchItemFailures": []}
    finally:
        monkeypatch.delenv("DELIVERY_QUEUE_URL")
        get_settings.cache_clear()
    [received] = _received(bus_queue)
    assert received["detail"]["id"] == event["event_id"]

    assert ("sqs", "SendMessageBatch") in fanout_rec.operations()
    assert ("eventbridge", "PutEvents") in sender_rec.operations()
    for rec, role_name in ((fanout_rec, "OutboxFanoutRole"), (sender_rec, "DeliverySenderRole")):
        needed = set()
        for call in rec.calls:
            needed |= needs_of(call, template)
        missing = needed - granted(template, role_name)
        assert not missing, f"{role_name} does not allow: {sorted(missing)}"
    assert ("events:PutEvents", "event-bus") in granted(template, "SweepDueStepsRole")
    assert ("events:PutEvents", "event-bus") not in granted(template, "ApiHandlerRole")
    assert ("events:PutEvents", "event-bus") not in granted(template, "OutboxFanoutRole")


@pytest.mark.usefixtures("dashboard_settings")
def test_the_dashboard_adds_a_bus_without_a_secret_and_refuses_a_foreign_one(
        app_client, stack, sent_emails):  # noqa: F811
    shop = make_staff_shop(app_client, stack)
    c = PortalClient(app_client.http)
    staff_sign_in(c, shop.root, shop.owner, sent_emails)
    base = f"{shop.root}/settings/endpoints"
    assert "EventBridge bus" in text(c.get(base))
    foreign = _bus_arn("dash").replace(get_settings().deployment_account_id, "210987654321")
    refused = c.post(base, {"url": foreign, "event_types": "*", "kind": "eventbridge"})
    assert refused.status_code == 400 and "another account" in text(refused)
    added = c.post(base, {"url": _bus_arn("dash"), "event_types": "*", "kind": "eventbridge"})
    assert added.status_code == 303  # straight to its page: there is no secret to show
    detail = c.get(added.headers["Location"])
    assert detail.status_code == 200 and _bus_arn("dash") in text(detail)
    assert "whsec_" not in text(detail) and "Rotate the secret" not in text(detail)
    assert "Signing secrets" not in text(detail)


def test_the_sweep_retries_on_the_bus_with_what_its_role_allows(account, monkeypatch):
    """A failed attempt's retry is the scheduler's step (``delivery:<id>:2``), run by the
    sweep's function: it puts the event with SweepDueStepsRole's grants."""
    from test_iam_calls import granted, needs_of, recording
    from test_infra import TEMPLATE, load_template

    from chalicelib.scheduler import service as scheduler
    from chalicelib.store import steps as steps_store

    name = f"sweep-{uuid.uuid4().hex[:10]}"
    created = endpoints.create(account, url=_bus_arn(name), event_types=["*"],
                               kind="eventbridge")
    made = _delivery_to(created["id"], _event(account))
    first = delivery.attempt(account, made["id"], T0)
    assert first["status"] == "pending"
    _aws("events").create_event_bus(Name=name)
    due = datetime.fromisoformat(first["next_attempt_at"])
    step = steps_store.claim(steps_store.get(account, delivery.step_id_of(made["id"], 2)),
                             due, get_settings().scheduler_lease_seconds)
    assert step is not None
    with recording(monkeypatch) as rec:
        scheduler.run(step, due)
    assert delivery.get(account, made["id"])["status"] == "succeeded"
    assert ("eventbridge", "PutEvents") in rec.operations()
    template = load_template(TEMPLATE)
    needed = set()
    for call in rec.calls:
        needed |= needs_of(call, template)
    missing = needed - granted(template, "SweepDueStepsRole")
    assert not missing, f"SweepDueStepsRole does not allow: {sorted(missing)}"
