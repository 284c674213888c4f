"""The one module that knows APScheduler: cron parsing and the engine's job scheduler.

Every periodic pass (each backup job, rotation, later lifecycle and video checks) is a job
here, so "next run" and "run now" have one mechanism. Jobs run on the engine's loop with
`max_instances=1` and `coalesce=True`; a disabled job is added paused, so it is still listed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

if TYPE_CHECKING:
    from vertex_tui.engine.service import Job as ServiceJob

log = logging.getLogger(__name__)

JobFunc = Callable[[], Awaitable[object]]


_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _cron_day(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text.lower() in _CRON_DAYS:
        return _CRON_DAYS.index(text.lower())
    raise ValueError(f"day of week {text!r} is not 0-7 or sun-sat")


def _cron_weekdays(field: str) -> str:
    """Crontab's day-of-week field (0 and 7 are Sunday) as APScheduler day names.

    APScheduler 3's `from_crontab` reads the numbers as 0 = Monday (agronholm/apscheduler
    #286, kept for compatibility in 3.x), so "0 3 * * 0" would run on Mondays; names mean
    the same day to both.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.split(","):
        spec, slash, step_text = item.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(f"bad step in day of week {item!r}")
        if spec == "*":
            lo, hi = 0, 6
        elif "-" in spec:
            first, _, last = spec.partition("-")
            lo, hi = _cron_day(first), _cron_day(last)
            if hi == 0 and lo > 0:  # "fri-sun"
                hi = 7
            if lo > hi:
                raise ValueError(f"day of week range {spec!r} runs backwards")
        else:
            lo = _cron_day(spec)
            hi = 7 if slash else lo
        days.update(d % 7 for d in range(lo, hi + 1, int(step_text) if slash else 1))
    return ",".join(_CRON_DAYS[d] for d in sorted(days))


def cron_trigger(expr: str, timezone: str = "UTC") -> CronTrigger:
    """A `CronTrigger` for a 5-field crontab expression evaluated in `timezone`."""
    fields = expr.split()
    if len(fields) == 5:
        fields[4] = _cron_weekdays(fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=ZoneInfo(timezone))


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
    """The first fire time of `expr` (in `timezone`) strictly after `after`, in UTC.

    UTC because a local time in a DST gap or fold compares unequal to every instant of
    another zone (PEP 495), and ISO strings with mixed offsets do not sort by time.
    """
    trigger = cron_trigger(expr, timezone)
    nxt: datetime | None = trigger.get_next_fire_time(None, after)
    if nxt is not None and nxt <= after:
        from datetime import timedelta

        nxt = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
    return None if nxt is None else nxt.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class ScheduledJob:
    name: str
    schedule: str
    enabled: bool
    next_run: datetime | None
    paused: bool = False
    params: dict[str, Any] = field(default_factory=dict)


class Scheduler:
    """APScheduler's `AsyncIOScheduler` on the running loop, behind our own small API."""

    def __init__(self, timezone: str = "UTC") -> None:
        self.timezone = timezone
        self._scheduler = AsyncIOScheduler(timezone=ZoneInfo(timezone))
        self._schedules: dict[str, str] = {}
        self._enabled: dict[str, bool] = {}
        self._paused: set[str] = set()
        self._params: dict[str, dict[str, Any]] = {}

    def add_job(self, job: ServiceJob, func: JobFunc, *, now: float) -> None:
        """Schedule a service's `Job` (its cron or interval trigger); an interval job's first
        run is `first_after` seconds after `now` (the engine's clock)."""
        from vertex_tui.engine.service import Cron

        trigger = job.trigger
        if isinstance(trigger, Cron):
            self.add_cron(job.name, trigger.expr, func, enabled=job.enabled,
                          misfire_grace=trigger.misfire_grace)
        else:
            first = datetime.fromtimestamp(now + trigger.first_after, UTC)
            self.add_interval(job.name, trigger.seconds, func, enabled=job.enabled,
                              first_run=first)
        self._params[job.name] = dict(job.params)

    def set_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume one job (`jobs pause`); a disabled job stays paused regardless.
        True if that changed the job's state."""
        job = self._scheduler.get_job(name)
        if job is None or paused == (name in self._paused):
            return False
        if paused:
            self._paused.add(name)
            job.pause()
        else:
            self._paused.discard(name)
            if self._enabled.get(name):
                job.resume()
        return True

    def names(self) -> list[str]:
        return list(self._schedules)

    def add_cron(self, name: str, expr: str, func: JobFunc, *, enabled: bool = True,
                 misfire_grace: int = 3600) -> None:
        self._add(name, f"cron {expr}", func, cron_trigger(expr, self.timezone), enabled,
                  misfire_grace)

    def add_interval(self, name: str, seconds: float, func: JobFunc, *, enabled: bool = True,
                     first_run: datetime | None = None) -> None:
        trigger = IntervalTrigger(seconds=seconds, timezone=ZoneInfo(self.timezone))
        self._add(name, f"every {seconds:g} s", func, trigger, enabled, int(seconds),
                  first_run)

    def _add(self, name: str, schedule: str, func: JobFunc, trigger: object, enabled: bool,
             misfire_grace: int, first_run: datetime | None = None) -> None:
        kwargs = {} if first_run is None else {"next_run_time": first_run}
        job: Job = self._scheduler.add_job(
            func, trigger, id=name, name=name, max_instances=1, coalesce=True,
            misfire_grace_time=misfire_grace, replace_existing=True, **kwargs,
        )
        if not enabled:
            job.pause()
        self._schedules[name] = schedule
        self._enabled[name] = enabled

    def start(self) -> None:
        self._scheduler.start()

    def pause(self) -> None:
        """Start no more jobs; those running go on (shutdown() would cancel them)."""
        if self._scheduler.running:
            self._scheduler.pause()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def next_run(self, name: str) -> datetime | None:
        job = self._scheduler.get_job(name)
        if job is None or job.next_run_time is None:
            return None
        when: datetime = job.next_run_time
        return when.astimezone(UTC)

    def jobs(self) -> list[ScheduledJob]:
        return [ScheduledJob(name=n, schedule=s, enabled=self._enabled[n],
                             next_run=self.next_run(n), paused=n in self._paused,
                             params=self._params.get(n, {}))
                for n, s in self._schedules.items()]
