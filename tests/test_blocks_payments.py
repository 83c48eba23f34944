"""Payments by a blocked card or processor customer: matched by the processor's card
fingerprint (which a payment keeps from Stripe's charge), flagged on the record page, and
written to the outbox as ``payment.blocked_detail`` once per payment when it is recorded.
Customers and payments arrive as Stripe's webhooks through the app's webhook route; blocks
are the block action's own items (store.blocks.state_write), written here directly since
the action needs the card saved at the processor (tests/test_blocks_api.py covers it)."""
from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream, fixture

BLOCKED_FP = "fpBlockedCard0001"
LOOKALIKE_FP = "fpSameLast4Other2"  # another card: the same brand and last four digits


def _paid_by(stream: Stream, customer: str, amount: int, email: str,
             fingerprint: str | None) -> dict:
    """A one-time payment whose intent embeds its latest charge (as an API call that
    expands ``latest_charge`` shows it), paid by a visa ending 4242 of ``fingerprint``."""
    stream.one_time(customer, amount, currency="eur", email=email)
    event = stream.events[-1]
    intent = event["data"]["object"]
    card = {"brand": "visa", "last4": "4242", "exp_month": 8, "exp_year": 2030}
    if fingerprint:
        card["fingerprint"] = fingerprint
    intent["latest_charge"] = fixture(
        "charge", id=intent["latest_charge"], payment_intent=intent["id"], customer=customer,
        amount=amount, currency="eur",
        payment_method_details={"type": "card", "card": card})
    return event


def _block(account_id: str, kind: str, value: str, at: str, label: str | None = None) -> None:
    from chalicelib.store import actions as action_store
    from chalicelib.store import blocks as block_store

    previous = block_store.get(account_id, kind, value)
    action_store.commit_ops([block_store.state_write(
        account_id, kind, value, blocked=True, at=at, previous=previous, label=label,
        entry={"action": "block", "at": at, "by": "stf_test", "reason": "fraud"}),
        block_store.index_write(account_id, 1)])


def _blocked_events(account_id: str) -> list[dict]:
    from chalicelib.store.customers import list_outbox

    return [e for e in list_outbox(account_id, 500) if e["type"] == "payment.blocked_detail"]


def _flags(account_id: str, customer_id: str) -> dict[str, list[str]]:
    from chalicelib.blocks import service as blocks
    from chalicelib.records import service as records

    overview, _ = records.get_overview(account_id, customer_id, 10)
    full = records.get_record(account_id, customer_id, card_fingerprints=True)
    view = blocks.record_view(account_id, overview, full["payments"])
    return {f["payment_id"]: f["why"] for f in view["flagged_payments"]}


def _payment_of(merchant, customer_id: str, intent: str) -> dict:
    record = merchant.get_json(f"/api/v1/customers/{customer_id}")
    return next(p for p in record["payments"] if f"stripe:{intent}" in p["processor_refs"])


@pytest.fixture(scope="module")
def world(app_client):  # noqa: F811
    merchant = make_merchant(app_client)
    s = Stream("blkp")
    ann = s.customer("ann.blocked@example.com", "Ann")
    bob = s.customer("bob.blocked@example.com", "Bob")
    before = _paid_by(s, ann, 1000, "ann.blocked@example.com", BLOCKED_FP)
    old = copy.deepcopy(_paid_by(s, ann, 1100, "ann.blocked@example.com", None))
    merchant.deliver_until_applied(s.events)
    by_email = merchant.records_by_email()
    return {"merchant": merchant, "stream": s, "ann": ann, "bob": bob,
            "ann_id": by_email["ann.blocked@example.com"]["id"],
            "bob_id": by_email["bob.blocked@example.com"]["id"],
            "before": before, "old": old}


def test_the_translator_keeps_the_cards_fingerprint_off_the_public_card():
    from chalicelib.processors.stripe.translate import translate

    s = Stream("blkt")
    event = _paid_by(s, "cus_blkt", 500, "t@example.com", BLOCKED_FP)
    [paid] = translate(event).events
    assert paid.card_fingerprint == BLOCKED_FP and paid.card.last4 == "4242"
    assert "fingerprint" not in {f for f in vars(paid.card)}
    # latest_charge only as an id (a webhook's usual shape): no fingerprint known.
    bare = copy.deepcopy(event)
    bare["data"]["object"]["latest_charge"] = "ch_only_an_id"
    assert translate(bare).events[0].card_fingerprint is None
    refunded = fixture("charge", id="ch_r", payment_intent="pi_r", customer="cus_blkt",
                       amount=500, amount_refunded=500, currency="eur")
    refunded.pop("refunds", None)
    evt = fixture("event", id="evt_r", type="charge.refunded", created=1_760_000_000,
                  data={"object": refunded})
    assert translate(evt).events[0].card_fingerprint == "AOB934RVNwzk6xtn"  # Stripe's example
    method = fixture("event", id="evt_pm", type="payment_method.attached",
                     created=1_760_000_000, data={"object": fixture("payment_method")})
    assert translate(method).events[0].card_fingerprint == \
        fixture("payment_method")["card"]["fingerprint"]


