"""Receive a processor's webhook: verify, audit, translate, apply.

Answers: 200 applied, duplicate or ignored; 400 bad signature or malformed payload
(nothing written); 404 unknown account or processor (nothing written); 503 when the
event cannot be applied yet or a dependency failed (nothing half written; the processor
delivers again).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from chalicelib import ids, timeutil
from chalicelib.errors import AppError, BadRequest, NotFound, RetryLater
from chalicelib.observability import MetricUnit, logger, metrics
from chalicelib.processors import paypal, registry
from chalicelib.processors.gateway import ProcessorError
from chalicelib.processors.paypal import translate as paypal_translate
from chalicelib.processors.stripe import translate as stripe_translate
from chalicelib.processors.stripe import webhook as stripe_webhook
from chalicelib.records import service as records
from chalicelib.settings import get_settings
from chalicelib.store import accounts as account_store
from chalicelib.store import customers as record_store
from chalicelib.store import payloads

MAX_BODY_BYTES = 512 * 1024
ACCOUNT_CACHE_SECONDS = 60


@dataclass(frozen=True)
class Adapter:
    # verify(body, headers, account, tolerance): raises InvalidSignature or
    # MalformedPayload (chalicelib.processors.errors) unless the processor sent it.
    verify: object
    parse: object
    translate: object
    processor: str

    def owner_finder(self, account: dict):
        """Asks the account's processor who owns an object (records.apply's find_owner);
        the gateway is built only when asked."""
        def find_owner(ref):
            return registry.gateway_for(account, self.processor).owner_of(ref)
        return find_owner


ADAPTERS = {
    "stripe": Adapter(
        verify=lambda body, headers, account, tolerance: stripe_webhook.verify(
            body, headers.get("stripe-signature"), account.get("stripe_webhook_secrets") or [],
            tolerance),
        parse=stripe_webhook.parse,
        translate=stripe_translate.translate,
        processor="stripe",
    ),
    "paypal": Adapter(
        verify=paypal.verify_delivery,
        parse=paypal.parse,
        translate=paypal_translate.translate,
        processor="paypal",
    ),
}

# Account settings change rarely; a short cache saves a read per webhook. A signature
# failure against a cached account re-reads it, so a rolled secret works at once; but at
# most once a minute per account, so a flood of forged deliveries costs no table reads.
_account_cache: dict[str, tuple[float, dict]] = {}
_fresh_reads: dict[str, float] = {}
FRESH_READ_SECONDS = 60


def _account(account_id: str, fresh: bool = False) -> dict | None:
    hit = _account_cache.get(account_id)
    now = time.monotonic()
    if fresh and hit and now - _fresh_reads.get(account_id, -FRESH_READ_SECONDS) < FRESH_READ_SECONDS:
        return hit[1]
    if hit and not fresh and now - hit[0] < ACCOUNT_CACHE_SECONDS:
        return hit[1]
    if fresh:
        if len(_fresh_reads) > 10_000:
            _fresh_reads.clear()
        _fresh_reads[account_id] = now
    try:
        account = account_store.get(account_id)
    except Exception:  # noqa: BLE001 - the table failed: the processor retries on 503
        logger.exception("reading the account failed")
        raise RetryLater("the account could not be read; it will be retried") from None
    if account is not None:
        _account_cache[account_id] = (time.monotonic(), account)
    return account


def _valid_account_id(account_id: str) -> bool:
    return account_id.startswith("acct_") and len(account_id) <= 40 and account_id.isascii()


@dataclass(frozen=True)
class Receipt:
    status: int
    outcome: str
    event_id: str | None = None
    customer_id: str | None = None


def receive(processor: str, account_id: str, body: bytes, headers: dict) -> Receipt:
    adapter = ADAPTERS.get(processor)
    if adapter is None:
        raise NotFound("unknown processor")
    if not _valid_account_id(account_id):
        raise NotFound("unknown account")
    account = _account(account_id)
    if account is None:
        raise NotFound("unknown account")
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest("payload too large", code="payload_too_large")
    tolerance = get_settings().webhook_tolerance_seconds
    try:
        adapter.verify(body, headers, account, tolerance)
    except stripe_webhook.MalformedPayload as exc:
        raise BadRequest(str(exc), code="malformed_payload") from None
    except stripe_webhook.InvalidSignature:
        account = _account(account_id, fresh=True) or account
        try:
            adapter.verify(body, headers, account, tolerance)
        except stripe_webhook.InvalidSignature:
            metrics.add_metric(name="WebhookRejected", unit=MetricUnit.Count, value=1)
            raise BadRequest("invalid signature", code="invalid_signature") from None
    try:
        event = adapter.parse(body)
    except stripe_webhook.MalformedPayload as exc:
        raise BadRequest(str(exc), code="malformed_payload") from None

    logger.set_correlation_id(event["id"])
    logger.append_keys(account_id=account_id, event_type=event["type"])
    received_at = timeutil.now_iso()
    delivery = {
        "account_id": account_id, "delivery_id": ids.new_id("dlv"), "event_id": event["id"],
        "event_type": event["type"], "received_at": received_at,
        "retention_seconds": get_settings().delivery_retention_days * 86400,
    }
    try:
        # The raw body, kept with the audit entry (inline, or in S3 before the transaction).
        delivery.update(payloads.prepare(account_id, delivery["delivery_id"], body))
    except payloads.PayloadUnavailable as exc:
        logger.warning("keeping the raw payload failed", extra={"error": str(exc)})
        _save_failed(delivery, f"payload store failed: {exc}")
        raise RetryLater("the delivery could not be recorded; it will be retried") from None
    try:
        translation = adapter.translate(event)
    except Exception as exc:  # noqa: BLE001 - a payload shape we do not read: ask for redelivery
        logger.exception("translation failed")
        _save_failed(delivery, f"translation failed: {type(exc).__name__}")
        raise RetryLater("event could not be translated") from None
    if translation is None or not translation.events:
        try:
            record_store.save_delivery({**delivery, "outcome": "ignored"})
        except Exception:  # noqa: BLE001 - nothing else to write; the processor retries on 503
            logger.exception("saving the audit entry failed")
            raise RetryLater("the delivery could not be recorded; it will be retried") from None
        metrics.add_metric(name="WebhookIgnored", unit=MetricUnit.Count, value=1)
        return Receipt(200, "ignored", event["id"])
    try:
        outcome = records.apply(account_id, processor, translation, delivery,
                                find_owner=adapter.owner_finder(account))
    except records.OwnerUnknown as exc:
        _save_failed({**delivery, "outcome": "deferred"}, exc.message)
        metrics.add_metric(name="WebhookDeferred", unit=MetricUnit.Count, value=1)
        raise
    except (ProcessorError, registry.ProcessorNotConfigured) as exc:
        logger.warning("asking the processor about the event's objects failed",
                       extra={"error": exc.code})
        _save_failed(delivery, f"processor lookup failed: {exc.code}")
        raise RetryLater("the processor could not be asked; it will be retried") from None
    except AppError:
        raise
    except Exception as exc:  # noqa: BLE001 - answered 503 so the processor retries; nothing was written
        logger.exception("applying the event failed")
        _save_failed(delivery, f"{type(exc).__name__}")
        raise RetryLater("the event could not be applied; it will be retried") from None
    metrics.add_metric(name=f"Webhook{outcome.status.title()}", unit=MetricUnit.Count, value=1)
    logger.info("webhook processed", extra={"outcome": outcome.status,
                                            "customer_id": outcome.customer_id})
    return Receipt(200, outcome.status, event["id"], outcome.customer_id)


def _save_failed(delivery: dict, error: str) -> None:
    try:
        # Its own entry: the transaction may have committed (a lost response) and written
        # "applied" under the delivery's id; that entry must stay.
        record_store.save_delivery({"outcome": "failed", **delivery, "error": error[:500],
                                    "delivery_id": ids.new_id("dlv")})
    except Exception:  # noqa: BLE001 - the audit is best effort when the table itself is failing
        logger.exception("could not save the failed delivery")
