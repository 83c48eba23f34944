"""The catalogue of product events sent to integrations, and each event's JSON payload.

An outbox item (``store.customers.outbox_item``) is the stored form; ``payload`` is what
every destination receives (the body a merchant's endpoint verifies, a Zapier sample).

Every event carries the object it is about *as the merchant API shows it* (the record
view, ``records.view``: a payment as ``GET /api/v1/customers/{id}`` lists it), taken when
the change is written, so a late delivery still says what happened then. A payload over
``MAX_PAYLOAD_BYTES`` is sent thin: the object's id and its API URL instead of the object.

``schema()`` is the catalogue as JSON Schema (draft 2020-12), served at
``GET /api/v1/events/schema`` and kept in docs/events/schema.json (a test keeps the two
equal and checks real payloads against it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

# The payload's version: a breaking change of any event's shape gets a new one.
API_VERSION = "2026-11-01"

# Kept under the 20 KB merchants' receivers and Zapier are promised (the whole body).
MAX_PAYLOAD_BYTES = 20 * 1024


@dataclass(frozen=True)
class EventType:
    object: str  # the kind of object in data.object (OBJECT_SCHEMAS)
    description: str


_T = EventType
EVENT_TYPES: dict[str, EventType] = {
    "customer.created": _T("customer", "A customer record was started (its first processor "
                                       "customer, payment or subscription)."),
    "customer.updated": _T("customer", "A customer's profile changed (name, e-mail, phone, "
                                       "address, default card)."),
    "customer.merged": _T("customer", "Two records of one person were merged into this one."),
    "customer.blocked": _T("customer", "Staff blocked the customer (or one of their details)."),
    "customer.unblocked": _T("customer", "Staff lifted a block of the customer."),
    "order.created": _T("order", "An order first appeared: a one-time payment succeeded, or a "
                                 "subscription or payment plan started."),
    "payment.succeeded": _T("payment", "A payment succeeded."),
    "payment.failed": _T("payment", "A payment attempt failed (each failed attempt)."),
    "payment.recovered": _T("payment", "A payment succeeded after a failed attempt (sent "
                                       "besides payment.succeeded)."),
    "payment.refunded": _T("payment", "The refunded amount of a payment grew (data.object."
                                      "refunded is the total refunded)."),
    "payment.blocked_detail": _T("payment", "A payment succeeded by a card or processor "
                                            "customer the merchant has blocked (data.blocked "
                                            "names which); once per payment."),
    "refund.created": _T("refund", "A refund was made (by staff here, or at the processor)."),
    "dispute.opened": _T("dispute", "The customer's bank opened a dispute (chargeback)."),
    "dispute.closed": _T("dispute", "A dispute was closed: won, lost or a warning closed."),
    "dispute.repayment_requested": _T("dispute", "The customer was asked to repay a lost "
                                                 "dispute."),
    "subscription.created": _T("subscription", "A subscription (or payment plan) started."),
    "subscription.updated": _T("subscription", "A subscription changed (plan, amount, period, "
                                               "status) in a way no other event names."),
    "subscription.canceling": _T("subscription", "A subscription was set to end at the end of "
                                                 "its period."),
    "subscription.recovered": _T("subscription", "A subscription set to end was taken back."),
    "subscription.canceled": _T("subscription", "A subscription ended."),
    "subscription.paused": _T("subscription", "Collection of a subscription was paused."),
    "subscription.resumed": _T("subscription", "Collection of a paused subscription resumed."),
    "payment_plan.completed": _T("payment_plan", "The last instalment of a payment plan was "
                                                 "paid."),
    "payment_plan.defaulted": _T("payment_plan", "A payment plan ended with instalments "
                                                 "unpaid."),
    "card.updated": _T("card", "A card was added to a customer or its details changed."),
    "card.expiring": _T("card", "A customer's card on file expires at the end of next month."),
    "card.expired": _T("card", "A customer's card on file has expired."),
    "dunning.exhausted": _T("subscription", "Every planned retry of a failed payment failed."),
}

# The types integrations.reactions derives from a record's change (with data.object).
DERIVED = frozenset({
    "customer.created", "customer.updated", "order.created", "payment.succeeded",
    "payment.failed", "payment.recovered", "payment.refunded", "refund.created",
    "dispute.opened", "dispute.closed", "subscription.created", "subscription.updated",
    "subscription.canceling", "subscription.recovered", "subscription.canceled",
    "subscription.paused", "subscription.resumed", "payment_plan.completed", "card.updated"})

# Where the merchant API shows each kind of object (a thin payload's URL).
_URLS = {"order": "/api/v1/orders/{id}"}
_CUSTOMER_URL = "/api/v1/customers/{customer_id}"


def _url(kind: str, object_id: str, customer_id: str | None) -> str:
    if kind in _URLS:
        return _URLS[kind].format(id=object_id)
    return _CUSTOMER_URL.format(customer_id=customer_id or object_id)


def payload(event: dict) -> dict:
    """The versioned JSON payload of one outbox event (``{"event_id", "type",
    "occurred_at", "account_id", "customer_id", "data"}``)."""
    data = dict(event.get("data") or {})
    if event.get("customer_id"):
        data.setdefault("customer_id", event["customer_id"])
    return {
        "id": event["event_id"],
        "type": event["type"],
        "created": event["occurred_at"],
        "api_version": API_VERSION,
        "account_id": event["account_id"],
        "data": data,
    }


def event_data(event_type: str, obj: dict, record: dict, **extra) -> dict:
    """``data`` of an event about ``obj`` (an object of the record view ``record``): the
    object, the customer it belongs to, and ``extra`` (what changed, a reason). Thin
    (``{"id", "url"}`` and ``"thin": true``) when the payload would exceed
    ``MAX_PAYLOAD_BYTES``."""
    kind = EVENT_TYPES[event_type].object
    data = {"object_type": kind, "object": obj, **extra}
    if kind != "customer":
        data["customer"] = {"id": record["id"], "email": record.get("email"),
                            "name": record.get("name")}
    # The envelope around data is a few hundred bytes: measured with a generous stand-in.
    envelope = 400
    if len(json.dumps(data, separators=(",", ":"), default=str)) + envelope > MAX_PAYLOAD_BYTES:
        data["object"] = {"id": obj["id"], "url": _url(kind, obj["id"], record["id"])}
        data["thin"] = True
    return data


def example_data(event_type: str) -> dict:
    """An example ``data`` of ``event_type`` (Zapier's sample before any real event)."""
    kind = EVENT_TYPES[event_type].object
    customer = {"id": "cst_01example0000000000000000", "email": "ada@example.com",
                "name": "Ada Lovelace"}
    obj = dict(_EXAMPLES[kind])
    data = {"object_type": kind, "object": obj}
    if kind != "customer":
        data["customer"] = customer
    if event_type == "payment.blocked_detail":
        data["blocked"] = [{"kind": "card", "label": "visa •••• 4242",
                            "processor_customer": None, "blocked_at": "2026-01-01T00:00:00Z"}]
    return data


_CARD_EXAMPLE = {"id": "card_example", "brand": "visa", "last4": "4242", "exp_month": 12,
                 "exp_year": 2030, "expired": False}
_SUB_EXAMPLE = {
    "id": "sub_example", "processor_ref": "stripe:sub_example",
    "processor_customer": "stripe:cus_example", "status": "active", "product": "Gold plan",
    "amount": 1500, "currency": "usd", "interval": "month", "interval_count": 1,
    "current_period_start": "2026-01-01T00:00:00Z", "current_period_end": "2026-02-01T00:00:00Z",
    "next_billing_at": "2026-02-01T00:00:00Z", "cancel_at": None, "canceled_at": None,
    "started_at": "2026-01-01T00:00:00Z", "missed_payments": 0, "card": _CARD_EXAMPLE,
    "card_id": "card_example"}
_EXAMPLES = {
    "customer": {"id": "cst_01example0000000000000000", "email": "ada@example.com",
                 "name": "Ada Lovelace", "phone": None, "address": None,
                 "created_at": "2026-01-01T00:00:00Z", "stats": {}, "card_on_file": None,
                 "cards": [], "subscriptions": [], "payment_plans": [], "orders": [],
                 "payments": [], "disputes": [], "planned_payments": [], "purchases": []},
    "order": {"id": "ord_example", "kind": "one_time", "description": "Ebook", "amount": 2500,
              "currency": "usd", "created_at": "2026-01-01T00:00:00Z", "status": "paid",
              "subscription_id": None, "payment_ids": ["pay_example"]},
    "payment": {"id": "pay_example", "status": "succeeded", "amount": 2500, "currency": "usd",
                "tax": None, "description": "Ebook", "lines": [], "number": None,
                "subscription": None, "invoice": None, "one_time": True, "card": None,
                "paid_at": "2026-01-01T00:00:00Z", "due_at": None, "refunded": 0,
                "refunds": [], "disputes": [], "processor_refs": ["stripe:pi_example"]},
    "refund": {"id": "rfd_example", "amount": 500, "status": "succeeded",
               "reason": "requested_by_customer", "created_at": "2026-01-01T00:00:00Z",
               "payment_id": "pay_example"},
    "dispute": {"id": "dsp_example", "amount": 2500, "currency": "usd",
                "status": "needs_response", "reason": "fraudulent"},
    "subscription": _SUB_EXAMPLE,
    "payment_plan": {**_SUB_EXAMPLE, "status": "completed", "installments_total": 3,
                     "installments_paid": 3, "amount_paid": 4500, "remaining_balance": 0,
                     "next_due_at": None, "next_due_amount": None},
    "card": _CARD_EXAMPLE,
}


# --- JSON Schema ---------------------------------------------------------------------------

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_NINT = {"type": ["integer", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_CURRENCY = {"type": ["string", "null"], "pattern": "^[a-z]{3}$"}
_CARD = {"type": ["object", "null"], "properties": {
    "id": _NSTR, "brand": _NSTR, "last4": _NSTR, "exp_month": _NINT, "exp_year": _NINT,
    "expired": {"type": "boolean"}}}


def _obj(required: list[str], properties: dict) -> dict:
    # Objects may gain fields within an API version; receivers ignore what they do not know.
    return {"type": "object", "required": required, "properties": properties,
            "additionalProperties": True}


_SUBSCRIPTION = _obj(
    ["id", "status", "amount", "currency", "interval"],
    {"id": {"type": "string", "pattern": "^sub_"}, "processor_ref": _NSTR,
     "processor_customer": _NSTR,
     "status": {"enum": ["active", "trialing", "past_due", "unpaid", "canceling", "canceled",
                         "paused", "incomplete", "incomplete_expired", "completed"]},
     "product": _NSTR, "amount": _NINT, "currency": _CURRENCY, "interval": _NSTR,
     "interval_count": _INT, "current_period_start": _TIME, "current_period_end": _TIME,
     "next_billing_at": _TIME, "cancel_at": _TIME, "canceled_at": _TIME, "started_at": _TIME,
     "missed_payments": _INT, "card": _CARD, "card_id": _NSTR})

OBJECT_SCHEMAS: dict[str, dict] = {
    "customer": _obj(
        ["id", "email", "created_at", "stats", "subscriptions", "payments", "orders"],
        {"id": {"type": "string", "pattern": "^cst_"}, "email": _NSTR, "name": _NSTR,
         "phone": _NSTR, "address": {"type": ["object", "null"]}, "created_at": _TIME,
         "stats": {"type": "object"}, "card_on_file": _CARD,
         "cards": {"type": "array", "items": _CARD},
         "subscriptions": {"type": "array"}, "payment_plans": {"type": "array"},
         "orders": {"type": "array"}, "payments": {"type": "array"},
         "disputes": {"type": "array"}}),
    "order": _obj(
        ["id", "kind", "amount", "currency", "status", "payment_ids"],
        {"id": {"type": "string", "pattern": "^ord_"},
         "kind": {"enum": ["one_time", "subscription", "payment_plan"]},
         "description": _NSTR, "amount": _NINT, "currency": _CURRENCY, "created_at": _TIME,
         "status": _STR, "subscription_id": _NSTR,
         "payment_ids": {"type": "array", "items": _STR}}),
    "payment": _obj(
        ["id", "status", "amount", "currency", "refunded", "processor_refs"],
        {"id": {"type": "string", "pattern": "^pay_"},
         "status": {"enum": ["succeeded", "failed", "requires_action", "pending"]},
         "amount": _NINT, "currency": _CURRENCY, "tax": _NINT, "description": _NSTR,
         "lines": {"type": "array"}, "number": _NSTR, "subscription": _NSTR,
         "invoice": _NSTR, "one_time": {"type": "boolean"}, "card": _CARD,
         "paid_at": _TIME, "due_at": _TIME, "refunded": _NINT,
         "refunds": {"type": "array"}, "disputes": {"type": "array"},
         "processor_refs": {"type": "array", "items": _STR}}),
    "refund": _obj(
        ["id", "amount", "status", "payment_id"],
        {"id": {"type": "string", "pattern": "^rfd_"}, "amount": _NINT, "status": _NSTR,
         "reason": _NSTR, "created_at": _TIME, "payment_id": _NSTR}),
    "dispute": _obj(
        ["id", "amount", "currency", "status"],
        {"id": {"type": "string", "pattern": "^dsp_"}, "amount": _NINT,
         "currency": _CURRENCY, "status": _NSTR, "reason": _NSTR}),
    "subscription": _SUBSCRIPTION,
    "payment_plan": {**_SUBSCRIPTION, "required": _SUBSCRIPTION["required"] + [
        "installments_total", "installments_paid", "remaining_balance"],
        "properties": {**_SUBSCRIPTION["properties"], "installments_total": _INT,
                       "installments_paid": _INT, "amount_paid": _INT,
                       "remaining_balance": _INT, "next_due_at": _TIME,
                       "next_due_amount": _NINT}},
    "card": _obj(["id", "brand", "last4", "exp_month", "exp_year"], _CARD["properties"]),
}

_THIN = _obj(["id", "url"], {"id": _STR, "url": {"type": "string", "pattern": "^/api/v1/"}})
_PERSON = _obj(["id"], {"id": {"type": "string", "pattern": "^cst_"}, "email": _NSTR,
                        "name": _NSTR})


# What else an event's data carries, by type.
_BLOCKED = {"type": "array", "minItems": 1, "description": "The blocked details the payment "
            "was made by (a card is named by brand and last four digits, never its number).",
            "items": _obj(["kind", "blocked_at"], {
                "kind": {"enum": ["card", "customer"]}, "label": _NSTR,
                "processor_customer": _NSTR, "blocked_at": _TIME})}
_EXTRA = {"payment.blocked_detail": {"blocked": _BLOCKED}}
# Written with their object by another part's reaction to a record's change.
_WITH_OBJECT = {"payment.blocked_detail": ["blocked"]}


def _event_schema(event_type: str) -> dict:
    kind = EVENT_TYPES[event_type].object
    # An event derived from a record's change always carries its object; one written by
    # another part (a block, the scheduler) may carry only ids (data.customer_id, …).
    data_required = ["object_type", "object"] + ([] if kind == "customer" else ["customer"]) \
        if event_type in DERIVED or event_type in _WITH_OBJECT else []
    data_required += _WITH_OBJECT.get(event_type, [])
    data = _obj(data_required, {**_EXTRA.get(event_type, {}),
        "object_type": {"const": kind},
        "object": {"oneOf": [OBJECT_SCHEMAS[kind], {**_THIN, "additionalProperties": False}]},
        "customer": _PERSON, "customer_id": _STR, "thin": {"const": True},
        "changed_fields": {"type": "array", "items": _STR,
                           "description": "The fields of the object this change set."},
    })
    return {
        "title": event_type, "description": EVENT_TYPES[event_type].description,
        "type": "object", "required": ["id", "type", "created", "api_version", "account_id",
                                       "data"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": "^evt_"}, "type": {"const": event_type},
            "created": {"type": "string", "format": "date-time"},
            "api_version": {"const": API_VERSION}, "account_id": _STR, "data": data,
            "example": {"type": "boolean"}},
    }


def schema() -> dict:
    """The catalogue as one JSON Schema: an event is one of ``$defs`` (by ``type``)."""
    defs = {name: _event_schema(name) for name in EVENT_TYPES}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:billing-portal:events:{API_VERSION}",
        "title": "Billing portal events",
        "description": "Every event an endpoint, Zapier or an EventBridge bus receives. "
                       f"Payloads are at most {MAX_PAYLOAD_BYTES} bytes; a larger object is "
                       "sent thin (its id and API URL, data.thin true).",
        "$defs": defs,
        "oneOf": [{"$ref": f"#/$defs/{name}"} for name in EVENT_TYPES],
    }


if __name__ == "__main__":  # python -m chalicelib.integrations.catalogue > docs/events/schema.json
    print(json.dumps(schema(), indent=2, ensure_ascii=False))
