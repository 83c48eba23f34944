"""The operator CLI: accounts, secrets read from files or stdin (never argv), webhook
secret rolls, Stripe key rotation, API keys issued, listed and revoked, and the one-shot
encryption of secrets an earlier version stored in clear."""
from __future__ import annotations

import io
import json
import os
import re
import secrets

import boto3
import pytest
from app_fixtures import Merchant, app_client, make_merchant, raw_item  # noqa: F401
from stripe_events import Stream

from chalicelib import crypto
from chalicelib.accounts.service import get_account
from chalicelib.admin.__main__ import main
from chalicelib.webhooks import service as webhook_service


def secret_file(tmp_path, *lines: str):
    path = tmp_path / f"secret-{secrets.token_hex(4)}"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def stdin(monkeypatch, content: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(content))


def created_account(out: str) -> tuple[str, str]:
    return (re.search(r"account id:\s+(acct_\w+)", out).group(1),
            re.search(r"API key:\s+(\S+)", out).group(1))


def test_create_account_then_roll_the_webhook_secret(app_client, capsys, tmp_path, monkeypatch):  # noqa: F811
    old, new = f"whsec_{secrets.token_hex(8)}", f"whsec_{secrets.token_hex(8)}"
    slug = f"cli-{secrets.token_hex(3)}"
    stdin(monkeypatch, "sk_test_fromstdin\n")
    assert main(["create-account", "--name", "CLI Shop", "--support-email", "help@cli.test",
                 "--slug", slug, "--stripe-secret-key-file", "-",
                 "--stripe-webhook-secret-file", secret_file(tmp_path, old)]) == 0
    out = capsys.readouterr().out
    account_id, api_key = created_account(out)
    assert f"/webhooks/stripe/{account_id}" in out and f"/portal/{slug}/" in out
    assert get_account(account_id)["stripe_secret_key"] == "sk_test_fromstdin"
    merchant = Merchant(app_client, account_id, api_key, [old])

    s = Stream("cli")
    s.customer("a@cli.test", "A")
    s.customer("b@cli.test", "B")
    stdin(monkeypatch, f"{new}\n")
    assert main(["add-webhook-secret", "--account", account_id,
                 "--stripe-webhook-secret-file", "-"]) == 0
    assert crypto.fingerprint(new) in capsys.readouterr().out
    assert merchant.deliver(s.events[0], secret=new).status_code == 200
    assert main(["remove-webhook-secret", "--account", account_id,
                 "--stripe-webhook-secret-file", secret_file(tmp_path, old)]) == 0
    # Warm containers cache the account for up to a minute (README); a fresh one has none.
    webhook_service._account_cache.clear()
    assert merchant.deliver(s.events[1], secret=old).status_code == 400
    assert [c["email"] for c in merchant.customers()] == ["a@cli.test"]
    assert main(["list-webhook-secrets", "--account", account_id]) == 0
    assert capsys.readouterr().out.strip().endswith(crypto.fingerprint(new))

    # Removing by fingerprint needs no secret at all.
    assert main(["remove-webhook-secret", "--account", account_id,
                 "--fingerprint", crypto.fingerprint(new)]) == 0
    assert get_account(account_id)["stripe_webhook_secrets"] == []

    # The slug is unique; bad input answers with a message and exit code 2.
    assert main(["create-account", "--name", "Other", "--support-email", "x@y.test",
                 "--slug", slug]) == 2
    assert main(["add-webhook-secret", "--account", account_id,
                 "--stripe-webhook-secret-file", secret_file(tmp_path, "nope")]) == 2
    assert main(["add-webhook-secret", "--account", account_id,
                 "--stripe-webhook-secret-file", secret_file(tmp_path, new, old)]) == 2
    assert main(["add-webhook-secret", "--account", account_id,
                 "--stripe-webhook-secret-file", str(tmp_path / "missing")]) == 2
    assert main(["issue-api-key", "--account", "acct_missing"]) == 2
    assert "error:" in capsys.readouterr().err
    assert json.loads(merchant.get("/api/v1/customers").body)["data"]


