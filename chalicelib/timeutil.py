from __future__ import annotations

from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_from_epoch(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return iso(datetime.fromtimestamp(seconds, timezone.utc))


def now_iso() -> str:
    return iso(now())
