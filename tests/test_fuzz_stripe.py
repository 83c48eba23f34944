"""Bad input at the Stripe edge, property-based (hypothesis).

The adapter (chalicelib.processors.stripe: webhook.parse, translate.translate), for
every event type it handles, given arbitrary JSON-ish objects (random ones built from the
keys the adapter reads, and Stripe's own example objects with random parts replaced):
raises nothing but the documented MalformedPayload, and what it returns can be applied
to a record and rendered. Through the app: a signed arbitrary payload never answers a
5xx but the documented 503 (retry later), and a 400 writes nothing.

Inputs that once broke those properties (non-decimal digits, huge integers, impossible
times, deep nesting; listed in ``KNOWN_BUG_EXCLUSIONS``) have their own regression tests
below; the random strategies stay inside those bounds so that each property keeps its
examples for everything else.

Examples per property: quick runs 100 to 300, ``make soak`` runs the ``soak`` variants
with 20x more. Runs are derandomized (the same cases every run).
"""
from __future__ import annotations

import contextlib
import copy
import json
import re
from pathlib import Path

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stripe_events import FIXTURES, sign
from test_reliability_helpers import record_figures

from chalicelib.processors.stripe import translate as stripe_translate
from chalicelib.processors.stripe import webhook as stripe_webhook

QUICK = 100
SOAK = QUICK * 20
HANDLED = sorted(stripe_translate.HANDLED_TYPES)
SOURCE = (Path(stripe_translate.__file__)).read_text()
# Every key the adapter reads, so random objects hit its code paths, not only .get misses.
KEYS = sorted(set(re.findall(r'\.get\("(\w+)"\)', SOURCE)) | {"id", "object", "data"})

KNOWN_BUG_EXCLUSIONS = """
- strings of digits that str.isdigit() accepts but int() refuses ('²', '①') or that are
  longer than 4300 digits: test_translate_survives_unicode_and_huge_digit_strings
- integers beyond what a timestamp can be (|n| > 2**35 s, about 1,089 years from 1970):
  test_translate_survives_huge_integers, test_a_payment_with_an_impossible_time_is_not_retried_forever
- JSON nested deeper than the interpreter's recursion limit: test_parse_refuses_deep_nesting_as_malformed
"""

# Times must stay inside datetime (years 1..9999): 2**35 s is about 1,089 years either side of 1970.
SAFE_INT = st.integers(min_value=-(2**35), max_value=2**35)
SAFE_TEXT = st.text(st.characters(blacklist_categories=("No", "Cs")), max_size=12)
DIGITS = st.from_regex(r"\A[0-9]{1,12}\Z")
SCALARS = st.one_of(st.none(), st.booleans(), SAFE_INT, st.floats(allow_nan=False),
                    SAFE_TEXT, DIGITS, st.sampled_from(["usd", "eur", "month", "active", "",
                                                        "canceled", "succeeded", "cus_fuzz"]))


KEY_NAMES = st.sampled_from(KEYS) | SAFE_TEXT


def json_values(keys=KEY_NAMES):
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)), max_leaves=24)


RANDOM_OBJECTS = st.dictionaries(st.sampled_from(KEYS) | SAFE_TEXT, json_values(), max_size=12)


@st.composite
def mutated_fixtures(draw):
    """One of Stripe's example objects with a few of its values replaced by anything."""
    name = draw(st.sampled_from(sorted(k for k, v in FIXTURES.items() if isinstance(v, dict))))
    obj = copy.deepcopy(FIXTURES[name])
    for _ in range(draw(st.integers(1, 6))):
        node = obj
        for _depth in range(draw(st.integers(0, 3))):
            children = [k for k, v in node.items() if isinstance(v, dict)] if isinstance(
                node, dict) else []
            if not children:
                break
            node = node[draw(st.sampled_from(sorted(children)))]
        if isinstance(node, dict) and node:
            node[draw(st.sampled_from(sorted(node)))] = draw(json_values())
    return obj


OBJECTS = st.one_of(RANDOM_OBJECTS, mutated_fixtures())


def envelope(event_type: str, obj: dict, created: int = 1_760_000_000, event_id="evt_fuzz"):
    return {"id": event_id, "object": "event", "type": event_type, "created": created,
            "data": {"object": obj}}


def _settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


# --- the adapter --------------------------------------------------------------------------


def _translate_and_render(event: dict) -> None:
    """translate → apply to a fresh in-memory record → derive the record (all pure)."""
    from chalicelib.records.service import _State

    try:
        translation = stripe_translate.translate(event)
    except stripe_webhook.MalformedPayload:
        return
    if translation is None:
        return
    state = _State("acct_fuzz", None, "cst_fuzz")
    for domain_event in translation.events:
        state.apply(domain_event)
    json.dumps(state.to_write().profile)  # stored as JSON: must serialize
    state.view()


def _adapter_property(n: int):
    @_settings(n)
    @given(event_type=st.sampled_from(HANDLED), obj=OBJECTS, created=SAFE_INT)
    def check(event_type, obj, created):
        _translate_and_render(envelope(event_type, obj, created))

    return check


