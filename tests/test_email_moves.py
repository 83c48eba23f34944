"""E-mail changes at the processor: only the changing customer's part of a record follows
its new e-mail (records.moves); the move is resumable and readers follow it."""
from __future__ import annotations

import secrets

import pytest
from app_fixtures import app_client, make_merchant, merchant, normalize_record  # noqa: F401
from portal_helpers import PortalClient, make_shop, portal_settings, sessions_of, sign_in  # noqa: F401
from stripe_events import Stream

pytestmark = pytest.mark.usefixtures("portal_settings")


def _ids(record: dict) -> set[str]:
    return {s["processor_ref"] for s in record["subscriptions"] + record["payment_plans"]} | \
        {o["id"] for o in record["orders"]}


def _customers_by_email(m) -> dict[str, dict]:
    return m.records_by_email()


def test_takeover_by_email_change_moves_only_the_changers_part(merchant):  # noqa: F811
    p = secrets.token_hex(3)
    victim, attacker = f"victim-{p}@example.com", f"attacker-{p}@example.com"
    s = Stream(f"tk{p}")
    cus_v = s.customer(victim, "Vera Victim")
    sub_v = s.subscription(cus_v, 2500, nickname="Victim's membership")
    s.invoice(cus_v, sub_v, 2500)
    # The attacker buys under the victim's e-mail first: the same record, by e-mail.
    cus_a = s.customer(victim, "Vera Victim")
    s.one_time(cus_a, 700, email=victim)
    merchant.deliver_until_applied(s.events)
    before = _customers_by_email(merchant)[victim]
    assert len(before["orders"]) == 2

    s2 = Stream(f"tk2{p}", start=s.t + 3600)
    s2.customer(attacker, "Mallory", event_type="customer.updated", cid=cus_a)
    merchant.deliver_until_applied(s2.events)

    records = _customers_by_email(merchant)
    kept, moved = records[victim], records[attacker]
    assert [x["processor_ref"] for x in kept["subscriptions"]] == [f"stripe:{sub_v}"]
    assert [o["amount"] for o in kept["orders"]] == [2500]
    assert moved["subscriptions"] == [] and [o["amount"] for o in moved["orders"]] == [700]
    assert moved["name"] == "Mallory"
    assert kept["name"] == "Vera Victim"
    assert kept["id"] == before["id"] and moved["id"] != kept["id"]
    # The event log (raw payloads, timeline) of the mover's objects went with them.
    from chalicelib.store.customers import list_events

    def refs_in_log(customer_id):
        return {r for e in list_events(customer_id, 100, None)[0] for r in e["object_refs"]}

    assert f"stripe:{cus_a}" not in refs_in_log(kept["id"])
    assert f"stripe:{cus_v}" in refs_in_log(kept["id"])
    assert f"stripe:{cus_a}" in refs_in_log(moved["id"])
    assert f"stripe:{cus_v}" not in refs_in_log(moved["id"])
    # The victim's e-mail still finds the victim's record; later events land right.
    s3 = Stream(f"tk3{p}", start=s2.t + 3600)
    s3.one_time(cus_a, 300, email=attacker)
    s3.invoice(cus_v, sub_v, 2500)
    merchant.deliver_until_applied(s3.events)
    records = _customers_by_email(merchant)
    assert sorted(o["amount"] for o in records[attacker]["orders"]) == [300, 700]
    assert [o["amount"] for o in records[victim]["orders"]] == [2500]
    assert set(records) == {victim, attacker}


