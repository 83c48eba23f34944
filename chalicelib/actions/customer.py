"""Merchant actions on a customer's own details, on the one action mechanism
(``actions.service.run``): block and unblock the customer's e-mail, cards (by the
processor's fingerprint) and processor customer ids (chalicelib/blocks says what a block
stops).

Every detail named is looked up on the customer's own record first (another customer's or
an unknown one is 404 before anything is called); the new state of each detail, its log
entry (who, when, why), the activity entry and the outbox event are written in the
action's one transaction. A block pushed to the processor's block lists (the account's
``blocks.push_to_radar``) is recorded only once the processor took it.
"""
from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import replace

from chalicelib import timeutil
from chalicelib.actions import service as actions
from chalicelib.actions.service import ActionContext, ActionSpec, Result, Step, account_of
from chalicelib.blocks import service as blocks
from chalicelib.domain.events import Address, CustomerChanged, Ref
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.observability import logger
from chalicelib.processors.gateway import CustomerChanges, Gateway
from chalicelib.processors.registry import gateway_for
from chalicelib.records import moves
from chalicelib.records import service as records
from chalicelib.selfservice.service import card_id as card_id_of
from chalicelib.staff import roles
from chalicelib.store import blocks as block_store
from chalicelib.store import customers as customer_store
from chalicelib.store import email_changes
from chalicelib.store import signin as signin_store

GatewayFor = Callable[[dict], Gateway]
MAX_REASON = 500
MAX_NOTE = 2000
MAX_DETAILS = 20  # of each kind in one request
CARD_ID_RE = re.compile(r"^card_[a-z2-7]{24}$")
CUSTOMER_ID_RE = re.compile(r"^cst_[0-9a-z]{26}$")
PROCESSOR_CUSTOMER_RE = re.compile(r"^(?:([a-z]{2,20}):)?([A-Za-z0-9_-]{1,255})$")


