"""Zapier's REST hooks on the merchant API: subscribe, unsubscribe, samples.

A subscription is an endpoint of kind ``zapier`` (``integrations.endpoints``) subscribed
to one event type, delivered and signed like any endpoint; Zapier answering 410 to a
delivery removes it (the delivery's 410 handling). Zapier keeps the subscribe answer
(``bundle.subscribeData``): its ``id`` to unsubscribe, its ``secret`` to verify the
Standard Webhooks signature of each delivery (integrations/zapier).

Samples are what Zapier shows while a Zap is built, to map fields: the account's latest
real events of the type (``store.outbox.latest_of_type``, a bounded read), as delivered
(``catalogue.payload``); with none yet, one example payload marked ``"example": true``.
"""
from __future__ import annotations

from chalicelib import timeutil
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.integrations import catalogue, endpoints
from chalicelib.store import outbox

KIND = "zapier"
MAX_SAMPLES = 10
ROTATE_TRIES = 16  # enough for 17 simultaneous repeats: each lost turn is another's rotation
EXAMPLE_EVENT_ID = "evt_example"
EXAMPLE_TIME = "2026-01-01T00:00:00Z"
EXAMPLE_CUSTOMER_ID = "cst_01example0000000000000000"


def _event_type(value) -> str:
    if not isinstance(value, str) or value not in catalogue.EVENT_TYPES:
        raise BadRequest("event: one of the catalogue's event types, such as "
                         '"payment.succeeded"', code="unknown_event_type")
    return value


def subscribe(account_id: str, body: dict) -> dict:
    """A zapier endpoint for ``body["target_url"]`` and ``body["event"]``. Zapier may send
    the same subscribe again (a timeout on its side), even while the first is still being
    answered: an enabled hook of the account with the same URL and event is answered
    again rather than doubled (a claim written with the endpoint decides between
    simultaneous ones), so an event is not delivered twice to one Zap."""
    event_type = _event_type(body.get("event"))
    target_url = body.get("target_url")
    endpoints.check_url(target_url)
    # Hooks subscribed before claims existed have none: found by reading the account's few.
    hook = next((e for e in endpoints.list_for(account_id)
                 if e["kind"] == KIND and e["enabled"] and e["url"] == target_url
                 and e["event_types"] == [event_type]), None)
    hook = hook or endpoints.create(account_id, url=target_url, event_types=[event_type],
                            description=f"Zapier: {event_type}", kind=KIND, once=True)
    if "secret" in hook:
        return _answer(hook, hook["secret"])
    # The secret is shown once, at creation: a repeated subscribe gets a new one, the old
    # ones keeping their grace period (a Zap holds only the latest answer). Simultaneous
    # repeats rotate in turn: each one that lost a turn tries again.
    for _ in range(ROTATE_TRIES):
        try:
            return _answer(hook, endpoints.rotate_secret(account_id, hook["id"],
                                                         timeutil.now(),
                                                         endpoints.DEFAULT_GRACE))
        except Conflict as exc:
            if exc.code != "rotated_meanwhile":
                raise
    raise Conflict("the hook's secret is being rotated by other requests: try again",
                   code="rotated_meanwhile")


def _answer(endpoint: dict, secret: str) -> dict:
    return {"id": endpoint["id"], "event": endpoint["event_types"][0],
            "target_url": endpoint["url"], "secret": secret}


def unsubscribe(account_id: str, hook_id: str) -> None:
    """Remove the account's zapier hook ``hook_id``; NotFound for another account's, an
    unknown one, or an endpoint of another kind (removed through the endpoints API)."""
    found = endpoints.get(account_id, hook_id)
    if found is None or found["kind"] != KIND or not endpoints.delete(account_id, hook_id):
        raise NotFound("no such hook")


def example(event_type: str, account_id: str) -> dict:
    """One payload of ``event_type`` for field mapping, marked ``"example": true``."""
    return {**catalogue.payload({
        "event_id": EXAMPLE_EVENT_ID, "type": event_type, "occurred_at": EXAMPLE_TIME,
        "account_id": account_id, "customer_id": EXAMPLE_CUSTOMER_ID,
        "data": catalogue.example_data(event_type)}), "example": True}


def samples(account_id: str, event_type: str) -> dict:
    """The account's latest events of ``event_type``, newest first, as delivered (at most
    ``MAX_SAMPLES``); with none, one example. NotFound for a type not in the catalogue."""
    if event_type not in catalogue.EVENT_TYPES:
        raise NotFound("no such event type", code="unknown_event_type")
    events = outbox.latest_of_type(account_id, event_type, MAX_SAMPLES)
    data = [catalogue.payload(e) for e in events] or [example(event_type, account_id)]
    return {"data": data}
