"""Waiting between attempts of an optimistic write that lost a race.

Full-jitter exponential backoff (the AWS Architecture Blog's "Exponential Backoff And
Jitter"): each loser waits a random time up to a ceiling that doubles per lost attempt.
A linear ceiling of a few milliseconds is shorter than one DynamoDB transaction on a busy
host, so eight writers to one new record kept colliding until one ran out of attempts;
doubling spreads them over the time a commit really takes, and the cap keeps the worst
case (all attempts lost) within a webhook's timeout.
"""
from __future__ import annotations

import random
import time

BASE_SECONDS = 0.02
CAP_SECONDS = 0.5


def pause(attempt: int, base: float = BASE_SECONDS, cap: float = CAP_SECONDS) -> None:
    """Sleep before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
    time.sleep(random.uniform(0, min(cap, base * (2 ** min(attempt, 16)))))
