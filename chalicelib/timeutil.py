from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_from_epoch(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return iso(datetime.fromtimestamp(seconds, UTC))


def now_iso() -> str:
    return iso(now())
