"""Jinja2, created on first use: templates live in chalicelib/templates/ because Chalice
ships only app.py and chalicelib/ (a templates/ folder at the repository root would be
missing from the Lambda zip).

Autoescape is on for .html templates; .txt templates (plain-text mail) are not escaped.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def environment():
    import jinja2

    from chalicelib import formatting

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                            default_for_string=True, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["money"] = formatting.money
    env.filters["date"] = formatting.date
    env.filters["iso_date"] = formatting.iso_date
    env.filters["interval"] = formatting.interval
    env.filters["card"] = formatting.card
    return env


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)
