"""The Stripe stand-in's subscription, customer and Radar calls that localstripe lacks
(part of devstack/stripe_shim.py's proxy; dev stack and tests only).

What Stripe documents, and this module does in front of localstripe:

- ``POST /v1/subscriptions/{id}`` with ``pause_collection[behavior]`` (``keep_as_draft``,
  ``mark_uncollectible``, ``void``) and optional ``pause_collection[resumes_at]`` (a future
  time), or ``pause_collection=`` (empty) to resume. The status stays as it was; the
  subscription reports ``pause_collection`` (null when collecting).
- A plan change, ``items[0][id]=si_…&items[0][price]=…`` with ``proration_behavior``
  (``create_prorations``, the default, or ``none``) and optional ``proration_date``
  (within the current period). Stripe prorates by time: a credit for the unused time of
  the old price and a charge for the remaining time of the new one, as pending invoice
  items of the next invoice. localstripe credits whole past invoices; this module replaces
  its items with Stripe's. ``always_invoice`` and several items are refused (400): the
  product sends neither.
- ``POST /v1/invoices/create_preview`` with ``subscription`` and ``subscription_details``
  (``items``, ``proration_behavior``, ``proration_date``): the next invoice with the same
  proration lines the change would create, and its ``subscription_proration_date``.
- ``DELETE /v1/subscriptions/{id}`` with ``prorate`` (a pending credit for the unused time)
  and ``invoice_now`` (a final invoice of the pending items now); ``cancellation_details``
  is accepted. Already canceled → 400 as Stripe answers.
- Listing prices (``GET /v1/prices``, localstripe has plans only):
  devstack/stripe_shim_prices.py, answered from here.
- Radar value lists and their items (``/v1/radar/value_lists``,
  ``/v1/radar/value_list_items``), kept here: unique aliases, item types, values checked
  for the list's type, a value listed once.

Errors have Stripe's shape: ``{"error": {"type": "invalid_request_error", "message",
"param"}}`` with 400 (or 404 for an unknown object).
"""
from __future__ import annotations

import json
import secrets
import time
import urllib.parse

from aiohttp import web

from devstack import stripe_shim_prices as prices

# subscription id → its pause_collection (Stripe's shape).
paused: dict[str, dict] = {}
# subscription id → when it was cancelled (localstripe leaves canceled_at empty).
canceled_at: dict[str, int] = {}
# Radar: value list id → list; value list item id → item.
value_lists: dict[str, dict] = {}
value_list_items: dict[str, dict] = {}

PAUSE_BEHAVIORS = ("keep_as_draft", "mark_uncollectible", "void")
PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
ITEM_TYPES = ("card_bin", "card_fingerprint", "case_sensitive_string", "country",
              "customer_id", "email", "ip_address", "sepa_debit_fingerprint", "string",
              "us_bank_account_fingerprint")


