"""Editing a customer's details through the merchant API, end to end: a customer seeded at
localstripe with two Stripe customers of one e-mail (webhooks to the app), the API through
Chalice's test client, localstripe's customers afterwards; a new e-mail is pushed to both
Stripe customers, the old address is told, and the processor's customer.updated events
move the whole record (nothing splits off); an address that has a record is 409 with it."""
from __future__ import annotations

import json
import secrets

import pytest
import stripe
from app_fixtures import app_client  # noqa: F401
from customer_action_helpers import another_customer, deliver_events, follow_customer, seeded_shop
from portal_helpers import (  # noqa: F401 - portal_settings is a fixture
    mails_to,
    portal_settings,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("portal_settings")


@pytest.fixture(scope="module")
def shop(app_client, stack):  # noqa: F811
    client = stripe.StripeClient("sk_test_portal", base_addresses={"api": stack.stripe_url})
    out = seeded_shop(app_client, stack, client)
    # A second Stripe customer with the same e-mail joins the record.
    second = client.v1.customers.create(params={"email": out.email, "name": out.name})
    follow_customer(out, second.id)
    wait_for(lambda: (deliver_events(out), _overview(out))[1],
             lambda o: o and f"stripe:{second.id}" in o["processor_ids"],
             what="the second Stripe customer on the record")
    out.second_customer = second.id
    return out


def _overview(shop, customer_id: str | None = None) -> dict | None:
    from chalicelib.records import service as records

    return records.get_overview(shop.account_id, customer_id or shop.customer_id(), 1)[0]


def _post(shop, body: dict, key: str | None = None, customer_id=None):
    headers = {"Authorization": f"Bearer {shop.shop.merchant.api_key}",
               "Content-Type": "application/json",
               "Idempotency-Key": key or secrets.token_hex(12)}
    response = shop.shop.merchant.client.http.post(
        f"/api/v1/customers/{customer_id or shop.customer_id()}/details",
        body=json.dumps(body).encode(), headers=headers)
    return response.status_code, json.loads(response.body or b"{}")


def _outbox(shop, kind: str) -> list[dict]:
    """The action's own events (the processor's webhooks may add theirs)."""
    from chalicelib.store.customers import list_outbox

    return [o for o in list_outbox(shop.account_id) if o["type"] == kind
            and o["data"].get("source") == "api"]


def test_bad_input_changes_nothing(shop):
    for body in ({}, {"nickname": "x"}, {"name": 5}, {"phone": "call me"},
                 {"email": "not-an-email"}, {"email": None}, {"address": "Main St"},
                 {"address": {"line1": "a", "planet": "Mars"}},
                 {"address": {"country": "Poland"}}, {"name": "x" * 201}):
        status, answer = _post(shop, body)
        assert status == 400, (body, answer)
        assert set(answer) == {"error", "message"}
    assert _post(shop, {"name": "X"}, customer_id="cst_" + "0" * 26)[0] == 404
    assert _outbox(shop, "customer.updated") == []


def test_name_phone_and_address_reach_both_stripe_customers_and_the_record(shop):
    key = secrets.token_hex(12)
    body = {"name": "Zofia Nowak", "phone": "+48 600 100 200",
            "address": {"line1": "ul. Długa 5", "postal_code": "31-147", "city": "Kraków",
                        "country": "pl"}}
    status, answer = _post(shop, body, key=key)
    assert status == 200, answer
    assert answer["changed"] == ["address", "name", "phone"]
    assert _post(shop, body, key=key) == (200, answer)  # the same key: once
    for cus in (shop.customer, shop.second_customer):
        found = shop.client.v1.customers.retrieve(cus)
        assert found.name == "Zofia Nowak" and found.phone == "+48 600 100 200"
        assert found.address.city == "Kraków" and found.address.country == "PL"
    record = shop.record()
    assert record["name"] == "Zofia Nowak" and record["phone"] == "+48 600 100 200"
    assert record["address"]["city"] == "Kraków"
    # One product event per processor customer's profile (the integrations' reaction to the
    # record's change), each carrying what the action changed.
    events = _outbox(shop, "customer.updated")
    assert events and all(e["data"]["changed"] == ["address", "name", "phone"] for e in events)


def test_support_may_edit_but_not_change_the_e_mail(shop):
    from chalicelib.actions.customer import CustomerActions
    from chalicelib.actions.service import ActionContext
    from chalicelib.errors import Forbidden

    ctx = ActionContext(account_id=shop.account_id, actor_id="stf_support", actor_email=None,
                        role="support", ip=None, source="dashboard",
                        idempotency_key=secrets.token_urlsafe(24))
    with pytest.raises(Forbidden):
        CustomerActions(ctx, shop.customer_id()).edit({"email": "new@example.com"})
    read_only = ActionContext(**{**ctx.__dict__, "role": "read_only"})
    with pytest.raises(Forbidden):
        CustomerActions(read_only, shop.customer_id()).edit({"name": "Nope"})
    assert shop.record()["name"] != "Nope"


def test_merge_folds_another_record_into_this_one(shop):
    from chalicelib.actions.customer import CustomerActions
    from chalicelib.actions.service import ActionContext
    from chalicelib.errors import Forbidden
    from chalicelib.records import service as records
    from chalicelib.store.customers import find_by_email

    other = another_customer(shop, "Merged Person")
    other_id = other.customer_id()
    path = f"/api/v1/customers/{shop.customer_id()}/merge"
    headers = {"Authorization": f"Bearer {shop.shop.merchant.api_key}",
               "Content-Type": "application/json"}

    def post(body, key=None):
        r = shop.shop.merchant.client.http.post(path, body=json.dumps(body).encode(), headers={
            **headers, "Idempotency-Key": key or secrets.token_hex(12)})
        return r.status_code, json.loads(r.body or b"{}")

    assert post({"customer_id": shop.customer_id()})[0] == 400  # itself
    assert post({"customer_id": "nope"})[0] == 400
    assert post({"customer_id": "cst_" + "0" * 26})[0] == 404
    support = ActionContext(account_id=shop.account_id, actor_id="stf_s", actor_email=None,
                            role="support", ip=None, source="dashboard",
                            idempotency_key=secrets.token_urlsafe(24))
    with pytest.raises(Forbidden):
        CustomerActions(support, shop.customer_id()).merge(other_id)

    before = len(_overview(shop)["subscriptions"])
    key = secrets.token_hex(12)
    status, answer = post({"customer_id": other_id, "reason": "same person"}, key=key)
    assert status == 200, answer
    assert post({"customer_id": other_id, "reason": "same person"}, key=key) == (200, answer)
    assert records.get_record(shop.account_id, other_id) is None  # a tombstone now
    assert find_by_email(shop.account_id, other.email) is None  # its e-mail is free
    merged = _overview(shop)
    assert f"stripe:{other.customer}" in merged["processor_ids"]
    assert len(merged["subscriptions"]) == before + 1 and merged["email"] == shop.email
    assert shop.client.v1.customers.retrieve(other.customer).email == shop.email
    [event] = [o for o in _outbox(shop, "customer.merged")]
    assert event["data"]["merged_customer_id"] == other_id
    # The other customer's next events reach this record.
    shop.client.v1.customers.update(other.customer, params={"name": "Merged Person Jr"})
    deliver_events(shop)
    assert records.find_by_processor_id(shop.account_id, "stripe", other.customer) == \
        shop.customer_id()


def test_new_e_mail_moves_the_whole_record_and_a_taken_one_is_409(shop, sent_emails):

    from chalicelib.records.service import normalize_email
    from chalicelib.store.customers import find_by_email

    record_id = shop.customer_id()
    old = shop.email
    subscriptions = len(_overview(shop)["subscriptions"])
    # An address that has a record of its own: 409 with that record, nothing changed.
    other = another_customer(shop, "Other Person")
    status, answer = _post(shop, {"email": other.email})
    assert status == 409 and answer["error"] == "email_taken"
    assert answer["customer_id"] == other.customer_id()
    assert shop.client.v1.customers.retrieve(shop.customer).email == old

    new = f"zoe-new-{secrets.token_hex(4)}@example.com"
    status, answer = _post(shop, {"email": new.upper()})
    assert status == 200 and answer["email_pending"] == new
    for cus in (shop.customer, shop.second_customer):
        assert shop.client.v1.customers.retrieve(cus).email == new
    [told] = [m for m in mails_to(sent_emails, old) if "is changing" in m["subject"]]
    assert new in told["body"]
    # Both Stripe customers' customer.updated: the whole record follows, nothing splits.
    wait_for(lambda: (deliver_events(shop), find_by_email(shop.account_id, new))[1],
             lambda cid: cid == record_id, what="the record under the new e-mail")
    assert find_by_email(shop.account_id, normalize_email(old)) is None
    overview = _overview(shop, record_id)
    assert {f"stripe:{shop.customer}", f"stripe:{shop.second_customer}"} <= set(
        overview["processor_ids"])
    assert overview["email"] == new and len(overview["subscriptions"]) == subscriptions
