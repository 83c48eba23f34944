"""`make dev`: the whole app on this machine, with demo data.

Starts DynamoDB Local, moto and localstripe (with devstack's proxy in front of it,
which the app's STRIPE_API_BASE and the portal's Stripe.js stand-in point at),
provisions them, creates the demo merchant account (with a test publishable key, so
its customers can add cards in the portal), points localstripe's webhooks at the app,
runs the app under `chalice local`, seeds localstripe (whose signed webhooks then fill
the app's records), prints where everything is, and stops it all on Ctrl-C.

Another copy may already run on this machine (another checkout, another terminal): every
server whose default port is taken gets a free one, and the URLs printed are the ones
really served. A copy running from the same checkout gets its own logs and env file.
Seeding never stops the stack: each step waits for what it needs, retries what may pass
later, and a step that still fails is reported while the stack serves what it has.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import signal
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from devstack import servers

DEFAULT_PORTS = {"app": 8000, "ddb": 8001, "moto": 8002, "stripe": 8420, "shim": 8421,
                 "mail": 8025}
DEMO_STRIPE_KEY = "sk_test_demo"
DEMO_PUBLISHABLE_KEY = "pk_test_demo"  # localstripe's Stripe.js stand-in takes any pk_test_…
STATE_DIR = servers.REPO_ROOT / ".devstack"
# Customers devstack/seed.py creates (the demo merchant's support address, at the
# demo-shop.test domain, is a verified SES sender in moto: see servers.provision).
DEMO_CUSTOMERS = ("grace@example.com", "zoe.lukasiewicz@example.com", "mateo@example.com",
                  "kenji@example.com", "ada@example.com")
# chalice local on a busy machine (the app's imports) can take longer than the stand-ins.
APP_START_SECONDS = 180.0


@dataclass
class Instance:
    """Where one running `make dev` keeps its logs and env file.

    The first copy on a checkout holds ``<state>/dev.lock`` and uses ``logs/dev`` and
    ``dev.env`` (what the README names); a second copy running at the same time gets
    ``logs/dev-<pid>`` and ``dev-<pid>.env`` instead of truncating the first one's files.
    """

    log_dir: Path
    env_file: Path
    primary: bool
    lock: TextIO  # open for as long as the process runs: the flock is the claim

    def release(self) -> None:
        if not self.primary:
            self.env_file.unlink(missing_ok=True)
        self.lock.close()


def claim_instance(state_dir: Path) -> Instance:
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = open(state_dir / "dev.lock", "a")  # noqa: SIM115 (held until release())
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        suffix = f"-{os.getpid()}"
        return Instance(state_dir / "logs" / f"dev{suffix}", state_dir / f"dev{suffix}.env",
                        primary=False, lock=lock)
    return Instance(state_dir / "logs" / "dev", state_dir / "dev.env", primary=True, lock=lock)


def choose_ports(preferred: dict[str, int]) -> dict[str, int]:
    """Each preferred port if nothing listens on it, else a free one (all distinct)."""
    taken = [name for name, port in preferred.items() if not servers.port_is_free(port)]
    spare = iter(servers.free_ports(len(taken)))
    return {name: next(spare) if name in taken else port for name, port in preferred.items()}


def _busy(ports) -> list[int]:
    return [port for port in ports if not servers.port_is_free(port)]


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
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR,
                        help="where the logs and the env file go (default .devstack)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)

    instance = claim_instance(args.state_dir)
    if not instance.primary:
        print(f"Another `make dev` runs from this checkout: this one logs to "
              f"{_shown(instance.log_dir)}/.", flush=True)
    preferred = {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
    ports = choose_ports(preferred)
    moved = [f"{name} {preferred[name]}→{ports[name]}" for name in ports
             if ports[name] != preferred[name]]
    if moved:
        print(f"Ports in use, taking free ones instead: {', '.join(moved)}.", flush=True)
    running: list[servers.Server] = []
    try:
        print("Starting DynamoDB Local, moto and localstripe …", flush=True)
        stack = _start_stack(ports, instance.log_dir)
        app_url = f"http://127.0.0.1:{ports['app']}"
        running += stack.servers
        # Before any chalicelib import: its settings are read once per process.
        # Deliveries to the dev receiver go to loopback over http (never allowed in AWS).
        stack.env["ALLOW_HTTP_LOOPBACK_ENDPOINTS"] = "1"
        servers.apply_env(stack.env)
        _write_env_file(instance.env_file, stack.env)
        stack.provision()
        # Sent mail (sign-in links) on the terminal and on a page: nothing really sends it.
        from devstack import mailbox

        try:
            mailbox_server = mailbox.serve(stack.moto_url, ports["mail"])
        except OSError:  # taken since it was chosen (another copy starting just now)
            mailbox_server = mailbox.serve(stack.moto_url, 0)
        mailbox_url = f"http://127.0.0.1:{mailbox_server.server_address[1]}/"
        mailbox.watch(stack.moto_url)
        # The export queue's consumer (Lambda's SQS event source in AWS): the same handler.
        from devstack import queue_worker

        queue_worker.start_thread()
        # The scheduler's sweep (an EventBridge schedule in AWS): the same function, every
        # few seconds of real time, so dunning and notices happen while one watches.
        _start_sweep_thread()
        # The webhook pipeline (the table's stream → fan-out → delivery queue → sender, as
        # Lambda runs them in AWS): the same handlers, in threads, against DynamoDB Local's
        # stream and moto's SQS; and a receiver that verifies what it is sent, with its page.
        from devstack import receiver as dev_receiver
        from devstack import stream_worker

        stream_worker.start_threads()
        receiver = dev_receiver.Receiver()

        from chalicelib.accounts import service as accounts

        webhook_secret = "whsec_" + secrets.token_urlsafe(24)
        created = accounts.create_account(
            name="Demo Shop", support_email="support@demo-shop.test",
            stripe_secret_key=DEMO_STRIPE_KEY, stripe_webhook_secrets=[webhook_secret],
            stripe_publishable_key=DEMO_PUBLISHABLE_KEY, slug="demo-shop")
        account_id = created.account["account_id"]
        _seed_staff(account_id)
        # The demo shop's endpoint: every event, to the dev receiver (its page lists them).
        from chalicelib.integrations import endpoints as demo_endpoints

        demo_endpoint = demo_endpoints.create(account_id, url=receiver.url("demo-shop"),
                                              event_types=["*"], description="dev receiver")
        receiver.register("demo-shop", demo_endpoint["secret"])
        webhook_url = accounts.webhook_url(app_url, account_id)
        stack.register_stripe_webhook(webhook_url, webhook_secret, webhook_id="demo")

        if not args.no_app:
            print("Starting the app (chalice local) …", flush=True)
            try:
                app = servers.start_chalice(ports["app"], env=dict(os.environ),
                                            log_dir=instance.log_dir, timeout=APP_START_SECONDS)
            except servers.ServerError:
                if not _busy([ports["app"]]):
                    raise
                # Taken while the stand-ins started (another copy starting at the same
                # moment): move the app, and every URL built from its address, elsewhere.
                ports.update(choose_ports({"app": ports["app"]}))
                app_url = f"http://127.0.0.1:{ports['app']}"
                print(f"Port taken meanwhile; the app moves to {app_url}.", flush=True)
                stack.env["PUBLIC_BASE_URL"] = app_url
                servers.apply_env(stack.env)
                _write_env_file(instance.env_file, stack.env)
                webhook_url = accounts.webhook_url(app_url, account_id)
                stack.register_stripe_webhook(webhook_url, webhook_secret, webhook_id="demo")
                app = servers.start_chalice(ports["app"], env=dict(os.environ),
                                            log_dir=instance.log_dir, timeout=APP_START_SECONDS)
            running.append(app)

        seeded = None
        if not args.no_seed:
            seeded = run_seed(stack, app_url, webhook_url, webhook_secret, created.api_key,
                              app_running=not args.no_app, log_dir=instance.log_dir,
                              account_id=account_id)

        _print_summary(stack, app_url, created.api_key, webhook_url, webhook_secret,
                       app_running=not args.no_app, mailbox_url=mailbox_url,
                       portal_url=f"{app_url}/portal/{created.account['slug']}/",
                       instance=instance, seeded=seeded)
        print(f"Webhook deliveries (verified):  {receiver.base_url}/", flush=True)
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
        instance.release()


SWEEP_SECONDS = 5


def _start_sweep_thread() -> threading.Event:
    """Run the scheduler's sweep in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        from chalicelib import timeutil
        from chalicelib.scheduler import service as scheduler

        while not stop.wait(SWEEP_SECONDS):
            try:
                scheduler.sweep(timeutil.now())
            except Exception as exc:  # noqa: BLE001 - the loop outlives a bad sweep
                print(f"sweep failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    threading.Thread(target=loop, name="sweep", daemon=True).start()
    return stop


def _start_stack(ports: dict[str, int], log_dir: Path) -> servers.Stack:
    """The stand-ins on ``ports``; once more on other free ports if one was taken meanwhile
    (another copy starting at the same moment chose the same free port)."""
    names = ("ddb", "moto", "stripe", "shim")
    for attempt in (1, 2):
        try:
            return servers.start_stack(ddb_port=ports["ddb"], moto_port=ports["moto"],
                                       stripe_port=ports["stripe"], shim_port=ports["shim"],
                                       app_url=f"http://127.0.0.1:{ports['app']}",
                                       log_dir=log_dir)
        except servers.ServerError:
            # Ours are stopped by now: a port still busy is someone else's.
            if attempt == 2 or not _busy(ports[name] for name in names):
                raise
            ports.update(choose_ports({name: ports[name] for name in names}))
            print("A port was taken while starting; trying again on free ones.", flush=True)
    raise AssertionError("unreachable")


def run_seed(stack: servers.Stack, app_url: str, webhook_url: str, webhook_secret: str,
             api_key: str, *, app_running: bool, log_dir: Path,
             out: TextIO = sys.stdout, account_id: str | None = None) -> bool:
    """The demo data, step by step; True when every step succeeded.

    Never raises: a step that fails after its own retries is reported (its traceback in
    ``log_dir/seed.log``) and the stack goes on serving what it has.
    """
    from devstack import seed

    def failed(step: str, error: BaseException) -> bool:
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "seed.log", "a") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {step}\n")
            traceback.print_exception(error, file=log)
        print(f"\nSeed step failed: {step}: {type(error).__name__}: {error}\n"
              f"The stack stays up with the data it has; details in "
              f"{_shown(log_dir / 'seed.log')}.", file=out, flush=True)
        return False

    # localstripe sends its webhooks once, about a second after each object: the app
    # must be answering before anything is created, or they are lost.
    if app_running and not seed.wait_until_answering(f"{app_url}/api/v1/customers"):
        print(f"The app at {app_url} does not answer yet; seeding anyway (its webhooks from "
              "localstripe may be lost).", file=out, flush=True)
    try:
        seed.seed(stack.stripe_url, DEMO_STRIPE_KEY, out=out)
    except Exception as e:  # noqa: BLE001 (demo data must never take the stack down)
        return failed("creating the demo data in localstripe", e)
    if not app_running:
        return True
    time.sleep(2)  # localstripe sends its own webhooks about a second later
    try:
        deliveries = seed.send_missing_failure_events(stack.stripe_url, webhook_url,
                                                      webhook_secret, DEMO_STRIPE_KEY)
    except Exception as e:  # noqa: BLE001 (as above)
        return failed("sending the payment failures localstripe does not send", e)
    if deliveries.failed:
        return failed("sending the payment failures localstripe does not send",
                      seed.SeedStepFailed("; ".join(deliveries.failed)))
    if account_id is not None and stack.paypal is not None:
        try:  # a PayPal customer too, its events signed and sent by the PayPal stand-in
            seed.seed_paypal(stack.paypal.url, app_url, account_id, servers.paypal_dev_ca(),
                             out=out)
        except Exception as e:  # noqa: BLE001 (as above)
            return failed("seeding the PayPal customer through the PayPal stand-in", e)
    _report_records(app_url, api_key, out=out)
    return True


