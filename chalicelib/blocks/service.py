"""Blocked customer details: what a block stops, and what the record page shows of it.

A merchant blocks a customer's e-mail address, cards (by the processor's card fingerprint:
the same card saved again, or by someone else, is the same card) and processor customer
ids, one by one or all at once (chalicelib/actions/customer.py runs the block and unblock
actions; chalicelib/store/blocks.py keeps one item per detail with its log). Effects:

- a blocked e-mail gets no portal sign-in link; the request answers exactly as for an
  unknown address (``email_blocked``, asked by the portal's sign-in audience);
- a customer whose e-mail or a processor customer is blocked cannot use the portal's
  self-service (``check_self_service``: 403 with ``SELF_SERVICE_BLOCKED``);
- a payment by a blocked card or processor customer raises a flag on the record page.
  This is worked out when the page is read (``record_view``: one Query of the account's
  blocks per page), so a block or unblock changes the flags of every record at once. A
  payment flags when it was paid at or after the detail was blocked, by a blocked
  processor customer of the record, or with a blocked card: matched by the processor's
  card fingerprint, which a payment keeps from the processor's charge (or its payment
  method): so a card blocked on one record flags its payments on any other record, and
  two cards that merely share brand and last four digits are told apart. Only a payment
  recorded before payments kept the fingerprint (none known) is matched the old way, by
  the brand and last four digits of a card of the record that is blocked;
- such a payment also writes ``payment.blocked_detail`` to the outbox for the
  integrations, once per payment, when it is recorded (``react``, a records reaction: the
  webhook's write reads the payment's block items first, see ``blocked_for_payments``);
- with the account setting ``blocks.push_to_radar``, a block is also put on the Stripe
  Radar value list of its kind, and an unblock takes it off (``gateway.block_value``).
"""
from __future__ import annotations

from chalicelib import ids
from chalicelib.errors import NotFound
from chalicelib.records import service as records
from chalicelib.records.reactions import Change, Context, Effects
from chalicelib.store import accounts as account_store
from chalicelib.store import blocks as store
from chalicelib.timeutil import iso_from_epoch

SELF_SERVICE_BLOCKED = ("Changes to your account cannot be made here. Please contact our "
                        "support team.")
# The kinds the processor gateway knows for its own block lists (processors.gateway).
RADAR_KIND = {"email": "email", "card": "card_fingerprint", "customer": "customer_id"}


def push_to_radar(account: dict) -> bool:
    """Whether the account asks for its blocks on the processor's block lists too."""
    return bool(((account.get("settings") or {}).get("blocks") or {}).get("push_to_radar"))


def set_push_to_radar(account_id: str, on: bool) -> bool:
    """Turn ``blocks.push_to_radar`` on or off (the dashboard's settings page); the value
    before. Only blocks and unblocks made from then on go to Radar (nothing is copied)."""
    account = account_store.get(account_id)
    if account is None:
        raise NotFound("There is no such account.")
    before = push_to_radar(account)
    settings = dict(account.get("settings") or {})
    settings["blocks"] = {**(settings.get("blocks") or {}), "push_to_radar": bool(on)}
    account_store.update_settings(account_id, settings)
    return before


def email_blocked(account_id: str, email: str | None) -> bool:
    """Whether this (normalized) address is blocked in the account."""
    normalized = records.normalize_email(email)
    return bool(normalized) and store.is_blocked(account_id, "email", normalized)


def customer_details(overview: dict) -> list[tuple[str, str]]:
    """The e-mail and processor customers of a record (its overview) as block details."""
    details = []
    email = records.normalize_email(overview.get("email"))
    if email:
        details.append(("email", email))
    details += [("customer", ref) for ref in overview.get("processor_ids") or []]
    return details


def customer_blocked(account_id: str, customer_id: str) -> bool:
    """Whether the customer's e-mail or one of its processor customers is blocked."""
    overview, _ = records.get_overview(account_id, customer_id, 1)
    if overview is None:
        return False
    found = store.get_many(account_id, customer_details(overview), consistent=True)
    return any(b.blocked for b in found.values())


