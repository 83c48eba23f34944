"""Merchants' endpoints (Standard Webhooks destinations, Zapier hooks, Slack) and the
deliveries of events to them, with every attempt.

Items:
  ``ACCT#<acct>#ENDPOINTS`` / ``EP#<id>``        an endpoint (an account has a few: read whole)
  ``ACCT#<acct>#ENDPOINTS`` / ``CLAIM#<digest>`` the endpoint of one kind, URL and event
                                                 types that ``create_endpoint_once`` answers
  ``ACCT#<acct>#OUTDLV#<dlv>`` / ``DELIVERY``    one event to one endpoint; GSI1 under
                                                 ``ACCT#<acct>#EP#<id>#DELIVERIES`` by
                                                 ``<created>#<dlv>`` (list, replay since)
  ``ACCT#<acct>#OUTDLV#<dlv>`` / ``ATTEMPT#<n>`` one HTTP attempt (TTL 30 days)

Every write that decides something is conditional: a delivery is created once per event
and endpoint (``attribute_not_exists``), an attempt is claimed by one worker (status
pending, due, lease free), an endpoint is disabled once (the e-mail goes once), a
Zapier subscribe sent twice at once makes one endpoint (the claim, written in the
transaction of the endpoint).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib.store import keys
from chalicelib.store.table import (
    DeliveryAttemptItem,
    EndpointClaimItem,
    EndpointItem,
    EndpointSecret,
    OutboundDeliveryItem,
    TableItem,
)

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
MAX_ENDPOINTS = 50
# A create racing others for one claim re-reads it this many times at most (a transaction
# in progress on the claim cancels the others': they wait a little and look again).
CLAIM_TRIES = 10
CLAIM_BACKOFF_SECONDS = 0.05  # 0.05 s, then 0.1 s, …: 2.75 to 5.5 s in all


@dataclass(frozen=True)
class StoredSecret:
    ciphertext: str
    fingerprint: str
    expires_at: int | None = None


@dataclass(frozen=True)
class Endpoint:
    account_id: str
    endpoint_id: str
    kind: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    secrets: list[StoredSecret]
    failing_since: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class Delivery:
    account_id: str
    delivery_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    webhook_id: str
    event: dict
    status: str
    attempts: int
    next_attempt_at: int | None
    last_status: int | None
    last_error: str | None
    created_at: str
    updated_at: str
    # The attempt count when the delivery was last replayed: the retry schedule of a
    # replay starts again from there.
    round_base: int = 0
    lease_until: int = 0  # epoch seconds: an attempt holds the delivery until then


@dataclass(frozen=True)
class Attempt:
    number: int
    at: str
    status: int | None
    duration_ms: int
    response: str | None
    error: str | None
    next_attempt_at: str | None = None


def _conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def _connection():
    return TableItem._get_connection().connection


# --- endpoints -------------------------------------------------------------------------

def _endpoint(item: EndpointItem) -> Endpoint:
    return Endpoint(
        account_id=item.account_id, endpoint_id=item.endpoint_id, kind=item.kind, url=item.url,
        description=item.description or "", event_types=list(item.event_types or []),
        enabled=bool(item.enabled), disabled_reason=item.disabled_reason,
        secrets=[StoredSecret(s.ciphertext, s.fingerprint,
                              int(s.expires_at) if s.expires_at is not None else None)
                 for s in item.secrets or []],
        failing_since=item.failing_since, created_at=item.created_at,
        updated_at=item.updated_at)


def _secret_maps(secrets: list[StoredSecret]) -> list[EndpointSecret]:
    return [EndpointSecret(ciphertext=s.ciphertext, fingerprint=s.fingerprint,
                           expires_at=s.expires_at) for s in secrets]


def _endpoint_item(endpoint: Endpoint) -> EndpointItem:
    return EndpointItem(keys.endpoints_pk(endpoint.account_id),
                        keys.endpoint_sk(endpoint.endpoint_id),
                        account_id=endpoint.account_id, endpoint_id=endpoint.endpoint_id,
                        kind=endpoint.kind, url=endpoint.url, description=endpoint.description,
                        event_types=list(endpoint.event_types),
                        enabled=1 if endpoint.enabled else 0,
                        disabled_reason=endpoint.disabled_reason,
                        secrets=_secret_maps(endpoint.secrets),
                        created_at=endpoint.created_at, updated_at=endpoint.updated_at)


def create_endpoint(endpoint: Endpoint) -> None:
    _endpoint_item(endpoint).save(condition=TableItem.PK.does_not_exist())


def _claim_key(endpoint: Endpoint) -> tuple[str, str]:
    return (keys.endpoints_pk(endpoint.account_id),
            keys.endpoint_claim_sk(endpoint.kind, endpoint.url, endpoint.event_types))


def _same_destination(a: Endpoint, b: Endpoint) -> bool:
    return (a.kind, a.url, sorted(a.event_types)) == (b.kind, b.url, sorted(b.event_types))


def create_endpoint_once(endpoint: Endpoint) -> tuple[Endpoint | None, bool]:
    """Create the endpoint unless the account has an enabled one of the same kind, URL
    and event types: (the endpoint, whether this call made it). Safe under concurrency:
    a claim item keyed by a digest of the three is put, only if absent, in the transaction
    of the endpoint, so of simultaneous creates one writes and the others answer its
    endpoint. A claim left by an endpoint deleted, disabled or changed since is taken
    over (conditioned on still naming it). (None, False): the claim stayed contended
    through every try; the caller may ask again."""
    pk, sk = _claim_key(endpoint)
    stale: str | None = None
    for attempt in range(CLAIM_TRIES):
        claim = EndpointClaimItem(pk, sk, endpoint_id=endpoint.endpoint_id)
        condition = (TableItem.PK.does_not_exist() if stale is None
                     else EndpointClaimItem.endpoint_id == stale)
        try:
            with TransactWrite(connection=_connection()) as tx:
                tx.save(claim, condition=condition)
                tx.save(_endpoint_item(endpoint), condition=TableItem.PK.does_not_exist())
            return endpoint, True
        except TransactWriteError as exc:
            codes = {r.code for r in exc.cancellation_reasons or [] if r is not None}
            if not codes & {"ConditionalCheckFailed", "TransactionConflict"}:
                raise
            if "TransactionConflict" in codes:  # another create holds the claim: let it end
                time.sleep(CLAIM_BACKOFF_SECONDS * (attempt + 1) * (1 + random.random()))
        try:
            held = EndpointClaimItem.get(pk, sk, consistent_read=True).endpoint_id
        except DoesNotExist:
            stale = None
            continue
        current = get_endpoint(endpoint.account_id, held)
        if current is not None and current.enabled and _same_destination(current, endpoint):
            return current, False
        stale = held
    return None, False


def _release_claim(endpoint: Endpoint) -> None:
    """Delete the endpoint's claim if it still names the endpoint (another one may hold
    it now). Not in the endpoint's transaction, where a claim held by another would
    cancel the delete: a claim left behind (a crash between the two) is taken over by
    the next create (``create_endpoint_once``)."""
    pk, sk = _claim_key(endpoint)
    try:
        EndpointClaimItem(pk, sk).delete(
            condition=EndpointClaimItem.endpoint_id == endpoint.endpoint_id)
    except DeleteError as exc:
        if not _conditional_failed(exc):
            raise


def get_endpoint(account_id: str, endpoint_id: str) -> Endpoint | None:
    try:
        return _endpoint(EndpointItem.get(keys.endpoints_pk(account_id),
                                          keys.endpoint_sk(endpoint_id), consistent_read=True))
    except DoesNotExist:
        return None


def list_endpoints(account_id: str) -> list[Endpoint]:
    return [_endpoint(i) for i in EndpointItem.query(
        keys.endpoints_pk(account_id), EndpointItem.SK.startswith("EP#"), consistent_read=True,
        limit=MAX_ENDPOINTS + 1)]


def update_endpoint(account_id: str, endpoint_id: str, at: str, *, url: str | None = None,
                    description: str | None = None, event_types: list[str] | None = None,
                    enabled: bool | None = None, disabled_reason: str | None = None,
                    secrets: list[StoredSecret] | None = None) -> Endpoint | None:
    """Set the fields given; None when there is no such endpoint. Enabling clears the
    reason it was disabled and its failure streak."""
    actions = [EndpointItem.updated_at.set(at)]
    if url is not None:
        actions.append(EndpointItem.url.set(url))
    if description is not None:
        actions.append(EndpointItem.description.set(description))
    if event_types is not None:
        actions.append(EndpointItem.event_types.set(list(event_types)))
    if secrets is not None:
        actions.append(EndpointItem.secrets.set(_secret_maps(secrets)))
    if enabled is True:
        actions += [EndpointItem.enabled.set(1), EndpointItem.disabled_reason.remove(),
                    EndpointItem.failing_since.remove()]
    elif enabled is False:
        actions += [EndpointItem.enabled.set(0),
                    EndpointItem.disabled_reason.set(disabled_reason or "disabled")]
    item = EndpointItem(keys.endpoints_pk(account_id), keys.endpoint_sk(endpoint_id))
    try:
        item.update(actions=actions, condition=TableItem.PK.exists())
    except UpdateError as exc:
        if _conditional_failed(exc):
            return None
        raise
    return _endpoint(item)


def set_secrets_if_unchanged(account_id: str, endpoint_id: str, at: str,
                             old_current: str, secrets: list[StoredSecret]) -> bool:
    """Replace the secrets unless another rotation replaced the current one meanwhile."""
    item = EndpointItem(keys.endpoints_pk(account_id), keys.endpoint_sk(endpoint_id))
    try:
        item.update(actions=[EndpointItem.secrets.set(_secret_maps(secrets)),
                             EndpointItem.updated_at.set(at)],
                    condition=TableItem.PK.exists()
                    & (EndpointItem.secrets[0].fingerprint == old_current))
    except UpdateError as exc:
        if _conditional_failed(exc):
            return False
        raise
    return True


def disable_endpoint(account_id: str, endpoint_id: str, reason: str, at: str) -> bool:
    """Disable it; True only for the call that turned it from enabled to disabled."""
    item = EndpointItem(keys.endpoints_pk(account_id), keys.endpoint_sk(endpoint_id))
    try:
        item.update(actions=[EndpointItem.enabled.set(0),
                             EndpointItem.disabled_reason.set(reason[:200]),
                             EndpointItem.updated_at.set(at)],
                    condition=TableItem.PK.exists() & (EndpointItem.enabled == 1))
    except UpdateError as exc:
        if _conditional_failed(exc):
            return False
        raise
    return True


def delete_endpoint(account_id: str, endpoint_id: str) -> bool:
    """Delete the endpoint, then release its claim; False when there is no such endpoint
    (or another call deleted it first)."""
    try:
        old = EndpointItem._get_connection().delete_item(
            keys.endpoints_pk(account_id), range_key=keys.endpoint_sk(endpoint_id),
            condition=TableItem.PK.exists(), return_values="ALL_OLD")
    except DeleteError as exc:
        if _conditional_failed(exc):
            return False
        raise
    _release_claim(_endpoint(EndpointItem.from_raw_data(old["Attributes"])))
    return True


def note_success(account_id: str, endpoint_id: str) -> None:
    """End the endpoint's failure streak (a write only when there is one)."""
    item = EndpointItem(keys.endpoints_pk(account_id), keys.endpoint_sk(endpoint_id))
    try:
        item.update(actions=[EndpointItem.failing_since.remove()],
                    condition=TableItem.PK.exists() & EndpointItem.failing_since.exists())
    except UpdateError as exc:
        if not _conditional_failed(exc):
            raise


