"""The one action mechanism (chalicelib/actions): a key acts once, in sequence and in
parallel, and answers the stored result; the same key with another request is 422; a
forbidden role is 403, logged, and writes nothing else; keys are kept at least 7 days;
the answer, activity entry, outbox event and record change land in one transaction."""
from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from app_fixtures import app_client, raw_item  # noqa: F401
from portal_helpers import make_shop, seed_customer

from chalicelib.actions import service as actions
from chalicelib.errors import BadRequest


@pytest.fixture
def customer(app_client, stack):  # noqa: F811
    shop = make_shop(app_client, stack)
    seeded = seed_customer(shop)
    from chalicelib.records.service import normalize_email
    from chalicelib.store.customers import find_by_email

    return shop.merchant.account_id, find_by_email(shop.merchant.account_id,
                                                   normalize_email(seeded.email)), seeded


def _ctx(account_id: str, key: str, role: str = "admin", source: str = "api"):
    return actions.ActionContext(account_id=account_id, actor_id="stf_test",
                                 actor_email="staff@shop.test", role=role, ip="198.18.0.1",
                                 source=source, idempotency_key=key)


def _spec(customer_id: str, amount: int = 100, permission: str = "refund"):
    return actions.ActionSpec(name="test.action", customer_id=customer_id,
                              permission=permission, request={"amount": amount},
                              reason="requested_by_customer", note="a note")


class Counter:
    def __init__(self, delay: float = 0.0):
        self.calls = 0
        self.keys: list[str] = []
        self.lock = threading.Lock()
        self.delay = delay

    def __call__(self, step):
        with self.lock:
            self.calls += 1
            n = self.calls
        self.keys.append(step.key("refund"))
        time.sleep(self.delay)
        return actions.Result(body={"done": n}, status=201,
                              outbox=[{"type": "test.done", "data": {"n": n}}],
                              before={"x": 0}, after={"x": n})


def _activity(account_id: str, action: str = "test.action") -> list[dict]:
    from chalicelib.activity import service as activity

    return activity.list(account_id, limit=200, action_prefix=action)[0]


def _outbox(account_id: str, kind: str = "test.done") -> list[dict]:
    from chalicelib.store.customers import list_outbox

    return [o for o in list_outbox(account_id) if o["type"] == kind]


def test_same_key_in_sequence_acts_once_and_answers_the_stored_result(customer):
    account_id, customer_id, _ = customer
    perform = Counter()
    key = secrets.token_urlsafe(16)
    first = actions.run(_ctx(account_id, key), _spec(customer_id), perform)
    second = actions.run(_ctx(account_id, key), _spec(customer_id), perform)
    assert perform.calls == 1
    assert (first.body, first.status) == (second.body, second.status) == ({"done": 1}, 201)
    assert perform.keys == [f"{key}:refund"]
    entries = _activity(account_id)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["actor"] == "stf_test" and entry["target"] == customer_id
    assert entry["reason"] == "requested_by_customer"
    assert entry["details"]["note"] == "a note"
    assert entry["details"]["before"] == {"x": 0} and entry["details"]["after"] == {"x": 1}
    events = _outbox(account_id)
    assert len(events) == 1 and events[0]["customer_id"] == customer_id
    assert events[0]["data"]["source"] == "api"


def test_same_key_in_parallel_acts_once(customer):
    account_id, customer_id, _ = customer
    perform = Counter(delay=0.5)
    key = secrets.token_urlsafe(16)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda _: actions.run(_ctx(account_id, key), _spec(customer_id), perform), range(8)))
    assert perform.calls == 1
    assert {(r.status, r.body["done"]) for r in results} == {(201, 1)}
    assert len(_activity(account_id)) == 1
    assert len(_outbox(account_id)) == 1


def test_same_key_other_request_is_422_and_changes_nothing(customer):
    account_id, customer_id, _ = customer
    perform = Counter()
    key = secrets.token_urlsafe(16)
    actions.run(_ctx(account_id, key), _spec(customer_id, 100), perform)
    with pytest.raises(actions.KeyReused) as refused:
        actions.run(_ctx(account_id, key), _spec(customer_id, 200), perform)
    assert refused.value.status == 422
    assert refused.value.to_dict()["error"] == "idempotency_key_reused"
    assert perform.calls == 1
    assert len(_activity(account_id)) == 1


