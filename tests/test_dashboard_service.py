"""The dashboard's pages as data (chalicelib/dashboard/service.py): customers, search by
each key, the record page and its reads, settings, the activity CSV's cells. Customers
are built by signed Stripe webhooks through the app, on DynamoDB Local."""
from __future__ import annotations

import csv
import io
import secrets

import pytest
from app_fixtures import DynamoCalls, app_client, make_merchant  # noqa: F401
from portal_helpers import make_shop, refund, seed_customer
from stripe_events import Stream

from chalicelib.dashboard import service
from chalicelib.errors import BadRequest, NotFound


@pytest.fixture
def shop(app_client, stack):  # noqa: F811
    return make_shop(app_client, stack)


def _api_record(shop, customer_id):
    return shop.merchant.get_json(f"/api/v1/customers/{customer_id}")


def _id_of(shop, email):
    hits = service.search(shop.merchant.account_id, email)["results"]
    assert len(hits) == 1, hits
    return hits[0]["id"]


def test_customers_newest_first_with_the_columns_a_merchant_scans(shop):
    first = seed_customer(shop, name="Anna Zielińska")
    second = seed_customer(shop, name="Bruno Kowalski")
    refund(shop, second, 900)
    page = service.customers(shop.merchant.account_id, None)
    rows = page["customers"]
    assert [r["email"] for r in rows] == [second.email, first.email]
    newest = rows[0]
    assert newest["name"] == "Bruno Kowalski" and newest["orders"] == 3
    # 15 + 99 + 49 paid, 9 refunded, in euros' minor unit.
    assert newest["lifetime_value"] == [("eur", 1500 + 9900 + 4900 - 900)]
    assert newest["active_subscriptions"] == 2  # the subscription and the payment plan
    assert newest["missed_payments"] == 1
    assert newest["created_at"]


def test_customers_pages_with_a_cursor_and_a_bad_cursor_is_400(app_client, stack):  # noqa: F811
    merchant = make_merchant(app_client)
    stream = Stream(secrets.token_hex(3))
    for i in range(service.CUSTOMERS_PAGE + 2):
        stream.customer(f"p{i}@example.com", f"P {i}")
    merchant.deliver_until_applied(stream.events)
    first = service.customers(merchant.account_id, None)
    assert len(first["customers"]) == service.CUSTOMERS_PAGE and first["next_cursor"]
    second = service.customers(merchant.account_id, first["next_cursor"])
    assert [r["email"] for r in second["customers"]] == ["p1@example.com", "p0@example.com"]
    assert second["next_cursor"] is None
    with pytest.raises(BadRequest):
        service.customers(merchant.account_id, "not-a-cursor!")


def test_search_by_each_key_finds_only_this_accounts_customers(app_client, stack):  # noqa: F811
    shop = make_shop(app_client, stack)
    other = make_shop(app_client, stack)
    seeded = seed_customer(shop, name="Zoë Łukasiewicz")
    seed_customer(other, email=seeded.email, prefix=seeded.prefix)  # same Stripe ids elsewhere
    account = shop.merchant.account_id
    cid = _id_of(shop, seeded.email)
    record = _api_record(shop, cid)
    order_id = record["orders"][0]["id"]

    for query, by in ((seeded.email.upper(), "prefix"), ("zoë łuk", "prefix"),
                      ("łukasiewicz", "prefix"), (seeded.customer, "processor_customer"),
                      (f"  {order_id} ", "order"), (cid, "customer")):
        found = service.search(account, query)
        assert found["by"] == by, query
        assert [r["id"] for r in found["results"]] == [cid], query
        assert found["open"] == cid, query
    # The other account's ids and unknown ones find nothing here.
    other_cid = _id_of(other, seeded.email)
    other_order = _api_record(other, other_cid)["orders"][0]["id"]
    for query in (other_cid, other_order, "cus_doesnotexist", "ord_" + "a" * 24, "nobody"):
        found = service.search(account, query)
        assert found["results"] == [] and found["open"] is None, query
    assert service.search(account, "   ")["results"] == []
    with pytest.raises(BadRequest):
        service.search(account, "x" * 101)


def test_search_with_several_hits_opens_none(shop):
    prefix = secrets.token_hex(3)
    seed_customer(shop, email=f"twin-{prefix}-a@example.com")
    seed_customer(shop, email=f"twin-{prefix}-b@example.com")
    found = service.search(shop.merchant.account_id, f"twin-{prefix}")
    assert len(found["results"]) == 2 and found["open"] is None


