"""Operator commands: ``python -m chalicelib.admin <command> …``.

Run with AWS credentials and ``TABLE_NAME`` for the deployment (or the local stand-ins'
endpoint variables in development).
"""
from __future__ import annotations

import argparse
import sys

from chalicelib.accounts import service as accounts
from chalicelib.errors import AppError
from chalicelib.settings import get_settings


def _create_account(args) -> None:
    created = accounts.create_account(
        name=args.name, support_email=args.support_email, slug=args.slug,
        stripe_secret_key=args.stripe_secret_key,
        stripe_webhook_secrets=args.stripe_webhook_secret or [],
        stripe_publishable_key=args.stripe_publishable_key,
    )
    account = created.account
    base = get_settings().public_base_url
    print(f"account id:   {account['account_id']}")
    print(f"portal:       {base}/portal/{account['slug']}/")
    print(f"webhook URL:  {accounts.webhook_url(base, account['account_id'])}")
    print(f"API key:      {created.api_key}")
    print("The API key is shown once and stored only as a hash: keep it now.")


def _add_webhook_secret(args) -> None:
    secrets = accounts.add_webhook_secret(args.account, args.secret)
    print(f"{len(secrets)} webhook secret(s) active for {args.account}")


def _remove_webhook_secret(args) -> None:
    secrets = accounts.remove_webhook_secret(args.account, args.secret)
    print(f"{len(secrets)} webhook secret(s) active for {args.account}")


def _set_publishable_key(args) -> None:
    accounts.set_stripe_publishable_key(args.account, args.key)
    print(f"Stripe publishable key set for {args.account}")


def _issue_api_key(args) -> None:
    print(accounts.issue_api_key_for(args.account))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.admin")
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("create-account", help="create a merchant account")
    create.add_argument("--name", required=True)
    create.add_argument("--support-email", required=True)
    create.add_argument("--slug", help="portal URL name (default: from the name)")
    create.add_argument("--stripe-secret-key")
    create.add_argument("--stripe-webhook-secret", action="append",
                        help="whsec_…; repeat while rolling a secret")
    create.add_argument("--stripe-publishable-key",
                        help="pk_live_… (pk_test_…): Stripe.js's key for the portal's card form")
    create.set_defaults(run=_create_account)

    pk = commands.add_parser("set-stripe-publishable-key",
                             help="set the key the portal's card form gives Stripe.js")
    pk.add_argument("--account", required=True)
    pk.add_argument("--key", required=True, help="pk_live_… or pk_test_…")
    pk.set_defaults(run=_set_publishable_key)

    add = commands.add_parser("add-webhook-secret", help="accept one more signing secret")
    add.add_argument("--account", required=True)
    add.add_argument("--secret", required=True)
    add.set_defaults(run=_add_webhook_secret)

    remove = commands.add_parser("remove-webhook-secret", help="stop accepting a secret")
    remove.add_argument("--account", required=True)
    remove.add_argument("--secret", required=True)
    remove.set_defaults(run=_remove_webhook_secret)

    key = commands.add_parser("issue-api-key", help="issue another API key (shown once)")
    key.add_argument("--account", required=True)
    key.set_defaults(run=_issue_api_key)

    args = parser.parse_args(argv)
    try:
        args.run(args)
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