def test_keys_are_per_source(customer):
    account_id, customer_id, _ = customer
    perform = Counter()
    key = secrets.token_urlsafe(16)
    actions.run(_ctx(account_id, key, source="api"), _spec(customer_id), perform)
    actions.run(_ctx(account_id, key, source="dashboard"), _spec(customer_id), perform)
    assert perform.calls == 2


def test_forbidden_role_is_403_logged_and_writes_nothing(customer):
    account_id, customer_id, _ = customer
    perform = Counter()
    key = secrets.token_urlsafe(16)
    for role in ("read_only", "support"):
        with pytest.raises(actions.Forbidden) as refused:
            actions.run(_ctx(account_id, key, role=role), _spec(customer_id,
                                                                 permission="cancel_now"), perform)
        assert refused.value.status == 403
    assert perform.calls == 0
    assert _activity(account_id) == []
    assert _outbox(account_id) == []
    forbidden = _activity(account_id, "staff.forbidden")
    assert len(forbidden) == 2
    assert {e["details"]["permission"] for e in forbidden} == {"cancel_now"}
    from chalicelib.store import actions as store

    assert store.get(account_id, actions.key_hash("api", key)) is None


def test_a_refusal_frees_the_key_and_an_unknown_outcome_resumes_with_the_same_keys(customer):
    from chalicelib.processors.gateway import ProcessorUnavailable

    account_id, customer_id, _ = customer
    key = secrets.token_urlsafe(16)
    calls = []

    def refused(step):
        calls.append(step.key("refund"))
        raise BadRequest("no", code="nope")

    with pytest.raises(BadRequest):
        actions.run(_ctx(account_id, key), _spec(customer_id), refused)
    # Corrected and sent again with the same key: it runs.
    perform = Counter()
    assert actions.run(_ctx(account_id, key), _spec(customer_id, 300), perform).body == {"done": 1}

    key = secrets.token_urlsafe(16)

    def unknown(step):
        calls.append(step.key("refund"))
        raise ProcessorUnavailable("did not answer")

    with pytest.raises(ProcessorUnavailable):
        actions.run(_ctx(account_id, key), _spec(customer_id), unknown)
    with pytest.raises(actions.KeyReused):  # still this request's key
        actions.run(_ctx(account_id, key), _spec(customer_id, 999), perform)
    again = actions.run(_ctx(account_id, key), _spec(customer_id), perform)
    assert again.body == {"done": 2}
    assert calls[-1] == f"{key}:refund" and perform.keys[-1] == f"{key}:refund"


def test_result_is_kept_at_least_seven_days(customer):
    from chalicelib.store import keys

    account_id, customer_id, _ = customer
    key = secrets.token_urlsafe(16)
    before = int(time.time())
    actions.run(_ctx(account_id, key), _spec(customer_id), Counter())
    pk, sk = keys.action(account_id, actions.key_hash("api", key))
    item = raw_item(pk, sk)
    assert int(item["ttl"]["N"]) >= before + 7 * 86400
    assert item["status"]["S"] == "done"
    assert item["request_hash"]["S"] != "" and "result" in item
    assert key not in str(item)  # the key itself is stored only as a hash


def test_record_change_outbox_activity_and_answer_in_one_transaction(customer, monkeypatch):
    """With events, everything goes through records.record_confirmed in one transaction:
    if that transaction fails, nothing of it is written and the key can be retried."""
    from chalicelib.domain.events import CustomerChanged, Ref
    from chalicelib.records.service import get_record
    from chalicelib.store import customers as customers_store

    account_id, customer_id, seeded = customer
    key = secrets.token_urlsafe(16)

    def perform(step):
        return actions.Result(body={"ok": True}, events=[CustomerChanged(
            occurred_at=int(time.time()), customer=Ref("stripe", seeded.customer), email=None,
            name="Renamed Person")], outbox=[{"type": "customer.updated", "data": {}}])

    real_commit = customers_store.commit
    failing = {"on": True}

    def commit(*args, **kwargs):
        if failing["on"]:
            raise RuntimeError("the table is gone")
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(customers_store, "commit", commit)
    with pytest.raises(RuntimeError):
        actions.run(_ctx(account_id, key), _spec(customer_id), perform)
    assert _activity(account_id) == [] and _outbox(account_id, "customer.updated") == []
    assert get_record(account_id, customer_id)["name"] != "Renamed Person"
    failing["on"] = False
    assert actions.run(_ctx(account_id, key), _spec(customer_id), perform).body == {"ok": True}
    assert get_record(account_id, customer_id)["name"] == "Renamed Person"
    assert len(_activity(account_id)) == 1
    assert len(_outbox(account_id, "customer.updated")) == 1
