"""A minimal PayPal REST client: OAuth client credentials with a cached token, the
objects a webhook names (subscriptions, orders, captures, sales, v1 payments), who owns
them, and PayPal's verify-webhook-signature API (the fallback of webhook.verify).

Every request goes through the SSRF-guarded ``fetch.request`` to PayPal's API host for the
account's mode (``api-m.paypal.com`` or ``api-m.sandbox.paypal.com``), or to
``PAYPAL_API_BASE`` when set, which must itself be a PayPal host or the dev stack's
stand-in. Failures become the gateway's errors (``processors.gateway``): PayPal
unreachable or 5xx is ProcessorUnavailable; nothing of PayPal's leaks past this module.
The gateway's own calls (cancel, suspend, capture, refund) are in ``gateway.py``.
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
from urllib.parse import quote

from chalicelib import outbound as fetch
from chalicelib.domain.events import Owner, Ref
from chalicelib.observability import logger
from chalicelib.processors.gateway import ProcessorError, ProcessorUnavailable
from chalicelib.processors.paypal.translate import PROCESSOR, ref, subscription_ref
from chalicelib.processors.paypal.webhook import CERT_HOSTS, LIVE, SANDBOX, Transmission

API_BASES = {LIVE: "https://api-m.paypal.com", SANDBOX: "https://api-m.sandbox.paypal.com"}
# A token is used until this many seconds before PayPal says it expires.
TOKEN_MARGIN_SECONDS = 120

_tokens: dict[tuple[str, str, str], tuple[float, str]] = {}
_tokens_lock = threading.Lock()


def api_base(mode: str) -> str:
    return os.environ.get("PAYPAL_API_BASE", "").rstrip("/") or API_BASES[mode]


class PayPalClient:
    def __init__(self, client_id: str, client_secret: str, mode: str):
        if mode not in API_BASES or not client_id or not client_secret:
            raise ValueError("PayPal client id, secret and mode are required")
        self._client_id, self._secret, self._mode = client_id, client_secret, mode
        self._base = api_base(mode)
        self._hosts = CERT_HOSTS[mode]

    # --- transport ----------------------------------------------------------------------

    def _send(self, method: str, path: str, *, body: bytes | None = None,
              headers: dict | None = None) -> fetch.Answer:
        try:
            return fetch.request(method, self._base + path, hosts=self._hosts, body=body,
                                 headers=headers)
        except fetch.Unavailable as exc:
            raise ProcessorUnavailable("PayPal did not answer. Nothing was changed; please "
                                       "try again.") from exc
        except fetch.Refused as exc:
            logger.error("the PayPal API base is not an allowed host", extra={"error": str(exc)})
            raise ProcessorError("PayPal cannot be reached from here.") from exc

    def _token(self, renew: bool = False) -> str:
        key = (self._base, self._client_id, self._secret)
        now = time.monotonic()
        with _tokens_lock:
            hit = _tokens.get(key)
        if hit and not renew and now < hit[0]:
            return hit[1]
        basic = base64.b64encode(f"{self._client_id}:{self._secret}".encode()).decode()
        answer = self._send("POST", "/v1/oauth2/token", body=b"grant_type=client_credentials",
                            headers={"Authorization": f"Basic {basic}",
                                     "Content-Type": "application/x-www-form-urlencoded",
                                     "Accept": "application/json"})
        try:
            data = json.loads(answer.body) if answer.status == 200 else {}
        except ValueError:
            data = {}
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            logger.error("PayPal refused the account's client credentials",
                         extra={"status": answer.status})
            raise ProcessorError("PayPal refused this shop's credentials. Please contact support.")
        lifetime = data.get("expires_in") if isinstance(data.get("expires_in"), int) else 300
        with _tokens_lock:
            if len(_tokens) > 1000:
                _tokens.clear()
            _tokens[key] = (now + max(lifetime - TOKEN_MARGIN_SECONDS, 30), token)
        return token

    def _call(self, method: str, path: str, payload: dict | None = None,
              headers: dict | None = None) -> tuple[int, dict]:
        """``(status, JSON body)`` of an authorized call; a token PayPal no longer takes
        (401) is renewed once. ``headers``: more headers (``PayPal-Request-Id``)."""
        body = json.dumps(payload).encode() if payload is not None else None
        for renew in (False, True):
            answer = self._send(method, path, body=body, headers={
                "Authorization": f"Bearer {self._token(renew)}", "Accept": "application/json",
                **({"Content-Type": "application/json"} if body is not None else {}),
                **(headers or {})})
            if answer.status != 401:
                break
        try:
            data = json.loads(answer.body) if answer.body else {}
        except ValueError:
            data = {}
        return answer.status, data if isinstance(data, dict) else {}

    def _get(self, path: str) -> dict | None:
        """The object at ``path``; None when PayPal does not know it (404)."""
        status, data = self._call("GET", path)
        if status == 404:
            return None
        if status >= 500 or status == 429:
            raise ProcessorUnavailable("PayPal did not answer. Nothing was changed; please "
                                       "try again.")
        if status != 200:
            logger.warning("PayPal refused a read", extra={"status": status, "path": path.split("/")[2:4]})
            raise ProcessorError("PayPal refused the request.")
        return data

    # --- objects ----------------------------------------------------------------------------

    def subscription(self, paypal_id: str) -> dict | None:
        return self._get(f"/v1/billing/subscriptions/{quote(paypal_id, safe='')}")

    def agreement(self, paypal_id: str) -> dict | None:
        return self._get(f"/v1/payments/billing-agreements/{quote(paypal_id, safe='')}")

    def order(self, paypal_id: str) -> dict | None:
        return self._get(f"/v2/checkout/orders/{quote(paypal_id, safe='')}")

    def capture(self, paypal_id: str) -> dict | None:
        return self._get(f"/v2/payments/captures/{quote(paypal_id, safe='')}")

    def sale(self, paypal_id: str) -> dict | None:
        return self._get(f"/v1/payments/sale/{quote(paypal_id, safe='')}")

    def payment(self, paypal_id: str) -> dict | None:
        return self._get(f"/v1/payments/payment/{quote(paypal_id, safe='')}")

    # --- who owns an object --------------------------------------------------------------

    def owner_of(self, obj: Ref) -> Owner | None:
        """The payer (PayPal account and e-mail) of a subscription, order, capture, sale or
        v1 payment, as PayPal has it; None when PayPal does not know it with this account's
        credentials. Unreachable or 5xx: ProcessorUnavailable."""
        if obj.processor != PROCESSOR:
            return None
        kind, _, paypal_id = obj.id.partition("_")
        if not paypal_id:
            return self._owner_of_subscription(obj.id)
        if kind == "order":
            return self._owner_of_order(paypal_id)
        if kind == "txn":
            return self._owner_of_transaction(paypal_id)
        if kind == "payment":
            return self._owner_of_payment(paypal_id)
        return None

    @staticmethod
    def _owner(payer_id, email) -> Owner | None:
        customer = ref("payer", payer_id)
        email = email if isinstance(email, str) and "@" in email else None
        return Owner(customer=customer, email=email) if customer or email else None

    def _owner_of_subscription(self, paypal_id: str) -> Owner | None:
        if subscription_ref(paypal_id) is None:
            return None
        found = self.subscription(paypal_id)
        if found is not None:
            subscriber = found.get("subscriber") or {}
            return self._owner(subscriber.get("payer_id"), subscriber.get("email_address"))
        found = self.agreement(paypal_id)
        if found is not None:
            info = (found.get("payer") or {}).get("payer_info") or {}
            return self._owner(info.get("payer_id"), info.get("email"))
        return None

    def _owner_of_order(self, paypal_id: str) -> Owner | None:
        found = self.order(paypal_id)
        if found is None:
            return None
        payer = found.get("payer") or {}
        return self._owner(payer.get("payer_id"), payer.get("email_address"))

    def _owner_of_payment(self, paypal_id: str) -> Owner | None:
        found = self.payment(paypal_id)
        if found is None:
            return None
        info = (found.get("payer") or {}).get("payer_info") or {}
        return self._owner(info.get("payer_id"), info.get("email"))

    def _owner_of_transaction(self, paypal_id: str) -> Owner | None:
        """A v2 capture (through its order), else a v1 sale (through its subscription or
        payment): PayPal's transaction ids are one namespace."""
        capture = self.capture(paypal_id)
        if capture is not None:
            related = ((capture.get("supplementary_data") or {}).get("related_ids") or {})
            order_id = related.get("order_id")
            return self._owner_of_order(order_id) if isinstance(order_id, str) else None
        sale = self.sale(paypal_id)
        if sale is None:
            return None
        if isinstance(sale.get("billing_agreement_id"), str):
            return self._owner_of_subscription(sale["billing_agreement_id"])
        if isinstance(sale.get("parent_payment"), str):
            return self._owner_of_payment(sale["parent_payment"])
        return None

    # --- webhooks -----------------------------------------------------------------------------

    def verify_webhook_signature(self, t: Transmission, webhook_id: str, body: bytes) -> bool:
        """PayPal's own verdict on a delivery (POST /v1/notifications/verify-webhook-signature)."""
        try:
            event = json.loads(body)
        except ValueError:
            return False
        status, data = self._call("POST", "/v1/notifications/verify-webhook-signature", {
            "auth_algo": t.auth_algo, "cert_url": t.cert_url, "transmission_id": t.id,
            "transmission_sig": base64.b64encode(t.signature).decode(),
            "transmission_time": t.time, "webhook_id": webhook_id, "webhook_event": event})
        if status != 200:
            logger.warning("PayPal's verify-webhook-signature failed", extra={"status": status})
            raise ProcessorUnavailable("PayPal could not confirm the delivery; try again later.")
        return data.get("verification_status") == "SUCCESS"
