"""Writes event-types.json, the one list the Zapier app makes its triggers from, out of
the product's event catalogue (chalicelib/integrations/catalogue.py): each type with its
trigger's noun, label, description and static sample (hooks.example, the example the
samples route shows before any real event).

    .venv/bin/python integrations/zapier/generate_event_types.py

tests/test_zapier.py fails while the file differs from what this writes.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "event-types.json"
sys.path.insert(0, str(HERE.parent.parent))

from chalicelib.integrations import catalogue, hooks  # noqa: E402

EXAMPLE_ACCOUNT = "acct_01example0000000000000000"


def _words(name: str) -> str:
    return " ".join(w.capitalize() for w in name.split("_"))


def trigger(event_type: str) -> dict:
    subject, _, change = event_type.partition(".")
    description = catalogue.EVENT_TYPES[event_type].description
    return {"type": event_type, "noun": _words(subject),
            "label": f"{_words(subject)} {_words(change)}",
            "description": f"Triggers when {description[0].lower()}{description[1:]}",
            "sample": hooks.example(event_type, EXAMPLE_ACCOUNT)}


def render() -> str:
    return json.dumps([trigger(t) for t in catalogue.EVENT_TYPES], indent=2,
                      ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT.relative_to(Path.cwd()) if OUTPUT.is_relative_to(Path.cwd()) else OUTPUT}")
