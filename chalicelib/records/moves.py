"""Moving one processor customer's part of a record to another record (an e-mail change).

A record can hold several processor customers (one record per e-mail: a second Stripe
customer with the same e-mail joins the first's record). When one of them changes its
e-mail at the processor, only what belongs to that processor customer follows the new
e-mail; the rest stays with the old one. Otherwise whoever first bought under someone
else's e-mail could take the whole record (the other customers' subscriptions, cards,
address, and portal access) by changing their own e-mail.

What belongs to a processor customer: the facts it holds (``customer`` on the fact), and
facts that name no customer but share an object with those (a refund of its charge).
When the record holds nothing else, the whole record goes: the source becomes a
tombstone (``merged_into``) and its e-mail is released.

A move can exceed one DynamoDB transaction (100 items), so it is resumable:

1. ``start``: one transaction marks both records (``move`` on both profiles), creates
   the target and claims the new e-mail (or names the e-mail's existing record), moves
   the processor customer's pointer, and releases the source's e-mail when the whole
   record goes. From then on the customer's events reach the target.
2. ``finish``: the facts, their object pointers and both records' derived items
   (summary, order entries, search terms, order pointers) follow in transactions of at
   most ``CHUNK_OPS`` items, each checking and bumping both profiles' ``rev``; a moved
   fact is put on the target and deleted from the source in the same transaction. The
   last one clears both marks. Each step is computed from what is stored, so running
   ``finish`` again after a crash (or two at once: one loses the ``rev`` race) converges.

Every writer that loads a marked record calls ``finish`` before anything else, so the
next event for either record resumes a move a crash interrupted (the processor delivers
again the event that started it). Readers follow the mark: ``view_facts`` gives the facts
as they will be once the move is done.
"""
from __future__ import annotations

from chalicelib import ids
from chalicelib.domain.events import Ref
from chalicelib.errors import RetryLater
from chalicelib.records.facts import Fact, profile_of
from chalicelib.store import customers as store

# Items per transaction besides the two profiles and the two summaries (DynamoDB: 100).
CHUNK_OPS = 90
MAX_ATTEMPTS = 12


def owned_facts(facts: dict[str, dict[str, Fact]], customer: str) -> set[tuple[str, str]]:
    """The facts that belong to processor customer ``customer`` ("stripe:cus_…"): those it
    holds, and those holding no customer that name an object of those (a refund or a
    dispute of its charge)."""
    mine = {(kind, fid) for kind, by_id in facts.items() for fid, fact in by_id.items()
            if fact.values.get("customer") == customer}
    refs = {ref for kind, fid in mine for ref in facts[kind][fid].refs()}
    for kind, by_id in facts.items():
        for fid, fact in by_id.items():
            if not fact.values.get("customer") and set(fact.refs()) & refs:
                mine.add((kind, fid))
    return mine


def _plain_facts(facts: dict[str, dict[str, dict]]) -> dict[str, dict[str, Fact]]:
    return {kind: {fid: Fact.load(d) for fid, d in by_id.items()} for kind, by_id in facts.items()}


def _moving(facts: dict[str, dict[str, Fact]], move: dict) -> set[tuple[str, str]]:
    if move["whole"]:
        return {(kind, fid) for kind, by_id in facts.items() for fid in by_id}
    return owned_facts(facts, move["customer"])


def view_facts(customer_id: str, profile: dict, facts: dict[str, dict[str, dict]]
               ) -> dict[str, dict[str, dict]]:
    """A record's facts as readers see them while a move is under way: the source without
    what is leaving it, the target with what is coming from the source."""
    move = profile.get("move")
    if not move:
        return facts
    if customer_id == move["source"]:
        leaving = _moving(_plain_facts(facts), move)
        return {kind: {fid: d for fid, d in by_id.items() if (kind, fid) not in leaving}
                for kind, by_id in facts.items()}
    source = store.load(move["source"], consistent=True)
    if not source.profile or (source.profile.get("move") or {}).get("id") != move["id"]:
        return facts  # finished since this record was read
    coming = _plain_facts(source.facts)
    merged = _plain_facts(facts)
    for kind, fid in _moving(coming, move):
        merged.setdefault(kind, {}).setdefault(fid, Fact()).absorb(coming[kind][fid])
    return {kind: {fid: f.dump() for fid, f in by_id.items()} for kind, by_id in merged.items()}