def _shown(path: Path) -> Path:
    """``path`` relative to the checkout when inside it (shorter on the terminal)."""
    try:
        return path.relative_to(servers.REPO_ROOT)
    except ValueError:
        return path


def _write_env_file(env_file: Path, env: dict[str, str]) -> None:
    """So another shell can reach the same stand-ins: `source .devstack/dev.env`."""
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in sorted(env.items())))


def _report_records(app_url: str, api_key: str, wait: float = 20.0,
                    out: TextIO = sys.stdout) -> None:
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
          "(localstripe keeps sending in the background).", file=out, flush=True)


# The demo shop's staff (chalicelib/staff): they sign in at /dashboard/demo-shop/sign-in;
# the mail lands in the dev mailbox.
DEMO_STAFF = {"owner@demo-shop.test": "owner", "viewer@demo-shop.test": "read_only"}


def _seed_staff(account_id: str) -> None:
    from chalicelib.staff import service as staff

    for email, role in DEMO_STAFF.items():
        staff.add_staff(account_id, email, role)


def _print_summary(stack: servers.Stack, app_url: str, api_key: str, webhook_url: str,
                   webhook_secret: str, app_running: bool, mailbox_url: str,
                   portal_url: str, instance: Instance, seeded: bool | None) -> None:
    api = f"{app_url}/api/v1/customers"
    app_note = "" if app_running else "   (not started: --no-app)"
    demo_data = {None: "none (--no-seed)", True: "seeded",
                 False: "incomplete: a seed step failed (see above)"}[seeded]
    print(f"""
Billing portal dev stack is up.
  App:              {app_url}{app_note}
  Customer portal:  {portal_url}
                    sign in as {", ".join(DEMO_CUSTOMERS)}
                    (the sign-in mail is printed here and shown in the mailbox)
  Dashboard:        {portal_url.replace("/portal/", "/dashboard/")}sign-in
                    sign in as {" or ".join(f"{e} ({r.replace('_', '-')})" for e, r in DEMO_STAFF.items())}
                    (the link and code arrive in the dev mailbox)
  Dev mailbox:      {mailbox_url}
  Merchant API:     {api}
  Demo API key:     {api_key}
  Demo data:        {demo_data}
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
  Environment:      source {_shown(instance.env_file)}
  Logs:             {_shown(instance.log_dir)}/
Ctrl-C stops everything.""", flush=True)


if __name__ == "__main__":
    sys.exit(main())
