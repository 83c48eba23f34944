"""The operator CLI creates accounts and rolls webhook secrets."""
from __future__ import annotations

import json
import re
import secrets

from app_fixtures import Merchant, app_client  # noqa: F401
from stripe_events import Stream

from chalicelib.admin.__main__ import main
from chalicelib.webhooks import service as webhook_service


def test_create_account_then_roll_the_webhook_secret(app_client, capsys):  # noqa: F811
    old, new = f"whsec_{secrets.token_hex(8)}", f"whsec_{secrets.token_hex(8)}"
    slug = f"cli-{secrets.token_hex(3)}"
    assert main(["create-account", "--name", "CLI Shop", "--support-email", "help@cli.test",
                 "--slug", slug, "--stripe-secret-key", "sk_test_x",
                 "--stripe-webhook-secret", old]) == 0
    out = capsys.readouterr().out
    account_id = re.search(r"account id:\s+(acct_\w+)", out).group(1)
    api_key = re.search(r"API key:\s+(\S+)", out).group(1)
    assert f"/webhooks/stripe/{account_id}" in out and f"/portal/{slug}/" in out
    merchant = Merchant(app_client, account_id, api_key, [old])

    s = Stream("cli")
    s.customer("a@cli.test", "A")
    s.customer("b@cli.test", "B")
    assert main(["add-webhook-secret", "--account", account_id, "--secret", new]) == 0
    assert merchant.deliver(s.events[0], secret=new).status_code == 200
    assert main(["remove-webhook-secret", "--account", account_id, "--secret", old]) == 0
    # Warm containers cache the account for up to a minute (README); a fresh one has none.
    webhook_service._account_cache.clear()
    assert merchant.deliver(s.events[1], secret=old).status_code == 400
    assert [c["email"] for c in merchant.customers()] == ["a@cli.test"]

    # The slug is unique; bad input answers with a message and exit code 2.
    assert main(["create-account", "--name", "Other", "--support-email", "x@y.test",
                 "--slug", slug]) == 2
    assert main(["add-webhook-secret", "--account", account_id, "--secret", "nope"]) == 2
    assert main(["issue-api-key", "--account", "acct_missing"]) == 2
    assert "error:" in capsys.readouterr().err
    assert json.loads(merchant.get("/api/v1/customers").body)["data"]


def test_stripe_publishable_key_for_the_portals_card_form(capsys):
    from chalicelib.accounts.service import get_account

    slug = f"pk-{secrets.token_hex(3)}"
    assert main(["create-account", "--name", "PK Shop", "--support-email", "help@pk.test",
                 "--slug", slug, "--stripe-secret-key", "sk_test_x",
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
