"""Accounts (merchants), their slugs and API keys.

An account's processor secrets are stored encrypted (``chalicelib/crypto.py``, encryption
context ``{"account_id": <account>}``). Reads return the account as a mapping whose
``stripe_secret_key`` and ``stripe_webhook_secrets`` are decrypted only when a caller reads
them, so a page that only shows the merchant's branding costs no KMS call. Writes need
only ``kms:Encrypt``: a webhook secret is added or removed by its fingerprint, without
decrypting the others.
"""
from __future__ import annotations

from collections import UserDict
from collections.abc import Callable

from pynamodb.exceptions import DeleteError, DoesNotExist, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib import crypto
from chalicelib.observability import logger
from chalicelib.store import keys
from chalicelib.store.table import (
    AccountItem,
    AccountSlugItem,
    ApiKeyItem,
    EncryptedSecret,
    TableItem,
)

SECRET_FIELDS = ("stripe_secret_key", "stripe_webhook_secrets", "paypal_client_secret")


class SlugTaken(Exception):
    pass


class Changed(Exception):
    """The item changed between the read and the conditional write: read again."""


class _Encrypted:
    """A field of an Account decrypted on read (by a thunk; crypto caches the plaintext)."""

    __slots__ = ("open",)

    def __init__(self, open_: Callable[[], object]):
        self.open = open_


class Account(UserDict):
    """An account as a dict; its secret fields decrypt when read, and never show in repr."""

    def __getitem__(self, key):
        value = self.data[key]
        return value.open() if isinstance(value, _Encrypted) else value

    def __repr__(self) -> str:
        shown = {k: "<encrypted>" if isinstance(v, _Encrypted) else v
                 for k, v in self.data.items() if k not in SECRET_FIELDS or v is None}
        return f"Account({shown!r})"


def _encrypt_webhook_secret(account_id: str, secret: str) -> EncryptedSecret:
    return EncryptedSecret(ciphertext=crypto.encrypt(secret, crypto.account_context(account_id)),
                           fingerprint=crypto.fingerprint(secret))


def create(account: dict, api_key_hash: str, api_key_prefix: str) -> None:
    """``account`` holds ``stripe_secret_key`` and ``stripe_webhook_secrets`` in clear;
    they are encrypted here, before anything is written."""
    account_id = account["account_id"]
    fields = {k: v for k, v in account.items() if k not in SECRET_FIELDS}
    context = crypto.account_context(account_id)
    secret_key = account.get("stripe_secret_key")
    pk, sk = keys.account(account_id)
    item = AccountItem(
        pk, sk, **fields,
        stripe_secret_key_encrypted=crypto.encrypt(secret_key, context) if secret_key else None,
        stripe_webhook_secrets_encrypted=[
            _encrypt_webhook_secret(account_id, s) for s in account.get("stripe_webhook_secrets") or []],
    )
    spk, ssk = keys.account_slug(account["slug"])
    slug = AccountSlugItem(spk, ssk, account_id=account_id)
    key = _api_key_item(account_id, api_key_hash, api_key_prefix, account["created_at"])
    try:
        with TransactWrite(connection=TableItem._get_connection().connection) as tx:
            tx.save(item, condition=TableItem.PK.does_not_exist())
            tx.save(slug, condition=TableItem.PK.does_not_exist())
            tx.save(key, condition=TableItem.PK.does_not_exist())
    except TransactWriteError as exc:
        if exc.cancellation_reasons and exc.cancellation_reasons[1] is not None:
            raise SlugTaken(account["slug"]) from exc
        raise


# --- API keys ----------------------------------------------------------------------------

def _api_key_item(account_id: str, api_key_hash: str, prefix: str, created_at: str) -> ApiKeyItem:
    kpk, ksk = keys.api_key(api_key_hash)
    return ApiKeyItem(kpk, ksk, account_id=account_id, prefix=prefix, created_at=created_at,
                      GSI1PK=keys.api_keys_index_pk(account_id),
                      GSI1SK=keys.api_keys_index_sk(created_at, api_key_hash))


def add_api_key(account_id: str, api_key_hash: str, api_key_prefix: str, created_at: str) -> None:
    _api_key_item(account_id, api_key_hash, api_key_prefix, created_at).save(
        condition=TableItem.PK.does_not_exist())


