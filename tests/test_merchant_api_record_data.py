"""The merchant API's e-mails, timeline, raw events and notes of a customer, and the
record's planned payments and purchases: answers fit docs/openapi.yaml; other accounts'
and unknown ids answer 404; bad input 400 without a trace."""
from __future__ import annotations

import json
import secrets
from urllib.parse import quote

from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream
from test_openapi import SPEC, _check


def _schema(path: str) -> dict:
    return SPEC["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]


def _seeded(app_client, stack):  # noqa: F811
    from chalicelib.mail import sender
    from chalicelib.notes import service as notes

    stack.verify_sender("shop.test")
    m = make_merchant(app_client)
    s = Stream("apird" + secrets.token_hex(3))
    cus = s.customer("apird@example.com", "Api Record")
    sub = s.subscription(cus, 1500, nickname="Pro")
    s.invoice(cus, sub, 1500)
    pi, charge = s.one_time(cus, 2500)
    s.refund(cus, pi, charge, 500)
    m.deliver_until_applied(s.events)
    [customer] = m.customers()
    cid = customer["id"]
    sender.send(sender.Message(from_name="Shop", from_address="support@shop.test",
                               to="apird@example.com", subject="Your receipt", text="…"),
                account_id=m.account_id, customer_id=cid, kind="receipt")
    notes.add(m.account_id, cid, "stf_1", "ann@shop.test", "Asked about <VAT>",
              object_ref=f"stripe:{pi}")
    return m, cid, pi


def test_answers_fit_the_document(app_client, stack):  # noqa: F811
    m, cid, pi = _seeded(app_client, stack)
    base = f"/api/v1/customers/{cid}"
    record = m.get_json(base)
    _check(record, {"$ref": "#/components/schemas/CustomerRecord"})
    assert [p["kind"] for p in record["planned_payments"]] == ["renewal"]
    assert {g["product"] for g in record["purchases"]} == {"Pro", "Ebook: Pierogi"}

    emails = m.get_json(f"{base}/emails")
    _check(emails, _schema("/api/v1/customers/{customer_id}/emails"))
    assert [(e["kind"], e["status"]) for e in emails["data"]] == [("receipt", "sent")]

    timeline = m.get_json(f"{base}/timeline?limit=3")
    _check(timeline, _schema("/api/v1/customers/{customer_id}/timeline"))
    assert len(timeline["data"]) == 3 and timeline["next_cursor"]
    rest = m.get_json(f"{base}/timeline?limit=100&cursor={timeline['next_cursor']}")
    every = timeline["data"] + rest["data"]
    assert {i["source"] for i in every} == {"processor", "email", "note"}
    assert len(every) == 5 + 1 + 1
    only_notes = m.get_json(f"{base}/timeline?source=note")["data"]
    assert [i["summary"] for i in only_notes] == ["Asked about <VAT>"]

    events = m.get_json(f"{base}/events?object={quote('stripe:' + pi)}")
    _check(events, _schema("/api/v1/customers/{customer_id}/events"))
    assert [e["type"] for e in events["data"]] == ["refund.created", "payment_intent.succeeded"]
    assert events["data"][1]["payload"]["data"]["object"]["id"] == pi

    notes = m.get_json(f"{base}/notes")
    _check(notes, _schema("/api/v1/customers/{customer_id}/notes"))
    assert [n["text"] for n in notes["data"]] == ["Asked about <VAT>"]
    assert m.get_json(f"{base}/notes?object={quote('stripe:' + pi)}")["data"] == notes["data"]
    assert m.get_json(f"{base}/notes?object=stripe:pi_other")["data"] == []

    deliveries = m.get_json("/api/v1/webhook-deliveries")
    _check(deliveries, _schema("/api/v1/webhook-deliveries"))
    assert deliveries["data"][0]["object_refs"] and deliveries["data"][0]["payload_bytes"] > 0


def test_other_accounts_and_unknown_ids_answer_404(app_client, stack):  # noqa: F811
    m, cid, pi = _seeded(app_client, stack)
    other = make_merchant(app_client)
    for suffix in ("emails", "timeline", f"events?object=stripe:{pi}", "notes"):
        for who, customer in ((other, cid), (m, "cst_01m7000000000000000000000x"),
                              (m, "nope"), (m, "cst_%2E%2E")):
            r = who.get(f"/api/v1/customers/{customer}/{suffix}")
            assert r.status_code == 404, (suffix, customer, r.body)
            body = json.loads(r.body)
            assert body["error"] == "not_found" and cid not in r.body.decode()
    # The record's own ids of another customer's objects are unknown here too.
    assert m.get(f"/api/v1/customers/{cid}/events?object=pay_{'a' * 24}").status_code == 404


def test_bad_input_answers_400(app_client, stack):  # noqa: F811
    m, cid, _ = _seeded(app_client, stack)
    base = f"/api/v1/customers/{cid}"
    for path in (f"{base}/emails?limit=0", f"{base}/emails?limit=abc", f"{base}/emails?cursor=%%%",
                 f"{base}/emails?cursor=bm9oYXNo", f"{base}/timeline?limit=101",
                 f"{base}/timeline?cursor=bm9oYXNo", f"{base}/timeline?source=mail",
                 f"{base}/timeline?source=,", f"{base}/events", f"{base}/events?object=",
                 f"{base}/events?object=%3Cscript%3E", f"{base}/events?object=pi_123",
                 f"{base}/notes?cursor=x", f"{base}/notes?object=%3Cb%3E",
                 "/api/v1/webhook-deliveries?cursor=bm9oYXNo"):
        r = m.get(path)
        assert r.status_code == 400, (path, r.status_code, r.body)
        text = r.body.decode()
        assert "error" in json.loads(text) and "Traceback" not in text
