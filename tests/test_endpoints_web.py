"""The endpoints' merchant API (/api/v1/endpoints) and dashboard page
(/dashboard/{slug}/settings/endpoints): CRUD, the secret shown once, rotation, deliveries
and replay, roles and CSRF on the server, another account's ids answer 404."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from dashboard_helpers import (  # noqa: F401 - dashboard_settings is a fixture
    add_member,
    dashboard_settings,
    make_staff_shop,
    signed_in_csrf,
    staff_sign_in,
)
from portal_helpers import PortalClient, text
from test_delivery import receiver  # noqa: F401 - the module's loopback receiver fixture

from chalicelib.integrations import delivery
from chalicelib.store import steps as steps_store

SECRET_RE = re.compile(r"whsec_[A-Za-z0-9+/=]{40,}")


def _call(client, method, path, key, body=None):
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    response = client.http.request(method, path, headers=headers,
                                   body=json.dumps(body).encode() if body is not None else b"")
    return response.status_code, (json.loads(response.body) if response.body else None)


@pytest.fixture(scope="module")
def merchants(app_client):  # noqa: F811
    return make_merchant(app_client), make_merchant(app_client)


def test_the_api_creates_lists_updates_rotates_and_deletes(app_client, merchants):  # noqa: F811
    mine, _ = merchants
    status, created = _call(app_client, "POST", "/api/v1/endpoints", mine.api_key, {
        "url": "https://hooks.example.com/in", "event_types": ["payment.succeeded"],
        "description": "CRM"})
    assert status == 201 and created["secret"].startswith("whsec_")
    endpoint_id = created["id"]
    status, listed = _call(app_client, "GET", "/api/v1/endpoints", mine.api_key)
    assert status == 200 and endpoint_id in [e["id"] for e in listed["data"]]
    assert "whsec_" not in json.dumps(listed)
    status, updated = _call(app_client, "PATCH", f"/api/v1/endpoints/{endpoint_id}",
                            mine.api_key, {"event_types": ["*"], "enabled": False})
    assert status == 200 and updated["event_types"] == ["*"] and updated["enabled"] is False
    status, rotated = _call(app_client, "POST", f"/api/v1/endpoints/{endpoint_id}/rotate-secret",
                            mine.api_key, {"grace_hours": 48})
    assert status == 200 and rotated["secret"] != created["secret"]
    assert len(rotated["secrets"]) == 2 and rotated["secrets"][1]["expires_at"]
    status, deliveries = _call(app_client, "GET", f"/api/v1/endpoints/{endpoint_id}/deliveries",
                               mine.api_key)
    assert status == 200 and deliveries == {"data": []}
    assert _call(app_client, "DELETE", f"/api/v1/endpoints/{endpoint_id}", mine.api_key)[0] == 204
    assert _call(app_client, "GET", f"/api/v1/endpoints/{endpoint_id}", mine.api_key)[0] == 404
    # Where the account's events go is changed on the record, by the API key too.
    from chalicelib.activity import service as activity

    logged, _ = activity.list(mine.account_id, target=endpoint_id)
    assert [(e["action"], e["actor"]) for e in reversed(logged)] == [
        ("endpoint.created", "api"), ("endpoint.updated", "api"),
        ("endpoint.secret_rotated", "api"), ("endpoint.deleted", "api")]
    assert logged[-1]["details"]["url"] == "https://hooks.example.com/in"
    assert "whsec_" not in json.dumps(logged)


@pytest.mark.parametrize("body", [
    {"url": "http://hooks.example.com/in", "event_types": ["*"]},
    {"url": "https://10.0.0.1/in", "event_types": ["*"]},
    {"url": "https://hooks.example.com/in", "event_types": []},
    {"url": "https://hooks.example.com/in", "event_types": ["*"], "kind": "zapier"},
    {"url": "https://hooks.example.com/in", "event_types": ["*"], "secret": "whsec_x"},
    {"event_types": ["*"]},
])
def test_bad_input_is_a_400_and_creates_nothing(app_client, merchants, body):  # noqa: F811
    mine, _ = merchants
    before = _call(app_client, "GET", "/api/v1/endpoints", mine.api_key)[1]["data"]
    status, answer = _call(app_client, "POST", "/api/v1/endpoints", mine.api_key, body)
    assert status == 400 and set(answer) == {"error", "message"}
    assert _call(app_client, "GET", "/api/v1/endpoints", mine.api_key)[1]["data"] == before


def test_another_accounts_endpoint_and_deliveries_are_404(app_client, merchants):  # noqa: F811
    mine, other = merchants
    created = _call(app_client, "POST", "/api/v1/endpoints", mine.api_key, {
        "url": "https://hooks.example.com/x", "event_types": ["*"]})[1]
    base = f"/api/v1/endpoints/{created['id']}"
    for method, path, body in [
            ("GET", base, None), ("PATCH", base, {"description": "mine"}),
            ("DELETE", base, None), ("POST", f"{base}/rotate-secret", {}),
            ("GET", f"{base}/deliveries", None),
            ("POST", f"{base}/replay-failed", {"since": "2026-11-01T00:00:00Z"}),
            ("GET", f"{base}/deliveries/dlv_aaaaaaaaaaaaaaaaaaaaaaaa", None)]:
        status, _ = _call(app_client, method, path, other.api_key, body)
        assert status == 404, (method, path, status)
    assert _call(app_client, "GET", base, mine.api_key)[1]["description"] == ""
    assert _call(app_client, "GET", "/api/v1/endpoints", "not-a-key")[0] == 401


def test_the_api_replays_a_delivery_under_the_same_webhook_id(
        app_client, merchants, receiver):  # noqa: F811
    mine, other = merchants
    path = "/hook/api-replay"
    created = _call(app_client, "POST", "/api/v1/endpoints", mine.api_key, {
        "url": receiver.url(path), "event_types": ["order.created"]})[1]
    event = {"account_id": mine.account_id, "event_id": "evt_api_replay_1",
             "type": "order.created", "occurred_at": "2026-11-02T09:00:00.000000Z",
             "customer_id": "cus_1", "data": {"order_id": "ord_1"}}
    [made] = [d for d in delivery.fan_out(event, datetime.now(UTC))
              if d["endpoint_id"] == created["id"]]
    base = f"/api/v1/endpoints/{created['id']}/deliveries/{made['id']}"
    for number in (1, 2):  # each replay is queued, then sent by the scheduler's step
        status, replayed = _call(app_client, "POST", f"{base}/replay", mine.api_key, {})
        assert status == 200 and replayed["status"] == "pending"
        step = steps_store.get(mine.account_id, delivery.step_id_of(made["id"], number))
        now = datetime.fromisoformat(step.due_at)
        assert delivery.handle_due_attempt(step, now).result["status"] == "succeeded"
    sent = receiver.at(path)
    assert len(sent) == 2 and {r["headers"]["webhook-id"] for r in sent} == {made["webhook_id"]}
    status, shown = _call(app_client, "GET", base, mine.api_key)
    assert status == 200 and [a["status"] for a in shown["attempts_log"]] == [200, 200]
    assert _call(app_client, "POST", f"{base}/replay", other.api_key, {})[0] == 404
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, answer = _call(app_client, "POST",
                           f"/api/v1/endpoints/{created['id']}/replay-failed", mine.api_key,
                           {"since": since})
    assert status == 200 and answer == {"replayed": []}
    assert len(receiver.at(path)) == 2


# --- the dashboard page ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def shop(app_client, stack):  # noqa: F811
    return make_staff_shop(app_client, stack)


def _signed_in(app_client, shop, sent_emails, role="owner"):  # noqa: F811
    email = shop.owner if role == "owner" else add_member(shop, role)[0]
    c = PortalClient(app_client.http)
    staff_sign_in(c, shop.root, email, sent_emails)
    return c


@pytest.mark.usefixtures("dashboard_settings")
def test_an_owner_adds_edits_rotates_disables_and_deletes_an_endpoint(
        app_client, shop, sent_emails):  # noqa: F811
    c = _signed_in(app_client, shop, sent_emails)
    base = f"{shop.root}/settings/endpoints"
    page = c.get(base)
    assert page.status_code == 200 and "Add an endpoint" in text(page)
    assert f'href="{base}" aria-current="page">Endpoints' in text(page)  # in the menu
    refused = c.post(base, {"url": "http://hooks.example.com/in", "event_types": "*"})
    assert refused.status_code == 400 and "https" in text(refused)
    added = c.post(base, {"url": "https://hooks.example.com/dash",
                          "event_types": "payment.succeeded, refund.created",
                          "description": "Fulfilment"})
    assert added.status_code == 201
    secret = SECRET_RE.search(text(added)).group(0)
    endpoint_id = re.search(r"/settings/endpoints/(ep_[0-9a-z]{26})", text(added)).group(1)
    listed = c.get(base)
    assert "hooks.example.com/dash" in text(listed) and secret not in text(listed)
    detail = c.get(f"{base}/{endpoint_id}")
    assert detail.status_code == 200 and secret not in text(detail)
    saved = c.post(f"{base}/{endpoint_id}", {"url": "https://hooks.example.com/dash2",
                                             "event_types": "*", "description": "All"})
    assert saved.status_code == 303
    rotated = c.post(f"{base}/{endpoint_id}/rotate", {})
    assert rotated.status_code == 200
    new_secret = SECRET_RE.search(text(rotated)).group(0)
    assert new_secret != secret
    assert c.post(f"{base}/{endpoint_id}/disable", {}).status_code == 303
    assert "Disabled" in text(c.get(f"{base}/{endpoint_id}"))
    assert c.post(f"{base}/{endpoint_id}/enable", {}).status_code == 303
    replay = c.post(f"{base}/{endpoint_id}/replay-failed", {"since": "2026-11-01T08:00"})
    assert replay.status_code == 200 and "0 failed deliveries" in text(replay)
    # Without the CSRF token nothing changes.
    assert c.post(f"{base}/{endpoint_id}/delete", {}, csrf="wrong").status_code == 403
    assert c.get(f"{base}/{endpoint_id}").status_code == 200
    assert c.post(f"{base}/{endpoint_id}/delete", {}).status_code == 303
    assert c.get(f"{base}/{endpoint_id}").status_code == 404


@pytest.mark.usefixtures("dashboard_settings")
def test_support_may_not_and_another_accounts_endpoint_is_404(
        app_client, shop, sent_emails, stack):  # noqa: F811
    from chalicelib.integrations import endpoints

    base = f"{shop.root}/settings/endpoints"
    mine = endpoints.create(shop.account_id, url="https://hooks.example.com/s",
                            event_types=["*"])
    support = _signed_in(app_client, shop, sent_emails, role="support")
    assert base not in text(support.get(f"{shop.root}/customers"))  # not in their menu
    assert support.get(base).status_code == 403
    assert support.post(base, {"url": "https://hooks.example.com/t",
                               "event_types": "*"}).status_code == 403
    assert support.post(f"{base}/{mine['id']}/delete", {},
                        csrf=signed_in_csrf(support)).status_code == 403
    assert endpoints.get(shop.account_id, mine["id"]) is not None
    other_shop = make_staff_shop(app_client, stack)
    theirs = endpoints.create(other_shop.account_id, url="https://hooks.example.com/o",
                              event_types=["*"])
    owner = _signed_in(app_client, shop, sent_emails)
    assert owner.get(f"{base}/{theirs['id']}").status_code == 404
    assert owner.post(f"{base}/{theirs['id']}/delete", {},
                      csrf=signed_in_csrf(owner)).status_code == 404
    assert endpoints.get(other_shop.account_id, theirs["id"]) is not None
