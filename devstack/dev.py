"""`make dev`: the whole app on this machine, with demo data.

Starts DynamoDB Local, moto and localstripe (with devstack's proxy in front of it,
which the app's STRIPE_API_BASE and the portal's Stripe.js stand-in point at),
provisions them, creates the demo merchant account (with a test publishable key, so
its customers can add cards in the portal), points localstripe's webhooks at the app,
runs the app under `chalice local`, seeds localstripe (whose signed webhooks then fill
the app's records), prints where everything is, and stops it all on Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.request

from devstack import servers

DEFAULT_PORTS = {"app": 8000, "ddb": 8001, "moto": 8002, "stripe": 8420, "shim": 8421,
                 "mail": 8025}
DEMO_STRIPE_KEY = "sk_test_demo"
DEMO_PUBLISHABLE_KEY = "pk_test_demo"  # localstripe's Stripe.js stand-in takes any pk_test_…
LOG_DIR = servers.LOG_ROOT / "dev"
# Customers devstack/seed.py creates (the demo merchant's support address, at the
# demo-shop.test domain, is a verified SES sender in moto: see servers.provision).
DEMO_CUSTOMERS = ("grace@example.com", "zoe.lukasiewicz@example.com", "mateo@example.com",
                  "kenji@example.com", "ada@example.com")
ENV_FILE = servers.REPO_ROOT / ".devstack" / "dev.env"


def _on_sigterm(signum, frame):
    # Turn SIGTERM into the same clean exit as Ctrl-C: the finally blocks stop servers.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the app locally with demo data.")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=port,
                            help=f"(default {port}, or any free port if taken)")
    parser.add_argument("--no-app", action="store_true",
                        help="start the stand-ins and seed, but not the app "
                             "(to run it yourself, e.g. under a debugger)")
    parser.add_argument("--no-seed", action="store_true", help="skip the demo data")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)

    ports = {name: servers.preferred_port(getattr(args, f"{name}_port"))
             for name in DEFAULT_PORTS}
    app_url = f"http://127.0.0.1:{ports['app']}"
    running: list[servers.Server] = []
    try:
        print("Starting DynamoDB Local, moto and localstripe …", flush=True)
        stack = servers.start_stack(ddb_port=ports["ddb"], moto_port=ports["moto"],
                                    stripe_port=ports["stripe"], shim_port=ports["shim"],
                                    app_url=app_url, log_dir=LOG_DIR)
        running += stack.servers
        # Before any chalicelib import: its settings are read once per process.
        servers.apply_env(stack.env)
        _write_env_file(stack.env)
        stack.provision()
        # Sent mail (sign-in links) on the terminal and on a page: nothing really sends it.
        from devstack import mailbox

        mailbox_server = mailbox.serve(stack.moto_url, ports["mail"])
        mailbox_url = f"http://127.0.0.1:{mailbox_server.server_address[1]}/"
        mailbox.watch(stack.moto_url)

        from chalicelib.accounts import service as accounts

        webhook_secret = "whsec_" + secrets.token_urlsafe(24)
        created = accounts.create_account(
            name="Demo Shop", support_email="support@demo-shop.test",
            stripe_secret_key=DEMO_STRIPE_KEY, stripe_webhook_secrets=[webhook_secret],
            stripe_publishable_key=DEMO_PUBLISHABLE_KEY, slug="demo-shop")
        account_id = created.account["account_id"]
        webhook_url = accounts.webhook_url(app_url, account_id)
        stack.register_stripe_webhook(webhook_url, webhook_secret, webhook_id="demo")

        if not args.no_app:
            print("Starting the app (chalice local) …", flush=True)
            env = dict(os.environ)
            running.append(servers.start_chalice(ports["app"], env=env, log_dir=LOG_DIR))

        if not args.no_seed:
            from devstack import seed

            seed.seed(stack.stripe_url, DEMO_STRIPE_KEY)
            if not args.no_app:
                time.sleep(2)  # localstripe sends its own webhooks about a second later
                seed.send_missing_failure_events(stack.stripe_url, webhook_url, webhook_secret,
                                                 DEMO_STRIPE_KEY)
                _report_records(app_url, created.api_key)

        _print_summary(stack, app_url, created.api_key, webhook_url, webhook_secret,
                       app_running=not args.no_app, mailbox_url=mailbox_url,
                       portal_url=f"{app_url}/portal/{created.account['slug']}/")
        while True:
            for server in running:
                if not server.running():
                    print(f"\n{server.name} stopped (exit code {server.process.returncode});"
                          f" end of {server.log_path}:\n{server.log_tail()}", file=sys.stderr)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nStopping …", flush=True)
        return 0
    except servers.ServerError as e:
        print(f"\nmake dev: {e}", file=sys.stderr)
        return 1
    finally:
        for server in reversed(running):
            server.stop()


def _write_env_file(env: dict[str, str]) -> None:
    """So another shell can reach the same stand-ins: `source .devstack/dev.env`."""
    ENV_FILE.parent.mkdir(parents=True, exist_ok=True)
    ENV_FILE.write_text("".join(f"export {k}='{v}'\n" for k, v in sorted(env.items())))


def _report_records(app_url: str, api_key: str, wait: float = 20.0) -> None:
    """Best effort: how many customers the app recorded from the seed's webhooks.

    localstripe sends them about a second after each object is created, and a busy
    machine takes longer to apply them: poll until the count holds still for a few
    seconds. Only a hint that the whole chain works, never a reason to stop.
    """
    request = urllib.request.Request(f"{app_url}/api/v1/customers?limit=100",
                                     headers={"Authorization": f"Bearer {api_key}"})
    deadline = time.monotonic() + wait
    outcome, last, steady = "no answer", None, 0
    while time.monotonic() < deadline and steady < 3:
        time.sleep(1)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                body = json.load(response)
        except urllib.error.HTTPError as e:
            outcome = f"HTTP {e.code}"
            continue
        except (OSError, ValueError) as e:
            outcome = str(e)
            continue
        items = body.get("data") if isinstance(body, dict) else body
        if not isinstance(items, list):
            outcome = "an answer without a list of customers"
            continue
        count = len(items)
        steady = steady + 1 if count == last and count > 0 else 0
        last, outcome = count, f"{count} customer records"
    print(f"The app holds {outcome} after the seed's webhooks "
          "(localstripe keeps sending in the background).", flush=True)


def _print_summary(stack: servers.Stack, app_url: str, api_key: str, webhook_url: str,
                   webhook_secret: str, app_running: bool, mailbox_url: str,
                   portal_url: str) -> None:
    api = f"{app_url}/api/v1/customers"
    app_note = "" if app_running else "   (not started: --no-app)"
    print(f"""