@pytest.mark.parametrize("argv", [
    ["create-account", "--name", "Argv", "--support-email", "a@argv.test",
     "--stripe-secret-key", "sk_live_LEAKEDonARGV"],
    ["create-account", "--name", "Argv", "--support-email", "a@argv.test",
     "--stripe-secret-key=sk_live_LEAKEDonARGV"],
    ["create-account", "--name", "Argv", "--support-email", "a@argv.test",
     "--stripe-webhook-secret", "whsec_LEAKEDonARGV"],
    ["add-webhook-secret", "--account", "acct_x", "--secret", "whsec_LEAKEDonARGV"],
    ["remove-webhook-secret", "--account", "acct_x", "--secret", "whsec_LEAKEDonARGV"],
    ["set-stripe-secret-key", "--account", "acct_x", "--key", "sk_live_LEAKEDonARGV"],
    ["revoke-api-key", "--account", "acct_x", "--key", "bp_live_LEAKEDonARGV"],
])
def test_secrets_on_the_command_line_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "no longer takes a secret on the command line" in err and "-file" in err
    assert "LEAKEDonARGV" not in err


def test_an_abbreviated_flag_is_not_taken_for_the_file_flag(capsys):
    # argparse would otherwise read "--stripe-secret-key" as "--stripe-secret-key-file"
    # abbreviated, and a secret as a path.
    with pytest.raises(SystemExit):
        main(["set-stripe-secret-key", "--account", "acct_x", "--stripe-secret",
              "sk_live_abbrev"])


def test_rotate_the_stripe_secret_key(app_client, capsys, tmp_path, monkeypatch):  # noqa: F811
    merchant = make_merchant(app_client)
    before = raw_item(f"ACCT#{merchant.account_id}", "ACCOUNT")
    stdin(monkeypatch, "rk_live_rotated123\n")
    assert main(["set-stripe-secret-key", "--account", merchant.account_id,
                 "--stripe-secret-key-file", "-"]) == 0
    assert "replaced" in capsys.readouterr().out
    after = raw_item(f"ACCT#{merchant.account_id}", "ACCOUNT")
    assert after["stripe_secret_key_encrypted"] != before["stripe_secret_key_encrypted"]
    assert "rk_live_rotated123" not in json.dumps(after)
    assert get_account(merchant.account_id)["stripe_secret_key"] == "rk_live_rotated123"
    # The webhook secrets are untouched.
    assert get_account(merchant.account_id)["stripe_webhook_secrets"] == merchant.webhook_secrets

    assert main(["set-stripe-secret-key", "--account", merchant.account_id,
                 "--stripe-secret-key-file", secret_file(tmp_path, "pk_live_not_a_secret")]) == 2
    assert main(["set-stripe-secret-key", "--account", "acct_missing",
                 "--stripe-secret-key-file", secret_file(tmp_path, "sk_live_abc")]) == 2
    assert "starts with sk_live_" in capsys.readouterr().err
    assert get_account(merchant.account_id)["stripe_secret_key"] == "rk_live_rotated123"