def test_record_page_numbers_equal_the_merchant_api(shop):
    seeded = seed_customer(shop)
    refund(shop, seeded, 900)
    account = shop.merchant.account_id
    cid = _id_of(shop, seeded.email)
    api = _api_record(shop, cid)
    page = service.record_page(account, cid)
    assert page["history_loaded"]
    assert page["stats"] == api["stats"]
    assert page["lifetime_value"] == sorted(api["stats"]["lifetime_value"].items())
    assert page["customer"]["email"] == api["email"] and page["customer"]["name"] == api["name"]
    assert page["customer"]["created_at"] == api["created_at"]
    assert page["processor_customers"] == [seeded.customer]
    assert [s["id"] for s in page["subscriptions"]] == [s["id"] for s in api["subscriptions"]]
    sub = page["subscriptions"][0]
    assert sub["total_paid"] == [("eur", 1500)] and sub["activated_at"] and sub["tenure"]
    plan = page["payment_plans"][0]
    api_plan = api["payment_plans"][0]
    for key in ("installments_paid", "installments_total", "amount_paid", "remaining_balance",
                "next_due_at", "next_due_amount"):
        assert plan[key] == api_plan[key], key
    assert [p["id"] for p in page["payments"]] == [p["id"] for p in api["payments"]]
    assert [o["id"] for o in page["orders"]] == [o["id"] for o in api["orders"]]
    assert [p["id"] for p in page["missed"]] == [p["id"] for p in api["payments"]
                                                 if p["status"] == "failed"]
    card = page["cards"][0] if page["cards"] else None
    if card:  # the record learns cards from payment_method events (seed_customer sends one)
        assert {s["product"] for s in card["pays_for"]} >= {"Pro membership"}
    assert page["open_disputes"] == 0
    # Purchases by product: the record's grouping, each transaction a payment of the record.
    api_payments = {p["id"] for p in api["payments"]}
    assert [g["product"] for g in page["purchases"]] == [g["product"] for g in api["purchases"]]
    assert all(t["id"] in api_payments for g in page["purchases"] for t in g["transactions"])


def test_record_page_shows_each_products_newest_transactions(shop, monkeypatch):
    seeded = seed_customer(shop)
    cid = _id_of(shop, seeded.email)
    monkeypatch.setattr(service, "PURCHASE_ROWS", 1)
    page = service.record_page(shop.merchant.account_id, cid)
    api = {g["product"]: g for g in _api_record(shop, cid)["purchases"]}
    for group in page["purchases"]:
        total = len(api[group["product"]]["transactions"])
        assert len(group["transactions"]) == min(total, 1)
        assert group["more"] == total - len(group["transactions"])
    assert any(g["more"] for g in page["purchases"])  # the plan: a paid and a failed instalment
    history = service.history_page(shop.merchant.account_id, cid)
    assert all(g["more"] == 0 for g in history["purchases"])


def test_record_page_of_another_account_or_no_such_id_is_404(app_client, stack):  # noqa: F811
    shop, other = make_shop(app_client, stack), make_shop(app_client, stack)
    seeded = seed_customer(shop)
    cid = _id_of(shop, seeded.email)
    for account, customer_id in ((other.merchant.account_id, cid),
                                 (shop.merchant.account_id, "cst_" + "0" * 26),
                                 (shop.merchant.account_id, "nonsense")):
        with pytest.raises(NotFound):
            service.record_page(account, customer_id)
        with pytest.raises(NotFound):
            service.history_page(account, customer_id)
    payment = _api_record(shop, cid)["payments"][0]["id"]
    with pytest.raises(NotFound):
        service.transaction_page(other.merchant.account_id, cid, payment)
    assert service.transaction_page(shop.merchant.account_id, cid, payment)["payment"]["id"] == payment


