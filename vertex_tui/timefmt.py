"""Human times for the console and the CLI ("3 minutes ago", "in 2 hours")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import humanize


def _ts(value: float | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return float(value)


def ago(value: float | str | None, now: float) -> str:
    ts = _ts(value)
    if ts is None:
        return "never"
    if ts > now + 1:
        return until(ts, now)
    return humanize.naturaltime(timedelta(seconds=now - ts))


def until(value: float | str | None, now: float) -> str:
    ts = _ts(value)
    if ts is None:
        return "-"
    if ts <= now:
        return "due now"
    return "in " + humanize.naturaldelta(timedelta(seconds=ts - now))


def clock_time(value: float | str | None) -> str:
    """'2026-11-28 17:05' in UTC, for tables."""
    ts = _ts(value)
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def short_time(value: float | str | None, now: float) -> str:
    """'17:05:09' today, '11-27 17:05' another day (UTC): for narrow table columns."""
    ts = _ts(value)
    if ts is None:
        return "-"
    at = datetime.fromtimestamp(ts, UTC)
    if at.date() == datetime.fromtimestamp(now, UTC).date():
        return at.strftime("%H:%M:%S")
    return at.strftime("%m-%d %H:%M")


def size(n: int | None) -> str:
    return "-" if n is None else humanize.naturalsize(n, binary=True)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return humanize.precisedelta(timedelta(seconds=seconds), minimum_unit="seconds",
                                 format="%0.1f")
