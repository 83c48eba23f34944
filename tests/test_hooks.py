"""Zapier's REST hooks on the merchant API (chalicelib/integrations/hooks.py): subscribe,
unsubscribe, samples, and the key's account (GET /api/v1/me), through the app in-process
against DynamoDB Local."""
from __future__ import annotations

import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from app_fixtures import DynamoCalls, app_client, make_merchant  # noqa: F401

HOOKS = "/api/v1/hooks"


def _request(merchant, method: str, path: str, body=None, key: str | None = None):
    headers = {"Authorization": f"Bearer {key or merchant.api_key}"}
    raw = b""
    if body is not None:
        headers["Content-Type"] = "application/json"
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return merchant.client.http.request(method, path, headers=headers, body=raw)


def _target() -> str:
    return f"https://hooks.zapier.com/hooks/standard/1/{secrets.token_hex(8)}/"


def _subscribe(merchant, event="payment.succeeded", target=None):
    response = _request(merchant, "POST", HOOKS, {"target_url": target or _target(),
                                                 "event": event})
    assert response.status_code == 201, response.body
    return json.loads(response.body)


def _endpoints(merchant) -> list[dict]:
    from chalicelib.integrations import endpoints

    return endpoints.list_for(merchant.account_id)


def _claims(merchant) -> list[str]:
    """The endpoint ids the account's claims name (store/endpoints.py)."""
    from chalicelib.store import keys
    from chalicelib.store.table import EndpointClaimItem

    return [c.endpoint_id for c in EndpointClaimItem.query(
        keys.endpoints_pk(merchant.account_id), EndpointClaimItem.SK.startswith("CLAIM#"))]


_clock = {"t": datetime(2026, 11, 1, tzinfo=UTC)}


def _put_event(merchant, event_type: str, **data) -> dict:
    """An outbox event as a change's transaction writes it, each a second after the last."""
    from chalicelib import ids
    from chalicelib.store.customers import outbox_item

    _clock["t"] += timedelta(seconds=1)
    event = {"account_id": merchant.account_id, "customer_id": "cst_" + "0" * 26,
             "event_id": ids.new_id("evt"), "type": event_type,
             "occurred_at": _clock["t"].strftime("%Y-%m-%dT%H:%M:%SZ"), "data": data}
    outbox_item(event).save()
    return event


@pytest.fixture
def merchant(app_client):  # noqa: F811
    return make_merchant(app_client)


# --- GET /api/v1/me ----------------------------------------------------------------------

def test_me_answers_the_key_s_account_and_401_without_a_valid_key(merchant):
    body = merchant.get_json("/api/v1/me")
    assert body["account_id"] == merchant.account_id
    assert body["name"].startswith("Shop ")
    for key in ("bp_live_" + "x" * 43, merchant.api_key + "x"):
        assert merchant.get("/api/v1/me", api_key=key).status_code == 401


# --- subscribe -----------------------------------------------------------------------------

def test_subscribe_makes_a_zapier_endpoint_for_that_one_event_type(merchant):
    target = _target()
    hook = _subscribe(merchant, "subscription.canceling", target)
    assert hook["id"].startswith("ep_") and hook["secret"].startswith("whsec_")
    assert hook["event"] == "subscription.canceling" and hook["target_url"] == target
    [endpoint] = _endpoints(merchant)
    assert endpoint["id"] == hook["id"] and endpoint["kind"] == "zapier"
    assert endpoint["url"] == target and endpoint["event_types"] == ["subscription.canceling"]
    assert endpoint["enabled"] is True
    # The secret is stored encrypted: only its fingerprint shows.
    assert hook["secret"] not in json.dumps(endpoint)


def test_the_same_subscribe_again_answers_the_same_hook_with_a_new_secret(merchant):
    target = _target()
    first = _subscribe(merchant, "payment.failed", target)
    again = _subscribe(merchant, "payment.failed", target)
    assert again["id"] == first["id"] and again["secret"] != first["secret"]
    [endpoint] = _endpoints(merchant)
    # The first secret keeps signing for its grace period beside the new one.
    assert len(endpoint["secrets"]) == 2 and endpoint["secrets"][1]["expires_at"]
    # Another event type on the same URL is another hook.
    other = _subscribe(merchant, "payment.succeeded", target)
    assert other["id"] != first["id"] and len(_endpoints(merchant)) == 2


