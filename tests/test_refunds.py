"""Refunds (chalicelib/actions/refunds.py) against localstripe through devstack's proxy,
which checks refunds as Stripe does (remaining amount, reasons, idempotency keys) and
records every refund request it receives (devstack/stripe_shim_refunds.py)."""
from __future__ import annotations

import json
import random
import secrets
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from app_fixtures import app_client  # noqa: F401
from portal_helpers import make_stripe_shop, wait_for
from stripe_events import Stream

from chalicelib.actions import service as actions
from chalicelib.actions.refunds import RefundPending, Refunds
from chalicelib.errors import AppError


def _shim(stripe_shim: str, path: str, form: dict | None = None) -> dict:
    data = None if form is None else urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{stripe_shim}{path}", data=data),
                                timeout=10) as response:
        return json.loads(response.read())



class World:
    def __init__(self, shop, stripe_client, amount: int = 10000, currency: str = "eur"):
        self.shop = shop
        self.stripe = stripe_client
        pi = stripe_client.v1.payment_intents.create(params={
            "amount": amount, "currency": currency, "customer": shop.customer,
            "payment_method": shop.first_card, "confirm": True})
        self.intent = pi.id
        self.charge = pi.latest_charge if isinstance(pi.latest_charge, str) else pi.latest_charge.id
        record = wait_for(shop.record, lambda r: r and any(
            f"stripe:{pi.id}" in p["processor_refs"] for p in r["payments"]), what="payment")
        self.payment = next(p for p in record["payments"]
                            if f"stripe:{pi.id}" in p["processor_refs"])
        self.customer_id = shop.customer_id()
        self.account_id = shop.account_id
        self.merchant = shop.shop.merchant

    def ctx(self, role: str = "admin", key: str | None = None, source: str = "api"):
        return actions.ActionContext(account_id=self.account_id, actor_id="stf_test",
                                     actor_email="staff@shop.test", role=role, ip="198.18.0.9",
                                     source=source,
                                     idempotency_key=key or secrets.token_urlsafe(16))

    def refunds(self, **ctx) -> Refunds:
        return Refunds(self.ctx(**ctx), self.customer_id)

    def localstripe_refunds(self) -> list[dict]:
        return [r.to_dict() for r in self.stripe.v1.refunds.list(
            params={"charge": self.charge, "limit": 100}).data]

    def api(self, body, key: str | None = "k", payment_id: str | None = None,
            customer_id: str | None = None):
        headers = {"Authorization": f"Bearer {self.merchant.api_key}",
                   "Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = self.merchant.client.http.post(
            f"/api/v1/customers/{customer_id or self.customer_id}/payments/"
            f"{payment_id or self.payment['id']}/refunds", body=raw, headers=headers)
        return response.status_code, json.loads(response.body or b"{}")


@pytest.fixture
def world(app_client, stack, app_server, stripe_client):  # noqa: F811
    shop = make_stripe_shop(app_client, stack, app_server, stripe_client)
    return World(shop, stripe_client)


@pytest.fixture(scope="module")
def unchanged_world(app_client, stack, app_server):  # noqa: F811
    """One world for the cases whose point is that nothing changes: shared, each case's
    check is cumulative, and the module pays for one localstripe setup, not one per case."""
    import stripe
    from conftest import STRIPE_TEST_KEY

    client = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": stack.stripe_url})
    return World(make_stripe_shop(app_client, stack, app_server, client), client)


def _received(stripe_shim: str, charge: str) -> list[dict]:
    return [r for r in _shim(stripe_shim, "/_shim/refunds/received")["data"]
            if r.get("charge") == charge]


def _ledger(world):
    from chalicelib.store import actions as store

    return store.read_ledger(world.account_id, world.payment["id"])