def note_failure(account_id: str, endpoint_id: str, at: str) -> str | None:
    """Start the failure streak unless one runs; when it began (None: no endpoint)."""
    item = EndpointItem(keys.endpoints_pk(account_id), keys.endpoint_sk(endpoint_id))
    try:
        item.update(actions=[EndpointItem.failing_since.set(
            EndpointItem.failing_since | at)], condition=TableItem.PK.exists())
    except UpdateError as exc:
        if _conditional_failed(exc):
            return None
        raise
    return item.failing_since


# --- deliveries ------------------------------------------------------------------------

def _delivery(item: OutboundDeliveryItem) -> Delivery:
    return Delivery(
        account_id=item.account_id, delivery_id=item.delivery_id, endpoint_id=item.endpoint_id,
        event_id=item.event_id, event_type=item.event_type, webhook_id=item.webhook_id,
        event=dict(item.event or {}), status=item.status, attempts=int(item.attempts or 0),
        next_attempt_at=int(item.next_attempt_at) if item.next_attempt_at is not None else None,
        last_status=int(item.last_status) if item.last_status is not None else None,
        last_error=item.last_error, created_at=item.created_at, updated_at=item.updated_at,
        round_base=int(item.round_base or 0), lease_until=int(item.lease_until or 0))


def create_delivery(delivery: Delivery, expires_at: int) -> tuple[Delivery, bool]:
    """Write the delivery unless it exists; (the stored delivery, whether this call made it)."""
    pk = keys.outbound_delivery_pk(delivery.account_id, delivery.delivery_id)
    item = OutboundDeliveryItem(
        pk, keys.OUTBOUND_DELIVERY_SK, account_id=delivery.account_id,
        delivery_id=delivery.delivery_id, endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id, event_type=delivery.event_type,
        webhook_id=delivery.webhook_id, event=delivery.event, status=delivery.status,
        attempts=0, next_attempt_at=delivery.next_attempt_at, lease_until=0,
        created_at=delivery.created_at, updated_at=delivery.updated_at,
        GSI1PK=keys.endpoint_deliveries_index_pk(delivery.account_id, delivery.endpoint_id),
        GSI1SK=keys.history_sk(delivery.created_at, delivery.delivery_id),
        ttl=datetime.fromtimestamp(expires_at, UTC))
    try:
        item.save(condition=TableItem.PK.does_not_exist())
    except PutError as exc:
        if _conditional_failed(exc):
            existing = get_delivery(delivery.account_id, delivery.delivery_id)
            if existing is not None:
                return existing, False
        raise
    return _delivery(item), True