def test_email_change_to_an_address_with_a_record_folds_into_it(merchant):  # noqa: F811
    p = secrets.token_hex(3)
    old, new = f"old-{p}@example.com", f"new-{p}@example.com"
    s = Stream(f"fo{p}")
    cus_x = s.customer(old, "Xavier")
    sub_x = s.subscription(cus_x, 1200, nickname="X plan")
    s.invoice(cus_x, sub_x, 1200)
    cus_y = s.customer(new, "Yara")
    s.one_time(cus_y, 800, email=new)
    merchant.deliver_until_applied(s.events)
    old_id = _customers_by_email(merchant)[old]["id"]

    s2 = Stream(f"fo2{p}", start=s.t + 3600)
    s2.customer(new, "Xavier", event_type="customer.updated", cid=cus_x)
    s2.invoice(cus_x, sub_x, 1200)  # the next renewal lands in the folded record
    merchant.deliver_until_applied(s2.events)

    records = _customers_by_email(merchant)
    assert set(records) == {new}, "the old e-mail's record is gone"
    folded = records[new]
    assert [x["processor_ref"] for x in folded["subscriptions"]] == [f"stripe:{sub_x}"]
    assert sorted(o["amount"] for o in folded["orders"]) == [800, 1200]
    assert merchant.get(f"/api/v1/customers/{old_id}").status_code == 404
    # A folded record's whole history follows it.
    from chalicelib.store.customers import list_events

    assert list_events(old_id, 100, None)[0] == []
    assert {e["event_type"] for e in list_events(folded["id"], 100, None)[0]} >= {
        "customer.subscription.created", "invoice.paid", "payment_intent.succeeded"}

    # The old e-mail is free again: a new customer with it starts a new record.
    s3 = Stream(f"fo3{p}", start=s2.t + 3600)
    cus_z = s3.customer(old, "Zed")
    s3.one_time(cus_z, 100, email=old)
    merchant.deliver_until_applied(s3.events)
    records = _customers_by_email(merchant)
    assert [o["amount"] for o in records[old]["orders"]] == [100]
    assert records[old]["id"] != old_id


def test_split_into_an_existing_record(merchant):  # noqa: F811
    p = secrets.token_hex(3)
    shared, other = f"shared-{p}@example.com", f"other-{p}@example.com"
    s = Stream(f"sp{p}")
    cus_1 = s.customer(shared, "One")
    s.one_time(cus_1, 111, email=shared)
    cus_2 = s.customer(shared, "Two")
    s.one_time(cus_2, 222, email=shared)
    cus_3 = s.customer(other, "Three")
    s.one_time(cus_3, 333, email=other)
    s.customer(other, "Two", event_type="customer.updated", cid=cus_2)
    merchant.deliver_until_applied(s.events)
    records = _customers_by_email(merchant)
    assert [o["amount"] for o in records[shared]["orders"]] == [111]
    assert sorted(o["amount"] for o in records[other]["orders"]) == [222, 333]


def test_email_change_is_idempotent_and_order_independent(app_client):  # noqa: F811
    p = secrets.token_hex(3)
    s = Stream(f"oi{p}")
    cus_v = s.customer(f"v-{p}@example.com", "V")
    s.one_time(cus_v, 500, email=f"v-{p}@example.com")
    cus_a = s.customer(f"v-{p}@example.com", "A")
    s.one_time(cus_a, 600, email=f"v-{p}@example.com")
    s.customer(f"a-{p}@example.com", "A", event_type="customer.updated", cid=cus_a)
    s.one_time(cus_a, 700, email=f"a-{p}@example.com")
    in_order = make_merchant(app_client)
    in_order.deliver_until_applied(s.events)
    twice = make_merchant(app_client)
    twice.deliver_until_applied(s.events + s.events)
    expected = {e: normalize_record(r) for e, r in in_order.records_by_email().items()}
    assert sorted(o["amount"] for o in in_order.records_by_email()[f"a-{p}@example.com"]["orders"]) \
        == [600, 700]
    assert {e: normalize_record(r) for e, r in twice.records_by_email().items()} == expected