def test_parallel_same_subscribes_make_one_hook_and_every_caller_gets_its_id(merchant):
    """Zapier retrying a subscribe that has not answered yet: the same subscribe several
    times at once (released together by a barrier) makes one endpoint."""
    target, callers = _target(), 8
    barrier = threading.Barrier(callers, timeout=120)

    def subscribe_at_once(_):
        barrier.wait()
        return _request(merchant, "POST", HOOKS, {"target_url": target,
                                                 "event": "payment.refunded"})

    with ThreadPoolExecutor(callers) as pool:
        responses = list(pool.map(subscribe_at_once, range(callers)))
    assert [r.status_code for r in responses] == [201] * callers, [r.body for r in responses]
    hooks = [json.loads(r.body) for r in responses]
    [endpoint] = _endpoints(merchant)
    assert {h["id"] for h in hooks} == {endpoint["id"]}
    assert all(h["secret"].startswith("whsec_") for h in hooks)
    assert len({h["secret"] for h in hooks}) == callers  # each answer a secret of its own
    # One claim, naming that endpoint; a second subscribe after them all answers it too.
    assert _claims(merchant) == [endpoint["id"]]
    assert _subscribe(merchant, "payment.refunded", target)["id"] == endpoint["id"]


def test_a_subscribe_that_does_not_yet_see_the_first_s_hook_answers_it(merchant, monkeypatch):
    """The race made certain: the second subscribe reads the account's endpoints before
    the first one's is written (both see none); the claim still makes one hook."""
    from chalicelib.integrations import endpoints, hooks

    target = _target()
    first = _subscribe(merchant, "payment.failed", target)
    monkeypatch.setattr(hooks.endpoints, "list_for", lambda account_id: [])
    again = _subscribe(merchant, "payment.failed", target)
    assert again["id"] == first["id"] and again["secret"] != first["secret"]
    monkeypatch.undo()
    assert [e["id"] for e in endpoints.list_for(merchant.account_id)] == [first["id"]]


def test_unsubscribe_delete_or_disable_frees_the_url_for_a_new_hook(merchant, app_client):  # noqa: F811
    from chalicelib.integrations import endpoints

    target = _target()
    first = _subscribe(merchant, "order.created", target)
    assert _request(merchant, "DELETE", f"{HOOKS}/{first['id']}").status_code == 204
    assert _claims(merchant) == []
    second = _subscribe(merchant, "order.created", target)
    assert second["id"] != first["id"]
    # Disabled (by the merchant, or a 410): the next subscribe is a new hook, whose claim
    # deleting the old one leaves in place.
    assert endpoints.disable(merchant.account_id, second["id"], "disabled by the merchant")
    third = _subscribe(merchant, "order.created", target)
    assert third["id"] != second["id"] and _claims(merchant) == [third["id"]]
    assert endpoints.delete(merchant.account_id, second["id"])
    assert _claims(merchant) == [third["id"]]
    assert _subscribe(merchant, "order.created", target)["id"] == third["id"]
    # Another account's same URL and event is its own hook.
    other = make_merchant(app_client)
    assert _subscribe(other, "order.created", target)["id"] != third["id"]


@pytest.mark.parametrize("body,code", [
    ({"target_url": "https://hooks.zapier.com/x/", "event": "payment.nope"}, "unknown_event_type"),
    ({"target_url": "https://hooks.zapier.com/x/", "event": "*"}, "unknown_event_type"),
    ({"target_url": "https://hooks.zapier.com/x/", "event": ["payment.failed"]},
     "unknown_event_type"),
    ({"target_url": "https://hooks.zapier.com/x/"}, "unknown_event_type"),
    ({"target_url": "http://hooks.zapier.com/x/", "event": "payment.failed"}, "invalid_url"),
    ({"target_url": "https://10.0.0.1/x", "event": "payment.failed"}, "invalid_url"),
    ({"target_url": "https://127.0.0.1/x", "event": "payment.failed"}, "invalid_url"),
    ({"target_url": "https://user:pw@hooks.zapier.com/x", "event": "payment.failed"},
     "invalid_url"),
    ({"target_url": 5, "event": "payment.failed"}, "invalid_url"),
    ({"event": "payment.failed"}, "invalid_url"),
    ({"target_url": "https://hooks.zapier.com/x/", "event": "payment.failed", "kind": "webhook"},
     "bad_request"),
    (b"[]", "bad_request"),
    (b"{not json", "bad_request"),
])
def test_a_bad_subscribe_is_a_400_and_writes_nothing(merchant, body, code):
    response = _request(merchant, "POST", HOOKS, body)
    assert response.status_code == 400, response.body
    assert json.loads(response.body)["error"] == code
    assert _endpoints(merchant) == []


