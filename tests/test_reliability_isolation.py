"""Isolation: every merchant API route, found in the app itself (so a new route is
covered or this test fails), answers 401 without a valid key and never shows one
account's data to another: another account's ids answer 404, lists stay empty. The
webhook route refuses a delivery signed for another account, and writes nothing.
"""
from __future__ import annotations

import json
import re

from app_fixtures import app_client, make_merchant  # noqa: F401
from stripe_events import Stream, sign
from test_reliability_helpers import record_figures


def _api_routes():
    from app import app

    return sorted((path, method) for path, methods in app.routes.items()
                  if path.startswith("/api/") for method in methods)


def _seeded(app_client):  # noqa: F811
    owner = make_merchant(app_client)
    s = Stream("iso")
    cus = s.customer("owner@example.com", "Owner Only")
    # A disputed payment, older than the others (payments[0] stays undisputed); the
    # dispute is open, so recording a repayment answers the owner 409.
    disputed_pi, disputed_charge = s.one_time(cus, 700, email="owner@example.com")
    s.dispute(disputed_pi, disputed_charge, 700, status="needs_response")
    sub = s.subscription(cus, 1500)
    s.invoice(cus, sub, 1500)
    s.one_time(cus, 2500, email="owner@example.com")
    # An ended subscription: the actions on it resolve for the owner (409: not applicable)
    # without a processor call.
    ended = s.subscription(cus, 900, status="canceled")
    owner.deliver_until_applied(s.events)
    customer = owner.customers()[0]
    record = owner.get_json(f"/api/v1/customers/{customer['id']}")
    ids = {"customer_id": customer["id"], "order_id": record["orders"][0]["id"],
           "payment_id": record["payments"][0]["id"],
           "subscription_id": next(x["id"] for x in record["subscriptions"]
                                   if x["processor_ref"] == f"stripe:{ended}"),
           "dispute_id": record["disputes"][0]["id"]}
    _seed_hooks(owner, ids)
    _seed_endpoints(owner, ids)
    return owner, ids


def _seed_endpoints(owner, ids: dict) -> None:
    """The owner's endpoint with one delivery (disabled afterwards, so a replay records
    "not sent" without leaving the machine), and a second endpoint for DELETE."""
    from chalicelib import timeutil
    from chalicelib.integrations import delivery, endpoints

    endpoint = endpoints.create(owner.account_id, url="https://hooks.example.com/iso",
                                event_types=["*"])
    ids["endpoint_id"] = endpoint["id"]
    [made] = [d for d in delivery.fan_out({
        "account_id": owner.account_id, "event_id": "evt_isolation_endpoint",
        "type": "customer.updated", "occurred_at": timeutil.now_iso(),
        "customer_id": ids["customer_id"], "data": {}}, timeutil.now())
        if d["endpoint_id"] == endpoint["id"]]
    ids["delivery_id"] = made["id"]
    endpoints.disable(owner.account_id, endpoint["id"], "isolation test")
    ids["for_delete"] = {"endpoint_id": endpoints.create(
        owner.account_id, url="https://hooks.example.com/iso-delete",
        event_types=["*"])["id"]}


def _seed_hooks(owner, ids: dict) -> None:
    """The owner's Zapier hook, and a real outbox event of the samples' type."""
    from chalicelib import ids as id_source
    from chalicelib import timeutil
    from chalicelib.integrations import hooks
    from chalicelib.store.customers import outbox_item

    ids["event_type"] = "subscription.canceling"
    ids["hook_id"] = hooks.subscribe(owner.account_id, {
        "target_url": "https://hooks.zapier.com/hooks/standard/1/iso/",
        "event": ids["event_type"]})["id"]
    ids["event_id"] = id_source.new_id("evt")
    outbox_item({"account_id": owner.account_id, "customer_id": ids["customer_id"],
                 "event_id": ids["event_id"], "type": ids["event_type"],
                 "occurred_at": timeutil.now_iso(), "data": {}}).save()


