"""The bench's own local stack, and the environment set before chalicelib is imported."""
from __future__ import annotations

import sys
from pathlib import Path

from devstack import servers

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = REPO_ROOT / "tests"


def start() -> servers.Stack:
    """DynamoDB Local, moto and localstripe on free ports, provisioned; env applied.

    Call before anything imports chalicelib (its settings are read once per process).
    """
    if "chalicelib.settings" in sys.modules:
        raise RuntimeError("bench.stack.start() must run before chalicelib is imported")
    log_dir = servers.session_log_dir("bench")
    ddb, moto, stripe_, app = servers.free_ports(4)
    stack = servers.start_stack(ddb_port=ddb, moto_port=moto, stripe_port=stripe_,
                                app_url=f"http://127.0.0.1:{app}", log_dir=log_dir)
    stack.app_port = app
    stack.log_dir = log_dir
    servers.apply_env(stack.env)
    stack.provision()
    # The tests' Stripe event builders (stripe_events, story) are the bench's inputs too.
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    return stack