def test_subscribe_without_a_valid_key_is_401_and_writes_nothing(merchant):
    response = _request(merchant, "POST", HOOKS, {"target_url": _target(),
                                                  "event": "payment.failed"},
                        key="bp_live_" + "x" * 43)
    assert response.status_code == 401
    assert _endpoints(merchant) == []


# --- unsubscribe ---------------------------------------------------------------------------

def test_unsubscribe_removes_the_hook_once(merchant):
    hook = _subscribe(merchant)
    response = _request(merchant, "DELETE", f"{HOOKS}/{hook['id']}")
    assert response.status_code == 204 and not response.body
    assert _endpoints(merchant) == []
    again = _request(merchant, "DELETE", f"{HOOKS}/{hook['id']}")
    assert again.status_code == 404 and json.loads(again.body)["error"] == "not_found"


def test_unsubscribe_of_another_account_s_hook_or_an_unknown_id_is_404(merchant, app_client):  # noqa: F811
    hook = _subscribe(merchant)
    other = make_merchant(app_client)
    for hook_id in (hook["id"], "ep_" + "0" * 26, "nope", "..%2F..%2Fx"):
        response = _request(other, "DELETE", f"{HOOKS}/{hook_id}")
        assert response.status_code == 404, (hook_id, response.status_code)
    assert [e["id"] for e in _endpoints(merchant)] == [hook["id"]]


def test_unsubscribe_does_not_remove_an_endpoint_of_another_kind(merchant):
    from chalicelib.integrations import endpoints

    webhook = endpoints.create(merchant.account_id, url="https://example.com/hook",
                               event_types=["*"], kind="webhook")
    response = _request(merchant, "DELETE", f"{HOOKS}/{webhook['id']}")
    assert response.status_code == 404
    assert [e["id"] for e in _endpoints(merchant)] == [webhook["id"]]


# --- samples -------------------------------------------------------------------------------

def test_samples_are_the_latest_real_events_of_the_type_newest_first(merchant, app_client):  # noqa: F811
    from chalicelib.integrations import catalogue

    other = make_merchant(app_client)
    _put_event(other, "payment.failed", amount=1)  # another account's: never shown
    mine = [_put_event(merchant, "payment.failed", amount=i) for i in range(12)]
    _put_event(merchant, "payment.succeeded", amount=99)  # newer, of another type
    body = merchant.get_json(f"{HOOKS}/samples/payment.failed")
    assert [e["id"] for e in body["data"]] == [e["event_id"] for e in reversed(mine)][:10]
    newest = body["data"][0]
    assert newest == catalogue.payload(mine[-1])
    assert newest["type"] == "payment.failed" and newest["account_id"] == merchant.account_id
    assert "example" not in newest


def test_samples_of_a_type_without_events_are_one_marked_example(merchant):
    _put_event(merchant, "payment.failed")
    body = merchant.get_json(f"{HOOKS}/samples/dispute.opened")
    [example] = body["data"]
    assert example["example"] is True and example["type"] == "dispute.opened"
    assert example["account_id"] == merchant.account_id
    assert example["data"]["object_type"] == "dispute"


def test_samples_of_an_unknown_type_are_404(merchant):
    for event_type in ("payment.nope", "nope", "%2A"):
        response = merchant.get(f"{HOOKS}/samples/{event_type}")
        assert response.status_code == 404, event_type
        assert json.loads(response.body)["error"] == "unknown_event_type"


def test_the_sample_read_is_bounded(merchant, monkeypatch):
    """A rare type's event behind more than the read's budget of newer events is not
    looked for: the example stands in, and the read made at most its pages' Queries."""
    from chalicelib.store import outbox

    monkeypatch.setattr(outbox, "SAMPLE_PAGE_SIZE", 3)
    monkeypatch.setattr(outbox, "SAMPLE_PAGES", 2)
    _put_event(merchant, "card.expired")
    for _ in range(6):
        _put_event(merchant, "payment.succeeded")
    with DynamoCalls() as calls:
        body = merchant.get_json(f"{HOOKS}/samples/card.expired")
    assert body["data"][0]["example"] is True
    assert calls.calls.count("Query") == 2
    # Within the budget it is found.
    monkeypatch.setattr(outbox, "SAMPLE_PAGES", 3)
    body = merchant.get_json(f"{HOOKS}/samples/card.expired")
    assert body["data"][0]["type"] == "card.expired" and "example" not in body["data"][0]
