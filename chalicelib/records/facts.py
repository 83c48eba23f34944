"""What a record knows about each processor object, merged field by field.

A record is a set of *facts*: one per processor object (subscription, payment, refund,
dispute, card) plus the profile. Each fact keeps, for every field, the value and the
version that set it. An event sets a field only if its version is newer, and a field an
event does not know (None) is left alone. That is a last-writer-wins map: applying any
set of events, in any order, any number of times, gives the same fact. Everything else
on a record (orders, plan progress, stats) is derived from the facts, so it converges too.

A version is ``[sticky, occurred_at, tiebreak]``: ``sticky`` lets a terminal state win
over any later-arriving earlier state (a paid invoice stays paid, a canceled subscription
stays canceled); ``tiebreak`` orders two events of the same second deterministically.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, is_dataclass

from chalicelib.domain.events import (
    CustomerChanged,
    DisputeChanged,
    DomainEvent,
    PaymentChanged,
    PaymentMethodChanged,
    Ref,
    RefundChanged,
    SubscriptionChanged,
)

# kind → (domain event type, the event's field naming the object, public id prefix).
# CUS: one processor customer's own profile (name, address, e-mail, …). The record's
# profile is their merge; kept apart so that when one processor customer leaves a record
# (records.moves) the rest of the profile is what the others said.
FACT_KINDS = {
    "CUS": (CustomerChanged, "customer", "pcu"),
    "SUB": (SubscriptionChanged, "subscription", "sub"),
    "PAY": (PaymentChanged, "payment", "pay"),
    "REFUND": (RefundChanged, "refund", "rfd"),
    "DISPUTE": (DisputeChanged, "dispute", "dsp"),
    "PM": (PaymentMethodChanged, "payment_method", "card"),
}

STICKY_STATUSES = {
    "SUB": {"canceled", "incomplete_expired"},
    "PAY": {"succeeded"},
    "DISPUTE": {"won", "lost", "warning_closed"},
}


def kind_of(event: DomainEvent) -> str | None:
    for kind, (cls, _, _) in FACT_KINDS.items():
        if isinstance(event, cls):
            return kind
    return None


def object_ref(event: DomainEvent) -> Ref | None:
    kind = kind_of(event)
    return getattr(event, FACT_KINDS[kind][1]) if kind else None


def to_plain(value):
    """Domain values → JSON-safe values (a Ref becomes ``"stripe:pi_123"``)."""
    if isinstance(value, Ref):
        return str(value)
    if is_dataclass(value):
        return {k: to_plain(v) for k, v in asdict(value).items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


REF_FIELDS = ("payment", "intent", "charge", "invoice", "subscription", "refund", "dispute",
              "payment_method")


def _tiebreak(value) -> str:
    """A short, deterministic digest of the value: orders two news of the same second the
    same way on every replay, without storing the value twice (item size is write cost)."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(encoded, digest_size=6).hexdigest()


@dataclass
class Fact:
    values: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)

    @classmethod
    def load(cls, data: dict | None) -> Fact:
        data = data or {}
        return cls(values=dict(data.get("values", {})), versions=dict(data.get("versions", {})))

    def dump(self) -> dict:
        return {"values": self.values, "versions": self.versions}

    def merge(self, values: dict, occurred_at: int, sticky_statuses: set[str] = frozenset()) -> bool:
        """Apply one event's known values; True if anything changed."""
        changed = False
        for name, value in values.items():
            plain = to_plain(value)
            sticky = 1 if name == "status" and plain in sticky_statuses else 0
            version = [sticky, occurred_at, _tiebreak(plain)]
            current = self.versions.get(name)
            if current is None or version > current:
                self.values[name] = plain
                self.versions[name] = version
                changed = True
        return changed

    def absorb(self, other: Fact) -> None:
        """Take every field of ``other`` that is newer (folding one record into another)."""
        for name, version in other.versions.items():
            if name not in self.versions or version > self.versions[name]:
                self.values[name] = other.values.get(name)
                self.versions[name] = version

    def without(self, *names: str) -> Fact:
        return Fact(values={k: v for k, v in self.values.items() if k not in names},
                    versions={k: v for k, v in self.versions.items() if k not in names})

    def refs(self) -> list[tuple[str, str]]:
        """The processor objects this fact names, as ``(processor, id)``."""
        out = []
        for name in REF_FIELDS:
            value = self.values.get(name)
            if isinstance(value, str) and ":" in value:
                processor, _, ext = value.partition(":")
                out.append((processor, ext))
        return out



def profile_of(customer_facts) -> Fact:
    """A record's profile as the merge of its processor customers' own (CUS facts)."""
    profile = Fact()
    for fact in customer_facts:
        profile.absorb(fact.without("customer", "email"))
    return profile
