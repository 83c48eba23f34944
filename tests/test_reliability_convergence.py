"""Convergence: a stream delivered at least once, out of order, several at a time, ends
in the same records as one in-order delivery; and the table keeps its invariants.

Quick (make test): 30 customers, ~620 events (kept small: the whole quick suite
stays near two minutes on 2 cores). Soak (make soak): 500 customers,
~10,000 events. Every event is delivered 1 to 3 times, in a random order, from 4
threads; a 5xx (an event that cannot be applied yet, e.g. a dispute before its
payment) is delivered again in a later round, as Stripe does.
"""
from __future__ import annotations

import time

import pytest
from app_fixtures import app_client, make_merchant  # noqa: F401
from test_reliability_helpers import (
    deliver_noisy,
    diff_records,
    long_story,
    record_figures,
    records,
    table_invariants,
)

# The invariants scan the whole table: start this module with it empty.
pytestmark = pytest.mark.usefixtures("table_of_its_own")


def _converge(app_client, customers: int, renewals: int, seeds: list[int], name: str):  # noqa: F811
    events = long_story(customers, renewals, prefix=name[:2])
    t0 = time.monotonic()
    in_order = make_merchant(app_client)
    in_order.deliver_until_applied(events)
    expected = records(in_order)
    assert len(expected) == customers
    table_invariants(in_order.account_id, {e["id"] for e in events})
    figures = {"customers": customers, "events": len(events), "runs": []}
    for seed in seeds:
        replay = make_merchant(app_client)
        delivered = deliver_noisy(replay, events, seed=seed)
        got = records(replay)
        problems = diff_records(got, expected)
        assert not problems, f"seed {seed}: " + "\n".join(problems[:5])
        invariants = table_invariants(replay.account_id, {e["id"] for e in events})
        figures["runs"].append({"seed": seed, **delivered, **invariants})
    figures["seconds"] = round(time.monotonic() - t0, 1)
    record_figures(name, figures)


def test_duplicated_shuffled_concurrent_stream_converges(app_client):  # noqa: F811
    _converge(app_client, customers=30, renewals=7, seeds=[11], name="convergence-quick")


@pytest.mark.soak
def test_soak_duplicated_shuffled_concurrent_stream_converges(app_client):  # noqa: F811
    _converge(app_client, customers=500, renewals=7, seeds=[101], name="convergence-soak")
