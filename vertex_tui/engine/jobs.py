"""Every periodic job of every service, in one place: listed, run now, paused, resumed.

`JobBoard` is the engine's view of the jobs its services declare (`Service.jobs()`). The
snapshot merges what is known where: the schedule and next run from this process's
scheduler, or from the schedule a running engine published (`store.schedules`) when this
process schedules nothing (a CLI command, an attached console); the last real run by any
process from `service_runs`; the pause flags from the database; the holder from the leases.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.leases import live_holders
from vertex_tui.engine.runs import run_job
from vertex_tui.engine.service import Job
from vertex_tui.engine.store import jobs as jobs_store
from vertex_tui.engine.store import runs as runs_store
from vertex_tui.engine.store import schedules

if TYPE_CHECKING:
    from vertex_tui.engine.engine import Engine

log = logging.getLogger(__name__)


class UnknownJob(UsageError):
    """A job name no service declares (exit 2, naming the known ones)."""


class JobBoard:
    """The jobs of one engine's services (started or not)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._jobs: dict[str, Job] = {}
        self._scheduled: set[str] = set()  # jobs on this process's scheduler
        self._tasks: set[asyncio.Task[Any]] = set()

    def add(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            if job.name in self._jobs:
                raise ValueError(f"job {job.name!r} is declared twice")
            self._jobs[job.name] = job

    def names(self) -> list[str]:
        return list(self._jobs)

    def get(self, name: str) -> Job:
        job = self._jobs.get(name)
        if job is None:
            known = ", ".join(self._jobs) or "none"
            raise UnknownJob(f"unknown job {name!r}; known jobs: {known}")
        return job

    def schedule(self, job: Job) -> None:
        """Put `job` on the engine's scheduler (a started service's jobs)."""
        if job.driver != "scheduler":
            return
        engine = self._engine

        async def scheduled() -> None:
            try:
                await self._trigger(job, "schedule")
            except Exception:
                log.exception("job %s failed", job.name, extra={"service": job.service})

        engine.scheduler.add_job(job, scheduled, now=engine.clock.time())
        self._scheduled.add(job.name)

    async def _trigger(self, job: Job, trigger: str) -> dict[str, Any]:
        if job.invoke is not None:
            return await job.invoke(trigger)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await run_job(self._engine, job, trigger=trigger)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def wait_idle(self, grace: float) -> None:
        """Wait (up to `grace` s) for the runs of jobs the engine runs itself (plug-ins)."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)

    async def run(self, name: str) -> dict[str, Any]:
        """Run `name` now in this process (an operator's "run now"): through LeasedRun, so a
        run elsewhere holding its lease makes this a skip."""
        job = self.get(name)
        result = await self._trigger(job, "manual")
        return {"job": name, **{k: v for k, v in result.items() if k != "job"}}

    async def set_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume `name` for every engine on this database (durable, audited)."""
        self.get(name)
        changed = await jobs_store.set_paused(self._engine.db, name, paused,
                                              at=self._engine.clock.time())
        await self.follow_pauses()
        return changed

    async def follow_pauses(self) -> bool:
        """Apply the database's pause flags to this process's scheduler (every poll);
        True if that changed anything (the published schedule is then out of date)."""
        if not self._scheduled:
            return False
        flags = await jobs_store.paused(self._engine.db)
        changed = False
        for name in self._scheduled:
            changed |= self._engine.scheduler.set_paused(name, name in flags)
        return changed

    async def history(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        job = self.get(name)
        rows = await runs_store.history(self._engine.db, service=job.service, job=job.run_key,
                                        limit=limit)
        return [{"job": name, "started_at": isoformat(r["started_at"]),
                 "finished_at": isoformat(r["finished_at"]), "outcome": r["outcome"],
                 "duration_s": r["duration_s"], "counts": r["counts"], "error": r["error"],
                 "owner": r["owner"]} for r in rows]

    async def snapshot(self) -> list[dict[str, Any]]:
        """Every job: {"job", "service", "schedule", "enabled", "paused", "next_run",
        "last_run", "last_outcome", "last_duration_s", "holder"}, soonest next run first."""
        engine = self._engine
        db, now = engine.db, engine.clock.time()
        published = await schedules.published(db, now=now, reader=engine.owner)
        paused = await jobs_store.paused(db)
        last = await runs_store.last_real_runs(db)
        leases = [j.lease for j in self._jobs.values() if j.lease]
        holders = await live_holders(db, leases, now)
        local = {j.name: j for j in engine.scheduler.jobs()} if self._scheduled else {}
        out = []
        for job in self._jobs.values():
            schedule, enabled, nxt = job.schedule, job.enabled, None
            if job.name in local:
                nxt = local[job.name].next_run
            elif (theirs := published.get(job.name)) is not None:
                schedule, enabled = str(theirs["schedule"]), bool(theirs["enabled"])
                at = theirs["next_run"]
                nxt = None if at is None else datetime.fromtimestamp(at, UTC)
            is_paused = job.name in paused
            if not enabled or is_paused:
                nxt = None
            run = last.get((job.service, job.run_key))
            out.append({
                "job": job.name, "service": job.service, "schedule": schedule,
                "enabled": enabled, "paused": is_paused,
                "next_run": None if nxt is None else nxt.isoformat(timespec="seconds"),
                "last_run": isoformat(run["finished_at"]) if run else None,
                "last_outcome": run["outcome"] if run else None,
                "last_duration_s": run["duration_s"] if run else None,
                "holder": holders.get(job.lease) if job.lease else None,
            })
        return out

    def published_params(self, name: str) -> dict[str, Any]:
        """The `params` of a job as declared in this process (its own settings)."""
        return dict(self.get(name).params)
