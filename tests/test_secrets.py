"""Secrets at rest: processor secrets and the portal's signing key are KMS ciphertext in
the table, bound to their account (or name) by the encryption context; reading an account
decrypts nothing until a secret is used; the branding logo cannot inject CSP directives."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets

import boto3
import pytest
from app_fixtures import app_client, make_merchant, raw_item  # noqa: F401
from botocore.exceptions import ClientError
from portal_helpers import PortalClient, make_shop, portal_settings, text  # noqa: F401
from stripe_events import Stream

from chalicelib import crypto
from chalicelib.accounts import service as accounts
from chalicelib.errors import BadRequest
from chalicelib.store import accounts as account_store


def kms_decrypt(blob_b64: str, context: dict) -> str:
    plaintext = boto3.client("kms").decrypt(CiphertextBlob=base64.b64decode(blob_b64),
                                            EncryptionContext=context)["Plaintext"]
    return plaintext.decode()


class KmsRecorder:
    """Wraps the app's KMS client: records each operation, can refuse some."""

    def __init__(self, real, refuse: tuple[str, ...] = ()):
        self.real, self.refuse, self.calls = real, refuse, []

    def __getattr__(self, name):
        method = getattr(self.real, name)

        def call(**kwargs):
            self.calls.append(name)
            if name in self.refuse:
                raise ClientError({"Error": {"Code": "AccessDeniedException",
                                             "Message": f"not allowed: kms:{name}"}}, name)
            return method(**kwargs)
        return call


@pytest.fixture
def kms_calls():
    real = crypto.client()
    recorder = KmsRecorder(real)
    crypto.set_client(recorder)
    crypto.forget_decrypted()
    try:
        yield recorder
    finally:
        crypto.set_client(real)


def test_stored_secrets_are_ciphertext_bound_to_their_account(app_client):  # noqa: F811
    merchant = make_merchant(app_client, secrets_count=2)
    other = make_merchant(app_client)
    item = raw_item(f"ACCT#{merchant.account_id}", "ACCOUNT")
    dumped = json.dumps(item)
    assert "sk_test_x" not in dumped
    assert not any(s in dumped or s.removeprefix("whsec_") in dumped
                   for s in merchant.webhook_secrets)
    assert "stripe_secret_key" not in item and "stripe_webhook_secrets" not in item

    mine = {"account_id": merchant.account_id}
    key_blob = item["stripe_secret_key_encrypted"]["S"]
    assert kms_decrypt(key_blob, mine) == "sk_test_x"
    entries = [e["M"] for e in item["stripe_webhook_secrets_encrypted"]["L"]]
    assert [kms_decrypt(e["ciphertext"]["S"], mine) for e in entries] == merchant.webhook_secrets
    assert [e["fingerprint"]["S"] for e in entries] == [
        hashlib.sha256(s.encode()).hexdigest()[:16] for s in merchant.webhook_secrets]

    # Another account's context (or none) does not open them: a ciphertext copied into
    # another account's item is useless there.
    for context in ({"account_id": other.account_id}, {}, {"app_secret": "portal-signing-key"}):
        with pytest.raises(ClientError) as refused:
            kms_decrypt(key_blob, context)
        assert refused.value.response["Error"]["Code"] == "InvalidCiphertextException"
        with pytest.raises(crypto.SecretUnavailable):
            crypto.decrypt(key_blob, context)


def test_webhooks_verify_with_the_decrypted_secrets(app_client):  # noqa: F811
    merchant = make_merchant(app_client, secrets_count=2)
    stream = Stream("enc")
    stream.customer("a@enc.test", "A")
    stream.customer("b@enc.test", "B")
    assert merchant.deliver(stream.events[0], secret=merchant.webhook_secrets[1]).status_code == 200
    assert merchant.deliver(stream.events[1], secret="whsec_wrong").status_code == 400
    assert merchant.deliver(stream.events[1]).status_code == 200
    assert sorted(c["email"] for c in merchant.customers()) == ["a@enc.test", "b@enc.test"]