def test_twenty_concurrent_partial_refunds_never_ask_above_what_remains(world, stripe_shim,
                                                                         monkeypatch):
    from chalicelib.processors.stripe.gateway import StripeGateway

    monkeypatch.setattr(StripeGateway, "TIMEOUT_SECONDS", 2)
    # One answer comes too late: the library retries with the same key and gets the
    # refund that was made (never a second one).
    _shim(stripe_shim, "/_shim/refunds/delay", {"count": "1", "seconds": "4"})
    rng = random.Random(11)
    amounts = [rng.randint(300, 1400) for _ in range(20)]  # ~17,000 asked of 10,000

    def one(amount):
        try:
            return world.refunds().refund(world.payment["id"], amount, "requested_by_customer",
                                          None).body
        except AppError as exc:
            return exc.to_dict()

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, amounts))
    accepted = [r for r in results if "refund" in r]
    refused = [r for r in results if "error" in r]
    assert accepted and refused
    assert {r["error"] for r in refused} <= {"amount_above_remaining"}, refused
    # The stand-in never received a request above what remained on the charge.
    received = _received(stripe_shim, world.charge)
    fresh = [r for r in received if r["outcome"] != "replayed"]
    assert fresh and all(r["outcome"] == "created" for r in fresh), fresh
    assert all(r["amount"] <= r["remaining"] for r in fresh)
    # Every accepted one is a real localstripe refund, made once.
    made = world.localstripe_refunds()
    assert sorted(r["id"] for r in made) == sorted(
        r["refund"]["processor_ref"].split(":")[1] for r in accepted)
    total = sum(r["amount"] for r in made)
    assert total == sum(r["refund"]["amount"] for r in accepted) <= 10000
    charge = world.stripe.v1.charges.retrieve(world.charge)
    assert charge.amount_refunded == total
    ledger, reservations, _ = _ledger(world)
    assert ledger.refunded == total and ledger.reserved == 0
    assert ledger.available == 10000 - total
    assert sorted(r.status for r in reservations) == ["confirmed"] * len(accepted)
    # The record shows them at once (no webhook needed), and the remaining amount.
    payment = next(p for p in world.shop.record()["payments"] if p["id"] == world.payment["id"])
    assert payment["refunded"] == total
    from chalicelib.store.customers import list_outbox

    events = [o for o in list_outbox(world.account_id, 200) if o["type"] == "refund.created"]
    assert len(events) == len(accepted)


def test_a_refund_whose_answer_never_comes_stays_pending_and_is_made_once(world, stripe_shim,
                                                                          monkeypatch):
    from chalicelib.processors.stripe.gateway import StripeGateway

    monkeypatch.setattr(StripeGateway, "TIMEOUT_SECONDS", 1.5)
    # The creation and both of the library's retries answer too late.
    _shim(stripe_shim, "/_shim/refunds/delay", {"count": "3", "seconds": "3"})
    key = secrets.token_urlsafe(16)
    with pytest.raises(RefundPending) as pending:
        world.refunds(key=key).refund(world.payment["id"], 2500, "duplicate", "late")
    assert pending.value.status == 503
    ledger, reservations, _ = _ledger(world)
    assert [r.status for r in reservations] == ["pending"]
    assert ledger.reserved == 2500 and ledger.available == 7500 and ledger.refunded == 0
    # The money is held: another refund cannot take it meanwhile.
    with pytest.raises(AppError) as above:
        world.refunds().refund(world.payment["id"], 8000, "duplicate", None)
    assert above.value.code == "amount_above_remaining"
    # The same action again: Stripe's answer to the same key, the refund made once.
    _shim(stripe_shim, "/_shim/refunds/delay", {"count": "0"})
    done = world.refunds(key=key).refund(world.payment["id"], 2500, "duplicate", "late").body
    made = world.localstripe_refunds()
    assert len(made) == 1 and made[0]["amount"] == 2500
    assert done["refund"]["processor_ref"] == f"stripe:{made[0]['id']}"
    assert done["payment"]["remaining"] == 7500
    ledger, reservations, _ = _ledger(world)
    assert [r.status for r in reservations] == ["confirmed"]
    assert (ledger.refunded, ledger.reserved, ledger.available) == (2500, 0, 7500)


def test_same_key_twice_in_sequence_and_in_parallel_refunds_once(world):
    key = secrets.token_urlsafe(16)
    status, first = world.api({"amount": 1000, "reason": "requested_by_customer"}, key=key)
    assert status == 201, first
    status, again = world.api({"amount": 1000, "reason": "requested_by_customer"}, key=key)
    assert (status, again) == (201, first)
    status, other = world.api({"amount": 999, "reason": "requested_by_customer"}, key=key)
    assert status == 422 and other["error"] == "idempotency_key_reused"

    key2 = secrets.token_urlsafe(16)
    with ThreadPoolExecutor(6) as pool:
        bodies = list(pool.map(lambda _: world.refunds(key=key2).refund(
            world.payment["id"], 700, "duplicate", None).body, range(6)))
    assert len({json.dumps(b, sort_keys=True) for b in bodies}) == 1
    made = world.localstripe_refunds()
    assert sorted(r["amount"] for r in made) == [700, 1000]


