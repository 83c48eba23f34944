"""An account's PayPal settings: set with the operator CLI (the secret from a file or stdin,
never argv), the secret stored KMS-encrypted, read back decrypted only when used."""
from __future__ import annotations

import io

import pytest
from app_fixtures import app_client, make_merchant, raw_item  # noqa: F401

from chalicelib.admin.__main__ import main

SECRET = "EJpaypalSecret0123456789abcdefXYZ"


def test_set_paypal_from_stdin_stores_the_secret_encrypted(app_client, capsys, monkeypatch):  # noqa: F811
    m = make_merchant(app_client)
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    assert main(["set-paypal", "--account", m.account_id, "--client-id", "AZclientid0123456789",
                 "--client-secret-file", "-", "--webhook-id", "8PT597110X687430LW",
                 "--mode", "sandbox"]) == 0
    assert f"/webhooks/paypal/{m.account_id}" in capsys.readouterr().out
    item = raw_item(f"ACCT#{m.account_id}", "ACCOUNT")
    assert SECRET not in str(item)
    assert item["paypal_client_id"]["S"] == "AZclientid0123456789"
    assert item["paypal_mode"]["S"] == "sandbox"
    from chalicelib.store import accounts

    account = accounts.get(m.account_id)
    assert account["paypal"] == {"client_id": "AZclientid0123456789",
                                 "webhook_id": "8PT597110X687430LW", "mode": "sandbox"}
    assert account["paypal_client_secret"] == SECRET
    assert SECRET not in repr(account)


@pytest.mark.parametrize("argv,message", [
    (["--client-secret", SECRET], "no longer takes a secret"),
    (["--client-secret-file", "-", "--mode", "production"], "invalid choice"),
])
def test_bad_set_paypal_arguments_are_refused(argv, message, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET))
    base = ["set-paypal", "--account", "acct_x", "--client-id", "AZclientid0123456789",
            "--webhook-id", "WH1"]
    if "--mode" not in argv:
        base += ["--mode", "live"]
    with pytest.raises(SystemExit):
        main(base + argv)
    err = capsys.readouterr().err
    assert message in err and SECRET not in err


def test_bad_values_write_nothing(app_client, capsys, monkeypatch):  # noqa: F811
    m = make_merchant(app_client)
    for client_id, secret, webhook_id in (("short", SECRET, "WH1"), ("AZclientid0123456789", "x y", "WH1"),
                                          ("AZclientid0123456789", SECRET, "WH/1")):
        monkeypatch.setattr("sys.stdin", io.StringIO(secret))
        assert main(["set-paypal", "--account", m.account_id, "--client-id", client_id,
                     "--client-secret-file", "-", "--webhook-id", webhook_id, "--mode", "live"]) == 2
    assert "paypal_client_id" not in raw_item(f"ACCT#{m.account_id}", "ACCOUNT")
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET))
    assert main(["set-paypal", "--account", "acct_01m7000000000000000000000x", "--client-id",
                 "AZclientid0123456789", "--client-secret-file", "-", "--webhook-id", "WH1",
                 "--mode", "live"]) == 2