def test_revoke_api_keys_scoped_to_the_account(app_client, capsys, monkeypatch, tmp_path):  # noqa: F811
    merchant, other = make_merchant(app_client), make_merchant(app_client)
    assert main(["issue-api-key", "--account", merchant.account_id]) == 0
    second = capsys.readouterr().out.strip()
    assert merchant.get("/api/v1/customers", api_key=second).status_code == 200
    assert main(["list-api-keys", "--account", merchant.account_id]) == 0
    listed = capsys.readouterr().out
    assert merchant.api_key[:12] in listed and second[:12] in listed
    assert second not in listed and merchant.api_key not in listed

    # Another account's key is not revoked through this account, by prefix or by key.
    assert main(["revoke-api-key", "--account", merchant.account_id,
                 "--prefix", other.api_key[:12]]) == 2
    stdin(monkeypatch, other.api_key)
    assert main(["revoke-api-key", "--account", merchant.account_id, "--key-file", "-"]) == 2
    assert "no " in capsys.readouterr().err
    assert other.get("/api/v1/customers").status_code == 200

    # By the prefix list-api-keys shows ("…" included), then by the key itself.
    assert main(["revoke-api-key", "--account", merchant.account_id,
                 "--prefix", second[:12] + "…"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert merchant.get("/api/v1/customers", api_key=second).status_code == 401
    assert merchant.get("/api/v1/customers").status_code == 200
    assert main(["revoke-api-key", "--account", merchant.account_id,
                 "--key-file", secret_file(tmp_path, merchant.api_key)]) == 0
    assert merchant.get("/api/v1/customers").status_code == 401
    assert main(["revoke-api-key", "--account", merchant.account_id,
                 "--key-file", secret_file(tmp_path, merchant.api_key)]) == 2
    assert other.get("/api/v1/customers").status_code == 200


def test_secrets_stored_in_clear_are_refused_until_encrypted(app_client, capsys):  # noqa: F811
    merchant = make_merchant(app_client)
    hook = f"whsec_{secrets.token_hex(8)}"
    # An account as a version before encryption wrote it.
    boto3.client("dynamodb").update_item(
        TableName=os.environ["TABLE_NAME"],
        Key={"PK": {"S": f"ACCT#{merchant.account_id}"}, "SK": {"S": "ACCOUNT"}},
        UpdateExpression="SET stripe_secret_key = :k, stripe_webhook_secrets = :w "
                         "REMOVE stripe_secret_key_encrypted, stripe_webhook_secrets_encrypted",
        ExpressionAttributeValues={":k": {"S": "sk_test_legacy"}, ":w": {"L": [{"S": hook}]}})
    webhook_service._account_cache.clear()
    account = get_account(merchant.account_id)
    assert account["name"]  # the rest of the account reads as before
    with pytest.raises(crypto.SecretUnavailable):
        account["stripe_secret_key"]
    stream = Stream("legacy")
    stream.customer("l@legacy.test", "L")
    assert merchant.deliver(stream.events[0], secret=hook).status_code == 503

    assert main(["encrypt-secrets", "--account", merchant.account_id]) == 0
    assert "secrets encrypted" in capsys.readouterr().out
    item = raw_item(f"ACCT#{merchant.account_id}", "ACCOUNT")
    assert "stripe_secret_key" not in item and "stripe_webhook_secrets" not in item
    assert "sk_test_legacy" not in json.dumps(item) and hook not in json.dumps(item)
    webhook_service._account_cache.clear()
    assert get_account(merchant.account_id)["stripe_secret_key"] == "sk_test_legacy"
    assert merchant.deliver(stream.events[0], secret=hook).status_code == 200
    assert main(["encrypt-secrets", "--account", merchant.account_id]) == 0
    assert "nothing stored in clear" in capsys.readouterr().out


def test_stripe_publishable_key_for_the_portals_card_form(capsys, tmp_path):
    slug = f"pk-{secrets.token_hex(3)}"
    assert main(["create-account", "--name", "PK Shop", "--support-email", "help@pk.test",
                 "--slug", slug, "--stripe-secret-key-file", secret_file(tmp_path, "sk_test_x"),
                 "--stripe-publishable-key", "pk_test_abc123"]) == 0
    account_id = re.search(r"account id:\s+(acct_\w+)", capsys.readouterr().out).group(1)
    settings = get_account(account_id)["settings"]
    assert settings["stripe_publishable_key"] == "pk_test_abc123"
    assert settings["portal"] == {"self_cancel": True}  # the defaults stay
    assert main(["set-stripe-publishable-key", "--account", account_id,
                 "--key", "pk_live_def456"]) == 0
    assert get_account(account_id)["settings"]["stripe_publishable_key"] == "pk_live_def456"
    # A secret key is never taken for the browser's key.
    assert main(["set-stripe-publishable-key", "--account", account_id,
                 "--key", "sk_live_oops"]) == 2
    assert "pk_test_ or pk_live_" in capsys.readouterr().err
    assert get_account(account_id)["settings"]["stripe_publishable_key"] == "pk_live_def456"
