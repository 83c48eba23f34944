"""Staff notes and the customer's timeline (processor events from signed webhooks, e-mails,
staff actions, notes), merged newest first across pages with a composite cursor."""
from __future__ import annotations

import itertools
import secrets

import pytest
from app_fixtures import app_client, make_merchant, merchant  # noqa: F401
from stripe_events import Stream


def _customer(m, prefix: str) -> tuple[str, Stream]:
    s = Stream(prefix)
    cus = s.customer(f"{prefix}@example.com", "Time Line")
    pi, charge = s.one_time(cus, 1200)
    s.refund(cus, pi, charge, 200)
    m.deliver_until_applied(s.events)
    [customer] = m.customers()
    return customer["id"], s


def _iso(epoch: int, micro: int = 0) -> str:
    from chalicelib.timeutil import iso_from_epoch

    return iso_from_epoch(epoch)[:-7] + f"{micro:06d}Z"


# --- notes -----------------------------------------------------------------------------

def test_notes_are_added_listed_and_stored_escaped(merchant):  # noqa: F811
    from chalicelib.notes import service as notes

    cid, _ = _customer(merchant, "note" + secrets.token_hex(3))
    account = merchant.account_id
    first = notes.add(account, cid, "stf_1", "ann@shop.test", "Called: wants <b>invoice</b> & receipt")
    second = notes.add(account, cid, "stf_2", "bob@shop.test", "Refund agreed\non the phone",
                       object_ref="stripe:pi_x1")
    assert first["text"] == "Called: wants <b>invoice</b> & receipt"
    assert [n["id"] for n in notes.list_for(account, cid)] == [second["id"], first["id"]]
    assert [n["id"] for n in notes.list_for(account, cid, object_ref="stripe:pi_x1")] == [second["id"]]
    from app_fixtures import raw_item

    stored = raw_item(f"NOTES#{cid}", f"{first['at']}#{first['id']}")
    assert stored["text"]["S"] == "Called: wants &lt;b&gt;invoice&lt;/b&gt; &amp; receipt"
    assert "ttl" in stored


def test_a_note_on_a_paypal_object_is_kept_and_listed_by_it(merchant):  # noqa: F811
    from chalicelib.notes import service as notes

    cid, _ = _customer(merchant, "ppnote" + secrets.token_hex(3))
    added = notes.add(merchant.account_id, cid, "stf_1", "ann@shop.test", "Asked to pause",
                      object_ref="paypal:I-BW452GLLEP1G")  # PayPal ids hold "-"
    listed = notes.list_for(merchant.account_id, cid, object_ref="paypal:I-BW452GLLEP1G")
    assert [n["id"] for n in listed] == [added["id"]]


def test_bad_notes_are_refused_and_write_nothing(app_client):  # noqa: F811
    from chalicelib.errors import BadRequest, NotFound
    from chalicelib.notes import service as notes

    a, b = make_merchant(app_client), make_merchant(app_client)
    cid, _ = _customer(a, "badnote" + secrets.token_hex(3))
    for text in ("", "   ", "x" * 2001, "bell\x07", "nul\x00"):
        with pytest.raises(BadRequest):
            notes.add(a.account_id, cid, "stf_1", "ann@shop.test", text)
    for ref in ("pi_1", "<script>", "stripe:", "x" * 300):
        with pytest.raises(BadRequest):
            notes.add(a.account_id, cid, "stf_1", "ann@shop.test", "ok", object_ref=ref)
    with pytest.raises(NotFound):
        notes.add(b.account_id, cid, "stf_1", "eve@other.test", "not my customer")
    assert notes.list_for(a.account_id, cid) == []
    assert notes.list_for(b.account_id, cid) == []


# --- the timeline ------------------------------------------------------------------------

def _seed_sources(account: str, cid: str, s: Stream) -> list[tuple[str, str]]:
    """Mail, notes and staff actions interleaved with the processor events (some at the
    very same instant); returns every expected (source, id), newest first."""
    from chalicelib.store import activity as activity_store
    from chalicelib.store import mail_history
    from chalicelib.store import notes as notes_store

    expected = [(_iso(e["created"]), "processor", e["id"]) for e in s.events]
    times = [e["created"] for e in s.events]
    for n, t in enumerate(times):
        at = _iso(t, 0 if n % 2 else 500)
        mail_id = f"mail_{n:02d}{secrets.token_hex(4)}"
        mail_history.put({"account_id": account, "customer_id": cid, "mail_id": mail_id,
                          "kind": "receipt", "subject": f"Receipt {n}", "to": "t@example.com",
                          "status": "sent", "at": at}, 400)
        expected.append((at, "email", mail_id))
        note_id = f"note_{n:02d}{secrets.token_hex(4)}"
        notes_store.put({"account_id": account, "customer_id": cid, "note_id": note_id,
                         "staff_id": "stf_1", "staff_email": "ann@shop.test", "text": f"note {n}",
                         "object_ref": None, "at": _iso(t + 1)}, 730)
        expected.append((_iso(t + 1), "note", note_id))
        act_id = f"act_{n:02d}{secrets.token_hex(4)}"
        activity_store.put(activity_store.Entry(
            account_id=account, entry_id=act_id, at=at, actor="stf_1", actor_email="ann@shop.test",
            action="customer.viewed", target=cid, details=None, reason=None, ip=None),
            t + 400 * 86400)
        expected.append((at, "staff", act_id))
    # Another customer's staff actions share the account's log: never on this timeline.
    activity_store.put(activity_store.Entry(
        account_id=account, entry_id=f"act_zz{secrets.token_hex(4)}", at=_iso(times[0]),
        actor="stf_1", actor_email=None, action="customer.viewed", target="cst_someone_else",
        details=None, reason=None, ip=None), times[0] + 400 * 86400)
    expected.sort(reverse=True)
    return [(source, item_id) for _, source, item_id in expected]


