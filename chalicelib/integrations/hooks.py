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
from chalicelib.errors import BadRequest, NotFound
from chalicelib.integrations import catalogue, endpoints
from chalicelib.store import outbox

KIND = "zapier"
MAX_SAMPLES = 10
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
    the same subscribe again (a timeout on its side): an enabled hook of the account with
    the same URL and event is answered again rather than doubled, so an event is not
    delivered twice to one Zap."""
    event_type = _event_type(body.get("event"))
    target_url = body.get("target_url")
    endpoints.check_url(target_url)
    for existing in endpoints.list_for(account_id):
        if (existing["kind"] == KIND and existing["enabled"] and existing["url"] == target_url
                and existing["event_types"] == [event_type]):
            # The secret is shown once, at creation: a repeated subscribe gets a new one,
            # the old one keeping its grace period (a Zap holds only the latest answer).
            secret = endpoints.rotate_secret(account_id, existing["id"], timeutil.now(),
                                             endpoints.DEFAULT_GRACE)
            return _answer(existing, secret)
    created = endpoints.create(account_id, url=target_url, event_types=[event_type],
                               description=f"Zapier: {event_type}", kind=KIND)
    return _answer(created, created["secret"])


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