def start(state, customer: Ref, email: str, target) -> dict:
    """Begin moving ``customer``'s part of ``state`` (a records.service._State) to
    ``target`` (the new e-mail's record, or None for a new record claiming ``email``).
    One transaction; raises store.Conflict when another writer got there first."""
    from chalicelib.records.service import _State

    whole = set(state.profile["processor_ids"]) <= {str(customer)}
    if target is None:
        target = _State(state.account_id, None, ids.new_id("cst"))
        target.profile["email"] = email
        target.claim_email = email
    move = {"id": ids.new_id("mov"), "source": state.customer_id, "target": target.customer_id,
            "customer": str(customer), "whole": whole}
    source_profile = {**state.profile, "account_id": state.account_id,
                      "data": state.profile_fact.dump(), "move": move}
    target_ids = list(target.profile["processor_ids"])
    if str(customer) not in target_ids:
        target_ids.append(str(customer))
    target_profile = {**target.profile, "account_id": state.account_id,
                      "data": target.profile_fact.dump(), "processor_ids": target_ids,
                      "move": move}
    try:
        store.commit([
            store.RecordWrite(account_id=state.account_id, customer_id=state.customer_id,
                              profile=source_profile, expected_rev=state.rev,
                              release_email=state.profile["email"] if whole else None),
            store.RecordWrite(account_id=state.account_id, customer_id=target.customer_id,
                              profile=target_profile, expected_rev=target.rev,
                              claim_email=target.claim_email,
                              repoint=[(customer.processor, customer.id, state.customer_id)]),
        ], None, None)
    finally:
        for customer_id in (state.customer_id, target.customer_id):
            store.forget_collection(customer_id)
    return move


def finish(account_id: str, move: dict) -> None:
    """Carry a started move through to the end (idempotent; see the module's docstring)."""
    from chalicelib.records.service import _State, _tombstone

    for _ in range(MAX_ATTEMPTS):
        source = _State(account_id, store.load(move["source"]), move["source"])
        target = _State(account_id, store.load(move["target"]), move["target"])
        if all((s.profile.get("move") or {}).get("id") != move["id"] for s in (source, target)):
            break  # someone else finished it
        # The profiles as stored (marked), for the transactions before the last.
        marked = {s.customer_id: {**s.profile, "account_id": account_id}
                  for s in (source, target)}
        moving = _moving(source.facts, move)
        original_refs = {(kind, fid): source.facts[kind][fid].refs() for kind, fid in moving}
        staying_refs = {ref for kind, by_id in source.facts.items() for fid, fact in by_id.items()
                        if (kind, fid) not in moving for ref in fact.refs()}
        # Each moved fact travels with the pointers of the objects only it names.
        units: list[tuple[tuple[str, str], list[tuple[str, str, str]]]] = []
        assigned: set[tuple[str, str]] = set()
        for kind, fid in sorted(moving):
            fact = source.facts[kind][fid]
            target.facts.setdefault(kind, {}).setdefault(fid, Fact()).absorb(fact)
            target.changed_facts.add((kind, fid))
            repoint = []
            for ref in fact.refs():
                if ref not in staying_refs and ref not in assigned:
                    assigned.add(ref)
                    repoint.append((*ref, source.customer_id))
            units.append(((kind, fid), repoint))
        if move["whole"]:
            target.profile_fact.absorb(source.profile_fact)
            source_final = _tombstone(source, target.customer_id)
        else:
            # Each side's profile is what its own processor customers said.
            target.profile_fact.absorb(profile_of(
                source.facts["CUS"][fid] for kind, fid in moving if kind == "CUS"))
            for kind, fid in moving:
                del source.facts[kind][fid]
            if source.facts.get("CUS"):
                source.profile_fact = profile_of(source.facts["CUS"].values())
            source.profile["processor_ids"] = [p for p in source.profile["processor_ids"]
                                               if p != move["customer"]]
            source_final = source.to_write()
        target_final = target.to_write()
        for w in (source_final, target_final):
            w.profile = {**w.profile, "move": None}
        # The histories (event log, notes; all of them, e-mails too, when the whole
        # record goes) follow first, while both records are still marked.
        history_refs = None if move["whole"] else (
            {move["customer"]} | {f"{p}:{i}" for key in moving
                                  for p, i in original_refs[key]} | {fid for _, fid in moving})
        try:
            store.relocate_history(source.customer_id, target.customer_id, history_refs)
            _commit_in_chunks(source, target, source_final, target_final, units, marked)
        except store.Conflict:
            continue
        finally:
            store.forget_collection(source.customer_id)
            store.forget_collection(target.customer_id)
        break
    else:
        raise RetryLater("a record move is contended; it will be retried")
    store.forget_pointers_to(move["source"])


