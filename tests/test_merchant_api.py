"""The merchant read API: auth, scoping, paging, search, errors."""
from __future__ import annotations

import json

from app_fixtures import app_client, make_merchant, merchant  # noqa: F401
from stripe_events import Stream


def _seed(m, n=5, prefix="api"):
    s = Stream(prefix)
    for i in range(n):
        cus = s.customer(f"person{i}@example.com", f"Person{i} Nowak" if i != 2 else "Ærin Ødegård")
        s.one_time(cus, 1000 + i)
    for e in s.events:
        assert m.deliver(e).status_code == 200


def test_auth_missing_or_wrong_key_is_401(merchant):  # noqa: F811
    for headers in ({}, {"Authorization": "Bearer bp_live_wrong"}, {"Authorization": "Basic x"},
                    {"Authorization": "Bearer " + "x" * 5000}):
        for path in ("/api/v1/customers", "/api/v1/customers/cst_x", "/api/v1/orders/ord_x",
                     "/api/v1/webhook-deliveries"):
            r = merchant.client.http.get(path, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert json.loads(r.body)["error"] == "unauthorized"


def test_list_newest_first_with_cursor(merchant):  # noqa: F811
    _seed(merchant, 5)
    first = merchant.get_json("/api/v1/customers?limit=2")
    second = merchant.get_json(f"/api/v1/customers?limit=2&cursor={first['next_cursor']}")
    third = merchant.get_json(f"/api/v1/customers?limit=2&cursor={second['next_cursor']}")
    emails = [c["email"] for c in first["data"] + second["data"] + third["data"]]
    assert emails == [f"person{i}@example.com" for i in reversed(range(5))]
    assert third["next_cursor"] is None
    assert first["data"][0]["stats"]["orders"] == 1


def test_search_prefix_case_insensitive_on_email_and_name(merchant):  # noqa: F811
    _seed(merchant, 5, prefix="srch")
    by_email = merchant.get_json("/api/v1/customers?q=PERSON3")["data"]
    assert [c["email"] for c in by_email] == ["person3@example.com"]
    by_name = merchant.get_json("/api/v1/customers?q=ærin")["data"]
    assert [c["email"] for c in by_name] == ["person2@example.com"]
    by_last_name = merchant.get_json("/api/v1/customers?q=nowa")["data"]
    assert len(by_last_name) == 4
    assert merchant.get_json("/api/v1/customers?q=zzz")["data"] == []


def test_record_and_order_and_isolation(app_client):  # noqa: F811
    a, b = make_merchant(app_client), make_merchant(app_client)
    _seed(a, 1, prefix="iso")
    customer = a.customers()[0]
    record = a.get_json(f"/api/v1/customers/{customer['id']}")
    order_id = record["orders"][0]["id"]
    order = a.get_json(f"/api/v1/orders/{order_id}")
    assert order["amount"] == 1000 and order["customer"]["email"] == "person0@example.com"
    assert order["payments"][0]["status"] == "succeeded"
    # Another account's ids answer 404, not the record.
    for path in (f"/api/v1/customers/{customer['id']}", f"/api/v1/orders/{order_id}"):
        r = b.get(path)
        assert r.status_code == 404 and json.loads(r.body)["error"] == "not_found"
    assert b.customers() == []
    assert b.get_json("/api/v1/customers?q=person")["data"] == []
    assert b.get_json("/api/v1/webhook-deliveries")["data"] == []


def test_bad_parameters_are_400_and_unknown_ids_404(merchant):  # noqa: F811
    for path in ("/api/v1/customers?limit=0", "/api/v1/customers?limit=abc",
                 "/api/v1/customers?limit=1000", "/api/v1/customers?cursor=%%%",
                 "/api/v1/customers?cursor=bm9oYXNo", "/api/v1/customers?q=" + "a" * 200,
                 "/api/v1/webhook-deliveries?limit=-1"):
        r = merchant.get(path)
        assert r.status_code == 400, path
        assert "error" in json.loads(r.body)
    for path in ("/api/v1/customers/cst_01m7000000000000000000000x", "/api/v1/customers/nope",
                 "/api/v1/orders/ord_aaaaaaaaaaaaaaaaaaaaaaaa", "/api/v1/orders/ord_%2E%2E"):
        r = merchant.get(path)
        assert r.status_code == 404, path


def test_deliveries_are_listed_newest_first(merchant):  # noqa: F811
    _seed(merchant, 2, prefix="dlv")
    deliveries = merchant.get_json("/api/v1/webhook-deliveries?limit=3")
    assert len(deliveries["data"]) == 3 and deliveries["next_cursor"]
    assert deliveries["data"][0]["event_type"] == "payment_intent.succeeded"
    assert all(d["outcome"] == "applied" for d in deliveries["data"])
    rest = merchant.get_json(f"/api/v1/webhook-deliveries?cursor={deliveries['next_cursor']}")
    assert len(rest["data"]) == 1


def test_search_results_follow_a_renamed_customer(merchant):  # noqa: F811
    s = Stream("rename")
    cus = s.customer("rename@example.com", "Old Name")
    s.customer("rename@example.com", "New Name", event_type="customer.updated", cid=cus)
    for e in s.events:
        assert merchant.deliver(e).status_code == 200
    assert merchant.get_json("/api/v1/customers?q=old")["data"] == []
    by_email = merchant.get_json("/api/v1/customers?q=rename@")["data"]
    assert [(c["email"], c["name"]) for c in by_email] == [("rename@example.com", "New Name")]