def test_reading_an_account_decrypts_only_what_is_used(app_client, kms_calls):  # noqa: F811
    merchant = make_merchant(app_client)
    kms_calls.calls.clear()
    account = account_store.get(merchant.account_id)
    assert account["name"].startswith("Shop ") and account["settings"]["portal"]
    assert "sk_test_x" not in repr(account) and "whsec_" not in repr(account)
    assert kms_calls.calls == []  # branding and settings cost no KMS call

    assert account["stripe_secret_key"] == "sk_test_x"
    assert kms_calls.calls == ["decrypt"]
    assert account.get("stripe_webhook_secrets") == merchant.webhook_secrets
    assert kms_calls.calls == ["decrypt", "decrypt"]
    # Decrypted values are kept for a minute per container.
    assert account_store.get(merchant.account_id)["stripe_secret_key"] == "sk_test_x"
    assert kms_calls.calls == ["decrypt", "decrypt"]


def test_kms_failure_answers_503_so_the_processor_delivers_again(app_client, kms_calls):  # noqa: F811
    merchant = make_merchant(app_client)
    stream = Stream("kmsdown")
    stream.customer("down@enc.test", "Down")
    kms_calls.refuse = ("decrypt",)
    assert merchant.deliver(stream.events[0]).status_code == 503
    assert merchant.customers() == []
    kms_calls.refuse = ()
    assert merchant.deliver(stream.events[0]).status_code == 200


def test_kms_key_survives_a_moto_reset(app_client, moto_reset):  # noqa: F811
    merchant = make_merchant(app_client)
    moto_reset()
    crypto.forget_decrypted()
    assert account_store.get(merchant.account_id)["stripe_secret_key"] == "sk_test_x"


def test_operator_writes_need_only_encrypt(app_client, kms_calls):  # noqa: F811
    merchant = make_merchant(app_client, secrets_count=2)
    kms_calls.calls.clear()
    kms_calls.refuse = ("decrypt",)
    new = f"whsec_{secrets.token_hex(16)}"
    fingerprints = accounts.add_webhook_secret(merchant.account_id, new)
    assert fingerprints[0] == crypto.fingerprint(new) and len(fingerprints) == 3
    assert accounts.remove_webhook_secret(merchant.account_id,
                                          secret=merchant.webhook_secrets[0]) == [
        crypto.fingerprint(new), crypto.fingerprint(merchant.webhook_secrets[1])]
    accounts.set_stripe_secret_key(merchant.account_id, "rk_live_rotated")
    assert "decrypt" in kms_calls.refuse and set(kms_calls.calls) == {"encrypt"}
    kms_calls.refuse = ()
    account = account_store.get(merchant.account_id)
    assert account["stripe_webhook_secrets"] == [new, merchant.webhook_secrets[1]]
    assert account["stripe_secret_key"] == "rk_live_rotated"


def test_portal_signing_key_is_stored_encrypted(app_client, stack):  # noqa: F811
    from chalicelib.signin import service as portal_service

    shop = make_shop(app_client, stack)
    response = PortalClient(app_client.http).get(f"{shop.root}/")
    assert response.status_code == 200 and 'name="csrf"' in text(response)
    stored = raw_item("CONFIG#SECRET", "portal-signing-key")["value"]["S"]
    key = kms_decrypt(stored, {"app_secret": "portal-signing-key"})
    assert len(key) >= 64 and key not in stored
    assert portal_service._signing_key() == key.encode()
    with pytest.raises(ClientError):
        kms_decrypt(stored, {"account_id": shop.merchant.account_id})


