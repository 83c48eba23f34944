"""Apply domain events to customer records.

One record per account and normalized e-mail. An event finds its record by the
processor's customer id (a pointer), else by a related object it names (a charge for a
dispute), else by e-mail; failing all three it starts a record. A record started without
an e-mail (a subscription event that beat ``customer.created``) is folded into the
e-mail's existing record as soon as the e-mail is learnt.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace

from chalicelib import backoff, ids, timeutil
from chalicelib.domain.events import CustomerChanged, DomainEvent, Owner, Ref, Translation
from chalicelib.errors import BadRequest, NotFound, RetryLater
from chalicelib.records import moves, reactions
from chalicelib.records.facts import FACT_KINDS, STICKY_STATUSES, Fact, kind_of, object_ref
from chalicelib.records.view import build_record, order_entries, overview_record, summary_of
from chalicelib.store import customers as store
from chalicelib.store import email_changes, payloads
from chalicelib.store import signin as signin_store

MAX_ATTEMPTS = 12
EVENT_MARKER_TTL_SECONDS = 90 * 86400


class OwnerUnknown(RetryLater):
    """The event names no customer we know yet; the processor will deliver it again."""

    code = "owner_unknown"


@dataclass(frozen=True)
class Outcome:
    status: str  # applied, duplicate
    customer_id: str | None


def normalize_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return unicodedata.normalize("NFKC", email).strip().casefold()[:320]


def search_terms(email: str | None, name: str | None) -> dict[str, str]:
    terms = {}
    if email:
        terms["email"] = email
    if name:
        words = unicodedata.normalize("NFKC", name).casefold().split()
        for i in range(min(len(words), 3)):
            terms[f"name{i}"] = " ".join(words[i:])[:100]
    return terms


def fact_id(account_id: str, kind: str, ref: Ref) -> str:
    return ids.stable_id(FACT_KINDS[kind][2], account_id, str(ref))


class _State:
    """A record being changed in memory: its profile and facts as loaded, then as changed."""

    def __init__(self, account_id: str, collection: store.Collection | None, customer_id: str):
        self.account_id = account_id
        self.customer_id = customer_id
        self.is_new = collection is None or collection.profile is None
        self.from_copy = bool(collection and collection.from_copy)
        profile = (collection.profile if collection and collection.profile else None) or {
            "customer_id": customer_id, "email": None, "created_at": timeutil.now_iso(),
            "data": {}, "stats": {}, "processor_ids": [], "rev": 0, "merged_into": None,
            "move": None,
        }
        self.rev = None if self.is_new else profile["rev"]
        self.profile = {**profile, "processor_ids": list(profile["processor_ids"])}
        self.profile_fact = Fact.load(profile.get("data"))
        self.facts = {kind: {fid: Fact.load(d) for fid, d in by_id.items()}
                      for kind, by_id in (collection.facts if collection else {}).items()}
        self.search = dict(collection.search) if collection else {}
        self.stored_summary = collection.summary if collection else None
        self.stored_orders = dict(collection.orders) if collection else {}
        self.known_refs = {ref for by_id in self.facts.values() for fact in by_id.values()
                           for ref in fact.refs()}
        self.changed_facts: set[tuple[str, str]] = set()
        # Each changed fact's values before this write, for the reactions to it.
        self.before: dict[tuple[str, str], dict | None] = {}
        self.new_pointers: list[tuple[str, str]] = []
        self.repoint: list[tuple[str, str, str]] = []
        self.claim_email: str | None = None
        self.release_email: str | None = None

    def view(self) -> dict:
        return build_record(self.account_id, {**self.profile, "data": self.profile_fact.dump()},
                            {k: {fid: f.dump() for fid, f in v.items()} for k, v in self.facts.items()})

    def add_processor_id(self, ref: Ref | None, moved_from: str | None = None) -> None:
        if ref is not None and str(ref) not in self.profile["processor_ids"]:
            self.profile["processor_ids"].append(str(ref))
            if moved_from:
                self.repoint.append((ref.processor, ref.id, moved_from))
            else:
                self.new_pointers.append((ref.processor, ref.id))

    def apply(self, event: DomainEvent) -> None:
        self.add_processor_id(event.customer)
        if isinstance(event, CustomerChanged):
            self.profile_fact.merge(event.values(), event.occurred_at)
            if event.customer is None:
                return
        kind = kind_of(event)
        ref = object_ref(event)
        if kind is None or ref is None:
            return
        fid = fact_id(self.account_id, kind, ref)
        known = self.facts.get(kind, {}).get(fid)
        self.before.setdefault((kind, fid), dict(known.values) if known else None)
        fact = self.facts.setdefault(kind, {}).setdefault(fid, Fact())
        values = event.values()
        values[FACT_KINDS[kind][1]] = ref
        if event.customer is not None:
            # Which processor customer holds it: a self-service change (a card for this
            # subscription) must be made with that customer's cards.
            values["customer"] = event.customer
        if kind == "CUS" and normalize_email(event.email):
            # Versioned like any field: an older event's e-mail never moves the record.
            values["email"] = normalize_email(event.email)
        if fact.merge(values, event.occurred_at, STICKY_STATUSES.get(kind, set())):
            self.changed_facts.add((kind, fid))
        # Pointers let a later event that names only a related object (a dispute names its
        # charge) find the record; one per object, written when the record first learns it.
        for name in ("payment", "intent", "charge", "invoice", "subscription"):
            r = getattr(event, name, None)
            if isinstance(r, Ref) and (r.processor, r.id) not in self.known_refs:
                self.known_refs.add((r.processor, r.id))
                self.new_pointers.append((r.processor, r.id))

    def absorb(self, other: _State) -> None:
        """Fold another record (a placeholder without e-mail) into this one."""
        self.profile_fact.absorb(other.profile_fact)
        for pid in other.profile["processor_ids"]:
            processor, _, ext = pid.partition(":")
            self.add_processor_id(Ref(processor, ext), moved_from=other.customer_id)
        for kind, by_id in other.facts.items():
            mine = self.facts.setdefault(kind, {})
            for fid, fact in by_id.items():
                merged = mine.setdefault(fid, Fact())
                merged.absorb(fact)
                # A fold moves what was known; it is no news to react to.
                self.before[(kind, fid)] = dict(merged.values)
                self.changed_facts.add((kind, fid))
                for processor, ext in fact.refs():
                    self.repoint.append((processor, ext, other.customer_id))

    def changes(self) -> list[reactions.Change]:
        """The facts this write changes, with their values before it (records.reactions)."""
        out = []
        for kind, fid in sorted(self.changed_facts):
            if (kind, fid) not in self.before:
                continue
            before, after = self.before[(kind, fid)], self.facts[kind][fid].values
            if before != after:
                out.append(reactions.Change(kind, fid, before, dict(after)))
        return out

    def effects(self, source: str) -> reactions.Effects:
        # Imported here: records depend on no feature at import time (records.reactions).
        from chalicelib.blocks import service as blocks

        changes = self.changes()
        # Reactions read nothing: the block items of a payment that succeeds now are read
        # here (none read when no payment succeeds in this write).
        methods = {f.values.get("payment_method"): f.values["card_fingerprint"]
                   for f in self.facts.get("PM", {}).values()
                   if f.values.get("card_fingerprint")}
        blocked = blocks.blocked_for_payments(self.account_id, changes,
                                              list(self.profile["processor_ids"]), methods)
        context = reactions.Context(self.account_id, self.customer_id, self.profile.get("email"),
                                    source, timeutil.now_iso(), self.view, blocked=blocked)
        return reactions.effects_of(context, changes)

    def to_write(self) -> store.RecordWrite:
        """What to write for the changes made; also keeps, as ``self.written``, the
        record's collection as it will be once that write commits (for the copy a
        container keeps of the records it wrote: store.remember_collection)."""
        view = self.view()
        # An order pointer (order id → record) is written when the order first appears.
        before_orders = set(self.stored_orders)
        name = self.profile_fact.values.get("name")
        terms = search_terms(self.profile.get("email"), name)
        profile = {**self.profile, "account_id": self.account_id, "data": self.profile_fact.dump(),
                   "stats": view["stats"]}
        summary = summary_of(view)
        # Order entries are compared with what is stored, not with the record as it was
        # derived before this event: so entries that an older version of the derivation
        # wrote differently are mended by the next event of their customer.
        wanted = order_entries(view)
        stored = self.stored_orders
        self.written = store.Collection(
            customer_id=self.customer_id, profile={**profile, "rev": (self.rev or 0) + 1},
            facts={k: {fid: f.dump() for fid, f in v.items()} for k, v in self.facts.items()},
            search=terms, summary=summary, orders=wanted)
        return store.RecordWrite(
            account_id=self.account_id,
            customer_id=self.customer_id,
            profile=profile,
            expected_rev=self.rev,
            facts=[(k, fid, self.facts[k][fid].dump()) for k, fid in sorted(self.changed_facts)],
            pointers=sorted(set(self.new_pointers) - {(p, e) for p, e, _ in self.repoint}),
            repoint=sorted(set(self.repoint)),
            order_pointers=[o["id"] for o in view["orders"] if o["id"] not in before_orders],
            claim_email=self.claim_email,
            release_email=self.release_email,
            # Search items carry the e-mail and name shown in results: rewrite them all
            # when any term changes.
            search_put=terms if terms != self.search else {},
            search_delete=[k for k in self.search if k not in terms],
            summary=summary if summary != self.stored_summary else None,
            order_puts=[o for oid, o in sorted(wanted.items()) if stored.get(oid) != o],
            # Gone, or moved: an entry's key holds its date.
            order_deletes=[o for oid, o in sorted(stored.items()) if oid not in wanted
                           or wanted[oid].get("created_at") != o.get("created_at")],
        )


def _route(translation: Translation) -> tuple[Ref | None, str | None]:
    customer = next((e.customer for e in translation.events if e.customer), None)
    email = next((normalize_email(e.email) for e in translation.events if normalize_email(e.email)), None)
    return customer, email


def _resolve(account_id: str, customer: Ref | None, email: str | None, hints
             ) -> tuple[str | None, Ref | None]:
    """The record an event belongs to, and the processor object that found it (None when
    found by e-mail or not at all)."""
    if customer is not None:
        cid = store.find_pointer(account_id, customer.processor, customer.id)
        if cid:
            return cid, customer
    for hint in hints:
        cid = store.find_pointer(account_id, hint.processor, hint.id)
        if cid:
            return cid, hint
    if email:
        return store.find_by_email(account_id, email), None
    return None, None


def _holds(state: _State, ref: Ref, via_customer: bool) -> bool:
    if via_customer:
        return str(ref) in state.profile["processor_ids"]
    return (ref.processor, ref.id) in state.known_refs


def _load_live(account_id: str, customer_id: str) -> _State:
    """Load a record, following tombstones of records folded into another."""
    for _ in range(5):
        collection = store.load_for_write(customer_id)
        if collection.profile and collection.profile.get("merged_into"):
            store.forget_pointers_to(customer_id)
            customer_id = collection.profile["merged_into"]
            continue
        return _State(account_id, collection, customer_id)
    raise RetryLater("record redirect loop")


def _email_change(state: _State, translation: Translation, email: str) -> Ref | None:
    """The processor customer of this record whose own e-mail this event changes to
    ``email``, if any. Not when the record already knows a newer e-mail of that customer
    (an old ``customer.created`` delivered after the ``customer.updated`` that changed
    it): the e-mail is a versioned field like the others."""
    for e in translation.events:
        if not (isinstance(e, CustomerChanged) and e.customer is not None
                and normalize_email(e.email) == email
                and str(e.customer) in state.profile["processor_ids"]):
            continue
        known = state.facts.get("CUS", {}).get(fact_id(state.account_id, "CUS", e.customer))
        if known is not None and not Fact.load(known.dump()).merge({"email": email}, e.occurred_at):
            return None
        return e.customer
    return None


def apply(account_id: str, processor: str, translation: Translation, delivery: dict,
          find_owner: Callable[[Ref], Owner | None] | None = None) -> Outcome:
    """Apply one processor event's domain events, exactly once, atomically.

    ``find_owner`` asks the processor who owns an object the event names, for an event
    naming only objects this account has not seen (a refund of a charge that reached us
    before, or never): without it such an event is deferred (503) until one is known."""
    customer, email = _route(translation)
    owner_customer = None
    mark = store.EventMark(account_id, processor, translation.event_id, translation.event_type,
                           timeutil.now_iso(), EVENT_MARKER_TTL_SECONDS)
    rechecked: set[Ref] = set()
    asked = False
    for attempt in range(MAX_ATTEMPTS):
        cid, found_by = _resolve(account_id, customer or owner_customer, email,
                                 translation.owner_hints)
        if cid is None and customer is None and email is None and not asked:
            owner = _ask_owner(find_owner, translation.owner_hints)
            owner_customer, email = owner.customer, normalize_email(owner.email)
            asked = True
            # A guest payment (no customer, no e-mail) starts a record of its own, found
            # again through the pointers of the objects it names.
            continue
        state = _State(account_id, None, ids.new_id("cst")) if cid is None \
            else _load_live(account_id, cid)
        if state.profile.get("move"):
            moves.finish(account_id, state.profile["move"])
            continue
        if found_by is not None and not state.is_new and found_by not in rechecked and \
                not _holds(state, found_by, found_by in (customer, owner_customer)):
            # This container's pointer is older than a move of that object to another
            # record (an e-mail change, done by another container): read it again.
            rechecked.add(found_by)
            store.forget_pointer(account_id, found_by.processor, found_by.id)
            continue
        writes = []
        end_access = False
        changed_by = _email_change(state, translation, email) if email else None
        if email and not state.profile.get("email"):
            owner = None if state.is_new else store.find_by_email(account_id, email)
            if owner and owner != state.customer_id:
                # This record began without an e-mail; the e-mail already has a record.
                target = _load_live(account_id, owner)
                if target.profile.get("move"):
                    moves.finish(account_id, target.profile["move"])
                    continue
                target.absorb(state)
                if not state.is_new:
                    writes.append(_tombstone(state, target.customer_id))
                state = target
            else:
                state.profile["email"] = email
                state.claim_email = email
        elif changed_by is not None and state.profile["email"] != email and \
                not store.event_applied(mark):
            # A processor customer of this record changed its e-mail: only its part of
            # the record follows the new e-mail (records.moves).
            owner = store.find_by_email(account_id, email)
            # The record's only processor customer, or the merchant changing this record's
            # e-mail (marked before the processor was asked): the whole record follows.
            alone = set(state.profile["processor_ids"]) <= {str(changed_by)} or \
                email_changes.pending_for(account_id, email) == state.customer_id
            if owner is None and alone:
                # The whole record follows to a free e-mail: whoever held the old one
                # loses access.
                state.release_email = state.profile["email"]
                state.profile["email"] = email
                state.claim_email = email
                end_access = True
            else:
                target = None if owner is None else _load_live(account_id, owner)
                if target is not None and target.profile.get("move"):
                    moves.finish(account_id, target.profile["move"])
                    continue
                try:
                    move = moves.start(state, changed_by, email, target)
                except store.Conflict:
                    store.forget_pointers_to(state.customer_id)
                    continue
                if move["whole"]:
                    signin_store.end_access(account_id, state.customer_id)
                moves.finish(account_id, move)
                continue  # now apply the event: it reaches the target
        if owner_customer is not None:
            state.add_processor_id(owner_customer)
        for event in translation.events:
            state.apply(event)
        writes.insert(0, state.to_write())
        effects = state.effects("webhook")
        delivery = {**delivery, "outcome": "applied", "customer_id": state.customer_id,
                    "object_refs": touched_refs(translation),
                    "occurred_at": timeutil.iso_from_epoch(translation.occurred_at)}
        try:
            store.commit(writes, mark, delivery, outbox=_outbox_of(state, effects.outbox),
                         also=effects.ops)
        except store.AlreadyApplied:
            store.save_delivery({**delivery, "outcome": "duplicate"})
            return Outcome("duplicate", state.customer_id)
        except store.Conflict:
            # Lost a race (a record started, an e-mail claimed, a newer revision), or this
            # container's copy of the record was stale: read again.
            for w in writes:
                store.forget_collection(w.customer_id)
            if state.from_copy and len(writes) == 1:
                continue  # another container wrote it since: read it now (a fold shows there)
            store.forget_pointers_to(state.customer_id)
            backoff.pause(attempt)  # de-synchronize the racers
            continue
        except Exception:
            # Unknown outcome (a timeout, a 5xx): the write may have landed.
            for w in writes:
                store.forget_collection(w.customer_id)
            raise
        _written(writes, state)
        for processor_, ext in writes[0].pointers + [(p, e) for p, e, _ in writes[0].repoint]:
            store.remember_pointer(account_id, processor_, ext, state.customer_id)
        if end_access:
            # After the commit: the record's new e-mail is stored, so a link or code sent
            # to the old one can no longer start a session (its spending transaction
            # checks the profile's e-mail), and these are the ones already out.
            signin_store.end_access(account_id, state.customer_id)
        return Outcome("applied", state.customer_id)
    raise RetryLater("too many concurrent writes to this record")


def touched_refs(translation: Translation) -> list[str]:
    """The processor objects an event's domain events name (``stripe:in_…``), for its
    delivery and the customer's event log: how an object's raw payloads are found."""
    primary = [str(object_ref(e)) for e in translation.events if object_ref(e) is not None]
    refs = {str(r) for r in translation.owner_hints}
    for event in translation.events:
        refs |= {str(value) for value in vars(event).values() if isinstance(value, Ref)}
    # The objects the events are about first (the timeline names the first), then the rest.
    primary = list(dict.fromkeys(primary))
    return primary + sorted(refs - set(primary))


def _ask_owner(find_owner, hints) -> Owner:
    """Ask the processor who owns the objects the event names, first known first."""
    if find_owner is None or not hints:
        raise OwnerUnknown("no known customer for this event yet")
    for hint in hints:
        owner = find_owner(hint)
        if owner is not None:
            return owner
    # The processor signed the event, so the object exists in its account: not finding
    # it means this account's key cannot see it (a key of another account or mode).
    # Deferred, with the reason in the audit, rather than dropped.
    raise OwnerUnknown(f"{hints[0].processor} does not know {hints[0].id} with this account's "
                       "key: check the account's processor key")


def record_confirmed(account_id: str, customer_id: str, events: list[DomainEvent],
                     outbox: list[dict] | None = None, also: list[tuple] | None = None,
                     source: str = "confirmed") -> None:
    """Apply what the processor has just confirmed to a self-service call, at once.

    The webhook that follows carries the same facts; to keep a quick change and its undo
    in one second apart, a confirmed change is dated after anything the record knows of
    the fields it sets, so it wins over that webhook's equal news and over older ones.
    Outbox events (for integrations) are written in the same transaction, and ``also``
    (a merchant action's answer and activity entry, ``store.actions.finish_ops``).
    ``source``: the reactions' ``Context.source`` ("staff" for a merchant's action).
    """
    for attempt in range(MAX_ATTEMPTS):
        state = _load_live(account_id, customer_id)
        if state.is_new or state.profile.get("account_id") != account_id:
            raise NotFound("no such customer")
        if state.profile.get("move"):
            moves.finish(account_id, state.profile["move"])
            continue
        for event in events:
            state.apply(_dated_after_known(state, event))
        writes = [state.to_write()]
        effects = state.effects(source)
        # An action names its own product events: a reaction's event of the same type is
        # that one, not a second; it keeps the reaction's id and object and gains the
        # action's data (the reason, the source).
        named = {item["type"]: item for item in outbox or []}
        derived = [{**e, "data": {**named[e["type"]].get("data", {}), **e["data"]}}
                   if e["type"] in named else e for e in effects.outbox]
        kept = [item for item in outbox or [] if item["type"] not in
                {e["type"] for e in effects.outbox}]
        try:
            store.commit(writes, None, None, outbox=_outbox_of(state, kept + derived),
                         also=list(also or []) + effects.ops)
        except store.Conflict:
            store.forget_collection(state.customer_id)
            if not state.from_copy:
                backoff.pause(attempt)
            continue
        except Exception:
            store.forget_collection(state.customer_id)
            raise
        _written(writes, state)
        return
    raise RetryLater("too many concurrent writes to this record")


def _outbox_of(state: _State, events: list[dict]) -> list[dict]:
    return [{**event, "account_id": state.account_id, "customer_id": state.customer_id}
            for event in events]


def _written(writes: list[store.RecordWrite], state: _State) -> None:
    """After a commit: keep the record as written for this container's next write to it;
    folded records are dropped."""
    store.remember_collection(state.written)
    for w in writes[1:]:
        store.forget_collection(w.customer_id)


def _dated_after_known(state: _State, event: DomainEvent) -> DomainEvent:
    kind, ref = kind_of(event), object_ref(event)
    if kind is None or ref is None:
        return event
    fact = state.facts.get(kind, {}).get(fact_id(state.account_id, kind, ref))
    known = max((fact.versions[name][1] for name in event.values() if fact and name in fact.versions),
                default=0)
    return replace(event, occurred_at=max(event.occurred_at, known + 1))


def _tombstone(state: _State, target_id: str) -> store.RecordWrite:
    profile = {**state.profile, "merged_into": target_id, "data": state.profile_fact.dump(),
               "stats": {}}
    return store.RecordWrite(
        account_id=state.account_id, customer_id=state.customer_id, profile=profile,
        expected_rev=state.rev,
        delete_facts=[(k, fid) for k, by_id in state.facts.items() for fid in by_id],
        search_delete=list(state.search),
        delete_summary=state.stored_summary is not None,
        order_deletes=[o for _, o in sorted(state.stored_orders.items())],
    )


def get_record(account_id: str, customer_id: str, consistent: bool = False,
               card_fingerprints: bool = False) -> dict | None:
    """The derived record. ``consistent`` for a customer's own pages, which must show the
    change they have just made (a strongly consistent Query costs twice the read units).
    ``card_fingerprints``: each payment also carries ``card_fingerprint`` (the processor's
    fingerprint of its card, None when unknown) for the merchant's own pages (blocked
    cards are matched by it); the record's JSON (merchant API, portal, integrations)
    does not show it."""
    collection = store.load(customer_id, consistent=consistent)
    profile = collection.profile
    if not profile or profile["account_id"] != account_id or profile.get("merged_into"):
        return None
    facts = moves.view_facts(customer_id, profile, collection.facts)
    record = build_record(account_id, profile, facts)
    if card_fingerprints:
        by_ref = payment_card_fingerprints(facts)
        for payment in record["payments"]:
            payment["card_fingerprint"] = next(
                (by_ref[r] for r in payment["processor_refs"] if r in by_ref), None)
    return record


def payment_card_fingerprints(facts: dict[str, dict[str, dict]]) -> dict[str, str]:
    """The card fingerprint of each payment's processor objects (``stripe:pi_…`` → its
    fingerprint): the payment's own (from its charge), else its payment method's."""
    by_method = {f["values"].get("payment_method"): f["values"]["card_fingerprint"]
                 for f in facts.get("PM", {}).values() if f["values"].get("card_fingerprint")}
    out: dict[str, str] = {}
    for fact in facts.get("PAY", {}).values():
        values = fact["values"]
        fingerprint = values.get("card_fingerprint") or by_method.get(values.get("payment_method"))
        if fingerprint:
            for name in ("payment", "invoice", "intent", "charge"):
                if values.get(name):
                    out.setdefault(values[name], fingerprint)
    return out


def get_overview(account_id: str, customer_id: str, orders: int) -> tuple[dict | None, bool]:
    """The record as the customer's overview shows it: everything but the history, and the
    ``orders`` newest orders; and whether there are more orders. Reads a bounded number of
    items whatever the customer's history (store.load_overview)."""
    found = store.load_overview(customer_id, orders)
    profile = found.profile
    if not profile or profile["account_id"] != account_id or profile.get("merged_into"):
        return None, False
    if profile.get("move"):
        # Mid-move, the stored summary and entries are being rewritten: derive them.
        record = get_record(account_id, customer_id, consistent=True)
        if record is None:
            return None, False
        newest = sorted(order_entries(record).values(),
                        key=lambda o: (o.get("created_at") or "", o["id"]), reverse=True)
        return (overview_record(profile, summary_of(record), newest[:orders]),
                len(newest) > orders)
    # Every write of a record writes its summary when it changes (_State.to_write).
    return overview_record(profile, found.summary or {}, found.orders), found.more_orders