def test_roles_support_limit_and_read_only(world, stripe_shim):
    from chalicelib.activity import service as activity

    payment_id = world.payment["id"]
    # Support within the account's limit (default 100.00).
    body = world.refunds(role="support").refund(payment_id, 1500, "requested_by_customer",
                                                "within").body
    assert body["refund"]["amount"] == 1500
    before = len(_received(stripe_shim, world.charge))
    # Above it: 403, logged, nothing written, nothing asked of Stripe.
    for role, amount in (("support", 10001), ("read_only", 100)):
        with pytest.raises(AppError) as refused:
            world.refunds(role=role).refund(payment_id, amount, "requested_by_customer", None)
        assert refused.value.status == 403
    assert len(_received(stripe_shim, world.charge)) == before
    ledger, reservations, _ = _ledger(world)
    assert len(reservations) == 1 and ledger.refunded == 1500
    forbidden = activity.list(world.account_id, action_prefix="staff.forbidden")[0]
    assert {e["details"]["permission"] for e in forbidden} == {"refund_over_limit", "refund"}
    # An admin may refund above the limit (the dashboard asks a step-up code too).
    assert world.refunds(role="admin").refund(payment_id, 8500, "other", None).body[
        "payment"]["remaining"] == 0
    # Nothing remains: a full refund is refused before Stripe is asked.
    with pytest.raises(AppError) as nothing:
        world.refunds().refund(payment_id, None, "other", None)
    assert nothing.value.status == 409
    refunds = activity.list(world.account_id, action_prefix="refund")[0]
    assert len(refunds) == 2 and all(e["target"] == world.customer_id for e in refunds)
    assert {e["reason"] for e in refunds} == {"requested_by_customer", "other"}


@pytest.mark.parametrize("body,code", [
    ({"amount": 0, "reason": "duplicate"}, "bad_amount"),
    ({"amount": -5, "reason": "duplicate"}, "bad_amount"),
    ({"amount": 12.5, "reason": "duplicate"}, "bad_amount"),
    ({"amount": "100", "reason": "duplicate"}, "bad_amount"),
    ({"amount": True, "reason": "duplicate"}, "bad_amount"),
    ({"amount": 10001, "reason": "duplicate"}, "amount_above_remaining"),
    ({"amount": 100, "reason": "because"}, "bad_reason"),
    ({"amount": 100}, "bad_reason"),
    ({"amount": 100, "reason": "duplicate", "extra": 1}, "bad_request"),
    ({"amount": 100, "reason": "duplicate", "note": "x" * 2001}, "bad_note"),
    (b"[1]", "bad_request"),
    (b"{not json", "bad_request"),
])
def test_bad_input_is_4xx_and_changes_nothing(unchanged_world, stripe_shim, body, code):
    world = unchanged_world
    before = len(_received(stripe_shim, world.charge))
    status, answer = world.api(body, key=secrets.token_urlsafe(8))
    assert 400 <= status < 500 and answer["error"] == code, answer
    assert set(answer) == {"error", "message"}
    assert len(_received(stripe_shim, world.charge)) == before
    ledger, reservations, _ = _ledger(world)
    assert reservations == [] and (ledger is None or ledger.refunded == 0)
    assert world.localstripe_refunds() == []


def test_unknown_ids_missing_key_and_an_amount_the_currency_cannot_hold(world, app_client,  # noqa: F811
                                                                        stack, app_server,
                                                                        stripe_client):
    status, answer = world.api({"amount": 100, "reason": "duplicate"}, payment_id="pay_nope")
    assert status == 404
    status, answer = world.api({"amount": 100, "reason": "duplicate"}, customer_id="cst_nope")
    assert status == 404
    status, answer = world.api({"amount": 100, "reason": "duplicate"}, key=None)
    assert status == 400 and answer["error"] == "idempotency_key_required"
    # Another account's customer: 404 with this key.
    other = World(make_stripe_shop(app_client, stack, app_server, stripe_client),
                  stripe_client)
    status, _ = world.api({"amount": 100, "reason": "duplicate"},
                          customer_id=other.customer_id, payment_id=other.payment["id"])
    assert status == 404
    # KWD at Stripe: three decimals whose last must be 0 (stored fils 5125 is not payable).
    kwd = World(other.shop, stripe_client, amount=5120, currency="kwd")
    status, answer = kwd.api({"amount": 5, "reason": "duplicate"}, key=secrets.token_urlsafe(8))
    assert status == 400 and answer["error"] == "amount_not_accepted", answer
    ledger, reservations, _ = _ledger(kwd)
    assert ledger.available == 5120 and [r.status for r in reservations] == ["released"]


