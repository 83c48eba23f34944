"""Merchants' endpoints (chalicelib/integrations/endpoints.py): creation with a secret shown
once and stored encrypted, URL checks, updates, rotation, subscriptions, isolation."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from app_fixtures import app_client, make_merchant, raw_item  # noqa: F401

from chalicelib import crypto
from chalicelib.errors import BadRequest, NotFound
from chalicelib.integrations import endpoints
from chalicelib.store import keys

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def accounts(app_client):  # noqa: F811
    return make_merchant(app_client).account_id, make_merchant(app_client).account_id


def test_create_returns_the_secret_once_and_stores_it_encrypted(accounts):
    account, _ = accounts
    created = endpoints.create(account, url="https://hooks.example.com/in",
                               event_types=["payment.succeeded"], description="CRM")
    assert created["id"].startswith("ep_") and created["secret"].startswith("whsec_")
    assert created["enabled"] is True and created["kind"] == "webhook"
    listed = [e for e in endpoints.list_for(account) if e["id"] == created["id"]]
    assert listed and "secret" not in listed[0]
    assert "secret" not in endpoints.get(account, created["id"])
    item = raw_item(keys.endpoints_pk(account), keys.endpoint_sk(created["id"]))
    assert created["secret"] not in str(item)
    stored = item["secrets"]["L"][0]["M"]
    context = endpoints.secret_context(account, created["id"])
    assert crypto.decrypt(stored["ciphertext"]["S"], context) == created["secret"]
    # Bound to its endpoint and account: under another context it does not decrypt.
    crypto.forget_decrypted()
    for other in (crypto.account_context(account), endpoints.secret_context(account, "ep_x")):
        with pytest.raises(crypto.SecretUnavailable):
            crypto.decrypt(stored["ciphertext"]["S"], other)
    assert stored["fingerprint"]["S"] == crypto.fingerprint(created["secret"])


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/in",  # not https
    "https://user:pw@hooks.example.com/in",  # credentials
    "https://hooks.example.com/in#frag",
    "https://127.0.0.1/in", "https://10.0.0.5/in", "https://[::1]/in",
    "https://169.254.169.254/latest/meta-data", "https://[::ffff:10.0.0.1]/in",
    "https://localhost/in", "https://intranet/in",
    "ftp://hooks.example.com/in", "https://", "not a url", "",
    "https://hooks.example.com/" + "a" * 2000,
    "https://hooks.example.com/in put",
])
def test_a_url_that_is_not_a_public_https_url_is_a_400_and_writes_nothing(accounts, url):
    account, _ = accounts
    before = len(endpoints.list_for(account))
    with pytest.raises(BadRequest):
        endpoints.create(account, url=url, event_types=["*"])
    assert len(endpoints.list_for(account)) == before


@pytest.mark.parametrize("fields", [
    {"event_types": []}, {"event_types": "payment.succeeded"}, {"event_types": ["Payment!"]},
    {"event_types": ["payment.teleported"]},
    {"kind": "carrier-pigeon"}, {"description": "x" * 501}, {"enabled": "yes"},
])
def test_other_bad_fields_are_a_400(accounts, fields):
    account, _ = accounts
    args = {"url": "https://hooks.example.com/in", "event_types": ["*"], **fields}
    with pytest.raises(BadRequest):
        endpoints.create(account, **args)


def test_update_disable_and_subscribed(accounts):
    account, _ = accounts
    created = endpoints.create(account, url="https://a.example.com/in",
                               event_types=["refund.created"])
    assert created["id"] in [e["id"] for e in endpoints.subscribed(account, "refund.created")]
    assert created["id"] not in [e["id"] for e in endpoints.subscribed(account, "order.created")]
    updated = endpoints.update(account, created["id"], event_types=["order.created"],
                               description="orders")
    assert updated["event_types"] == ["order.created"] and updated["description"] == "orders"
    assert created["id"] in [e["id"] for e in endpoints.subscribed(account, "order.created")]
    assert endpoints.disable(account, created["id"], "testing") is True
    assert endpoints.disable(account, created["id"], "testing") is False
    assert created["id"] not in [e["id"] for e in endpoints.subscribed(account, "order.created")]
    assert endpoints.get(account, created["id"])["disabled_reason"] == "testing"
    again = endpoints.update(account, created["id"], enabled=True)
    assert again["enabled"] is True and again["disabled_reason"] is None
    everything = endpoints.create(account, url="https://b.example.com/in", event_types=["*"])
    assert everything["id"] in [e["id"] for e in endpoints.subscribed(account, "card.expired")]
    with pytest.raises(BadRequest):
        endpoints.update(account, created["id"], url="http://a.example.com/in")


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(accounts):
    account, _ = accounts
    created = endpoints.create(account, url="https://r.example.com/in", event_types=["*"])
    new = endpoints.rotate_secret(account, created["id"], NOW)
    assert new != created["secret"] and new.startswith("whsec_")
    from chalicelib.store import endpoints as store

    stored = store.get_endpoint(account, created["id"])
    assert endpoints.signing_secrets(stored, NOW) == [new, created["secret"]]
    assert endpoints.signing_secrets(stored, NOW + timedelta(hours=25)) == [new]
    with pytest.raises(BadRequest):
        endpoints.rotate_secret(account, created["id"], NOW, grace=timedelta(days=8))
    newest = endpoints.rotate_secret(account, created["id"], NOW + timedelta(hours=1),
                                     grace=timedelta(days=7))
    stored = store.get_endpoint(account, created["id"])
    # The first secret keeps its own, earlier end.
    assert endpoints.signing_secrets(stored, NOW + timedelta(hours=2)) \
        == [newest, new, created["secret"]]
    assert endpoints.signing_secrets(stored, NOW + timedelta(days=2)) == [newest, new]


def test_another_accounts_endpoint_is_not_found(accounts):
    account, other = accounts
    created = endpoints.create(account, url="https://x.example.com/in", event_types=["*"])
    assert endpoints.get(other, created["id"]) is None
    assert created["id"] not in [e["id"] for e in endpoints.list_for(other)]
    with pytest.raises(NotFound):
        endpoints.update(other, created["id"], description="mine")
    with pytest.raises(NotFound):
        endpoints.rotate_secret(other, created["id"], NOW)
    assert endpoints.delete(other, created["id"]) is False
    assert endpoints.disable(other, created["id"], "x") is False
    assert endpoints.get(account, created["id"])["enabled"] is True
    assert endpoints.delete(account, created["id"]) is True
    assert endpoints.get(account, created["id"]) is None