def list_orders(customer_id: str, limit: int, after: str | None) -> tuple[list[dict], str | None]:
    """A page of a customer's orders, newest first, and the cursor of the next page (None
    on the last). Callers have checked that the customer is theirs (the portal's session);
    a cursor can only name a place in this customer's own orders, and a malformed one
    raises ``store.BadCursor``."""
    return store.list_orders(customer_id, limit, after)


# --- lookups by an id the merchant has in hand (the dashboard's search) ---------------------

def find_by_processor_id(account_id: str, processor: str, ext_id: str) -> str | None:
    """The record that holds a processor object (a customer ``cus_…``, a payment, a
    subscription), by its pointer; None when the account has not seen it. A pointer of a
    record folded away names its tombstone: callers read the record, which then is None."""
    return store.find_pointer(account_id, processor, ext_id)


def find_by_order_id(account_id: str, order_id: str) -> str | None:
    """The record holding an order (``ord_…``), by its order pointer."""
    return store.find_order(account_id, order_id)


# --- what the record's page reads beside the record ----------------------------------------

def customer_belongs(account_id: str, customer_id: str) -> bool:
    """Whether ``customer_id`` is a live record of the account (one small GetItem): the
    check before reading a customer's own partitions (e-mails, events, notes)."""
    owner = store.owner_of(customer_id)
    return owner is not None and owner[0] == account_id and owner[1] is None


