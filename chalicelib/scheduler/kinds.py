"""Which feature runs a step: the kind's prefix (``dunning.retry`` → ``dunning``) names
the feature, whose handler is imported only when a step of it is due (the sweep's function
loads no feature it does not run).

A handler is ``handle(step: Step, now: datetime) -> Outcome`` (scheduler.service): it runs
the step, which the sweep has claimed, and says what became of it. Each feature adds its
line to ``_HANDLERS``.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

# feature prefix → "module:function"
_HANDLERS = {
    "notice": "chalicelib.notices.service:handle",
    "delivery": "chalicelib.integrations.delivery:handle_due_attempt",
    "pending_cancel": "chalicelib.selfservice.pending_cancel:handle",
    "late_payment": "chalicelib.selfservice.late_payments:handle",
    "outbox": "chalicelib.integrations.pipeline:handle_due_fanout",
    "dunning": "chalicelib.dunning.steps:handle",
}


def handler_for(kind: str) -> Callable | None:
    """The handler of a step kind, or None if no feature owns it."""
    target = _HANDLERS.get(kind.split(".", 1)[0])
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