# Routes that need a query parameter to answer 200 (the owner's real objects).
QUERIES = {"/api/v1/customers/{customer_id}/events": "?object={payment_id}"}
SUBSCRIPTION_ACTIONS = "/api/v1/customers/{customer_id}/subscriptions/"
NOW = object()  # the time of the request
# Routes about the caller's own account whatever the path names (the key's account, an
# event type's samples): another account gets 200 with nothing of the owner's.
CALLERS_OWN = {"/api/v1/me", "/api/v1/hooks/samples/{event_type}",
               # The caller's own account settings (a PUT of nothing changes nothing).
               "/api/v1/settings/dunning", "/api/v1/settings/notices",
               # The caller's own recovery report.
               "/api/v1/reports/recovery"}
# Documents with no account data, served to anyone (the events' JSON Schema).
PUBLIC = {"/api/v1/events/schema"}
# The actions (POST): a valid body each; on the owner's ended subscription and paid
# payment they answer 409 (found, not applicable), to another account 404.
ACTION_BODIES = {
    "/api/v1/customers/{customer_id}/subscriptions/{subscription_id}/cancel": {"at": "now"},
    "/api/v1/customers/{customer_id}/subscriptions/{subscription_id}/plan-preview": {
        "price": "price_isolation"},
    "/api/v1/customers/{customer_id}/subscriptions/{subscription_id}/plan": {
        "price": "price_isolation", "prorate": True, "proration_date": NOW},
    # Blocks need no processor call for an e-mail: the owner's act (block sorts before
    # unblock, so the unblock finds the e-mail blocked).
    "/api/v1/customers/{customer_id}/block": {"emails": ["owner@example.com"],
                                              "reason": "isolation"},
    "/api/v1/customers/{customer_id}/unblock": {"all": True, "reason": "isolation"},
    # The owner's own e-mail: 409 not applicable, before any processor call.
    "/api/v1/customers/{customer_id}/details": {"email": "owner@example.com"},
    "/api/v1/customers/{customer_id}/notes": {"text": "isolation"},
    # DELETE: the owner's customer has no suppression to lift (409, found).
    "/api/v1/customers/{customer_id}/suppression": {"reason": "isolation"},
    "/api/v1/customers/{customer_id}/disputes/{dispute_id}/repayments": {"amount": 100},
    "/api/v1/customers/{customer_id}/disputes/{dispute_id}/repayment-link": {},
    # Endpoints: the owner's answer 200 (the replay finds the endpoint disabled: not sent).
    "/api/v1/endpoints/{endpoint_id}/rotate-secret": {},
    "/api/v1/endpoints/{endpoint_id}/deliveries/{delivery_id}/replay": {},
    "/api/v1/endpoints/{endpoint_id}/replay-failed": {"since": "2026-01-01T00:00:00Z"},
}
ACTIONS_THAT_ACT = {"/api/v1/customers/{customer_id}/block",
                    "/api/v1/customers/{customer_id}/notes",
                    "/api/v1/customers/{customer_id}/unblock",
                    "/api/v1/endpoints/{endpoint_id}/rotate-secret",
                    "/api/v1/endpoints/{endpoint_id}/deliveries/{delivery_id}/replay",
                    "/api/v1/endpoints/{endpoint_id}/replay-failed"}


def _fill(path: str, ids: dict) -> str:
    template = path + QUERIES.get(path, "")
    params = re.findall(r"{(\w+)}", template)
    missing = [p for p in params if p not in ids]
    assert not missing, (f"{path}: this test does not know how to make a {missing} of the "
                         "owner's; add one to _seeded so the route is covered")
    for p in params:
        template = template.replace("{" + p + "}", ids[p])
    return template


def _call(merchant, method: str, path: str, key: str | None, route: str = ""):
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    body = b""
    if method == "DELETE" and route in ACTION_BODIES:  # an action: a key and a body
        import secrets

        headers.update({"Content-Type": "application/json",
                        "Idempotency-Key": secrets.token_hex(12)})
        body = json.dumps(ACTION_BODIES[route]).encode()
    elif method == "POST":
        import secrets
        import time

        headers.update({"Content-Type": "application/json",
                        "Idempotency-Key": secrets.token_hex(12)})
        values = {k: int(time.time()) if v is NOW else v
                  for k, v in ACTION_BODIES.get(route, {}).items()}
        body = json.dumps(values).encode()
    elif method == "PUT":
        headers["Content-Type"] = "application/json"
        body = b"{}"
    return merchant.client.http.request(method, path, headers=headers, body=body)