def _walk(account, cid, limit, sources=None) -> list[dict]:
    from chalicelib.timeline import service as timeline

    out, cursor = [], None
    for _ in range(200):
        page, cursor = timeline.list_for(account, cid, limit, cursor, sources=sources)
        assert len(page) <= limit
        out += page
        if cursor is None:
            return out
    raise AssertionError("the timeline never ended")


def test_the_timeline_merges_every_source_newest_first_across_pages(merchant):  # noqa: F811
    cid, s = _customer(merchant, "tl" + secrets.token_hex(3))
    expected = _seed_sources(merchant.account_id, cid, s)
    for limit in (1, 2, 3, 7, 100):
        got = _walk(merchant.account_id, cid, limit)
        assert [(i["source"], i["id"]) for i in got] == expected, limit
    items = _walk(merchant.account_id, cid, 100)
    ats = [i["at"] for i in items]
    assert ats == sorted(ats, reverse=True)
    refund = next(i for i in items if i["kind"] == "refund.created")
    assert refund["source"] == "processor" and refund["object_ref"].startswith("stripe:re_")
    assert refund["event_id"] == s.events[-1]["id"]


def test_the_timeline_filters_by_source(merchant):  # noqa: F811
    cid, s = _customer(merchant, "tlf" + secrets.token_hex(3))
    expected = _seed_sources(merchant.account_id, cid, s)
    for chosen in itertools.chain.from_iterable(
            itertools.combinations(("processor", "email", "staff", "note"), r) for r in (1, 2)):
        got = _walk(merchant.account_id, cid, 2, sources=list(chosen))
        assert [(i["source"], i["id"]) for i in got] == \
            [e for e in expected if e[0] in chosen], chosen


def test_the_timeline_refuses_bad_input_and_other_accounts(app_client):  # noqa: F811
    from chalicelib import paging
    from chalicelib.errors import BadRequest, NotFound
    from chalicelib.timeline import service as timeline

    a, b = make_merchant(app_client), make_merchant(app_client)
    cid, _ = _customer(a, "tlbad" + secrets.token_hex(3))
    with pytest.raises(NotFound):
        timeline.list_for(b.account_id, cid, 10, None)
    with pytest.raises(NotFound):
        timeline.list_for(a.account_id, "cst_01m7000000000000000000000x", 10, None)
    for sources in (["mail"], ["processor", "x"], ["<b>"]):
        with pytest.raises(BadRequest):
            timeline.list_for(a.account_id, cid, 10, None, sources=sources)
    for limit in (0, 101):
        with pytest.raises(BadRequest):
            timeline.list_for(a.account_id, cid, limit, None)
    for cursor in ("%%", paging.encode('{"mail": "x"}'), paging.encode('{"note": "1#2"}'),
                   paging.encode("[]"), "x" * 3000):
        with pytest.raises(paging.BadCursor):
            timeline.list_for(a.account_id, cid, 10, cursor)


def test_the_merchant_api_adds_a_note_once_per_key_and_refuses_bad_ones(merchant):  # noqa: F811
    import json

    cid, _ = _customer(merchant, "apinote" + secrets.token_hex(3))
    record = merchant.get_json(f"/api/v1/customers/{cid}")
    [payment] = [p for p in record["payments"] if p["status"] == "succeeded"]

    def post(body, key=None, customer=cid):
        r = merchant.client.http.post(
            f"/api/v1/customers/{customer}/notes", body=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {merchant.api_key}",
                     "Content-Type": "application/json",
                     "Idempotency-Key": key or secrets.token_hex(12)})
        return r.status_code, json.loads(r.body or b"{}")

    key = secrets.token_hex(12)
    status, body = post({"text": "Asked for a <b>copy</b>", "object": payment["id"]}, key)
    assert status == 200 and body["note"]["object_ref"] == payment["id"], body
    assert post({"text": "Asked for a <b>copy</b>", "object": payment["id"]}, key) == (status, body)
    assert post({"text": "Something else"}, key)[0] == 422  # the same key, another request
    listed = merchant.get_json(f"/api/v1/customers/{cid}/notes")["data"]
    assert [(n["id"], n["text"]) for n in listed] == [(body["note"]["id"], "Asked for a <b>copy</b>")]
    # Bad input: 4xx with {error, message}, nothing written.
    for bad, code in (({"text": ""}, 400), ({"text": 5}, 400), ({"text": "x" * 2001}, 400),
                      ({"text": "hi", "object": "pay_" + "a" * 24}, 404),
                      ({"text": "hi", "extra": 1}, 400)):
        status, answer = post(bad)
        assert status == code and answer["error"] and answer["message"], (bad, status, answer)
    assert post({"text": "hi"}, customer="cst_" + "a" * 26)[0] == 404
    assert len(merchant.get_json(f"/api/v1/customers/{cid}/notes")["data"]) == 1
