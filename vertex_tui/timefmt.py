"""Human times for the console and the CLI ("3 minutes ago", "in 1 day 23 hours")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import humanize


def _ts(value: float | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return float(value)


# Units of `span`, largest first. A year is 365 days: months vary, and "in 1 month" for
# anything from 30 to 59 days is the kind of rounding a deadline must not do.
UNITS = (("year", 365 * 86_400), ("day", 86_400), ("hour", 3600), ("minute", 60),
         ("second", 1))


def span(seconds: float) -> str:
    """A length of time in its two largest units, each rounded down: 47 h 59 m is
    "1 day 23 hours", never "a day" or "2 days"; a zero second unit is left out ("3 hours").
    """
    left = int(max(0.0, seconds))
    if left == 0:
        return "under a second"
    for index, (unit, size) in enumerate(UNITS):
        if left >= size:
            count, rest = divmod(left, size)
            text = _count(count, unit)
            if index + 1 < len(UNITS):
                unit2, size2 = UNITS[index + 1]
                if rest // size2:
                    text += " " + _count(rest // size2, unit2)
            return text
    raise AssertionError("unreachable: a second is the smallest unit")


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


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
    return "in " + span(ts - now)


def clock_time(value: float | str | None) -> str:
    """'2026-11-28 17:05' in UTC, for tables."""
    ts = _ts(value)
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def precise_time(value: float | str | None) -> str:
    """'2026-11-28 17:05:09' in UTC: job detail, where two attempts can share a minute."""
    ts = _ts(value)
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


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
