"""Operator commands: ``python -m chalicelib.admin <command> …``.

Run with AWS credentials, ``TABLE_NAME`` and ``SECRETS_KEY_ID`` for the deployment (or
the local stand-ins' endpoint variables in development). Secrets are encrypted with KMS
before they are written: the operator needs ``kms:Encrypt`` on the key, never Decrypt.

Secrets are read from a file or from standard input (``-``; a terminal is asked without
echo), never from the command line, where they would stay in the shell's history and be
visible to every user of the machine in the process list.
"""
from __future__ import annotations

import argparse
import getpass
import sys

from chalicelib.accounts import service as accounts
from chalicelib.errors import AppError, BadRequest
from chalicelib.settings import get_settings
from chalicelib.staff import service as staff
from chalicelib.staff.roles import ROLES

STDIN = "-"


class _RefuseSecretOnArgv(argparse.Action):
    """A flag that once took a secret: refuse it, without repeating the value."""

    def __init__(self, option_strings, dest, instead: str, **kwargs):
        self.instead = instead
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} no longer takes a secret on the command line (it would "
                     f"stay in the shell history and show in the process list): use "
                     f"{self.instead} PATH, or {self.instead} - to read it from stdin")


def _read_secrets(path: str, what: str) -> list[str]:
    """The non-empty lines of ``path`` (``-``: stdin), stripped."""
    if path == STDIN:
        if sys.stdin.isatty():
            return [line for line in [getpass.getpass(f"{what}: ").strip()] if line]
        text = sys.stdin.read()
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadRequest(f"cannot read {what} from {path}: "
                             f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_secret(path: str, what: str) -> str:
    found = _read_secrets(path, what)
    if len(found) != 1:
        raise BadRequest(f"expected one {what} in {'stdin' if path == STDIN else path}, "
                         f"found {len(found)}")
    return found[0]


def _create_account(args) -> None:
    if args.stripe_secret_key_file == STDIN and args.stripe_webhook_secret_file == STDIN:
        raise BadRequest("only one of the secret files can be stdin (-)")
    secret_key = (_read_secret(args.stripe_secret_key_file, "Stripe secret key")
                  if args.stripe_secret_key_file else None)
    webhook_secrets = (_read_secrets(args.stripe_webhook_secret_file, "Stripe webhook secret")
                       if args.stripe_webhook_secret_file else [])
    # Checked before anything is created.
    owner_email = staff.check_email(args.owner_email) if args.owner_email else None
    created = accounts.create_account(
        name=args.name, support_email=args.support_email, slug=args.slug,
        stripe_secret_key=secret_key, stripe_webhook_secrets=webhook_secrets,
        stripe_publishable_key=args.stripe_publishable_key,
    )
    account = created.account
    base = get_settings().public_base_url
    print(f"account id:   {account['account_id']}")
    print(f"portal:       {base}/portal/{account['slug']}/")
    print(f"webhook URL:  {accounts.webhook_url(base, account['account_id'])}")
    print(f"API key:      {created.api_key}")
    print("The API key is shown once and stored only as a hash: keep it now.")
    dashboard = f"{base}/dashboard/{account['slug']}/sign-in"
    if owner_email:
        staff.add_staff(account["account_id"], owner_email, "owner")
        print(f"owner:        {owner_email} signs in at {dashboard}")
    else:
        print(f"No owner yet: add one with `add-staff --role owner`; staff sign in at {dashboard}")


def _print_member(member) -> None:
    print(f"{member.email:<40} {member.role:<10} {member.staff_id}  added {member.created_at}")


def _add_staff(args) -> None:
    _print_member(staff.add_staff(args.account, args.email, args.role))


def _list_staff(args) -> None:
    for member in staff.list_staff(args.account):
        _print_member(member)


def _remove_staff(args) -> None:
    member = staff.find_staff(args.account, args.email)
    staff.remove_staff(args.account, member.staff_id)
    print(f"{member.email} removed from {args.account}; their sessions have ended")


def _set_staff_role(args) -> None:
    member = staff.find_staff(args.account, args.email)
    _print_member(staff.set_role(args.account, member.staff_id, args.role))


def _print_webhook_secrets(account_id: str, fingerprints: list[str]) -> None:
    print(f"{len(fingerprints)} webhook secret(s) active for {account_id} (fingerprints, "
          f"newest first): {', '.join(fingerprints) or '-'}")


def _add_webhook_secret(args) -> None:
    secret = _read_secret(args.stripe_webhook_secret_file, "Stripe webhook secret")
    _print_webhook_secrets(args.account, accounts.add_webhook_secret(args.account, secret))


def _remove_webhook_secret(args) -> None:
    if args.stripe_webhook_secret_file:
        left = accounts.remove_webhook_secret(
            args.account, secret=_read_secret(args.stripe_webhook_secret_file,
                                              "Stripe webhook secret"))
    else:
        left = accounts.remove_webhook_secret(args.account, fingerprint=args.fingerprint)
    _print_webhook_secrets(args.account, left)


def _list_webhook_secrets(args) -> None:
    _print_webhook_secrets(args.account, accounts.webhook_secret_fingerprints(args.account))


def _set_secret_key(args) -> None:
    accounts.set_stripe_secret_key(
        args.account, _read_secret(args.stripe_secret_key_file, "Stripe secret key"))
    print(f"Stripe secret key replaced for {args.account} (warm functions use it within a "
          "minute); roll the old key in Stripe's dashboard once it is no longer used")


def _encrypt_secrets(args) -> None:
    for account_id in args.account:
        done = accounts.encrypt_plaintext_secrets(account_id)
        print(f"{account_id}: {'secrets encrypted' if done else 'nothing stored in clear'}")


def _set_publishable_key(args) -> None:
    accounts.set_stripe_publishable_key(args.account, args.key)
    print(f"Stripe publishable key set for {args.account}")


def _set_paypal(args) -> None:
    accounts.set_paypal(
        args.account, client_id=args.client_id, webhook_id=args.webhook_id, mode=args.mode,
        client_secret=_read_secret(args.client_secret_file, "PayPal client secret"))
    base = get_settings().public_base_url
    print(f"PayPal ({args.mode}) set for {args.account}; its webhook must post to "
          f"{accounts.webhook_url(base, args.account, 'paypal')}")


def _issue_api_key(args) -> None:
    print(accounts.issue_api_key_for(args.account))


def _list_api_keys(args) -> None:
    for key in accounts.api_keys(args.account):
        print(f"{key['prefix']}…  created {key['created_at']}")


def _revoke_api_key(args) -> None:
    if args.key_file:
        prefix = accounts.revoke_api_key(args.account,
                                         api_key=_read_secret(args.key_file, "API key"))
    else:
        prefix = accounts.revoke_api_key(args.account, prefix=args.prefix.rstrip("…"))
    print(f"API key {prefix}… revoked for {args.account}: it is refused from now on")


def _secret_file(parser: argparse.ArgumentParser, flag: str, what: str, **kwargs) -> None:
    parser.add_argument(flag, metavar="PATH", help=f"a file holding the {what}, or - for stdin",
                        **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.admin", allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, run) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, allow_abbrev=False)
        sub.set_defaults(run=run)
        return sub

    create = command("create-account", "create a merchant account", _create_account)
    create.add_argument("--name", required=True)
    create.add_argument("--support-email", required=True)
    create.add_argument("--slug", help="portal URL name (default: from the name)")
    _secret_file(create, "--stripe-secret-key-file", "Stripe secret key (sk_… or rk_…)")
    _secret_file(create, "--stripe-webhook-secret-file",
                 "webhook signing secret(s), whsec_…, one a line")
    create.add_argument("--stripe-secret-key", action=_RefuseSecretOnArgv,
                        instead="--stripe-secret-key-file")
    create.add_argument("--stripe-webhook-secret", action=_RefuseSecretOnArgv,
                        instead="--stripe-webhook-secret-file")
    create.add_argument("--stripe-publishable-key",
                        help="pk_live_… (pk_test_…): Stripe.js's key for the portal's card form")
    create.add_argument("--owner-email",
                        help="the first owner: signs in to the dashboard with this e-mail")

    key = command("set-stripe-secret-key", "rotate the account's Stripe secret key",
                  _set_secret_key)
    key.add_argument("--account", required=True)
    _secret_file(key, "--stripe-secret-key-file", "new Stripe secret key", required=True)
    key.add_argument("--key", action=_RefuseSecretOnArgv, instead="--stripe-secret-key-file")

    pk = command("set-stripe-publishable-key",
                 "set the key the portal's card form gives Stripe.js", _set_publishable_key)
    pk.add_argument("--account", required=True)
    pk.add_argument("--key", required=True, help="pk_live_… or pk_test_… (not a secret)")

    add = command("add-webhook-secret", "accept one more signing secret", _add_webhook_secret)
    add.add_argument("--account", required=True)
    _secret_file(add, "--stripe-webhook-secret-file", "new webhook signing secret",
                 required=True)
    add.add_argument("--secret", action=_RefuseSecretOnArgv,
                     instead="--stripe-webhook-secret-file")

    remove = command("remove-webhook-secret", "stop accepting a signing secret",
                     _remove_webhook_secret)
    remove.add_argument("--account", required=True)
    which = remove.add_mutually_exclusive_group(required=True)
    _secret_file(which, "--stripe-webhook-secret-file", "secret to remove")
    which.add_argument("--fingerprint", help="the secret's fingerprint (list-webhook-secrets)")
    remove.add_argument("--secret", action=_RefuseSecretOnArgv,
                        instead="--stripe-webhook-secret-file")

    hooks = command("list-webhook-secrets", "the fingerprints of the accepted secrets",
                    _list_webhook_secrets)
    hooks.add_argument("--account", required=True)

    migrate = command("encrypt-secrets", "encrypt the secrets an earlier version stored in "
                      "clear (once, after upgrading)", _encrypt_secrets)
    migrate.add_argument("--account", required=True, action="append",
                         help="repeat for several accounts")

    paypal = command("set-paypal", "set the account's PayPal app and webhook", _set_paypal)
    paypal.add_argument("--account", required=True)
    paypal.add_argument("--client-id", required=True, help="the REST app's client id (not a secret)")
    _secret_file(paypal, "--client-secret-file", "PayPal client secret", required=True)
    paypal.add_argument("--client-secret", action=_RefuseSecretOnArgv, instead="--client-secret-file")
    paypal.add_argument("--webhook-id", required=True,
                        help="the id PayPal shows for the webhook posting to this account")
    paypal.add_argument("--mode", required=True, choices=("live", "sandbox"))

    issue = command("issue-api-key", "issue another API key (shown once)", _issue_api_key)
    issue.add_argument("--account", required=True)

    keys = command("list-api-keys", "the account's API keys (prefix, created)", _list_api_keys)
    keys.add_argument("--account", required=True)

    revoke = command("revoke-api-key", "revoke one of the account's API keys", _revoke_api_key)
    revoke.add_argument("--account", required=True)
    named = revoke.add_mutually_exclusive_group(required=True)
    named.add_argument("--prefix", help="the key's prefix as list-api-keys shows it")
    _secret_file(named, "--key-file", "API key itself")
    revoke.add_argument("--key", action=_RefuseSecretOnArgv, instead="--key-file")

    add_member = command("add-staff", "add a staff member to the account", _add_staff)
    add_member.add_argument("--account", required=True)
    add_member.add_argument("--email", required=True)
    add_member.add_argument("--role", required=True, choices=ROLES)

    members = command("list-staff", "the account's staff (e-mail, role, id)", _list_staff)
    members.add_argument("--account", required=True)

    remove_member = command("remove-staff", "remove a staff member (their sessions end at once)",
                            _remove_staff)
    remove_member.add_argument("--account", required=True)
    remove_member.add_argument("--email", required=True)

    role = command("set-staff-role", "change a staff member's role", _set_staff_role)
    role.add_argument("--account", required=True)
    role.add_argument("--email", required=True)
    role.add_argument("--role", required=True, choices=ROLES)

    args = parser.parse_args(argv)
    try:
        args.run(args)
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