def get_delivery(account_id: str, delivery_id: str) -> Delivery | None:
    try:
        return _delivery(OutboundDeliveryItem.get(
            keys.outbound_delivery_pk(account_id, delivery_id), keys.OUTBOUND_DELIVERY_SK,
            consistent_read=True))
    except DoesNotExist:
        return None


def list_deliveries(account_id: str, endpoint_id: str, *, since: str | None = None,
                    limit: int = 50) -> list[Delivery]:
    """An endpoint's deliveries, newest first (those created at or after ``since``)."""
    condition = since <= OutboundDeliveryItem.GSI1SK if since else None
    return [_delivery(i) for i in OutboundDeliveryItem.customers_index.query(
        keys.endpoint_deliveries_index_pk(account_id, endpoint_id), condition,
        scan_index_forward=False, limit=limit)]


def claim(account_id: str, delivery_id: str, now: int, lease_seconds: int) -> Delivery | None:
    """Take the delivery's next attempt: one more attempt counted and a lease held, only if
    it is pending, due and no other attempt holds it; None otherwise."""
    item = OutboundDeliveryItem(keys.outbound_delivery_pk(account_id, delivery_id),
                                keys.OUTBOUND_DELIVERY_SK)
    try:
        item.update(actions=[OutboundDeliveryItem.attempts.add(1),
                             OutboundDeliveryItem.lease_until.set(now + lease_seconds)],
                    condition=TableItem.PK.exists()
                    & (OutboundDeliveryItem.status == PENDING)
                    & (OutboundDeliveryItem.next_attempt_at <= now)
                    & (OutboundDeliveryItem.lease_until < now))
    except UpdateError as exc:
        if _conditional_failed(exc):
            return None
        raise
    return _delivery(item)


