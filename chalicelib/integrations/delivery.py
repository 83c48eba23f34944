"""Delivery of product events to merchants' endpoints, signed with Standard Webhooks v1.

``fan_out`` turns one outbox event into one delivery per subscribed endpoint, idempotently:
the delivery's id and its ``webhook-id`` derive from the event and the endpoint, and the
delivery is written with ``attribute_not_exists``, so an event fanned out twice (the
pipeline is at least once) is delivered under one ``webhook-id``.

``attempt`` makes one HTTP attempt of a delivery that is due: it first claims it with a
conditional write (pending, due, no lease held), so two workers never send the same
attempt; it signs with the time of sending on the real clock (receivers check it within
five minutes), while ``now`` (a fake clock in tests) drives the schedule. What happens next:
  2xx                 succeeded; the endpoint's failure streak ends
  410                 the endpoint is disabled at once (a Zapier hook is removed)
  anything else       retried after ``RETRY_DELAYS`` (jitter only lengthens them: ≥ 72 h
                      are covered in 10 attempts), or after ``Retry-After`` when it asks
                      for longer (at most ``RETRY_AFTER_CAP``); an endpoint failing for
                      ``DISABLE_AFTER`` (5 days) is disabled and its owners e-mailed
Redirects are not followed (a 3xx is a failure) and the connection goes to the address
checked by the SSRF guard (``outbound.post_to_endpoint``). An ``eventbridge`` endpoint's
attempt is a PutEvents on its bus instead (``eventbridge.put``): 200 when the entry was
accepted, else a failure retried and counted like any other.

Each attempt is logged (store: ``ATTEMPT#<n>``, kept 30 days) in the same transaction as
the delivery's new state and the scheduler's step for the next attempt (kind
``delivery.attempt``, id ``delivery:<delivery id>:<attempt n>``), so a crash loses neither.
"""
from __future__ import annotations

import json
import math
import random
import time
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook

from chalicelib import ids, outbound, timeutil
from chalicelib.errors import BadRequest, NotFound
from chalicelib.integrations import catalogue, endpoints, eventbridge
from chalicelib.observability import logger
from chalicelib.settings import get_settings
from chalicelib.store import endpoints as store
from chalicelib.store import steps as steps_store
from chalicelib.store.endpoints import FAILED, PENDING, SUCCEEDED, Attempt, Delivery
from chalicelib.timeutil import iso

# The wait before attempt n + 1 after attempt n failed (the first attempt is at once).
RETRY_DELAYS = (timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30),
                timedelta(hours=2), timedelta(hours=5), timedelta(hours=10),
                timedelta(hours=14), timedelta(hours=20), timedelta(hours=24))
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.2  # each wait is lengthened by up to 20 %
RETRY_AFTER_CAP = timedelta(hours=24)
DISABLE_AFTER = timedelta(days=5)
RETENTION = timedelta(days=30)
# More than the send's whole timeout: a worker that died mid-attempt frees it after this.
LEASE_SECONDS = 60
STEP_KIND = "delivery.attempt"
FIRST_ATTEMPT_BACKSTOP = timedelta(minutes=1)
RESPONSE_KEEP_BYTES = outbound.ENDPOINT_KEEP_BYTES


def delivery_id_of(account_id: str, event_id: str, endpoint_id: str) -> str:
    return ids.stable_id("dlv", account_id, event_id, endpoint_id)


def webhook_id_of(account_id: str, event_id: str, endpoint_id: str) -> str:
    return ids.stable_id("msg", account_id, event_id, endpoint_id)


def step_id_of(delivery_id: str, attempt_number: int) -> str:
    return f"delivery:{delivery_id}:{attempt_number}"


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _step(delivery: Delivery, attempt_number: int, due: datetime) -> steps_store.Step:
    return steps_store.Step(account_id=delivery.account_id,
                            step_id=step_id_of(delivery.delivery_id, attempt_number),
                            kind=STEP_KIND, due_at=iso(due),
                            data={"delivery_id": delivery.delivery_id})


def public(delivery: Delivery) -> dict:
    return {
        "id": delivery.delivery_id, "endpoint_id": delivery.endpoint_id,
        "event_id": delivery.event_id, "event_type": delivery.event_type,
        "webhook_id": delivery.webhook_id, "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": timeutil.iso_from_epoch(delivery.next_attempt_at)
        if delivery.status == PENDING else None,
        "last_status": delivery.last_status, "last_error": delivery.last_error,
        "created_at": delivery.created_at, "updated_at": delivery.updated_at,
    }