def test_record_page_beyond_the_history_limit_reads_a_bounded_number_of_items(shop, monkeypatch):
    """Past FULL_HISTORY_ORDERS the page never reads the whole collection: the overview's
    one Query (and the sections of their own partitions), whatever the history."""
    seeded = seed_customer(shop)
    account = shop.merchant.account_id
    cid = _id_of(shop, seeded.email)
    monkeypatch.setattr(service, "FULL_HISTORY_ORDERS", 1)
    monkeypatch.setattr(service, "RECORD_ORDERS", 2)

    def whole_record(*args, **kwargs):
        raise AssertionError("the record page read the whole record")

    with monkeypatch.context() as m:
        m.setattr(service.records, "get_record", whole_record)
        with DynamoCalls() as calls:
            page = service.record_page(account, cid)
    assert not page["history_loaded"] and page["open_disputes"] is None
    # The overview, the newest orders' end (for "Older orders"), a page of the e-mail
    # history and of the timeline (each source's partition): a fixed number of requests.
    assert set(calls.calls) <= {"Query", "GetItem", "BatchGetItem"}, calls.calls
    assert len(calls.calls) <= 12, calls.calls
    assert page["planned"] and page["subscriptions"] and page["payment_plans"]
    assert len(page["orders"]) == 2 and page["orders_next"]
    older = service.record_page(account, cid, orders_cursor=page["orders_next"])
    api_orders = [o["id"] for o in _api_record(shop, cid)["orders"]]
    assert [o["id"] for o in page["orders"] + older["orders"]] == api_orders
    assert older["orders_next"] is None
    # The history page reads the whole record.
    history = service.history_page(account, cid)
    assert len(history["payments"]) == len(_api_record(shop, cid)["payments"])
    with pytest.raises(BadRequest):
        service.record_page(account, cid, orders_cursor="Zm9v")  # "foo": not an order's place


def test_history_pages_payments(shop, monkeypatch):
    seeded = seed_customer(shop)
    cid = _id_of(shop, seeded.email)
    monkeypatch.setattr(service, "HISTORY_PAGE", 2)
    account = shop.merchant.account_id
    api = [p["id"] for p in _api_record(shop, cid)["payments"]]
    seen = []
    first = service.history_page(account, cid, 1)
    for n in range(1, first["payments_pages"] + 1):
        seen += [p["id"] for p in service.history_page(account, cid, n)["payments"]]
    assert seen == api
    with pytest.raises(BadRequest):
        service.history_page(account, cid, first["payments_pages"] + 1)
    with pytest.raises(BadRequest):
        service.parse_page_number("-1")


def test_timeline_source_must_be_known(shop):
    seeded = seed_customer(shop)
    cid = _id_of(shop, seeded.email)
    with pytest.raises(BadRequest):
        service.record_page(shop.merchant.account_id, cid, timeline_source="<script>")


def test_settings_validate_then_save(shop):
    account = shop.merchant.account_id
    values, problems = service.parse_settings_form({
        "color": "red", "logo_url": "https://127.0.0.1/logo.png",
        "company_address": "a\x00b", "self_cancel": "1"})
    assert set(problems) == {"color", "logo_url", "company_address"}
    values, problems = service.parse_settings_form({
        "color": "#123abc", "logo_url": "https://cdn.shop.test/logo.png",
        "company_address": "ul. Długa 2\nKraków"})
    assert problems == {} and values["self_cancel"] is False
    before = service.save_settings(account, values)
    assert before["self_cancel"] is True
    after = service.settings(account)
    assert after == {"color": "#123abc", "logo_url": "https://cdn.shop.test/logo.png",
                     "company_address": "ul. Długa 2\nKraków", "self_cancel": False}


@pytest.mark.parametrize("value,cell", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-2", "'-2"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("plain", "plain"),
    ("a=b", "a=b"), (None, ""), ({"k": "=v"}, '{"k":"=v"}'), (12, "12"),
])
def test_csv_cells_never_run_as_formulas(value, cell):
    assert service.csv_cell(value) == cell


def test_csv_rows_quote_and_escape():
    text = service.csv_rows([{"a": "=1+1", "b": 'say "hi", then\nleave'}], ("a", "b"))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["a", "b"], ["'=1+1", 'say "hi", then\nleave']]


def test_activity_filters_are_checked():
    assert service.activity_filters({"action": "staff.", "actor": "stf_1",
                                     "customer": "cst_" + "a" * 26}) == {
        "action_prefix": "staff.", "actor": "stf_1", "target": "cst_" + "a" * 26}
    for bad in ({"action": "<x>"}, {"customer": "cus_1"}, {"actor": "a b"}):
        with pytest.raises(BadRequest):
            service.activity_filters(bad)