class StripeRefusal(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.status = message, param, status

    def response(self) -> tuple[int, bytes, str]:
        error = {"type": "invalid_request_error", "message": self.message}
        if self.param:
            error["param"] = self.param
        return self.status, json.dumps({"error": error}).encode(), "application/json"


def _json(obj: dict, status: int = 200) -> tuple[int, bytes, str]:
    return status, json.dumps(obj).encode(), "application/json"


def _bool(form: dict, name: str) -> bool | None:
    value = form.pop(name, [None])[0]
    if value is None:
        return None
    if value not in ("true", "false"):
        raise StripeRefusal(f"Invalid boolean: {value}", name)
    return value == "true"


def _int(value: str | None, param: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise StripeRefusal(f"Invalid integer: {value}", param) from None


# --- reading localstripe ----------------------------------------------------------------

async def _get(forward, request, path: str) -> dict:
    status, body, _ = await forward(request, "GET", path, b"", own_key=True)
    if status == 404:
        raise StripeRefusal(f"No such object: '{path.rsplit('/', 1)[-1]}'", "id", 404)
    if status != 200:
        raise StripeRefusal(f"Upstream answered {status}", None, 500)
    return json.loads(body)


async def _post(forward, request, path: str, fields: dict) -> dict:
    body = urllib.parse.urlencode(fields).encode()
    status, payload, _ = await forward(request, "POST", path, body, own_key=True)
    if status != 200:
        raise StripeRefusal(f"Upstream answered {status}: {payload[:200]!r}", None,
                            status if status < 500 else 500)
    return json.loads(payload)


# --- proration ------------------------------------------------------------------------------

def _period(sub: dict) -> tuple[int, int]:
    return int(sub["current_period_start"]), int(sub["current_period_end"])


def _item(sub: dict) -> dict:
    items = (sub.get("items") or {}).get("data") or []
    if len(items) != 1:
        raise StripeRefusal("The dev stand-in handles subscriptions of one item only.", "items")
    return items[0]


def proration_lines(sub: dict, new_plan: dict, when: int) -> list[dict]:
    """Stripe's two proration items of a price change at ``when``: the unused time of the
    old price credited, the remaining time of the new one charged (rounded to the unit)."""
    start, end = _period(sub)
    item = _item(sub)
    old_plan, quantity = item["plan"], int(item.get("quantity") or 1)
    if end <= start or when >= end:
        return []
    share = (end - when) / (end - start)
    return [
        {"amount": -round(old_plan["amount"] * quantity * share), "currency": old_plan["currency"],
         "description": f"Unused time on {quantity} × {old_plan['id']}", "proration": True,
         "period": {"start": when, "end": end}, "plan": old_plan["id"]},
        {"amount": round(new_plan["amount"] * quantity * share), "currency": new_plan["currency"],
         "description": f"Remaining time on {quantity} × {new_plan['id']}", "proration": True,
         "period": {"start": when, "end": end}, "plan": new_plan["id"]},
    ]


def _proration_date(value: str | None, sub: dict, param: str) -> int:
    when = _int(value, param)
    start, end = _period(sub)
    if when is None:
        return min(max(int(time.time()), start), end)
    if not start <= when <= end:
        raise StripeRefusal("proration_date must be within the subscription's current period.",
                            param)
    return when


def _new_price(form: dict, prefix: str, sub: dict) -> str | None:
    """The price of ``<prefix>[0]`` (Stripe's ``price``, or the older ``plan``); refuses a
    change of another item, or of several."""
    indexes = {k[len(prefix):].split("]", 1)[0].lstrip("[") for k in form if k.startswith(prefix)}
    if not indexes:
        return None
    if indexes != {"0"}:
        raise StripeRefusal("The dev stand-in handles one item only.", prefix)
    item_id = form.get(f"{prefix}[0][id]", [None])[0]
    if item_id is not None and item_id != _item(sub)["id"]:
        raise StripeRefusal(f"No such subscription item: '{item_id}'", f"{prefix}[0][id]")
    price = (form.get(f"{prefix}[0][price]") or form.get(f"{prefix}[0][plan]") or [None])[0]
    if not price:
        raise StripeRefusal("Missing required param: price.", f"{prefix}[0][price]")
    return price


async def subscription_update(forward, request, sub_id: str, form: dict) -> dict:
    """Apply what localstripe lacks of a subscription update; returns the rest of ``form``
    for localstripe (the caller forwards it)."""
    form = dict(form)
    if "pause_collection" in form or any(k.startswith("pause_collection[") for k in form):
        await _get(forward, request, f"/v1/subscriptions/{sub_id}")  # 404 if unknown
        _pause(sub_id, form)
    proration = form.pop("proration_behavior", [None])[0]
    proration_date = form.pop("proration_date", [None])[0]
    form.pop("payment_behavior", None)
    if proration is not None and proration not in PRORATION_BEHAVIORS:
        raise StripeRefusal(f"Invalid proration_behavior: {proration}", "proration_behavior")
    if not any(k.startswith("items[") for k in form):
        return form
    sub = await _get(forward, request, f"/v1/subscriptions/{sub_id}")
    if sub.get("status") in ("canceled", "incomplete_expired"):
        raise StripeRefusal("A canceled subscription can only update its cancellation_details "
                            "and metadata.", "items")
    price = _new_price(form, "items", sub)
    for key in [k for k in form if k.startswith("items[")]:
        del form[key]
    if proration == "always_invoice":
        raise StripeRefusal("The dev stand-in does not handle always_invoice.",
                            "proration_behavior")
    new_plan = await _get(forward, request, f"/v1/plans/{urllib.parse.quote(price)}")
    if new_plan["currency"] != _item(sub)["plan"]["currency"]:
        raise StripeRefusal("Cannot combine currencies on a single customer.", "items[0][price]")
    if new_plan.get("interval") != _item(sub)["plan"].get("interval") or \
            new_plan.get("interval_count") != _item(sub)["plan"].get("interval_count"):
        raise StripeRefusal("The dev stand-in changes only to a price of the same interval.",
                            "items[0][price]")
    when = _proration_date(proration_date, sub, "proration_date")
    lines = proration_lines(sub, new_plan, when) if proration != "none" else []
    if new_plan["id"] == _item(sub)["plan"]["id"]:
        return form
    before = {ii["id"] for ii in await _pending_items(forward, request, sub["customer"])}
    await _post(forward, request, f"/v1/subscriptions/{sub_id}", {
        "items[0][id]": _item(sub)["id"], "items[0][plan]": new_plan["id"]})
    # localstripe's own "unused time" items (whole past invoices): Stripe's instead.
    for ii in await _pending_items(forward, request, sub["customer"]):
        if ii["id"] not in before and ii.get("subscription") == sub_id:
            await forward(request, "DELETE", f"/v1/invoiceitems/{ii['id']}", b"", own_key=True)
    for line in lines:
        await _post(forward, request, "/v1/invoiceitems", {
            "customer": sub["customer"], "subscription": sub_id, "amount": line["amount"],
            "currency": line["currency"], "description": line["description"],
            "proration": "true", "period_start": line["period"]["start"],
            "period_end": line["period"]["end"]})
    return form


async def _pending_items(forward, request, customer: str) -> list[dict]:
    listed = await _get(forward, request, f"/v1/invoiceitems?customer={customer}&limit=100")
    return listed.get("data") or []


def _pause(sub_id: str, form: dict) -> None:
    if form.pop("pause_collection", [None])[0] == "":
        if any(k.startswith("pause_collection[") for k in form):
            raise StripeRefusal("pause_collection cannot be both empty and set.", "pause_collection")
        paused.pop(sub_id, None)
        return
    behavior = form.pop("pause_collection[behavior]", [None])[0]
    resumes_at = _int(form.pop("pause_collection[resumes_at]", [None])[0],
                      "pause_collection[resumes_at]")
    unknown = [k for k in form if k.startswith("pause_collection[")]
    if unknown:
        raise StripeRefusal(f"Received unknown parameter: {unknown[0]}", unknown[0])
    if behavior not in PAUSE_BEHAVIORS:
        raise StripeRefusal(f"Invalid pause_collection[behavior]: must be one of "
                            f"{', '.join(PAUSE_BEHAVIORS)}", "pause_collection[behavior]")
    if resumes_at is not None and resumes_at <= int(time.time()):
        raise StripeRefusal("pause_collection[resumes_at] must be in the future.",
                            "pause_collection[resumes_at]")
    paused[sub_id] = {"behavior": behavior, "resumes_at": resumes_at}


def decorate_subscription(sub: dict) -> None:
    if sub.get("object") == "subscription":
        sub["pause_collection"] = paused.get(sub.get("id"))
        sub["canceled_at"] = sub.get("canceled_at") or canceled_at.get(sub.get("id"))


# --- previews -------------------------------------------------------------------------------

async def create_preview(forward, request, form: dict) -> tuple[int, bytes, str] | None:
    """Stripe's invoice preview of a subscription change; None: localstripe's own (no
    change asked)."""
    if not any(k.startswith("subscription_details[") for k in form):
        return None
    sub_id = form.get("subscription", [None])[0]
    if not sub_id:
        raise StripeRefusal("Missing required param: subscription.", "subscription")
    sub = await _get(forward, request, f"/v1/subscriptions/{sub_id}")
    customer = form.get("customer", [None])[0]
    if customer and customer != sub["customer"]:
        raise StripeRefusal("The subscription does not belong to this customer.", "customer")
    proration = form.get("subscription_details[proration_behavior]", ["create_prorations"])[0]
    if proration not in ("create_prorations", "none"):
        raise StripeRefusal(f"Invalid subscription_details[proration_behavior]: {proration}",
                            "subscription_details[proration_behavior]")
    price = _new_price(form, "subscription_details[items]", sub) or _item(sub)["plan"]["id"]
    new_plan = await _get(forward, request, f"/v1/plans/{urllib.parse.quote(price)}")
    when = _proration_date(form.get("subscription_details[proration_date]", [None])[0], sub,
                           "subscription_details[proration_date]")
    start, end = _period(sub)
    quantity = int(_item(sub).get("quantity") or 1)
    lines = proration_lines(sub, new_plan, when) if (
        proration != "none" and new_plan["id"] != _item(sub)["plan"]["id"]) else []
    pending = [{"amount": ii["amount"], "currency": ii["currency"],
                "description": ii.get("description"), "proration": bool(ii.get("proration")),
                "period": ii.get("period")}
               for ii in await _pending_items(forward, request, sub["customer"])]
    next_period = end + (end - start)
    lines = pending + lines + [{
        "amount": new_plan["amount"] * quantity, "currency": new_plan["currency"],
        "description": f"{quantity} × {new_plan['id']}", "proration": False,
        "period": {"start": end, "end": next_period}, "plan": new_plan["id"]}]
    data = [{"object": "line_item", "id": f"il_tmp_{secrets.token_hex(6)}", "type": (
        "invoiceitem" if line["proration"] else "subscription"), **line} for line in lines]
    total = sum(line["amount"] for line in lines)
    return _json({
        "object": "invoice", "id": f"upcoming_in_{secrets.token_hex(7)}",
        "customer": sub["customer"], "subscription": sub_id, "currency": new_plan["currency"],
        "status": "draft", "period_start": start, "period_end": end,
        "next_payment_attempt": end, "subscription_proration_date": when,
        "lines": {"object": "list", "data": data, "has_more": False, "total_count": len(data)},
        "subtotal": total, "total": total, "amount_due": max(total, 0),
        "starting_balance": 0, "livemode": False})


# --- cancelling now ------------------------------------------------------------------------

async def cancel(forward, request, sub_id: str, query: dict) -> tuple[int, bytes, str]:
    prorate = _bool(query, "prorate")
    invoice_now = _bool(query, "invoice_now")
    for key in [k for k in query if k.startswith("cancellation_details[")]:
        if key not in ("cancellation_details[comment]", "cancellation_details[feedback]"):
            raise StripeRefusal(f"Received unknown parameter: {key}", key)
        del query[key]
    query.pop("expand[]", None)
    if query:
        key = next(iter(query))
        raise StripeRefusal(f"Received unknown parameter: {key}", key)
    sub = await _get(forward, request, f"/v1/subscriptions/{sub_id}")
    if sub.get("status") in ("canceled", "incomplete_expired"):
        raise StripeRefusal(f"A canceled subscription can only update its cancellation_details "
                            f"and metadata. ({sub_id})", "subscription")
    start, end = _period(sub)
    now = int(time.time())
    status, payload, content_type = await forward(
        request, "DELETE", f"/v1/subscriptions/{sub_id}", b"", own_key=True)
    if status != 200:
        return status, payload, content_type
    if prorate and now < end:
        plan = _item(sub)["plan"]
        quantity = int(_item(sub).get("quantity") or 1)
        credit = -round(plan["amount"] * quantity * (end - now) / (end - start))
        if credit:
            await _post(forward, request, "/v1/invoiceitems", {
                "customer": sub["customer"], "subscription": sub_id, "amount": credit,
                "currency": plan["currency"], "proration": "true",
                "description": f"Unused time on {quantity} × {plan['id']}",
                "period_start": now, "period_end": end})
    if not (prorate or invoice_now):
        # Stripe: "pending prorations are removed if invoice_now and prorate are both false".
        for ii in await _pending_items(forward, request, sub["customer"]):
            if ii.get("subscription") == sub_id and ii.get("proration"):
                await forward(request, "DELETE", f"/v1/invoiceitems/{ii['id']}", b"",
                              own_key=True)
    if invoice_now and await _pending_items(forward, request, sub["customer"]):
        await _post(forward, request, "/v1/invoices", {"customer": sub["customer"]})
    canceled = json.loads(payload)
    canceled_at[sub_id] = now
    paused.pop(sub_id, None)
    decorate_subscription(canceled)
    return _json(canceled)


# --- Radar value lists ---------------------------------------------------------------------

def _list_of(objects: list[dict], url: str) -> dict:
    return {"object": "list", "url": url, "has_more": False, "data": objects}


def _valid_value(item_type: str, value: str) -> bool:
    if not value or len(value) > 800:
        return False
    if item_type == "email":
        return "@" in value and " " not in value
    if item_type == "customer_id":
        return value.startswith("cus_")
    if item_type == "country":
        return len(value) == 2 and value.isalpha()
    return True


def _one(form: dict, name: str) -> str | None:
    return form.get(name, [None])[0]


def radar(method: str, parts: list[str], form: dict) -> tuple[int, bytes, str]:
    """``parts``: the path after ``/v1/radar/``."""
    kind = parts[0]
    if kind == "value_lists":
        return _value_lists(method, parts[1:], form)
    if kind == "value_list_items":
        return _value_list_items(method, parts[1:], form)
    raise StripeRefusal("Unrecognized request URL.", None, 404)


def _value_list(list_id: str | None) -> dict:
    found = value_lists.get(list_id or "")
    if found is None:
        raise StripeRefusal(f"No such value list: '{list_id}'", "value_list", 404)
    return found


def _value_lists(method: str, rest: list[str], form: dict) -> tuple[int, bytes, str]:
    if method == "POST" and not rest:
        alias, name = _one(form, "alias"), _one(form, "name")
        item_type = _one(form, "item_type") or "string"
        if not alias:
            raise StripeRefusal("Missing required param: alias.", "alias")
        if not name:
            raise StripeRefusal("Missing required param: name.", "name")
        if item_type not in ITEM_TYPES:
            raise StripeRefusal(f"Invalid item_type: {item_type}", "item_type")
        if any(v["alias"] == alias for v in value_lists.values()):
            raise StripeRefusal(f"A value list with alias '{alias}' already exists.", "alias")
        found = {"id": f"rsl_{secrets.token_hex(8)}", "object": "radar.value_list",
                 "alias": alias, "name": name, "item_type": item_type,
                 "created": int(time.time()), "created_by": "api", "livemode": False,
                 "metadata": {}}
        value_lists[found["id"]] = found
        return _json(_with_items(found))
    if method == "GET" and not rest:
        alias = _one(form, "alias")
        found = [v for v in value_lists.values() if alias is None or v["alias"] == alias]
        return _json(_list_of([_with_items(v) for v in found], "/v1/radar/value_lists"))
    if method == "GET" and len(rest) == 1:
        return _json(_with_items(_value_list(rest[0])))
    if method == "DELETE" and len(rest) == 1:
        _value_list(rest[0])
        del value_lists[rest[0]]
        for item_id in [i for i, v in value_list_items.items() if v["value_list"] == rest[0]]:
            del value_list_items[item_id]
        return _json({"id": rest[0], "object": "radar.value_list", "deleted": True})
    raise StripeRefusal("Unrecognized request URL.", None, 404)


def _with_items(found: dict) -> dict:
    items = [i for i in value_list_items.values() if i["value_list"] == found["id"]]
    return {**found, "list_items": _list_of(items, "/v1/radar/value_list_items")}


def _value_list_items(method: str, rest: list[str], form: dict) -> tuple[int, bytes, str]:
    if method == "POST" and not rest:
        value_list = _value_list(_one(form, "value_list"))
        value = _one(form, "value") or ""
        if not _valid_value(value_list["item_type"], value):
            raise StripeRefusal(f"Invalid value for a list of type {value_list['item_type']}: "
                                f"'{value}'", "value")
        if value_list["item_type"] == "email":
            value = value.lower()
        if any(i["value_list"] == value_list["id"] and i["value"] == value
               for i in value_list_items.values()):
            raise StripeRefusal(f"The value '{value}' already exists in this list.", "value")
        item = {"id": f"rsli_{secrets.token_hex(8)}", "object": "radar.value_list_item",
                "value": value, "value_list": value_list["id"], "created": int(time.time()),
                "created_by": "api", "livemode": False}
        value_list_items[item["id"]] = item
        return _json(item)
    if method == "GET" and not rest:
        value_list = _value_list(_one(form, "value_list"))
        value = _one(form, "value")
        if value is not None and value_list["item_type"] == "email":
            value = value.lower()
        found = [i for i in value_list_items.values() if i["value_list"] == value_list["id"]
                 and (value is None or i["value"] == value)]
        return _json(_list_of(found, "/v1/radar/value_list_items"))
    if len(rest) == 1 and rest[0] in value_list_items:
        if method == "GET":
            return _json(value_list_items[rest[0]])
        if method == "DELETE":
            del value_list_items[rest[0]]
            return _json({"id": rest[0], "object": "radar.value_list_item", "deleted": True})
    if len(rest) == 1:
        raise StripeRefusal(f"No such value list item: '{rest[0]}'", "id", 404)
    raise StripeRefusal("Unrecognized request URL.", None, 404)


async def handle(forward, request: web.Request, parts: list[str],
                 body: bytes) -> tuple[int, bytes, str] | None:
    """The calls this module answers itself; None for the rest."""
    method = request.method
    listed = await prices.handle(forward, request, parts)  # devstack/stripe_shim_prices.py
    if listed is not None:
        return listed
    form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True) if body else {}
    query = urllib.parse.parse_qs(request.query_string, keep_blank_values=True)
    try:
        if parts[1:2] == ["radar"] and len(parts) >= 3:
            return radar(method, parts[2:], {**query, **form})
        if method == "POST" and parts[1:] == ["invoices", "create_preview"]:
            return await create_preview(forward, request, {**query, **form})
        if method == "DELETE" and len(parts) == 3 and parts[1] == "subscriptions":
            return await cancel(forward, request, parts[2], {**query, **form})
    except StripeRefusal as refusal:
        return refusal.response()
    return None