def test_every_api_route_is_scoped_to_the_key_s_account(app_client):  # noqa: F811
    owner, ids = _seeded(app_client)
    other = make_merchant(app_client)
    routes = _api_routes()
    assert routes, "no /api/ routes found"
    checked = []
    for path, method in routes:
        # A DELETE removes an object of its own, so the other methods still find theirs.
        url = _fill(path, {**ids, **ids["for_delete"]} if method == "DELETE" else ids)
        if path in PUBLIC:
            for key in (None, owner.api_key, other.api_key):
                r = _call(owner, method, url, key, path)
                assert r.status_code == 200, (method, url, r.status_code)
                assert owner.account_id.encode() not in r.body
            checked.append(f"{method} {path} (public)")
            continue
        # The owner sees it (the ids are real) ...
        mine = _call(owner, method, url, owner.api_key, path)
        if method == "DELETE" and path in ACTION_BODIES:
            assert mine.status_code == 409, (method, url, mine.status_code, mine.body)
        elif method == "DELETE":
            assert mine.status_code == 204, (method, url, mine.status_code, mine.body)
        elif method != "POST" or path in ACTIONS_THAT_ACT:
            assert mine.status_code == 200, (method, url, mine.status_code, mine.body)
        elif path in ACTION_BODIES or path.startswith(SUBSCRIPTION_ACTIONS) or \
                path.endswith("/retry"):
            assert mine.status_code == 409, (method, url, mine.status_code, mine.body)
        else:  # an action without a body here yet: at least not refused as unknown
            assert mine.status_code not in (401, 403, 404) and mine.status_code < 500, (
                method, url, mine.status_code, mine.body)
        # ... no key, a malformed key, an unknown key: 401, and nothing of the owner's.
        for key in (None, "", "bp_live_" + "x" * 43, owner.api_key + "x", "Basic abc"):
            r = _call(owner, method, url, key, path)
            assert r.status_code == 401, (method, url, key, r.status_code)
            assert b"owner@example.com" not in r.body
        # ... another account's key: the ids do not exist for it.
        theirs = _call(other, method, url, other.api_key, path)
        known = method != "POST" or path in ACTION_BODIES or \
            path.startswith(SUBSCRIPTION_ACTIONS) or path.endswith("/retry")
        if not known:  # no valid body here yet (add one to ACTION_BODIES): refused at least
            assert 400 <= theirs.status_code < 500 and theirs.status_code != 401, (
                method, url, theirs.status_code, theirs.body)
        elif path in CALLERS_OWN:
            assert theirs.status_code == 200, (method, url, theirs.status_code)
            assert owner.account_id.encode() not in theirs.body, (url, theirs.body)
            assert ids["event_id"].encode() not in theirs.body, (url, theirs.body)
        elif "{" in path:
            assert theirs.status_code == 404, (method, url, theirs.status_code, theirs.body)
        else:
            assert theirs.status_code == 200, (method, url, theirs.status_code)
            assert json.loads(theirs.body)["data"] == [], (url, theirs.body)
        assert b"owner@example.com" not in theirs.body and ids["customer_id"].encode() not in theirs.body
        checked.append(f"{method} {path}")
    # Search with the owner's e-mail as the other account: nothing.
    r = _call(other, "GET", "/api/v1/customers?q=owner", other.api_key)
    assert json.loads(r.body)["data"] == []
    record_figures("isolation-routes", {"routes": checked})


def test_a_delivery_signed_for_one_account_is_refused_by_another(app_client):  # noqa: F811
    owner = make_merchant(app_client)
    other = make_merchant(app_client)
    s = Stream("isohook")
    s.customer("hook@example.com", "Hook")
    body = json.dumps(s.events[0]).encode()
    headers = {"Content-Type": "application/json",
               "Stripe-Signature": sign(body, owner.webhook_secrets[0])}
    r = other.client.http.post(f"/webhooks/stripe/{other.account_id}", body=body, headers=headers)
    assert r.status_code == 400 and json.loads(r.body)["error"] == "invalid_signature"
    for m in (owner, other):
        assert m.get_json("/api/v1/customers")["data"] == []
        assert m.get_json("/api/v1/webhook-deliveries")["data"] == []