def account_id_for_key(api_key_hash: str) -> str | None:
    pk, sk = keys.api_key(api_key_hash)
    try:
        return ApiKeyItem.get(pk, sk, consistent_read=True).account_id
    except DoesNotExist:
        return None


def api_keys(account_id: str) -> list[dict]:
    """The account's API keys, oldest first: hash (the item's key), prefix, created_at.
    GSI1 holds them in a partition of their own, beside the account's customers."""
    return [{"hash": item.PK.removeprefix("APIKEY#"), "prefix": item.prefix,
             "created_at": item.created_at}
            for item in ApiKeyItem.customers_index.query(keys.api_keys_index_pk(account_id))]


def delete_api_key(account_id: str, api_key_hash: str) -> bool:
    """Delete the key if it belongs to ``account_id``; False if there is no such key there."""
    pk, sk = keys.api_key(api_key_hash)
    try:
        ApiKeyItem(pk, sk).delete(condition=ApiKeyItem.account_id == account_id)
    except DeleteError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    return True


# --- reads -------------------------------------------------------------------------------

def get(account_id: str) -> Account | None:
    pk, sk = keys.account(account_id)
    try:
        item = AccountItem.get(pk, sk)
    except DoesNotExist:
        return None
    return _to_account(item)


def get_by_slug(slug: str) -> Account | None:
    pk, sk = keys.account_slug(slug)
    try:
        item = AccountSlugItem.get(pk, sk)
    except DoesNotExist:
        return None
    return get(item.account_id)


def _to_account(item: AccountItem) -> Account:
    account_id = item.account_id
    context = crypto.account_context(account_id)
    legacy = item.plaintext_stripe_secret_key is not None or item.plaintext_webhook_secrets is not None

    def refuse():
        # Never used, never silently: the operator encrypts them once (README).
        logger.error(f"account {account_id} holds processor secrets in clear, written by a "
                     f"version before encryption: run `python -m chalicelib.admin "
                     f"encrypt-secrets --account {account_id}`")
        raise crypto.SecretUnavailable("This shop's payment settings cannot be used right now.")

    def secret_key():
        if legacy:
            refuse()
        blob = item.stripe_secret_key_encrypted
        return crypto.decrypt(blob, context) if blob else None

    def webhook_secrets():
        if legacy:
            refuse()
        return [crypto.decrypt(s.ciphertext, context)
                for s in item.stripe_webhook_secrets_encrypted or []]

    def paypal_client_secret():
        blob = item.paypal_client_secret_encrypted
        return crypto.decrypt(blob, context) if blob else None

    return Account({
        "account_id": account_id,
        "name": item.name,
        "slug": item.slug,
        "support_email": item.support_email,
        "stripe_secret_key": _Encrypted(secret_key),
        "stripe_webhook_secrets": _Encrypted(webhook_secrets),
        # None until the operator sets PayPal up (set_paypal); the secret decrypts on read.
        "paypal": {"client_id": item.paypal_client_id, "webhook_id": item.paypal_webhook_id,
                   "mode": item.paypal_mode} if item.paypal_webhook_id else None,
        "paypal_client_secret": _Encrypted(paypal_client_secret),
        "settings": dict(item.settings or {}),
        "created_at": item.created_at,
    })


# --- secret writes (kms:Encrypt only) ----------------------------------------------------

def webhook_secret_fingerprints(account_id: str) -> list[str] | None:
    """The fingerprints of the account's webhook secrets, newest first; None: no account."""
    item = _read_for_write(account_id)
    return None if item is None else [s.fingerprint for s in item.stripe_webhook_secrets_encrypted or []]


def add_webhook_secret(account_id: str, secret: str) -> list[str] | None:
    """Accept one more webhook secret (first in the list); the fingerprints, newest first.
    None: no account. Raises Changed if the secrets changed meanwhile."""
    item = _read_for_secret_write(account_id)
    if item is None:
        return None
    current = list(item.stripe_webhook_secrets_encrypted or [])
    if crypto.fingerprint(secret) in [s.fingerprint for s in current]:
        return [s.fingerprint for s in current]
    updated = [_encrypt_webhook_secret(account_id, secret), *current]
    _replace_webhook_secrets(item, current, updated)
    return [s.fingerprint for s in updated]