def record_attempt(delivery: Delivery, attempt: Attempt, *, status: str,
                   next_attempt_at: int | None, at: str, attempt_expires_at: int,
                   also: list[tuple] | None = None) -> None:
    """Log the attempt and set the delivery's outcome in one transaction (only while this
    attempt is still the delivery's latest). ``also``: more ``(kind, item, condition)``
    puts for the same transaction (the scheduler's step of the next attempt)."""
    pk = keys.outbound_delivery_pk(delivery.account_id, delivery.delivery_id)
    delivery_actions = [OutboundDeliveryItem.status.set(status),
                        OutboundDeliveryItem.lease_until.set(0),
                        OutboundDeliveryItem.updated_at.set(at)]
    delivery_actions.append(OutboundDeliveryItem.next_attempt_at.set(next_attempt_at)
                            if next_attempt_at is not None
                            else OutboundDeliveryItem.next_attempt_at.remove())
    delivery_actions.append(OutboundDeliveryItem.last_status.set(attempt.status)
                            if attempt.status is not None
                            else OutboundDeliveryItem.last_status.remove())
    delivery_actions.append(OutboundDeliveryItem.last_error.set(attempt.error[:500])
                            if attempt.error else OutboundDeliveryItem.last_error.remove())
    with TransactWrite(connection=_connection()) as tx:
        tx.save(DeliveryAttemptItem(
            pk, keys.outbound_attempt_sk(attempt.number), account_id=delivery.account_id,
            delivery_id=delivery.delivery_id, number=attempt.number, at=attempt.at,
            status=attempt.status, duration_ms=attempt.duration_ms, response=attempt.response,
            error=attempt.error, next_attempt_at=attempt.next_attempt_at,
            ttl=datetime.fromtimestamp(attempt_expires_at, UTC)),
            condition=TableItem.PK.does_not_exist())
        tx.update(OutboundDeliveryItem(pk, keys.OUTBOUND_DELIVERY_SK), actions=delivery_actions,
                  condition=OutboundDeliveryItem.attempts == attempt.number)
        for kind, item, condition in also or []:
            if kind == "delete":
                tx.delete(item, condition=condition)
            else:
                tx.save(item, condition=condition)