# --- the branding logo ----------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "https://cdn.shop.test; script-src 'unsafe-inline'/logo.png",
    "https://cdn.shop.test;script-src/logo.png",
    "https://cdn.shop.test logo.png",
    "https://cdn.shop.test\t/logo.png",
    "http://cdn.shop.test/logo.png",
    "https://user:pass@cdn.shop.test/logo.png",
    "https://cdn.shop.test\\@evil.test/logo.png",
    "https://127.0.0.1/logo.png",
    "https://[::1]/logo.png",
    "https://localhost/logo.png",
    "https://-bad-.shop.test/logo.png",
    "https://xn--zz.shop.test/logo.png",
    "https://cdn.shop.test:99999/logo.png",
    "javascript:alert(1)",
    "https:///logo.png",
    "https://cdn.shop.test/" + "a" * 1000,
])
def test_invalid_logo_urls_are_refused(url, app_client):  # noqa: F811
    assert accounts.logo_origin(url) is None
    with pytest.raises(BadRequest):
        accounts.create_account(name="Logo", support_email="s@shop.test", stripe_secret_key=None,
                                stripe_webhook_secrets=[], slug=f"logo-{secrets.token_hex(4)}",
                                settings={"branding": {"logo_url": url}})


def test_valid_logo_urls_give_their_origin():
    assert accounts.logo_origin("https://cdn.shop.test/img/logo.png?v=2") == "https://cdn.shop.test"
    assert accounts.logo_origin("https://CDN.Shop.test:8443/w_100,h_40/logo.png") == \
        "https://cdn.shop.test:8443"
    assert accounts.logo_origin("https://bücher.example/logo.svg") == \
        "https://xn--bcher-kva.example"


def test_stored_invalid_logo_is_dropped_from_the_page_and_its_policy(app_client, stack):  # noqa: F811
    bad = "https://cdn.shop.test; script-src 'unsafe-inline' https://evil.test/logo.png"
    shop = make_shop(app_client, stack)
    settings = dict(accounts.get_account(shop.merchant.account_id)["settings"])
    settings["branding"] = {**settings["branding"], "logo_url": bad}
    account_store.update_settings(shop.merchant.account_id, settings)  # as an old version might
    response = PortalClient(app_client.http).get(f"{shop.root}/")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "evil.test" not in csp and "unsafe-inline" not in csp and "shop.test" not in csp
    assert "img-src 'self';" in csp
    assert "evil.test" not in text(response) and "<img" not in text(response)


def test_valid_logo_is_shown_and_allowed_by_origin_only(app_client, stack):  # noqa: F811
    shop = make_shop(app_client, stack, logo_url="https://cdn.shop.test/brand/logo.png")
    response = PortalClient(app_client.http).get(f"{shop.root}/")
    csp = response.headers["Content-Security-Policy"]
    assert "img-src 'self' https://cdn.shop.test;" in csp
    assert 'src="https://cdn.shop.test/brand/logo.png"' in text(response)


@pytest.mark.usefixtures("portal_settings")
def test_stored_invalid_logo_is_left_out_of_the_sign_in_mail(app_client, stack, sent_emails):  # noqa: F811
    from portal_helpers import ask_link, mails_to, seed_customer

    bad = "https://evil.test;img-src *;/logo.png"
    shop = make_shop(app_client, stack)
    settings = dict(accounts.get_account(shop.merchant.account_id)["settings"])
    settings["branding"] = {**settings["branding"], "logo_url": bad}
    account_store.update_settings(shop.merchant.account_id, settings)
    seeded = seed_customer(shop)
    assert ask_link(PortalClient(app_client.http), shop, seeded.email).status_code == 200
    [mail] = mails_to(sent_emails, seeded.email)
    assert "evil.test" not in mail["body"]


def test_the_signing_key_is_made_only_when_there_is_none(app_client):  # noqa: F811
    from chalicelib.store import signin as portal_store

    name = f"test-secret-{secrets.token_hex(4)}"
    made = []

    def make():
        made.append(1)
        return f"value-{len(made)}"

    assert portal_store.get_or_create_secret(name, make) == "value-1"
    assert portal_store.get_or_create_secret(name, make) == "value-1"
    assert made == [1]