def test_stripe_shim_refuses_as_stripe_does(world, stripe_shim):
    import stripe

    client = stripe.StripeClient("sk_test_x", base_addresses={"api": stripe_shim})
    with pytest.raises(stripe.InvalidRequestError) as reason:
        client.v1.refunds.create(params={"charge": world.charge, "amount": 100,
                                         "reason": "other"})
    assert reason.value.param == "reason"
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"charge": world.charge, "amount": 10001})
    assert too_much.value.code == "amount_too_large"
    made = client.v1.refunds.create(params={"payment_intent": world.intent, "amount": 100,
                                            "reason": "fraudulent"},
                                    options={"idempotency_key": "shim-k1"})
    assert made.reason == "fraudulent"
    again = client.v1.refunds.create(params={"payment_intent": world.intent, "amount": 100,
                                             "reason": "fraudulent"},
                                     options={"idempotency_key": "shim-k1"})
    assert again.id == made.id
    with pytest.raises(stripe.IdempotencyError):
        client.v1.refunds.create(params={"payment_intent": world.intent, "amount": 200},
                                 options={"idempotency_key": "shim-k1"})
    assert client.v1.refunds.retrieve(made.id).reason == "fraudulent"
    assert len(world.localstripe_refunds()) == 1


def test_a_disputed_charge_is_refunded_only_while_stripe_allows_it(world, stripe_shim):
    def dispute(refundable: bool) -> str:
        made = _shim(stripe_shim, "/_shim/disputes", {
            "charge": world.charge, "amount": "10000", "status": "needs_response",
            "is_charge_refundable": "true" if refundable else "false"})
        return made["id"]

    dispute_id = dispute(True)
    stream = Stream("d" + secrets.token_hex(4), start=int(time.time()))
    stream.dispute(world.intent, world.charge, 10000, status="needs_response", did=dispute_id,
                   currency="eur")
    world.merchant.deliver_until_applied(stream.events)
    wait_for(world.shop.record, lambda r: any(
        p["disputes"] for p in r["payments"] if p["id"] == world.payment["id"]),
        what="the dispute on the record")
    state = world.refunds().state(world.payment["id"])
    assert state["dispute_warning"] and "twice" in state["dispute_warning"]
    body = world.refunds().refund(world.payment["id"], 1000, "requested_by_customer", None).body
    assert body["warning"] and "twice" in body["warning"]
    # Stripe says it can no longer be refunded: 409, nothing asked, nothing held.
    _shim(stripe_shim, "/_shim/disputes", {"charge": world.charge, "amount": "9000",
                                           "is_charge_refundable": "false"})
    with pytest.raises(AppError) as refused:
        world.refunds().refund(world.payment["id"], 1000, "requested_by_customer", None)
    assert refused.value.status == 409 and refused.value.code == "charge_disputed"
    ledger, reservations, _ = _ledger(world)
    assert ledger.refunded == 1000 and ledger.reserved == 0 and len(reservations) == 1


def test_the_ledger_counts_refunds_the_webhooks_brought(world):
    """A refund made in Stripe's dashboard reaches the record by webhook; the next refund
    counts it once and cannot go above what really remains."""
    made = world.stripe.v1.refunds.create(params={"charge": world.charge, "amount": 6000})
    stream = Stream("r" + secrets.token_hex(4), start=int(time.time()))
    stream.refund(world.shop.customer, world.intent, world.charge, 6000, currency="eur",
                  rid=made.id)
    stream.charge_refunded(world.shop.customer, world.intent, world.charge, 10000, 6000,
                           currency="eur")
    world.merchant.deliver_until_applied(stream.events)
    wait_for(world.shop.record, lambda r: next(
        p for p in r["payments"] if p["id"] == world.payment["id"])["refunded"] == 6000,
        what="the webhook's refund")
    with pytest.raises(AppError) as above:
        world.refunds().refund(world.payment["id"], 4001, "duplicate", None)
    assert above.value.code == "amount_above_remaining"
    body = world.refunds().refund(world.payment["id"], None, "duplicate", None).body
    assert body["refund"]["amount"] == 4000 and body["payment"]["remaining"] == 0
    ledger, _, seen = _ledger(world)
    assert ledger.refunded == 10000 and len(seen) == 2