def _commit_in_chunks(source, target, source_final: store.RecordWrite,
                      target_final: store.RecordWrite, units, marked: dict[str, dict]) -> None:
    """Write a move's changes in transactions of at most CHUNK_OPS items plus both
    profiles; intermediate ones keep both profiles as stored (marked), the last writes
    them as final (unmarked) with the summaries."""
    fact_data = {(kind, fid): data for kind, fid, data in target_final.facts}
    # (which record, list name, element): each moved fact's unit stays in one transaction.
    groups: list[list[tuple[str, str, object]]] = []
    for key, repoint in units:
        groups.append([("source", "delete_facts", key),
                       ("target", "facts", (*key, fact_data[key])),
                       *[("target", "repoint", r) for r in repoint]])
    for side, write in (("source", source_final), ("target", target_final)):
        if side == "source":
            # The tombstone deletes every fact; the moved ones go with their units.
            moved = {key for key, _ in units}
            groups += [[(side, "delete_facts", key)] for key in write.delete_facts
                       if key not in moved]
        groups += [[(side, "pointers", p)] for p in write.pointers]
        groups += [[(side, "order_pointers", o)] for o in write.order_pointers]
        groups += [[(side, "search_put", item)] for item in write.search_put.items()]
        groups += [[(side, "search_delete", s)] for s in write.search_delete]
        groups += [[(side, "order_deletes", o)] for o in write.order_deletes]
        groups += [[(side, "order_puts", o)] for o in write.order_puts]
    chunks: list[list[tuple[str, str, object]]] = [[]]
    for group in groups:
        if len(chunks[-1]) + len(group) > CHUNK_OPS:
            chunks.append([])
        chunks[-1].extend(group)
    stored = {"source": (source, source_final), "target": (target, target_final)}
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        writes = []
        for side in ("source", "target"):
            state, final = stored[side]
            profile = final.profile if last else marked[state.customer_id]
            w = store.RecordWrite(account_id=state.account_id, customer_id=state.customer_id,
                                  profile=profile, expected_rev=state.rev + i)
            if last:
                w.summary, w.delete_summary = final.summary, final.delete_summary
            for s, name, element in chunk:
                if s != side:
                    continue
                if name == "search_put":
                    w.search_put[element[0]] = element[1]
                else:
                    getattr(w, name).append(element)
            writes.append(w)
        store.commit(writes, None, None)


def fold(account_id: str, source_id: str, target_id: str) -> None:
    """Fold record ``source_id`` into ``target_id`` (a merchant's merge of two records):
    each processor customer of the source moves with its part (``start``, ``finish``), the
    last one with the whole record, so the source ends a tombstone naming the target and
    its e-mail is released; the target keeps its own e-mail. Each step is a move like any
    other (resumable; a writer meeting a mark finishes it), and calling ``fold`` again
    carries on from what is stored (nothing left: it returns)."""
    from chalicelib.records.service import _load_live

    for _ in range(MAX_ATTEMPTS * 4):
        source = _load_live(account_id, source_id)
        if source.is_new or source.customer_id == target_id:
            return  # folded already: its tombstone leads to the target
        target = _load_live(account_id, target_id)
        marked = next((s.profile["move"] for s in (source, target) if s.profile.get("move")),
                      None)
        if marked:
            finish(account_id, marked)
            continue
        if not source.profile["processor_ids"]:
            raise ValueError("a record without a processor customer cannot be folded")
        processor, _, ext = source.profile["processor_ids"][0].partition(":")
        try:
            move = start(source, Ref(processor, ext), target.profile["email"], target)
        except store.Conflict:
            continue
        finish(account_id, move)
    raise RetryLater("a record merge is contended; it will be retried")