def public_attempt(attempt: Attempt) -> dict:
    return {"number": attempt.number, "at": attempt.at, "status": attempt.status,
            "duration_ms": attempt.duration_ms, "response": attempt.response,
            "error": attempt.error, "next_attempt_at": attempt.next_attempt_at}


# --- fan-out -----------------------------------------------------------------------------

def fan_out(event: dict, now: datetime) -> list[dict]:
    """One delivery per endpoint subscribed to the event's type (the same ones however
    often it is called for the same event), each with its first attempt planned."""
    account_id = event["account_id"]
    out = []
    for endpoint in endpoints.subscribed(account_id, event["type"]):
        delivery_id = delivery_id_of(account_id, event["event_id"], endpoint["id"])
        delivery, _ = store.create_delivery(Delivery(
            account_id=account_id, delivery_id=delivery_id, endpoint_id=endpoint["id"],
            event_id=event["event_id"], event_type=event["type"],
            webhook_id=webhook_id_of(account_id, event["event_id"], endpoint["id"]),
            event=event, status=PENDING, attempts=0, next_attempt_at=_epoch(now),
            last_status=None, last_error=None, created_at=iso(now), updated_at=iso(now)),
            expires_at=_epoch(now + RETENTION))
        if delivery.status == PENDING and delivery.attempts == 0:
            # The pipeline attempts it at once; this step is the backstop if that worker
            # dies (planning it again is harmless: the same step id).
            steps_store.plan(_step(delivery, 1, now + FIRST_ATTEMPT_BACKSTOP))
        out.append(public(delivery))
    return out


# --- one attempt ---------------------------------------------------------------------------

def body_of(endpoint_kind: str, event: dict) -> bytes:
    """The request body: the event's versioned payload as compact JSON (a Slack
    destination gets a message about it instead)."""
    payload = catalogue.payload(event)
    if endpoint_kind == "slack":
        payload = {"text": f"{payload['type']} ({payload['id']})",
                   "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text":
                              f"*{payload['type']}*\n```{json.dumps(payload['data'])[:2500]}```"}}]}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signature_headers(webhook_id: str, body: bytes, secrets: list[str],
                      sent_at: datetime) -> dict[str, str]:
    """Standard Webhooks v1 headers; one ``v1,`` signature per secret (space-separated)."""
    text = body.decode()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(webhook_id, sent_at, text)
                                      for s in secrets),
    }


