"""Alias of ``python -m bench`` (the Makefile's ``make bench`` runs ``python -m bench.run``)."""
from __future__ import annotations

from bench.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