def test_sessions_and_codes_end_when_the_records_email_moves(app_client, stack, sent_emails):  # noqa: F811
    shop = make_shop(app_client, stack)
    p = secrets.token_hex(3)
    old, new = f"mover-{p}@example.com", f"moved-{p}@example.com"
    s = Stream(f"se{p}")
    cus = s.customer(old, "Mo")
    s.one_time(cus, 900, email=old)
    shop.merchant.deliver_until_applied(s.events)
    browser = PortalClient(app_client.http)
    sign_in(browser, shop, old, sent_emails)
    assert browser.get(f"{shop.root}/").status_code == 200
    customer_id = shop.merchant.records_by_email()[old]["id"]
    assert sessions_of(customer_id) == 1
    # A second link is out, not used yet.
    other = PortalClient(app_client.http)
    other.get(f"{shop.root}/")
    assert other.post(f"{shop.root}/sign-in", {"email": old}).status_code == 200
    from portal_helpers import TOKEN_RE, latest_link_and_code, path_of, text
    link, _ = latest_link_and_code(sent_emails, old)

    s2 = Stream(f"se2{p}", start=s.t + 3600)
    s2.customer(new, "Mo", event_type="customer.updated", cid=cus)
    shop.merchant.deliver_until_applied(s2.events)

    assert sessions_of(customer_id) == 0
    page = browser.get(f"{shop.root}/")
    assert "sign-in" in text(page).lower() or page.status_code in (302, 303)
    opened = other.get(path_of(link))
    token = TOKEN_RE.search(text(opened))
    if token:
        used = other.post(f"{shop.root}/link", {"token": token.group(1)})
        assert used.status_code != 303
    assert sessions_of(customer_id) == 0


def test_large_move_resumes_after_a_crash_and_readers_follow(merchant, monkeypatch):  # noqa: F811
    """A customer of several hundred items splits off in many transactions; a crash
    half-way leaves both records marked; readers see the finished result meanwhile, and
    the redelivery finishes the move."""
    from chalicelib.records import moves
    from chalicelib.store import customers as store

    p = secrets.token_hex(3)
    shared, new = f"big-{p}@example.com", f"bignew-{p}@example.com"
    s = Stream(f"bg{p}")
    cus_v = s.customer(shared, "Victim")
    s.one_time(cus_v, 4242, email=shared)
    cus_a = s.customer(shared, "Big")
    sub = s.subscription(cus_a, 100, nickname="Big plan")
    for i in range(150):
        s.one_time(cus_a, 1000 + i, email=shared)
        s.t += 60
    for _ in range(30):
        s.invoice(cus_a, sub, 100)
    merchant.deliver_until_applied(s.events)
    victim_id = merchant.records_by_email()[shared]["id"]
    assert len(store.load(victim_id).facts["PAY"]) > 180

    s2 = Stream(f"bg2{p}", start=s.t + 3600)
    s2.customer(new, "Big", event_type="customer.updated", cid=cus_a)
    real_commit = store.commit
    calls = {"n": 0}

    def crash_after_three_chunks(writes, mark, delivery, outbox=None):
        if mark is None and any((w.profile.get("move") or {}) for w in writes):
            calls["n"] += 1
            if calls["n"] == 4:
                raise RuntimeError("the Lambda timed out")
        return real_commit(writes, mark, delivery, outbox)

    monkeypatch.setattr(store, "commit", crash_after_three_chunks)
    first = merchant.deliver(s2.events[0])
    assert first.status_code == 503
    monkeypatch.setattr(store, "commit", real_commit)
    assert calls["n"] == 4

    victim_profile = store.load(victim_id).profile
    assert victim_profile["move"], "the move is half done"
    target_id = victim_profile["move"]["target"]
    # Readers follow the mark: each record reads as it will be.
    victim = merchant.get_json(f"/api/v1/customers/{victim_id}")
    assert [o["amount"] for o in victim["orders"]] == [4242]
    moving = merchant.get_json(f"/api/v1/customers/{target_id}")
    assert len(moving["orders"]) == 151  # 150 one-time orders and the plan's first purchase
    assert moves.view_facts  # (the module the readers go through)

    merchant.deliver_until_applied(s2.events)
    records = merchant.records_by_email()
    assert [o["amount"] for o in records[shared]["orders"]] == [4242]
    assert len(records[new]["orders"]) == 151
    assert records[new]["id"] == target_id
    for cid in (victim_id, target_id):
        assert store.load(cid).profile["move"] is None
    # Nothing of the mover is left in the source, and its objects point at the target.
    left = store.load(victim_id)
    assert all(f.get("values", {}).get("customer") != f"stripe:{cus_a}"
               for by_id in left.facts.values() for f in by_id.values())
    store.forget_all_collections()
    store._pointer_cache.clear()
    assert store.find_pointer(merchant.account_id, "stripe", sub) == target_id
    assert store.find_pointer(merchant.account_id, "stripe", cus_a) == target_id