def next_delay(attempt_number: int, retry_after: timedelta | None = None,
               rng: random.Random | None = None) -> timedelta:
    """The wait after failed attempt ``attempt_number`` (1-based)."""
    base = RETRY_DELAYS[min(attempt_number, len(RETRY_DELAYS)) - 1]
    delay = base * (1 + (rng or random).uniform(0, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return timedelta(seconds=math.ceil(delay.total_seconds()))  # the store keeps seconds


def _retry_after(value: str | None, sent_at: datetime) -> timedelta | None:
    """``Retry-After`` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value[:9]))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - sent_at, timedelta(0))


def attempt(account_id: str, delivery_id: str, now: datetime) -> dict:
    """Make one attempt of the delivery if it is pending and due and no one else is
    making it; the delivery as it then is, with ``attempted`` (whether this call sent)."""
    delivery = store.claim(account_id, delivery_id, _epoch(now), LEASE_SECONDS)
    if delivery is None:
        current = store.get_delivery(account_id, delivery_id)
        return {**(public(current) if current else {"id": delivery_id}), "attempted": False}
    number = delivery.attempts
    endpoint = store.get_endpoint(account_id, delivery.endpoint_id)
    if endpoint is None or not endpoint.enabled:
        why = "the endpoint was deleted" if endpoint is None else \
            f"the endpoint is disabled ({endpoint.disabled_reason})"
        outcome = Attempt(number=number, at=iso(now), status=None, duration_ms=0,
                          response=None, error=f"not sent: {why}")
        _record(delivery, outcome, FAILED, None, now)
        return {**public(store.get_delivery(account_id, delivery_id)), "attempted": False}

    started = time.monotonic()
    if endpoint.kind == eventbridge.KIND:
        status, response, error, retry_after = *_put_on_bus(endpoint, delivery.event), None
    else:
        status, response, error, retry_after = _post(endpoint, delivery, now)
    duration_ms = int((time.monotonic() - started) * 1000)
    log = {"account_id": account_id, "delivery_id": delivery_id,
           "endpoint_id": endpoint.endpoint_id, "attempt": number, "status": status}

    if status is not None and 200 <= status < 300:
        _record(delivery, Attempt(number, iso(now), status, duration_ms, response, None),
                SUCCEEDED, None, now)
        if endpoint.failing_since:
            store.note_success(account_id, endpoint.endpoint_id)
        logger.info("delivery succeeded", extra=log)
    elif status == 410:
        _record(delivery, Attempt(number, iso(now), status, duration_ms, response,
                                  "410 Gone: the endpoint is disabled"), FAILED, None, now)
        if endpoint.kind == "zapier":  # Zapier's unsubscribe: the hook goes
            store.delete_endpoint(account_id, endpoint.endpoint_id)
        else:
            endpoints.disable(account_id, endpoint.endpoint_id,
                              "the endpoint answered 410 Gone", now)
        logger.warning("endpoint answered 410: disabled", extra=log)
    else:
        error = error or f"answered {status}"
        failing_since = store.note_failure(account_id, endpoint.endpoint_id, iso(now))
        streak = now - datetime.fromisoformat(failing_since) if failing_since else timedelta(0)
        if streak >= DISABLE_AFTER:
            _record(delivery, Attempt(number, iso(now), status, duration_ms, response, error),
                    FAILED, None, now)
            _disable_for_failures(endpoint, now)
        elif number - delivery.round_base >= MAX_ATTEMPTS:
            _record(delivery, Attempt(number, iso(now), status, duration_ms, response, error),
                    FAILED, None, now)
        else:
            next_at = now + next_delay(number - delivery.round_base, retry_after)
            _record(delivery, Attempt(number, iso(now), status, duration_ms, response, error,
                                      iso(next_at)), PENDING, next_at, now)
        logger.warning("delivery attempt failed", extra={**log, "error": error[:200]})
    return {**public(store.get_delivery(account_id, delivery_id)), "attempted": True}


def _post(endpoint: store.Endpoint, delivery: Delivery, now: datetime):
    """One signed HTTP POST: (status, response, error, retry_after)."""
    body = body_of(endpoint.kind, delivery.event)
    sent_at = timeutil.now()  # the real clock: receivers check it against theirs
    headers = signature_headers(delivery.webhook_id, body,
                                endpoints.signing_secrets(endpoint, now), sent_at)
    status, response, error, retry_after = None, None, None, None
    try:
        answer = outbound.post_to_endpoint(
            endpoint.url, body, headers,
            allow_http_loopback=get_settings().allow_http_loopback_endpoints)
        status = answer.status
        response = answer.body[:RESPONSE_KEEP_BYTES].decode("utf-8", "replace")
        retry_after = _retry_after(answer.headers.get("retry-after"), sent_at)
        if 300 <= status < 400:
            error = "redirect not followed"
    except outbound.Refused as exc:
        error = f"refused by the SSRF guard: {exc}"
    except outbound.Unavailable as exc:
        error = f"no answer: {exc}"
    return status, response, error, retry_after


def _put_on_bus(endpoint: store.Endpoint, event: dict):
    """One PutEvents on the endpoint's bus: (status, response, error). The ARN is checked
    again here, so a bus outside the deployment's account and region is never called,
    whatever the stored item says."""
    try:
        eventbridge.check_bus_arn(endpoint.url)
    except BadRequest as exc:
        return None, None, f"not sent: {exc.message}"
    result = eventbridge.put(endpoint.url, event)
    return result.status, result.response, result.error


def _record(delivery: Delivery, outcome: Attempt, status: str, next_at: datetime | None,
            now: datetime) -> None:
    also = [steps_store.plan_op(_step(delivery, outcome.number + 1, next_at))] \
        if next_at is not None else []
    store.record_attempt(delivery, outcome, status=status,
                         next_attempt_at=_epoch(next_at) if next_at else None, at=iso(now),
                         attempt_expires_at=_epoch(now + RETENTION), also=also)


def _disable_for_failures(endpoint: store.Endpoint, now: datetime) -> None:
    days = DISABLE_AFTER.days
    if not endpoints.disable(endpoint.account_id, endpoint.endpoint_id,
                             f"every attempt failed for {days} days", now):
        return  # already disabled: the e-mail went then
    _mail_owners(endpoint, days)


def _mail_owners(endpoint: store.Endpoint, days: int) -> None:
    from chalicelib.accounts.service import get_account
    from chalicelib.mail.sender import MailFailed, Message, send
    from chalicelib.staff.service import list_staff

    account = get_account(endpoint.account_id)
    if account is None:
        return
    recipients = [m.email for m in list_staff(endpoint.account_id)
                  if m.role in ("owner", "admin")] or [account["support_email"]]
    text = (f"Deliveries to your endpoint {endpoint.url} ({endpoint.endpoint_id}) have failed "
            f"for {days} days, so it has been disabled and no more events are sent to it.\n\n"
            "Fix the endpoint, then enable it again in the dashboard (Settings → Endpoints), "
            "where you can also replay the failed deliveries.\n")
    for to in recipients:
        try:
            send(Message(from_name=account["name"], from_address=account["support_email"],
                         to=to, subject=f"Webhook endpoint disabled: {endpoint.url[:80]}",
                         text=text),
                 account_id=endpoint.account_id, kind="endpoint_disabled")
        except MailFailed as exc:
            logger.warning("endpoint-disabled mail not sent",
                           extra={"account_id": endpoint.account_id, "error": exc.code})


# --- the scheduler's handler ---------------------------------------------------------------

def handle_due_attempt(step, now: datetime):
    """A ``delivery.attempt`` step (scheduler.kinds): attempt the delivery if it is due;
    the next attempt, if any, is its own step (planned by the attempt).

    A step that finds nothing to send is done, unless it is the one that keeps the
    delivery going: an attempt in progress (the pipeline's sender, or one that died
    holding the lease) when the step is for that attempt or the next, or a step for the
    next attempt that came early. Those come back when the lease ends or the attempt is
    due, so a worker dying mid-attempt never leaves a delivery pending with nothing to
    send it; an older step (its attempt made) ends."""
    from chalicelib.scheduler.service import Outcome

    delivery_id = (step.data or {}).get("delivery_id")
    number = _step_number(step.step_id)
    if not delivery_id or number is None:
        return Outcome.failed({"error": "not a delivery step"})
    result = attempt(step.account_id, delivery_id, now)
    if not result.get("attempted"):
        current = store.get_delivery(step.account_id, delivery_id)
        if current is not None and current.status == PENDING:
            if current.lease_until >= _epoch(now) and number >= current.attempts:
                return Outcome.later(timeutil.iso_from_epoch(current.lease_until + 1))
            if current.next_attempt_at and current.next_attempt_at > _epoch(now) \
                    and number > current.attempts:
                return Outcome.later(timeutil.iso_from_epoch(current.next_attempt_at))
    return Outcome.done({"attempted": result.get("attempted", False),
                         "status": result.get("status")})


def _step_number(step_id: str) -> int | None:
    tail = step_id.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


# --- replay and reads ----------------------------------------------------------------------

def replay(account_id: str, delivery_id: str, now: datetime) -> dict:
    """Make the delivery due again (same ``webhook-id``): the scheduler's step attempts it
    at its next sweep, then on the retry schedule if it fails. 404 for a delivery that is
    not the account's. (Queued rather than sent here: the request's function needs no
    access to the endpoints' secrets.)"""
    delivery = _require(account_id, delivery_id)
    if not store.requeue(account_id, delivery_id, _epoch(now), iso(now),
                         _epoch(now + RETENTION)):
        raise BadRequest("an attempt of this delivery is in progress: try again shortly",
                         code="attempt_in_progress")
    steps_store.plan(_step(delivery, delivery.attempts + 1, now))
    return public(store.get_delivery(account_id, delivery_id))


def replay_failed(account_id: str, endpoint_id: str, since: datetime, now: datetime,
                  limit: int = 500) -> list[str]:
    """Requeue every failed delivery to the endpoint created since ``since``; their ids
    (each is attempted by the scheduler's step, at once)."""
    endpoints.require(account_id, endpoint_id)
    replayed = []
    for delivery in store.list_deliveries(account_id, endpoint_id, since=iso(since),
                                          limit=limit):
        if delivery.status != FAILED:
            continue
        if store.requeue(account_id, delivery.delivery_id, _epoch(now), iso(now),
                         _epoch(now + RETENTION)):
            steps_store.plan(_step(delivery, delivery.attempts + 1, now))
            replayed.append(delivery.delivery_id)
    return replayed


def _require(account_id: str, delivery_id: str) -> Delivery:
    delivery = None
    if isinstance(delivery_id, str) and delivery_id.startswith("dlv_") and len(delivery_id) < 64:
        delivery = store.get_delivery(account_id, delivery_id)
    if delivery is None:
        raise NotFound("no such delivery")
    return delivery


def get(account_id: str, delivery_id: str) -> dict:
    delivery = _require(account_id, delivery_id)
    return {**public(delivery),
            "attempts_log": [public_attempt(a) for a in store.list_attempts(account_id,
                                                                            delivery_id)]}


def list_for_endpoint(account_id: str, endpoint_id: str, limit: int = 50) -> list[dict]:
    endpoints.require(account_id, endpoint_id)
    return [public(d) for d in store.list_deliveries(account_id, endpoint_id, limit=limit)]
