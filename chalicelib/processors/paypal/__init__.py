"""PayPal: verified webhooks in (``webhook``), translated into the domain events
(``translate``), and a minimal REST client (``client``: who owns an object, PayPal's own
signature check). PayPal's dialect stops in this package."""
from __future__ import annotations

import json

from chalicelib.errors import NotFound
from chalicelib.processors.errors import MalformedPayload
from chalicelib.processors.paypal.values import parse_time

MAX_EVENT_ID = 255


def verify_delivery(body: bytes, headers: dict, account: dict, tolerance: int) -> None:
    """The webhook service's check of a delivery to ``/webhooks/paypal/<account>``.

    ``tolerance`` is Stripe's timestamp window and unused here: PayPal sends each retry as
    a new transmission, and a replayed genuine delivery changes nothing (events are
    applied once, facts are versioned)."""
    # Imported here: verification needs the cryptography library, a Stripe delivery does not.
    from chalicelib.processors.paypal import webhook

    settings = account.get("paypal")
    if not settings:
        raise NotFound("PayPal is not set up for this account")

    def ask_paypal(transmission) -> bool:
        from chalicelib.processors import registry

        client = registry.gateway_for(account, "paypal")
        return client.verify_webhook_signature(transmission, settings["webhook_id"], body)

    webhook.verify(body, headers, settings["webhook_id"], settings["mode"],
                   ask_paypal=ask_paypal)


def parse(body: bytes) -> dict:
    """The event as a dict, with ``type`` (PayPal's ``event_type``) and ``occurred_at``
    (epoch seconds: the event's time, else its resource's)."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedPayload("body is not JSON (or nested too deep)") from exc
    if not isinstance(event, dict):
        raise MalformedPayload("event is not an object")
    event_id, event_type = event.get("id"), event.get("event_type")
    if not isinstance(event_id, str) or not isinstance(event_type, str) or not event_id \
            or not event_type:
        raise MalformedPayload("event has no id or event_type")
    if len(event_id) > MAX_EVENT_ID or len(event_type) > 100:
        raise MalformedPayload("event id or type too long")
    resource = event.get("resource")
    if not isinstance(resource, dict):
        raise MalformedPayload("event has no resource")
    occurred = parse_time(event.get("create_time"))
    for name in ("update_time", "status_update_time", "create_time"):
        occurred = occurred or parse_time(resource.get(name))
    if occurred is None:
        raise MalformedPayload("event has no readable time")
    return {**event, "type": event_type, "occurred_at": occurred}
