"""Accounts (merchants), their slugs and API keys."""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.store import keys
from chalicelib.store.table import AccountItem, AccountSlugItem, ApiKeyItem, TableItem


class SlugTaken(Exception):
    pass


def create(account: dict, api_key_hash: str, api_key_prefix: str) -> None:
    pk, sk = keys.account(account["account_id"])
    item = AccountItem(pk, sk, **account)
    spk, ssk = keys.account_slug(account["slug"])
    slug = AccountSlugItem(spk, ssk, account_id=account["account_id"])
    kpk, ksk = keys.api_key(api_key_hash)
    key = ApiKeyItem(kpk, ksk, account_id=account["account_id"], prefix=api_key_prefix,
                     created_at=account["created_at"])
    try:
        with TransactWrite(connection=TableItem._get_connection().connection) as tx:
            tx.save(item, condition=TableItem.PK.does_not_exist())
            tx.save(slug, condition=TableItem.PK.does_not_exist())
            tx.save(key, condition=TableItem.PK.does_not_exist())
    except TransactWriteError as exc:
        if exc.cancellation_reasons and exc.cancellation_reasons[1] is not None:
            raise SlugTaken(account["slug"]) from exc
        raise


def add_api_key(account_id: str, api_key_hash: str, api_key_prefix: str, created_at: str) -> None:
    kpk, ksk = keys.api_key(api_key_hash)
    ApiKeyItem(kpk, ksk, account_id=account_id, prefix=api_key_prefix,
               created_at=created_at).save(condition=TableItem.PK.does_not_exist())


def get(account_id: str) -> dict | None:
    pk, sk = keys.account(account_id)
    try:
        item = AccountItem.get(pk, sk)
    except DoesNotExist:
        return None
    return _to_dict(item)


def get_by_slug(slug: str) -> dict | None:
    pk, sk = keys.account_slug(slug)
    try:
        item = AccountSlugItem.get(pk, sk)
    except DoesNotExist:
        return None
    return get(item.account_id)


def account_id_for_key(api_key_hash: str) -> str | None:
    pk, sk = keys.api_key(api_key_hash)
    try:
        return ApiKeyItem.get(pk, sk).account_id
    except DoesNotExist:
        return None


def update_webhook_secrets(account_id: str, secrets: list[str]) -> None:
    pk, sk = keys.account(account_id)
    AccountItem(pk, sk).update(
        actions=[AccountItem.stripe_webhook_secrets.set(secrets)],
        condition=TableItem.PK.exists(),
    )


def update_settings(account_id: str, settings: dict) -> None:
    pk, sk = keys.account(account_id)
    AccountItem(pk, sk).update(
        actions=[AccountItem.settings.set(settings)],
        condition=TableItem.PK.exists(),
    )


def _to_dict(item: AccountItem) -> dict:
    return {
        "account_id": item.account_id,
        "name": item.name,
        "slug": item.slug,
        "support_email": item.support_email,
        "stripe_secret_key": item.stripe_secret_key,
        "stripe_webhook_secrets": list(item.stripe_webhook_secrets or []),
        "settings": dict(item.settings or {}),
        "created_at": item.created_at,
    }