def test_adapter_never_raises_on_arbitrary_objects():
    _adapter_property(QUICK * 3)()


@pytest.mark.soak
def test_soak_adapter_never_raises_on_arbitrary_objects():
    _adapter_property(SOAK * 4)()


@_settings(QUICK * 2)
@given(body=st.one_of(
    st.binary(max_size=300),
    json_values().map(lambda v: json.dumps(v).encode()),
    st.builds(envelope, st.sampled_from([*HANDLED, "product.created"]), OBJECTS)
    .map(lambda e: json.dumps(e).encode()),
    st.dictionaries(st.sampled_from(["id", "type", "created", "data", "object"]), json_values(),
                    max_size=5).map(lambda v: json.dumps(v).encode()),
))
def test_parse_accepts_an_event_or_raises_malformed_payload(body):
    try:
        event = stripe_webhook.parse(body)
    except stripe_webhook.MalformedPayload:
        return
    assert isinstance(event["id"], str) and isinstance(event["type"], str)
    assert isinstance(event["data"]["object"], dict) and isinstance(event["created"], int)


# --- the known bugs ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "①", "9" * 5000])
def test_translate_survives_unicode_and_huge_digit_strings(value):
    stripe_translate.translate(envelope("customer.subscription.created", {
        "id": "sub_1", "customer": "cus_1", "metadata": {"installments": value}}))


def test_translate_survives_huge_integers():
    stripe_translate.translate(envelope("customer.subscription.created", {
        "id": "sub_1", "customer": "cus_1", "cancel_at": 10**400, "start_date": 1,
        "items": {"data": [{"price": {"unit_amount": 100, "recurring": {"interval": "month"}}}]}}))


def test_a_payment_with_an_impossible_time_is_not_retried_forever():
    _translate_and_render(envelope("invoice.paid", {
        "id": "in_1", "customer": "cus_1", "amount_paid": 100, "currency": "usd",
        "status_transitions": {"paid_at": 10**12}}))


def test_parse_refuses_deep_nesting_as_malformed():
    with contextlib.suppress(stripe_webhook.MalformedPayload):
        stripe_webhook.parse(b'{"id":"evt_1","type":"x","created":1,"data":{"object":'
                             + b"[" * 100_000 + b"]" * 100_000 + b"}}")


# --- through the app ---------------------------------------------------------------------


def _count(pk: str, index: str | None = None) -> int:
    from chalicelib.settings import get_settings
    from chalicelib.store.table import TableItem

    client = TableItem._get_connection().connection.client
    key = "GSI1PK" if index else "PK"
    kwargs = {"TableName": get_settings().table_name, "Select": "COUNT",
              "KeyConditionExpression": f"{key} = :pk",
              "ExpressionAttributeValues": {":pk": {"S": pk}}}
    if index:
        kwargs["IndexName"] = index
    return client.query(**kwargs)["Count"]


def _written(account_id: str) -> tuple[int, int]:
    return (_count(f"ACCT#{account_id}#DELIVERIES"),
            _count(f"ACCT#{account_id}#CUSTOMERS", index="GSI1"))


def _app_property(app_client, n: int, name: str):  # noqa: F811
    merchant = make_merchant(app_client)
    statuses: dict[int, int] = {}
    seen = {"n": 0}

    @_settings(n)
    @given(body=st.one_of(
        st.builds(envelope, st.sampled_from(HANDLED), OBJECTS,
                  SAFE_INT | st.just(1_760_000_000),
                  st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
        .map(lambda e: json.dumps(e).encode()),
        json_values().map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
    ))
    def check(body):
        before = _written(merchant.account_id)
        seen["n"] += 1
        response = merchant.deliver(None, body=body, headers={
            "Stripe-Signature": sign(body, merchant.webhook_secrets[0])})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        payload = json.loads(response.body)
        assert response.status_code in (200, 400, 503), (response.status_code, payload, body[:300])
        if response.status_code == 503:
            assert payload["error"] in ("retry_later", "owner_unknown"), payload
        if response.status_code == 400:
            assert _written(merchant.account_id) == before, "a 400 wrote something"

    check()
    record_figures(name, {"cases": seen["n"], "statuses": statuses})


def test_signed_arbitrary_payloads_answer_200_400_or_503(app_client):  # noqa: F811
    _app_property(app_client, QUICK, "fuzz-webhook-quick")


@pytest.mark.soak
def test_soak_signed_arbitrary_payloads_answer_200_400_or_503(app_client):  # noqa: F811
    _app_property(app_client, SOAK, "fuzz-webhook-soak")


def test_signed_deeply_nested_payload_answers_400(app_client):  # noqa: F811
    merchant = make_merchant(app_client)
    body = b"[" * 100_000 + b"]" * 100_000
    response = merchant.deliver(None, body=body, headers={
        "Stripe-Signature": sign(body, merchant.webhook_secrets[0])})
    assert response.status_code == 400, response.status_code