def _text(value, limit: int, name: str, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadRequest(f"{name} is required.", code="reason_required"
                             if name == "The reason" else "bad_request")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be text.", code="bad_request")
    value = value.strip()
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters.", code="bad_request")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise BadRequest(f"{name} has control characters.", code="bad_request")
    return value


def _list(value, name: str, parse: Callable[[str], str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_DETAILS or \
            not all(isinstance(v, str) for v in value):
        raise BadRequest(f'"{name}" must be a list of at most {MAX_DETAILS} texts.',
                         code="bad_request")
    return sorted({parse(v) for v in value})


def _email(value: str) -> str:
    email = records.normalize_email(value)
    if not email or len(email) > 254:
        raise BadRequest("Enter e-mail addresses.", code="bad_request")
    return email


def _card(value: str) -> str:
    if not CARD_ID_RE.match(value.strip()):
        raise BadRequest("Name cards by the ids the record shows (card_…).", code="bad_request")
    return value.strip()


def _processor_customer(value: str) -> str:
    found = PROCESSOR_CUSTOMER_RE.match(value.strip())
    if not found:
        raise BadRequest("Name processor customers by their ids (cus_…).", code="bad_request")
    return f"{found.group(1) or 'stripe'}:{found.group(2)}"


def _ref(value: str) -> Ref:
    processor, _, ext = value.partition(":")
    return Ref(processor, ext)


class CustomerActions:
    """The actions on one customer's details, for one staff member or API client."""

    def __init__(self, ctx: ActionContext, customer_id: str,
                 gateway_factory: GatewayFor = gateway_for):
        self.ctx = ctx
        self.customer_id = customer_id
        self._gateway_factory = gateway_factory
        self._gateway: Gateway | None = None

    def _gateway_of(self, account: dict) -> Gateway:
        if self._gateway is None:
            self._gateway = self._gateway_factory(account)
        return self._gateway

    def _overview(self) -> dict:
        overview, _ = records.get_overview(self.ctx.account_id, self.customer_id, 1)
        if overview is None or not records.customer_belongs(self.ctx.account_id,
                                                            self.customer_id):
            raise NotFound("No such customer.")
        return overview

    # --- block and unblock ----------------------------------------------------------------

    def block(self, *, emails=None, cards=None, processor_customers=None, all_details=False,
              reason=None, note=None, before_perform: Callable[[], None] | None = None) -> dict:
        """Block the named details of the customer (``all_details``: every one the record
        has). Answers the details blocked now; 409 when all were blocked already."""
        return self._change(True, emails, cards, processor_customers, all_details, reason,
                            note, before_perform)

    def unblock(self, *, emails=None, cards=None, processor_customers=None, all_details=False,
                reason=None, note=None, before_perform: Callable[[], None] | None = None) -> dict:
        return self._change(False, emails, cards, processor_customers, all_details, reason,
                            note, before_perform)

    def _change(self, blocking: bool, emails, cards, processor_customers, all_details,
                reason, note, before_perform) -> dict:
        if not isinstance(all_details, bool):
            raise BadRequest('"all" must be true or false.', code="bad_request")
        wanted = {"emails": _list(emails, "emails", _email),
                  "cards": _list(cards, "cards", _card),
                  "processor_customers": _list(processor_customers, "processor_customers",
                                               _processor_customer)}
        if not all_details and not any(wanted.values()):
            raise BadRequest("Choose the details to " + ("block" if blocking else "unblock") +
                             ", or all of them.", code="nothing_chosen")
        reason = _text(reason, MAX_REASON, "The reason", required=True)
        spec = ActionSpec(name="customer.block" if blocking else "customer.unblock",
                          customer_id=self.customer_id, permission="block",
                          request={**wanted, "all": all_details}, reason=reason,
                          note=_text(note, MAX_NOTE, "The note"))

        def perform(step: Step) -> Result:
            account = account_of(self.ctx.account_id)
            overview = self._overview()
            targets = self._targets(account, overview, blocking, wanted, all_details)
            previous = block_store.get_many(self.ctx.account_id,
                                            [(t["kind"], t["value"]) for t in targets],
                                            consistent=True)
            changing = [t for t in targets
                        if (previous.get((t["kind"], t["value"])) is not None and
                            previous[(t["kind"], t["value"])].blocked) != blocking]
            if not changing:
                raise Conflict("These details are already blocked." if blocking else
                               "None of these details is blocked.", code="not_applicable")
            if blocks.push_to_radar(account):
                self._push(account, changing, blocking, step)
            at = timeutil.now_iso()
            entry = {"action": "block" if blocking else "unblock", "at": at,
                     "by": self.ctx.actor_id, "by_email": self.ctx.actor_email,
                     "reason": reason, "key": step.key_hash}
            writes = [block_store.state_write(
                self.ctx.account_id, t["kind"], t["value"], blocked=blocking, at=at,
                entry=entry, previous=previous.get((t["kind"], t["value"])),
                label=t.get("label"), customer_id=self.customer_id,
                card_ids=tuple(t.get("card_ids") or ())) for t in changing]
            # The account's count of blocked cards and processor customers (store.blocks).
            delta = sum(1 for t in changing if t["kind"] in block_store.PAYMENT_KINDS)
            if delta:
                writes.append(block_store.index_write(self.ctx.account_id,
                                                      delta if blocking else -delta))
            details = [self._detail_public(t) for t in changing]
            event = "customer.blocked" if blocking else "customer.unblocked"
            return Result(
                body={"customer_id": self.customer_id,
                      "blocked" if blocking else "unblocked": details},
                outbox=[{"type": event, "data": {"customer_id": self.customer_id,
                                                 "details": details, "reason": reason}}],
                before={"details": [{**d, "blocked": not blocking} for d in details]},
                after={"details": [{**d, "blocked": blocking} for d in details]},
                writes=writes)

        body = actions.run(self.ctx, spec, perform, before_perform=before_perform).body
        if blocking and any(d["kind"] in ("email", "customer") for d in body.get("blocked", [])):
            # After the block committed: the customer's live portal sessions and pending
            # sign-in links end (idempotent: a stored answer ends nothing more).
            signin_store.end_access(self.ctx.account_id, self.customer_id)
        return body

    @staticmethod
    def _detail_public(target: dict) -> dict:
        if target["kind"] == "card":
            return {"kind": "card", "card_ids": list(target.get("card_ids") or ()),
                    "label": target.get("label")}
        return {"kind": target["kind"], "value": target["value"]}

    def _targets(self, account: dict, overview: dict, blocking: bool, wanted: dict,
                 all_details: bool) -> list[dict]:
        """The details to change, each ``{"kind", "value"[, "label", "card_ids"]}``; 404
        for one that is not this customer's."""
        email = records.normalize_email(overview.get("email"))
        processor_ids = list(overview.get("processor_ids") or [])
        record_cards = blocks.record_cards(overview)
        for value in wanted["emails"]:
            if value != email:
                raise NotFound("This customer has no such e-mail address.")
        for value in wanted["processor_customers"]:
            if value not in processor_ids:
                raise NotFound("This customer has no such processor customer.")
        emails = [email] if all_details and email else wanted["emails"]
        customers = processor_ids if all_details else wanted["processor_customers"]
        targets = [{"kind": "email", "value": v} for v in emails]
        targets += [{"kind": "customer", "value": v} for v in customers]
        if blocking:
            chosen = list(record_cards) if all_details else wanted["cards"]
            for value in chosen:
                if value not in record_cards:
                    raise NotFound("This customer has no such card.")
            if chosen:
                targets += self._card_targets(account, processor_ids, chosen)
        else:
            card_blocks = [b for b in block_store.list_all(self.ctx.account_id)
                           if b.kind == "card" and b.blocked]
            if all_details:
                ours = set(record_cards)
                chosen_blocks = [b for b in card_blocks if ours & set(b.card_ids)
                                 or b.customer_id == self.customer_id]
            else:
                chosen_blocks = []
                for value in wanted["cards"]:
                    found = next((b for b in card_blocks if value in b.card_ids), None)
                    if found is None or (value not in record_cards and
                                         found.customer_id != self.customer_id):
                        raise NotFound("This customer has no such blocked card.")
                    chosen_blocks.append(found)
            targets += [{"kind": "card", "value": b.value, "label": b.label,
                         "card_ids": list(b.card_ids)} for b in chosen_blocks]
        unique = {}
        for t in targets:
            unique.setdefault((t["kind"], t["value"]), t)
        return list(unique.values())

    def _card_targets(self, account: dict, processor_ids: list[str],
                      chosen: list[str]) -> list[dict]:
        """The fingerprints of the chosen cards, as the processor lists the customer's
        saved cards (the record does not keep them), with every card of the record that
        has the same fingerprint."""
        gateway = self._gateway_of(account)
        saved = {}
        for ref in processor_ids:
            if ref.startswith("stripe:"):
                for card in gateway.list_cards(_ref(ref)):
                    saved[card_id_of(self.ctx.account_id, card.payment_method)] = card
        by_fingerprint: dict[str, dict] = {}
        for value in chosen:
            card = saved.get(value)
            if card is None or not card.fingerprint:
                raise Conflict("This card is no longer saved at the processor: it cannot be "
                               "blocked by its fingerprint.", code="card_not_saved")
            target = by_fingerprint.setdefault(card.fingerprint, {
                "kind": "card", "value": card.fingerprint,
                "label": blocks.card_label({"brand": card.card.brand, "last4": card.card.last4}),
                "card_ids": sorted(cid for cid, c in saved.items()
                                   if c.fingerprint == card.fingerprint)})
            if value not in target["card_ids"]:
                target["card_ids"].append(value)
        return list(by_fingerprint.values())

    def _push(self, account: dict, targets: list[dict], blocking: bool, step: Step) -> None:
        """Put the details on (or take them off) the processor's block lists first: a
        refusal changes nothing here."""
        gateway = self._gateway_of(account)
        for target in targets:
            kind = blocks.RADAR_KIND[target["kind"]]
            value = target["value"]
            if target["kind"] == "customer":
                processor, _, value = value.partition(":")
                if processor != "stripe":
                    continue
            if blocking:
                # The value's digest, not the value: Stripe takes keys of 255 characters.
                digest = hashlib.sha256(f"{kind}\x1f{value}".encode()).hexdigest()[:24]
                gateway.block_value(kind, value, idempotency_key=step.key(f"radar:{digest}"))
            else:
                gateway.unblock_value(kind, value)

    # --- edit customer details --------------------------------------------------------------

    def edit(self, changes: dict, *, note=None) -> dict:
        """Change the customer's name, e-mail, phone or address (``changes`` holds only the
        fields to change; "" or None clears name, phone and address), at every processor
        customer of the record first. A new e-mail is for owners and admins: it is marked
        pending on the record before the processor is asked (so the processor's
        ``customer.updated`` moves the whole record, whichever comes first), the old
        address is told, and the record's e-mail changes when the processor's event
        arrives. 409 ``email_taken`` (with that record's id) when the address has a record."""
        wanted = parse_changes(changes)
        spec = ActionSpec(name="customer.edit", customer_id=self.customer_id,
                          permission="edit_customer", request={"changes": wanted},
                          note=_text(note, MAX_NOTE, "The note"))
        if "email" in wanted and self.ctx.role not in EMAIL_CHANGERS:
            raise actions.forbidden(self.ctx, spec, "edit_customer_email")

        def perform(step: Step) -> Result:
            account = account_of(self.ctx.account_id)
            overview = self._overview()
            old_email = records.normalize_email(overview.get("email"))
            email = wanted.get("email")
            if email is not None:
                if email == old_email:
                    raise Conflict("This is already the customer's e-mail address.",
                                   code="not_applicable")
                other = customer_store.find_by_email(self.ctx.account_id, email)
                if other and other != self.customer_id:
                    raise EmailTaken(other)
                email_changes.put(self.ctx.account_id, email, self.customer_id, old_email,
                                  self.ctx.actor_id)
            processor_customers = [_ref(p) for p in overview.get("processor_ids") or []]
            stripe_customers = [r for r in processor_customers if r.processor == "stripe"]
            if not stripe_customers:
                raise Conflict("This customer has no processor customer to change.",
                               code="not_applicable")
            gateway = self._gateway_of(account)
            address = wanted.get("address", None)
            update = CustomerChanges(name=wanted.get("name"), email=email,
                                     phone=wanted.get("phone"),
                                     address=address if "address" in wanted else None)
            if "address" in wanted and address is None:
                update = replace(update, address={})  # cleared at the processor
            for ref in stripe_customers:
                gateway.update_customer(ref, update, idempotency_key=step.key(
                    "update:" + hashlib.sha256(str(ref).encode()).hexdigest()[:16]))
            now = int(time.time())
            events = []
            if set(wanted) - {"email"}:
                # What the processor confirmed, at once; its customer.updated says it again.
                events = [CustomerChanged(
                    occurred_at=now, customer=ref, email=None, name=wanted.get("name"),
                    phone=wanted.get("phone"),
                    address=Address(**(address or {})) if "address" in wanted else None)
                    for ref in stripe_customers]
            if email is not None and old_email:
                _tell_old_address(account, self.customer_id, old_email, email)
            before = {k: overview.get(k) for k in wanted}
            after = {k: v for k, v in wanted.items()}
            body = {"customer_id": self.customer_id, "changed": sorted(wanted),
                    "email_pending": email}
            return Result(body=body, events=events,
                          outbox=[{"type": "customer.updated",
                                   "data": {"customer_id": self.customer_id,
                                            "changed": sorted(wanted), **after}}],
                          before=before, after=after)

        return actions.run(self.ctx, spec, perform).body

    # --- merge two records ------------------------------------------------------------------

    def merge(self, other_customer_id, *, reason=None, note=None,
              before_perform: Callable[[], None] | None = None) -> dict:
        """Fold the record ``other_customer_id`` into this one (owners and admins): its
        Stripe customers take this record's e-mail at the processor (one e-mail per
        record), then its processor customers, subscriptions, payments and history move
        here with the records' move machinery (records.moves.fold); it becomes a tombstone
        leading here and its e-mail is released, this record keeps its own."""
        if not isinstance(other_customer_id, str) or not CUSTOMER_ID_RE.match(other_customer_id):
            raise BadRequest('"customer_id" must be the other record\'s id (cst_…).',
                             code="bad_request")
        if other_customer_id == self.customer_id:
            raise BadRequest("A record cannot be merged into itself.", code="bad_request")
        spec = ActionSpec(name="customer.merge", customer_id=self.customer_id,
                          permission="edit_customer", request={"other": other_customer_id},
                          reason=_text(reason, MAX_REASON, "The reason"),
                          note=_text(note, MAX_NOTE, "The note"))
        if self.ctx.role not in EMAIL_CHANGERS:
            raise actions.forbidden(self.ctx, spec, "merge_customers")

        def perform(step: Step) -> Result:
            overview = self._overview()
            owner = customer_store.owner_of(other_customer_id)
            # Folded here already (this action run before, cut off after the fold): done.
            if owner is None or owner[0] != self.ctx.account_id or \
                    owner[1] not in (None, self.customer_id):
                raise NotFound("No such customer to merge.")
            other, _ = records.get_overview(self.ctx.account_id, other_customer_id, 1)
            other_ids = list((other or {}).get("processor_ids") or [])
            if other is not None and not other_ids:
                raise Conflict("That record has no processor customer: it cannot be merged.",
                               code="not_applicable")
            email = records.normalize_email(overview.get("email"))
            if other is not None and not email:
                raise Conflict("This record has no e-mail address to merge into.",
                               code="not_applicable")
            # One e-mail per record: the other record's Stripe customers take this one's
            # first (their customer.updated, whenever it comes, then finds them here; one
            # arriving before the fold moves them here by itself, as any e-mail change).
            gateway = self._gateway_of(account_of(self.ctx.account_id)) if other_ids else None
            for value in other_ids:
                ref = _ref(value)
                if ref.processor == "stripe":
                    gateway.update_customer(ref, CustomerChanges(email=email),
                                            idempotency_key=step.key(
                                                "email:" + hashlib.sha256(value.encode())
                                                .hexdigest()[:16]))
            moves.fold(self.ctx.account_id, other_customer_id, self.customer_id)
            merged = {"customer_id": self.customer_id, "merged_customer_id": other_customer_id,
                      "merged_email": (other or {}).get("email"),
                      "processor_customers": other_ids}
            return Result(body=merged, outbox=[{"type": "customer.merged", "data": merged}],
                          before={"email": overview.get("email"),
                                  "other_email": (other or {}).get("email")},
                          after={"processor_customers": sorted(
                              set(overview.get("processor_ids") or []) | set(other_ids))})

        return actions.run(self.ctx, spec, perform, before_perform=before_perform).body


EMAIL_CHANGERS = (roles.OWNER, roles.ADMIN)
ADDRESS_FIELDS = ("line1", "line2", "postal_code", "city", "state", "country")
PHONE_RE = re.compile(r"^\+?[0-9 ().-]{3,40}$")
EDITABLE = ("name", "email", "phone", "address")


class EmailTaken(Conflict):
    """The new e-mail already has a record: its id, for a link and a merge."""

    code = "email_taken"

    def __init__(self, other_customer_id: str):
        super().__init__("Another customer record already has this e-mail address. Open it, "
                         "or merge the two records.")
        self.other_customer_id = other_customer_id

    def to_dict(self) -> dict:
        return {**super().to_dict(), "customer_id": self.other_customer_id}


def parse_changes(changes) -> dict:
    """The fields to change, checked: 400 for anything else or nothing."""
    if not isinstance(changes, dict):
        raise BadRequest("Send the fields to change.", code="bad_request")
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise BadRequest(f"Unknown field: {unknown[0][:50]}.", code="bad_request")
    if not changes:
        raise BadRequest("Send at least one of name, email, phone, address.",
                         code="nothing_chosen")
    out: dict = {}
    if "name" in changes:
        out["name"] = _text(changes["name"], 200, "The name") or ""
    if "phone" in changes:
        phone = _text(changes["phone"], 40, "The phone number") or ""
        if phone and not PHONE_RE.match(phone):
            raise BadRequest("Enter a phone number of digits, spaces and + ( ) - .",
                             code="bad_request")
        out["phone"] = phone
    if "email" in changes:
        raw = changes["email"]
        email = records.normalize_email(raw) if isinstance(raw, str) else None
        if not email or len(email) > 254 or not re.match(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$",
                                                         email):
            raise BadRequest("Enter a valid e-mail address (it cannot be removed).",
                             code="bad_request")
        out["email"] = email
    if "address" in changes:
        address = changes["address"]
        if address is None or address == {}:
            out["address"] = None
        elif not isinstance(address, dict) or set(address) - set(ADDRESS_FIELDS):
            raise BadRequest("The address has line1, line2, postal_code, city, state and "
                             "country.", code="bad_request")
        else:
            cleaned = {k: _text(address.get(k), 200, f"The address's {k}") or ""
                       for k in ADDRESS_FIELDS}
            if cleaned["country"] and not re.match(r"^[A-Za-z]{2}$", cleaned["country"]):
                raise BadRequest("The country is its two-letter code (e.g. PL).",
                                 code="bad_request")
            cleaned["country"] = cleaned["country"].upper()
            out["address"] = cleaned if any(cleaned.values()) else None
    return out


def _tell_old_address(account: dict, customer_id: str, old_email: str, new_email: str) -> None:
    """Tell the old address that the account's e-mail is changing (a customer who did not
    ask for it can reply to the merchant). A mail that fails is logged, not fatal: the
    processor has already changed the e-mail."""
    from chalicelib.mail.sender import MailFailed, Message, send

    name = account.get("name") or "our shop"
    text = (f"Hello,\n\nThe e-mail address of your account with {name} is being changed "
            f"from {old_email} to {new_email}. Receipts and sign-in links will go to the new "
            f"address.\n\nIf you did not ask for this, reply to this e-mail or contact "
            f"{account.get('support_email') or 'our support team'}.\n\n{name}\n")
    try:
        send(Message(from_name=name, from_address=account["support_email"], to=old_email,
                     subject=f"Your e-mail address with {name} is changing", text=text,
                     reply_to=account.get("support_email")),
             account_id=account["account_id"], customer_id=customer_id,
             kind="email_change_notice")
    except MailFailed:
        logger.exception("could not tell the old address of an e-mail change")