RAW_EVENTS_MAX = 50
_EVENT_LOG_PAGE = 200
_PROCESSOR_REF = re.compile(r"^[a-z]{2,20}:[A-Za-z0-9_-]{1,255}$")  # PayPal ids hold "-"
_RECORD_OBJECT = re.compile(r"^(pay|sub|ord)_[a-z2-7]{24}$")


def _refs_of(account_id: str, customer_id: str, object_ref: str) -> set[str]:
    """The processor refs an object goes by: itself for a processor ref (``stripe:pi_…``);
    for an id of the record (a payment ``pay_…``, a subscription or plan ``sub_…``, an
    order ``ord_…``) the processor objects it is made of."""
    if _PROCESSOR_REF.match(object_ref):
        return {object_ref}
    if not _RECORD_OBJECT.match(object_ref):
        raise BadRequest("object must be a processor object (stripe:pi_…) or an id of the "
                         "record (pay_…, sub_…, ord_…)", code="invalid_object")
    record = get_record(account_id, customer_id)
    if record is None:
        raise NotFound("no such customer")
    refs: set[str] = set()
    for order in record["orders"]:
        if order["id"] == object_ref:
            refs.update(r for p in record["payments"] if p["id"] in order["payment_ids"]
                        for r in p["processor_refs"])
            object_ref = order["subscription_id"] or object_ref
    for payment in record["payments"]:
        if payment["id"] == object_ref:
            refs.update(payment["processor_refs"])
    for sub in record["subscriptions"] + record["payment_plans"]:
        if sub["id"] == object_ref and sub["processor_ref"]:
            refs.add(sub["processor_ref"])
    if not refs:
        raise NotFound("no such object")
    return refs