def check_self_service(account_id: str, customer_id: str) -> None:
    """Forbidden (403) for a blocked customer's self-service action."""
    from chalicelib.errors import Forbidden

    if customer_blocked(account_id, customer_id):
        raise Forbidden(SELF_SERVICE_BLOCKED, code="customer_blocked")


def blocked_at(block: store.Block) -> str | None:
    """When the detail was last blocked (its log's newest block entry)."""
    return next((e.get("at") for e in reversed(block.log) if e.get("action") == "block"), None)


def _entry_public(entry: dict) -> dict:
    return {k: entry.get(k) for k in ("action", "at", "by", "by_email", "reason")}


def _public(block: store.Block | None) -> dict | None:
    if block is None:
        return None
    return {"kind": block.kind, "value": block.value if block.kind != "card" else None,
            "label": block.label, "blocked": block.blocked,
            "blocked_at": blocked_at(block) if block.blocked else None,
            "log": [_entry_public(e) for e in reversed(block.log)]}


def record_cards(overview: dict) -> dict[str, dict]:
    """The record's cards by id: its saved cards, and the cards its subscriptions are
    charged to (the record may know a card only from its subscription)."""
    cards = {c["id"]: c for c in overview.get("cards") or [] if c.get("id")}
    for sub in (overview.get("subscriptions") or []) + (overview.get("payment_plans") or []):
        if sub.get("card_id") and sub["card_id"] not in cards:
            cards[sub["card_id"]] = {**(sub.get("card") or {}), "id": sub["card_id"]}
    return cards


def card_label(card: dict | None) -> str | None:
    if not card or not card.get("last4"):
        return None
    return f"{card.get('brand') or 'card'} •••• {card['last4']}"


def record_view(account_id: str, overview: dict, payments: list[dict] | None) -> dict:
    """What the record page shows of blocks: each detail's state and log (newest first),
    and the payments paid by a blocked card or processor customer since its block.
    ``payments``: the record's, with their ``card_fingerprint``
    (``records.get_record(…, card_fingerprints=True)``)."""
    by_detail = {(b.kind, b.value): b for b in store.list_all(account_id)}
    email = records.normalize_email(overview.get("email"))
    email_block = by_detail.get(("email", email)) if email else None
    customers = {ref: _public(by_detail.get(("customer", ref)))
                 for ref in overview.get("processor_ids") or []}
    card_blocks = {}
    for block in by_detail.values():
        if block.kind == "card":
            for card_id in block.card_ids:
                card_blocks[card_id] = block
    cards = {card_id: _public(card_blocks.get(card_id)) for card_id in record_cards(overview)}
    flagged = []
    customer_since = min((blocked_at(b) or "" for ref in overview.get("processor_ids") or []
                          if (b := by_detail.get(("customer", ref))) and b.blocked),
                         default=None)
    ours = set(cards)
    by_fingerprint = {b.value: blocked_at(b) or "" for b in by_detail.values()
                      if b.kind == "card" and b.blocked}
    # Payments recorded before they kept the fingerprint: the record's blocked cards by
    # brand and last four digits.
    by_label = {b.label: blocked_at(b) or "" for b in by_detail.values()
                if b.kind == "card" and b.blocked and b.label and ours & set(b.card_ids)}
    for p in payments or []:
        if p.get("status") != "succeeded" or not p.get("paid_at"):
            continue
        why = []
        if customer_since is not None and p["paid_at"] >= customer_since:
            why.append("blocked processor customer")
        label = card_label(p.get("card"))
        fingerprint = p.get("card_fingerprint")
        since = by_fingerprint.get(fingerprint) if fingerprint else by_label.get(label)
        if since is not None and p["paid_at"] >= since:
            why.append(f"blocked card {label or ''}".strip())
        if why:
            flagged.append({"payment_id": p["id"], "paid_at": p["paid_at"],
                            "amount": p.get("amount"), "currency": p.get("currency"),
                            "why": why})
    any_blocked = any(v and v["blocked"] for v in
                      [_public(email_block), *customers.values(), *cards.values()])
    # A card the record knows only by id (from its subscription) is named by its block.
    card_rows = [{"id": card_id, "label": card_label(card) or (cards[card_id] or {}).get("label")
                  or "Card", "block": cards[card_id]}
                 for card_id, card in record_cards(overview).items()]
    return {"email": _public(email_block), "customers": customers,
            # By the processor's own id, as the record page lists processor customers.
            "customers_by_id": {ref.partition(":")[2]: b for ref, b in customers.items()},
            "cards": cards,
            "card_rows": card_rows, "flagged_payments": flagged, "any_blocked": any_blocked}