Billing portal dev stack is up.
  App:              {app_url}{app_note}
  Customer portal:  {portal_url}
                    sign in as {", ".join(DEMO_CUSTOMERS)}
                    (the sign-in mail is printed here and shown in the mailbox)
  Dev mailbox:      {mailbox_url}
  Merchant API:     {api}
  Demo API key:     {api_key}
  Stripe webhooks:  {webhook_url}
                    (localstripe signs them with {webhook_secret})
  Try:              curl -H 'Authorization: Bearer {api_key}' {api}
  E-mails sent:     {stack.moto_url}/moto-api/data.json  (under "ses"; also the mailbox)
  DynamoDB Local:   {stack.ddb_url}    moto: {stack.moto_url}
  localstripe:      {stack.stripe_url}    (Stripe key {DEMO_STRIPE_KEY})
  Stripe for app:   {stack.stripe_api_url}    (devstack/stripe_shim.py in front of localstripe;
                    Stripe.js stand-in at {stack.stripe_api_url}/js.stripe.com/v3/,
                    publishable key {DEMO_PUBLISHABLE_KEY}; test cards 4242424242424242,
                    4000000000000341 declines charges, 4000000000000002 declines at once)
  Environment:      source {ENV_FILE.relative_to(servers.REPO_ROOT)}
  Logs:             {LOG_DIR.relative_to(servers.REPO_ROOT)}/
Ctrl-C stops everything.""", flush=True)


if __name__ == "__main__":
    sys.exit(main())
