"""localstripe, with webhook deliveries retried as Stripe retries them.

localstripe posts each event once: an app that drops the connection (``chalice local``
on a loaded machine refuses a burst beyond its listen queue) or answers 5xx never gets
that event, while Stripe "attempts to deliver events to your destination for up to three
days with an exponential back off" (in test mode, three times over a few hours). This
module runs localstripe with its one delivery function replaced by one that retries a
failed delivery on Stripe's pattern, compressed to seconds for a local stack: after 1, 2,
4, 8 and 16 s. A 4xx answer is final here (the app refused the event on purpose, e.g. a
test's forged signature), as is a 2xx.

Run as ``python -m devstack.localstripe_server --port N --from-scratch`` (localstripe's own
arguments); devstack/servers.py starts it.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging

from localstripe import server, webhooks

RETRY_PAUSES = (1, 2, 4, 8, 16)
log = logging.getLogger("aiohttp.access")


async def _post(session, url: str, payload: bytes, headers: dict) -> str | None:
    """None when delivered or refused for good; otherwise why it should be retried."""
    import aiohttp

    try:
        async with session.post(url, data=payload, headers=headers) as response:
            if response.status < 300 or (400 <= response.status < 500
                                         and response.status != 429):
                return None
            return f"answered {response.status}"
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        return f"failed: {error!r}"


async def _deliver(webhook, event_type: str, payload: bytes, created: int) -> None:
    import aiohttp

    signed = b"%d.%s" % (created, payload)
    signature = hmac.new(webhook.secret.encode(), signed, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json; charset=utf-8",
               "Stripe-Signature": f"t={created},v1={signature}"}
    async with aiohttp.ClientSession() as session:
        for pause in (*RETRY_PAUSES, None):
            why = await _post(session, webhook.url, payload, headers)
            if why is None:
                return
            if pause is None:
                log.info('webhook "%s" %s; given up', event_type, why)
                return
            log.info('webhook "%s" %s; retrying in %d s', event_type, why, pause)
            await asyncio.sleep(pause)


async def _send_webhook(event) -> None:
    """localstripe's delivery (same payload, signature and one-second delay), retried."""
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode("utf-8")
    await asyncio.sleep(1)
    targets = [w for w in webhooks._webhooks.values()
               if w.events is None or event.type in w.events]
    await asyncio.gather(*(_deliver(w, event.type, payload, event.created) for w in targets))


webhooks._send_webhook = _send_webhook

if __name__ == "__main__":
    server.start()
