"""Shared fixtures: the local stand-ins (DynamoDB Local, moto, localstripe) over real
HTTP, started once per test session (once per worker under pytest-xdist).

The environment is set when this file is imported, which pytest does before it
imports any test module: chalicelib reads its settings once per process
(``get_settings`` is cached, and the table model reads the table name at import), so
the endpoints, table name and Stripe API base must be in ``os.environ`` before the
first ``import chalicelib``. That is why the ports are picked here, and the session
fixture then starts the servers on them.

Fixtures for tests:
  stack          the running stand-ins (devstack.servers.Stack): ddb_url, moto_url,
                 stripe_url, env, verify_sender(), register_stripe_webhook(), …
  fresh_table    the table's name, ensured to exist (not emptied: use unique ids)
  empty_table    the table dropped and created again (~50 ms); wipes everything
  table_of_its_own  the same, once per module (modules that scan the whole table)
  moto_reset     callable: forget moto's state, recreate the bucket and senders
  sent_emails    callable: the mail moto's SES accepted (list of dicts)
  stripe_client  a stripe.StripeClient pointed at localstripe
  stripe_shim    base URL of devstack's proxy in front of localstripe (the app's
                 STRIPE_API_BASE, and where its Stripe.js stand-in is served)
  app_server     base URL of the Chalice app under `chalice local` (started lazily)
Tests marked ``@pytest.mark.soak`` run only when selected: ``make soak``.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # so plain `pytest` works too, not only `python -m`
    sys.path.insert(0, str(REPO_ROOT))

from devstack import servers  # noqa: E402

# One set of servers per process: xdist workers, and other sessions running at the
# same time in this checkout, each get their own ports and log folder.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
LOG_DIR = servers.session_log_dir(f"test-{WORKER}")
DDB_PORT, MOTO_PORT, STRIPE_PORT, SHIM_PORT, APP_PORT, PAYPAL_PORT = servers.free_ports(6)
APP_URL = f"http://127.0.0.1:{APP_PORT}"
STRIPE_TEST_KEY = "sk_test_devstack"

# The app reaches localstripe through devstack's proxy (STRIPE_API_BASE, STRIPE_JS_URL),
# as under make dev; tests create Stripe objects at localstripe itself (stripe_client).
servers.apply_env(servers.service_env(
    ddb_url=f"http://127.0.0.1:{DDB_PORT}",
    moto_url=f"http://127.0.0.1:{MOTO_PORT}",
    stripe_url=f"http://127.0.0.1:{STRIPE_PORT}",
    app_url=APP_URL,
    stripe_api_base=f"http://127.0.0.1:{SHIM_PORT}",
    paypal_url=f"https://127.0.0.1:{PAYPAL_PORT}",
))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long-running load test; run with `make soak`")


def pytest_report_header(config: pytest.Config) -> str:
    return f"devstack logs: {LOG_DIR.relative_to(REPO_ROOT)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Soak tests are slow: they run only when asked for by name (-m soak).
    if "soak" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run with `make soak`")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def stack() -> Iterator[servers.Stack]:
    """The three stand-ins, provisioned (table, receipts bucket, SES senders)."""
    running = servers.start_stack(ddb_port=DDB_PORT, moto_port=MOTO_PORT,
                                  stripe_port=STRIPE_PORT, shim_port=SHIM_PORT,
                                  paypal_port=PAYPAL_PORT, app_url=APP_URL, log_dir=LOG_DIR)
    try:
        # Same values as set at import (same ports), applied again in case a test
        # module changed one on purpose and forgot to restore it.
        servers.apply_env(running.env)
        running.provision()
        yield running
    finally:
        running.stop()


@pytest.fixture
def fresh_table(stack: servers.Stack) -> str:
    """The table's name, created again if a test dropped it; not emptied (cheap)."""
    from chalicelib.store.schema import create_table

    create_table()
    return stack.env["TABLE_NAME"]


@pytest.fixture
def empty_table(stack: servers.Stack) -> str:
    """An empty table (drop and create). Also wipes data other fixtures may share."""
    from chalicelib.store.schema import create_table, delete_table

    delete_table()
    create_table()
    return stack.env["TABLE_NAME"]


@pytest.fixture(scope="module")
def table_of_its_own(stack: servers.Stack) -> str:
    """For a module whose checks scan the whole table (the reliability invariants): the
    table dropped and created once before the module. DynamoDB Local scans about a
    megabyte in seconds, and by then the session's other tests have filled the table.
    The containers' copies of records and pointers are forgotten with it."""
    from chalicelib.signin import service as signin
    from chalicelib.store import customers
    from chalicelib.store.schema import create_table, delete_table

    delete_table()
    create_table()
    customers.forget_all_collections()
    customers._pointer_cache.clear()
    signin._signing_key_ciphertext = None  # its item went with the table
    return stack.env["TABLE_NAME"]


@pytest.fixture
def moto_reset(stack: servers.Stack):
    """Call it to forget moto's state (S3 objects, mail, schedules, …); the receipts
    bucket and the sender identities are created again."""
    return stack.moto_reset


@pytest.fixture
def sent_emails(stack: servers.Stack):
    """Call it for the mail sent so far: dicts with type, source, destinations,
    subject, body (see devstack.servers.sent_emails)."""
    return stack.sent_emails


@pytest.fixture
def stripe_client(stack: servers.Stack):
    """A Stripe client on localstripe (which accepts any ``sk_test_…`` key)."""
    import stripe

    return stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": stack.stripe_url})


@pytest.fixture(scope="session")
def app_server(stack: servers.Stack) -> Iterator[str]:
    """The app under ``chalice local``, on APP_URL (= PUBLIC_BASE_URL); its base URL.

    Started the first time a test asks for it, then kept for the session. It runs
    with this process's environment, so it sees the same table, bucket and stand-ins.
    """
    if not (REPO_ROOT / "app.py").is_file():
        pytest.fail("app_server: app.py does not exist yet")
    server = servers.start_chalice(APP_PORT, env=dict(os.environ), log_dir=LOG_DIR)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stripe_shim(stack: servers.Stack) -> str:
    """devstack's proxy in front of localstripe (fills its gaps); its base URL. Part of
    the stack: the app's STRIPE_API_BASE points at it."""
    return stack.stripe_api_url