# --- a payment by a blocked detail, as it is recorded: the integrations' event -------------

BLOCKED_PAYMENT_EVENT = "payment.blocked_detail"


def newly_paid(changes: list[Change]) -> list[Change]:
    """The payments a record's write makes succeed, or learns the card of once succeeded
    (an invoice's payment is told first, its charge's card by the intent's event)."""
    return [c for c in changes if c.kind == "PAY" and c.after.get("status") == "succeeded"
            and (c.became("status") or c.became("card_fingerprint"))]


def blocked_for_payments(account_id: str, changes: list[Change], processor_ids: list[str],
                         method_fingerprints: dict[str, str]) -> dict[str, list[dict]]:
    """The blocked details of each payment this write makes succeed, by the payment
    fact's id, for ``react`` (through ``Context.blocked``: a reaction reads nothing).

    Read by the record's writer before its transaction, and only when a payment succeeds
    in it and the account blocks any card or processor customer (``store.
    payment_blocks_possible``: the account's block index, which this container keeps for
    a minute): one BatchGetItem of the record's processor customers and the payment's
    card fingerprint (its own, else its payment method's). So a write with no payment
    success reads nothing, nor does a payment of an account that blocks nothing (a
    minute after its first block at most, a container may still think so: that payment
    is still flagged on the record page). A detail counts when it is blocked now;
    ``react`` keeps those blocked at or before the payment."""
    paid = newly_paid(changes)
    if not paid or not store.payment_blocks_possible(account_id):
        return {}
    fingerprints = {c.fact_id: c.after.get("card_fingerprint")
                    or method_fingerprints.get(c.after.get("payment_method")) for c in paid}
    details = [("customer", ref) for ref in processor_ids] + \
        [("card", fp) for fp in fingerprints.values() if fp]
    if not details:
        return {}
    found = store.get_many(account_id, details, consistent=True)
    out: dict[str, list[dict]] = {}
    for change in paid:
        hits = [{"kind": "customer", "label": None, "processor_customer": ref,
                 "blocked_at": blocked_at(b)}
                for ref in processor_ids if (b := found.get(("customer", ref))) and b.blocked]
        card = found.get(("card", fingerprints[change.fact_id] or ""))
        if card is not None and card.blocked:
            hits.append({"kind": "card", "processor_customer": None,
                         "label": card_label(change.after.get("card")) or card.label,
                         "blocked_at": blocked_at(card)})
        if hits:
            out[change.fact_id] = hits
    return out


def react(context: Context, changes: list[Change]) -> Effects:
    """``payment.blocked_detail`` for a payment that succeeds by a detail blocked at or
    before it was paid (records.reactions), with the blocked details in ``data.blocked``.
    Once per payment: its id derives from the payment's intent (an invoice's payment is
    told by its invoice and by its intent: one event), and a redelivered event changes no
    fact, so it reacts to nothing."""
    from chalicelib.integrations import catalogue

    effects = Effects()
    seen: set[str] = set()
    for change in newly_paid(changes):
        paid_at = iso_from_epoch(change.after.get("paid_at")) or context.now
        hits = [h for h in context.blocked.get(change.fact_id) or []
                if (h["blocked_at"] or "") <= paid_at]
        if not hits:
            continue
        after = change.after
        event_id = ids.stable_id("evt", context.account_id, BLOCKED_PAYMENT_EVENT,
                                 after.get("intent") or after.get("charge")
                                 or after.get("payment") or change.fact_id)
        record = context.record()
        payment = next((p for p in record["payments"]
                        if after.get("payment") in p["processor_refs"]), None)
        if event_id in seen or payment is None:
            continue
        seen.add(event_id)
        effects.outbox.append({
            "event_id": event_id, "type": BLOCKED_PAYMENT_EVENT, "occurred_at": context.now,
            "data": catalogue.event_data(BLOCKED_PAYMENT_EVENT, payment, record,
                                         blocked=hits)})
    return effects
