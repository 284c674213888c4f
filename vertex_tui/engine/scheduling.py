"""The one module that knows APScheduler: cron parsing and (later) the job scheduler."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger


def cron_trigger(expr: str, timezone: str = "UTC") -> CronTrigger:
    """A `CronTrigger` for a 5-field crontab expression evaluated in `timezone`."""
    return CronTrigger.from_crontab(expr, timezone=ZoneInfo(timezone))


def validate_cron(expr: str) -> str | None:
    """None if `expr` is a valid 5-field cron expression, else what is wrong with it."""
    if len(expr.split()) != 5:
        return f"got {len(expr.split())} fields"
    try:
        cron_trigger(expr)
    except ValueError as exc:
        return str(exc)
    return None


def next_cron_time(expr: str, timezone: str, after: datetime) -> datetime | None:
    """The first time strictly after `after` at which `expr` fires, in `timezone`."""
    trigger = cron_trigger(expr, timezone)
    return trigger.get_next_fire_time(None, after)  # type: ignore[no-any-return]