def requeue(account_id: str, delivery_id: str, now: int, at: str, expires_at: int) -> bool:
    """Make the delivery due again (a replay), keeping its webhook id and attempt count;
    False when there is no such delivery or an attempt is in progress."""
    item = OutboundDeliveryItem(keys.outbound_delivery_pk(account_id, delivery_id),
                                keys.OUTBOUND_DELIVERY_SK)
    try:
        item.update(actions=[OutboundDeliveryItem.status.set(PENDING),
                             OutboundDeliveryItem.round_base.set(OutboundDeliveryItem.attempts),
                             OutboundDeliveryItem.next_attempt_at.set(now),
                             OutboundDeliveryItem.updated_at.set(at),
                             OutboundDeliveryItem.ttl.set(datetime.fromtimestamp(expires_at, UTC))],
                    condition=TableItem.PK.exists() & (OutboundDeliveryItem.lease_until < now))
    except UpdateError as exc:
        if _conditional_failed(exc):
            return False
        raise
    return True


def list_attempts(account_id: str, delivery_id: str) -> list[Attempt]:
    return [Attempt(number=int(i.number), at=i.at,
                    status=int(i.status) if i.status is not None else None,
                    duration_ms=int(i.duration_ms), response=i.response, error=i.error,
                    next_attempt_at=i.next_attempt_at)
            for i in DeliveryAttemptItem.query(
                keys.outbound_delivery_pk(account_id, delivery_id),
                DeliveryAttemptItem.SK.startswith("ATTEMPT#"))]