def test_a_blocked_card_is_matched_by_fingerprint_and_raises_one_event(world, app_client):  # noqa: F811
    from chalicelib import timeutil
    from chalicelib.integrations import catalogue

    m, s, account = world["merchant"], world["stream"], world["merchant"].account_id
    _block(account, "card", BLOCKED_FP, timeutil.now_iso(), label="visa •••• 4242")
    # Paid before the block: neither flagged nor an event (no fact changes: nothing to say).
    before = _payment_of(m, world["ann_id"], world["before"]["data"]["object"]["id"])
    assert "card_fingerprint" not in before  # the record's JSON does not widen
    assert before["id"] not in _flags(account, world["ann_id"])
    assert _blocked_events(account) == []

    s.t = max(s.t, int(__import__("time").time()) + 5)  # paid after the block
    lookalike = _paid_by(s, world["ann"], 1200, "ann.blocked@example.com", LOOKALIKE_FP)
    again = _paid_by(s, world["ann"], 1300, "ann.blocked@example.com", BLOCKED_FP)
    elsewhere = _paid_by(s, world["bob"], 1400, "bob.blocked@example.com", BLOCKED_FP)
    for event in (lookalike, again, elsewhere):
        assert m.deliver(event).status_code == 200
    ann_flags = _flags(account, world["ann_id"])
    # The same brand and last four digits, another card: not the blocked one.
    assert _payment_of(m, world["ann_id"], lookalike["data"]["object"]["id"])["id"] \
        not in ann_flags
    again_payment = _payment_of(m, world["ann_id"], again["data"]["object"]["id"])
    assert ann_flags[again_payment["id"]] == ["blocked card visa •••• 4242"]
    # The card blocked on one record is the same card on another.
    bob_payment = _payment_of(m, world["bob_id"], elsewhere["data"]["object"]["id"])
    assert _flags(account, world["bob_id"]) == {bob_payment["id"]: [
        "blocked card visa •••• 4242"]}

    events = _blocked_events(account)
    assert sorted(e["data"]["object"]["id"] for e in events) == sorted(
        [again_payment["id"], bob_payment["id"]])
    for event in events:
        assert event["data"]["blocked"][0]["kind"] == "card"
        assert event["data"]["blocked"][0]["label"] == "visa •••• 4242"
        assert BLOCKED_FP not in json.dumps(event)
    # Redelivered: once per payment.
    assert m.deliver(again).status_code == 200 and m.deliver(elsewhere).status_code == 200
    assert len(_blocked_events(account)) == 2
    schema = catalogue.schema()
    validator = jsonschema.Draft202012Validator(
        {"$defs": schema["$defs"], "$ref": "#/$defs/payment.blocked_detail"},
        format_checker=jsonschema.FormatChecker())
    for event in events:
        validator.validate(catalogue.payload({**event, "account_id": account}))


def test_old_payments_without_a_fingerprint_match_by_brand_and_last4(world):
    from chalicelib.blocks import service as blocks
    from chalicelib.records import service as records

    account = world["merchant"].account_id
    overview, _ = records.get_overview(account, world["ann_id"], 10)
    full = records.get_record(account, world["ann_id"], card_fingerprints=True)
    old = next(p for p in full["payments"]
               if f"stripe:{world['old']['data']['object']['id']}" in p["processor_refs"])
    assert old["card_fingerprint"] is None
    # A block of a card of the record (by its id), paid before the old payment.
    card_id = "card_" + "b" * 24
    from chalicelib.store import actions as action_store
    from chalicelib.store import blocks as block_store

    action_store.commit_ops([block_store.state_write(
        account, "card", "fpOfTheRecordsCard", blocked=True, at="2020-01-01T00:00:00.000000Z",
        previous=None, label="visa •••• 4242", card_ids=(card_id,),
        entry={"action": "block", "at": "2020-01-01T00:00:00.000000Z", "by": "stf_test"})])
    view = blocks.record_view(account, {**overview, "cards": [{"id": card_id, "brand": "visa",
                                                               "last4": "4242"}]},
                              full["payments"])
    flagged = {f["payment_id"] for f in view["flagged_payments"]}
    assert old["id"] in flagged
    # A payment that knows its fingerprint is matched by it only (not this other card's).
    lookalike = next(p for p in full["payments"] if p["card_fingerprint"] == LOOKALIKE_FP)
    assert lookalike["id"] not in flagged