def remove_webhook_secret(account_id: str, fingerprint: str) -> list[str] | None:
    """Stop accepting the secret with this fingerprint; the fingerprints left (unchanged if
    none matched). None: no account. Raises Changed if the secrets changed meanwhile."""
    item = _read_for_secret_write(account_id)
    if item is None:
        return None
    current = list(item.stripe_webhook_secrets_encrypted or [])
    updated = [s for s in current if s.fingerprint != fingerprint]
    if len(updated) != len(current):
        _replace_webhook_secrets(item, current, updated)
    return [s.fingerprint for s in updated]


def set_stripe_secret_key(account_id: str, secret_key: str) -> bool:
    """Replace the account's Stripe secret key; False if there is no such account."""
    pk, sk = keys.account(account_id)
    blob = crypto.encrypt(secret_key, crypto.account_context(account_id))
    try:
        AccountItem(pk, sk).update(
            actions=[AccountItem.stripe_secret_key_encrypted.set(blob),
                     AccountItem.plaintext_stripe_secret_key.remove()],
            condition=TableItem.PK.exists())
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def set_paypal(account_id: str, *, client_id: str, client_secret: str, webhook_id: str,
               mode: str) -> bool:
    """Set the account's PayPal app (the secret encrypted first); False if there is no
    such account."""
    pk, sk = keys.account(account_id)
    blob = crypto.encrypt(client_secret, crypto.account_context(account_id))
    try:
        AccountItem(pk, sk).update(
            actions=[AccountItem.paypal_client_id.set(client_id),
                     AccountItem.paypal_client_secret_encrypted.set(blob),
                     AccountItem.paypal_webhook_id.set(webhook_id),
                     AccountItem.paypal_mode.set(mode)],
            condition=TableItem.PK.exists())
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def encrypt_plaintext_secrets(account_id: str) -> bool | None:
    """Encrypt the secrets an earlier version stored in clear, and remove the clear ones,
    in one conditional update. True: done; False: there were none; None: no account."""
    item = _read_for_write(account_id)
    if item is None:
        return None
    old_key, old_hooks = item.plaintext_stripe_secret_key, item.plaintext_webhook_secrets
    if old_key is None and old_hooks is None:
        return False
    actions, condition = [], TableItem.PK.exists()
    if old_key is not None:
        actions += [AccountItem.stripe_secret_key_encrypted.set(
                        crypto.encrypt(old_key, crypto.account_context(account_id))),
                    AccountItem.plaintext_stripe_secret_key.remove()]
        condition &= AccountItem.plaintext_stripe_secret_key == old_key
    if old_hooks is not None:
        current = list(item.stripe_webhook_secrets_encrypted or [])
        known = {s.fingerprint for s in current}
        added = [_encrypt_webhook_secret(account_id, s) for s in old_hooks
                 if crypto.fingerprint(s) not in known]
        actions += [AccountItem.stripe_webhook_secrets_encrypted.set(current + added),
                    AccountItem.plaintext_webhook_secrets.remove()]
        condition &= AccountItem.plaintext_webhook_secrets == old_hooks
    _update(item, actions, condition)
    return True


def _read_for_write(account_id: str) -> AccountItem | None:
    pk, sk = keys.account(account_id)
    try:
        return AccountItem.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None


def _read_for_secret_write(account_id: str) -> AccountItem | None:
    """The item, with any secrets an earlier version kept in clear encrypted first (so a
    change to the list never drops them)."""
    item = _read_for_write(account_id)
    if item is not None and item.plaintext_webhook_secrets is not None:
        encrypt_plaintext_secrets(account_id)
        item = _read_for_write(account_id)
    return item


def _replace_webhook_secrets(item: AccountItem, current: list, updated: list) -> None:
    # Conditional on the list read, so two operators rolling at once cannot lose a secret.
    attr = AccountItem.stripe_webhook_secrets_encrypted
    condition = attr == current if current else (attr.does_not_exist() | (attr == []))
    _update(item, [attr.set(updated)], condition & AccountItem.plaintext_webhook_secrets.does_not_exist())


def _update(item: AccountItem, actions: list, condition) -> None:
    try:
        AccountItem(item.PK, item.SK).update(actions=actions, condition=condition)
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            raise Changed(item.account_id) from None
        raise


def update_settings(account_id: str, settings: dict) -> None:
    pk, sk = keys.account(account_id)
    AccountItem(pk, sk).update(
        actions=[AccountItem.settings.set(settings)],
        condition=TableItem.PK.exists(),
    )
