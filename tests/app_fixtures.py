"""Fixtures shared by the app's tests: a merchant account and a client for the app.

The app runs in-process through Chalice's test client, but every DynamoDB call goes over
HTTP to DynamoDB Local (started by conftest). End-to-end tests use the app over real HTTP.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

import pytest
from stripe_events import sign


@dataclass
class Merchant:
    client: object
    account_id: str
    api_key: str
    webhook_secrets: list[str]
    sent: list[dict] = field(default_factory=list)

    def deliver(self, event: dict, secret: str | None = None, body: bytes | None = None,
                headers: dict | None = None):
        body = json.dumps(event).encode() if body is None else body
        hdrs = {"Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign(body, secret or self.webhook_secrets[0])}
        hdrs.update(headers or {})
        return self.client.http.post(f"/webhooks/stripe/{self.account_id}", body=body, headers=hdrs)

    def deliver_until_applied(self, events: list[dict], max_rounds: int = 20) -> None:
        """Deliver like Stripe does: anything not answered 2xx is sent again later."""
        pending = list(events)
        for _ in range(max_rounds):
            retry = []
            for event in pending:
                response = self.deliver(event)
                if response.status_code >= 500:
                    retry.append(event)
                else:
                    assert response.status_code == 200, (response.status_code, response.body)
            if not retry:
                return
            pending = retry
        last = [(e["type"], e["id"], self.deliver(e).body) for e in pending]
        raise AssertionError(f"{len(pending)} events never applied: {last}")

    def get(self, path: str, api_key: str | None = None):
        response = self.client.http.get(path, headers={
            "Authorization": f"Bearer {api_key or self.api_key}"})
        return response

    def get_json(self, path: str):
        response = self.get(path)
        assert response.status_code == 200, (path, response.status_code, response.body)
        return json.loads(response.body)

    def customers(self) -> list[dict]:
        out, cursor = [], None
        while True:
            page = self.get_json("/api/v1/customers?limit=100" + (f"&cursor={cursor}" if cursor else ""))
            out += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                return out

    def records_by_email(self) -> dict[str, dict]:
        return {c["email"]: self.get_json(f"/api/v1/customers/{c['id']}") for c in self.customers()}


@pytest.fixture(scope="session")
def app_client(stack):
    from chalice.test import Client

    from app import app

    with Client(app) as client:
        yield client


def make_merchant(client, secrets_count: int = 1, **settings) -> Merchant:
    from chalicelib.accounts.service import create_account

    webhook_secrets = [f"whsec_{secrets.token_hex(16)}" for _ in range(secrets_count)]
    created = create_account(
        name=f"Shop {secrets.token_hex(4)}", support_email="support@shop.test",
        stripe_secret_key="sk_test_x", stripe_webhook_secrets=webhook_secrets, settings=settings)
    return Merchant(client, created.account["account_id"], created.api_key, webhook_secrets)


@pytest.fixture
def merchant(app_client) -> Merchant:
    return make_merchant(app_client)


def normalize_record(record: dict) -> dict:
    """A record without the ids that differ between two accounts given the same events."""
    drop = {"id", "subscription_id", "payment_ids", "customer_id", "card_id", "transactions"}

    def walk(value):
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items() if k not in drop}
        if isinstance(value, list):
            # Ties in a list's order are broken by id, which differs between accounts.
            return sorted((walk(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        return value

    return walk(record)


def raw_item(pk: str, sk: str) -> dict:
    """An item as DynamoDB holds it (attribute-value form), read with boto3, not the models:
    what anyone with table read, a backup or an export sees."""
    import os

    import boto3

    return boto3.client("dynamodb").get_item(
        TableName=os.environ["TABLE_NAME"], Key={"PK": {"S": pk}, "SK": {"S": sk}},
        ConsistentRead=True)["Item"]


class DynamoCalls:
    """Counts the requests PynamoDB's botocore client sends (event hook ``before-send``)."""

    def __init__(self):
        from chalicelib.store.table import TableItem

        self.events = TableItem._get_connection().connection.client.meta.events
        self.calls: list[str] = []

    def _hook(self, request, **kwargs):
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        self.calls.append(target.split(".")[-1])

    def __enter__(self):
        self.calls.clear()
        self.events.register("before-send.dynamodb", self._hook)
        return self

    def __exit__(self, *exc):
        self.events.unregister("before-send.dynamodb", self._hook)