def raw_events(account_id: str, customer_id: str, object_ref: str,
               limit: int = RAW_EVENTS_MAX) -> list[dict]:
    """The processor's raw webhook payloads that touched an object of this customer,
    newest first (at most ``limit``), from the deliveries kept for the retention period:
    ``{"event_id", "type", "at", "received_at", "object_refs", "payload"}`` (``payload``:
    the parsed body; None, with ``payload_error``, when it cannot be read).

    ``object_ref``: a processor ref as the record shows it (``stripe:in_…``) or an id of
    the record (``pay_…``, ``sub_…``, ``ord_…``). Raises NotFound for a customer that is
    not the account's, BadRequest for a malformed ``object_ref``."""
    if not customer_belongs(account_id, customer_id):
        raise NotFound("no such customer")
    refs = _refs_of(account_id, customer_id, object_ref)
    matches, before = [], None
    while len(matches) < limit:
        page, before = store.list_events(customer_id, _EVENT_LOG_PAGE, before)
        matches += [e for e in page if e["account_id"] == account_id
                    and refs.intersection(e["object_refs"])]
        if before is None:
            break
    matches = matches[:limit]
    deliveries = store.get_deliveries(account_id, [m["delivery_sk"] for m in matches])
    out = []
    for m in matches:
        delivery = deliveries.get(m["delivery_sk"]) or {}
        entry = {"event_id": m["event_id"], "type": m["event_type"], "at": m["occurred_at"],
                 "received_at": delivery.get("received_at"), "object_refs": m["object_refs"],
                 "payload": None}
        try:
            body = payloads.read(delivery.get("payload_z"), delivery.get("payload_key"))
        except payloads.PayloadUnavailable as exc:
            entry["payload_error"] = f"the kept payload could not be read ({exc})"
        else:
            if body is not None:
                entry["payload"] = json.loads(body)
            else:
                entry["payload_error"] = "no payload kept for this delivery"
        out.append(entry)
    return out
