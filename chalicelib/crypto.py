"""Secrets at rest: encrypted with the deployment's customer-managed KMS key.

The table never holds a processor secret (a Stripe secret key, a webhook signing secret)
or the portal's signing key in clear: each is encrypted by KMS under the key named by
``SECRETS_KEY_ID``, with an encryption context that binds it to what it belongs to
(``{"account_id": <account>}`` for a merchant's secrets, ``{"app_secret": <name>}`` for a
deployment-wide one). A ciphertext copied to another account's item, or read by anyone
without ``kms:Decrypt`` on the key for that context, does not decrypt. KMS encrypts up to
4 KB directly, so there is no envelope: the stored value is the base64 ciphertext blob.

Decrypted values are kept per container for ``DECRYPTED_CACHE_SECONDS`` (as long as an
account is cached), so a webhook burst costs one KMS call per secret and minute, and a
disabled key or a revoked grant takes effect within a minute.

The KMS client is created on first use and cached, so it follows ``AWS_ENDPOINT_URL_KMS``
(moto in development and tests) and a code path that needs no secret never builds it.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import time

from chalicelib.errors import RetryLater
from chalicelib.observability import logger

# No longer than the account caches (webhooks.service, portal.service).
DECRYPTED_CACHE_SECONDS = 60
_CACHE_MAX = 2000
# Hex digits of SHA-256 kept as a webhook secret's fingerprint: enough to tell an account's
# few secrets apart; a whsec_ secret has ~190 random bits, so the prefix reveals nothing.
FINGERPRINT_CHARS = 16

_client = None
_decrypted: dict[tuple, tuple[float, str]] = {}


class SecretUnavailable(RetryLater):
    """A secret could not be encrypted or decrypted (KMS unreachable, throttled, key
    disabled, no permission, or a ciphertext that is not ours for this context)."""

    code = "secret_unavailable"


def client():
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        from chalicelib.settings import get_settings

        _client = boto3.client("kms", region_name=get_settings().region, config=Config(
            connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}))
    return _client


def set_client(new_client) -> None:
    """Replace the cached client (tests: a failing one)."""
    global _client
    _client = new_client


def account_context(account_id: str) -> dict[str, str]:
    return {"account_id": account_id}


def app_secret_context(name: str) -> dict[str, str]:
    return {"app_secret": name}


def fingerprint(secret: str) -> str:
    """A short, one-way name for a secret (``printf %s SECRET | sha256sum | cut -c1-16``)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:FINGERPRINT_CHARS]


def _key_id() -> str:
    from chalicelib.settings import get_settings

    key_id = get_settings().secrets_key_id
    if not key_id:
        raise SecretUnavailable("SECRETS_KEY_ID is not set: secrets cannot be encrypted.")
    return key_id


def encrypt(plaintext: str, context: dict[str, str]) -> str:
    """The base64 KMS ciphertext of ``plaintext`` under ``context``."""
    try:
        response = client().encrypt(KeyId=_key_id(), Plaintext=plaintext.encode(),
                                    EncryptionContext=context)
    except Exception as exc:  # noqa: BLE001 - botocore's ClientError or a connection error
        raise _unavailable("encrypt", context, exc) from None
    return base64.b64encode(response["CiphertextBlob"]).decode("ascii")


def decrypt(ciphertext: str, context: dict[str, str]) -> str:
    """The plaintext of a value :func:`encrypt` returned for the same ``context``."""
    cache_key = (ciphertext, tuple(sorted(context.items())))
    hit = _decrypted.get(cache_key)
    now = time.monotonic()
    if hit and now - hit[0] < DECRYPTED_CACHE_SECONDS:
        return hit[1]
    try:
        blob = base64.b64decode(ciphertext, validate=True)
    except (binascii.Error, ValueError):
        logger.error("a stored secret is not base64 KMS ciphertext (written in clear by a "
                     "version before encryption?)", extra={"context": context})
        raise SecretUnavailable("A stored secret could not be read.") from None
    from chalicelib.settings import get_settings

    params = {"CiphertextBlob": blob, "EncryptionContext": context}
    key_id = get_settings().secrets_key_id
    if key_id:  # only our key may have encrypted it
        params["KeyId"] = key_id
    try:
        plaintext = client().decrypt(**params)["Plaintext"].decode()
    except Exception as exc:  # noqa: BLE001 - botocore's ClientError or a connection error
        raise _unavailable("decrypt", context, exc) from None
    if len(_decrypted) >= _CACHE_MAX:
        _decrypted.clear()
    _decrypted[cache_key] = (now, plaintext)
    return plaintext


def forget_decrypted() -> None:
    """Drop every decrypted value this container holds."""
    _decrypted.clear()


def _unavailable(action: str, context: dict[str, str], exc: Exception) -> SecretUnavailable:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
    logger.error(f"KMS {action} failed: {code}", extra={"context": context})
    return SecretUnavailable(f"A secret could not be {action}ed ({code}); try again later.")