def test_the_reads_a_payment_costs_and_a_blocked_processor_customer(app_client):  # noqa: F811
    """An account that blocks nothing: a payment's webhook reads no block item (the
    account's block index is read once, then kept by the container). Once it blocks a
    card or customer: one BatchGetItem per payment success, none for other events."""
    from bench import ddbhooks
    from chalicelib import timeutil

    m = make_merchant(app_client)
    s = Stream("blkr")
    cy = s.customer("cy.blocked@example.com", "Cy")
    _paid_by(s, cy, 700, "cy.blocked@example.com", BLOCKED_FP)
    m.deliver_until_applied(s.events)
    cy_id = m.customers()[0]["id"]
    with ddbhooks.recording() as unblocked:
        assert m.deliver(_paid_by(s, cy, 600, "cy.blocked@example.com",
                                  BLOCKED_FP)).status_code == 200
    assert not {"BatchGetItem", "GetItem", "Query"} & set(unblocked.calls), unblocked.calls

    _block(m.account_id, "customer", f"stripe:{cy}", timeutil.now_iso())
    s.t = max(s.t, int(__import__("time").time()) + 5)  # paid after the block
    updated = s.event("customer.updated", fixture(
        "customer", id=cy, email="cy.blocked@example.com", name="Cy B", created=s.t))
    by_customer = _paid_by(s, cy, 800, "cy.blocked@example.com", LOOKALIKE_FP)
    with ddbhooks.recording() as other:
        assert m.deliver(updated).status_code == 200
    with ddbhooks.recording() as paid:
        assert m.deliver(by_customer).status_code == 200
    assert "BatchGetItem" not in other.calls
    assert paid.calls["BatchGetItem"] == 1, paid.calls
    payment = _payment_of(m, cy_id, by_customer["data"]["object"]["id"])
    [event] = _blocked_events(m.account_id)
    assert event["data"]["object"]["id"] == payment["id"]
    assert event["data"]["blocked"] == [{
        "kind": "customer", "label": None, "processor_customer": f"stripe:{cy}",
        "blocked_at": event["data"]["blocked"][0]["blocked_at"]}]
    assert event["customer_id"] == cy_id


def test_a_payment_without_its_own_fingerprint_takes_its_payment_methods():
    from chalicelib.records.service import payment_card_fingerprints

    facts = {
        "PM": {"card_1": {"values": {"payment_method": "stripe:pm_1",
                                     "card_fingerprint": BLOCKED_FP}}},
        "PAY": {"pay_in": {"values": {"payment": "stripe:in_1", "invoice": "stripe:in_1",
                                      "intent": "stripe:pi_1",
                                      "payment_method": "stripe:pm_1"}},
                "pay_pi": {"values": {"payment": "stripe:pi_2", "intent": "stripe:pi_2",
                                      "card_fingerprint": LOOKALIKE_FP}},
                "pay_unknown": {"values": {"payment": "stripe:pi_3"}}}}
    assert payment_card_fingerprints(facts) == {
        "stripe:in_1": BLOCKED_FP, "stripe:pi_1": BLOCKED_FP,
        "stripe:pi_2": LOOKALIKE_FP}


def test_one_event_for_a_payment_told_by_its_invoice_and_its_intent():
    from chalicelib.blocks import service as blocks
    from chalicelib.records.reactions import Change, Context

    record = {"id": "cst_x", "email": "x@example.com", "name": "X", "payments": [{
        "id": "pay_in", "status": "succeeded", "amount": 500, "currency": "eur",
        "refunded": 0, "processor_refs": ["stripe:in_1", "stripe:pi_1"], "card": None}]}
    hit = [{"kind": "customer", "label": None, "processor_customer": "stripe:cus_x",
            "blocked_at": "2026-01-01T00:00:00.000000Z"}]
    changes = [Change("PAY", fid, {"status": "failed"}, {
        "payment": ref, "intent": "stripe:pi_1", "status": "succeeded",
        "paid_at": 1_800_000_000}) for fid, ref in (("pay_in", "stripe:in_1"),
                                                     ("pay_pi", "stripe:pi_1"))]
    context = Context("acct_x", "cst_x", "x@example.com", "webhook",
                      "2027-01-15T08:00:00.000000Z", lambda: record,
                      blocked={"pay_in": hit, "pay_pi": hit})
    [event] = blocks.react(context, changes).outbox
    assert event["type"] == "payment.blocked_detail" and event["data"]["blocked"] == hit
    # Blocked only after the payment was made: no event.
    late = [{**hit[0], "blocked_at": "2027-06-01T00:00:00.000000Z"}]
    assert blocks.react(Context("acct_x", "cst_x", None, "webhook", "2027-07-01T00:00:00Z",
                                lambda: record, blocked={"pay_in": late}),
                        changes[:1]).outbox == []
    # A change that is no payment success reacts to nothing, whatever is blocked.
    failed = Change("PAY", "pay_in", None, {"payment": "stripe:in_1", "status": "failed"})
    assert blocks.react(context, [failed]).outbox == []
