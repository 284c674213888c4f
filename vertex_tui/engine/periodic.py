"""A service whose work is one pass, run every N seconds and on demand, under a named lease.

Lifecycle and videos share this: the lease keeps one process at a time on the pass (others
are `standby` and take over when the holder's lease expires), each pass is recorded in
`service_runs` with counts and duration, and a failing pass is logged and recorded but never
stops the service.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import Clock, isoformat
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.runs import Host, LeasedRun
from vertex_tui.engine.scheduling import Scheduler
from vertex_tui.engine.service import Interval, Job, ServiceState
from vertex_tui.engine.store import audit, runs, schedules
from vertex_tui.engine.store.db import Database

log = logging.getLogger(__name__)


class PeriodicService(ABC):
    """Base of the scheduler passes. Subclasses set `name` and implement `run_pass()`."""

    name: str

    def __init__(self, *, db: Database, clock: Clock, events: ev.EventBus, leases: Leases,
                 owner: str, interval: float, enabled: bool, scheduler: Scheduler) -> None:
        self._db = db
        self._clock = clock
        self._events = events
        self._leases = leases
        self._owner = owner
        self.interval = interval
        self.enabled = enabled
        self._jobs = scheduler
        self._scheduler: Scheduler | None = None  # set while started
        self._lock = asyncio.Lock()
        self._running = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._standby_holder: str | None = None
        self.last_error: str | None = None
        self._host = Host(db=db, clock=clock, events=events, leases=leases, owner=owner)

    @property
    def lease_name(self) -> str:
        return self.name

    @property
    def lease_ttl(self) -> float:
        # Held between passes (others show standby); expires if this process dies.
        return self.interval * 2 + 60

    @abstractmethod
    async def run_pass(self, now: float) -> dict[str, Any]:
        """Do the work of one pass at `now`; returns counts for service_runs."""

    def job(self) -> Job:
        """This service's one job, `<name>.check`: a pass every `interval` seconds."""
        return Job(name=f"{self.name}.check", trigger=Interval(seconds=self.interval),
                   run=self._pass, enabled=self.enabled, lease=self.lease_name,
                   lease_ttl=self.lease_ttl, hold_between=True, record_as="pass",
                   params=self.published_params(), invoke=self._invoke)

    def jobs(self) -> list[Job]:
        return [self.job()]

    def published_params(self) -> dict[str, Any]:
        """Settings readers of this service's figures need from the engine that runs it."""
        return {}

    def actions(self) -> dict[str, Any]:
        return {f"{self.name}.check": self.check}

    def settings(self) -> dict[str, Any]:
        return {"interval_seconds": self.interval, "enabled": self.enabled}

    async def start(self) -> None:
        self._scheduler = self._jobs  # the engine schedules `jobs()` on it
        self._events.publish(ev.ServiceStarted(at=self._clock.time(), service=self.name))

    async def stop(self, grace: float = 8.0) -> None:
        self._scheduler = None  # a scheduled pass that starts from now on does nothing
        try:
            # A pass holds the lock from its lease check on, before it clears `_idle`.
            await asyncio.wait_for(self._pass_finished(), grace)
        except TimeoutError:
            log.warning("%s pass still running at stop", self.name)
        await self._leases.release(self.lease_name)
        self._events.publish(ev.ServiceStopped(at=self._clock.time(), service=self.name))

    async def _pass_finished(self) -> None:
        async with self._lock:
            await self._idle.wait()

    async def _invoke(self, trigger: str) -> dict[str, Any]:
        if trigger != "schedule":
            return await self.check(trigger=trigger)
        if self._scheduler is None:  # stopping
            return {"status": "stopped"}
        try:
            return await self.check(trigger="schedule")
        except Exception:
            log.exception("%s pass failed", self.name, extra={"service": self.name})
            return {"status": "error"}

    async def check(self, *, trigger: str = "manual") -> dict[str, Any]:
        """One pass now, if this process can hold the lease; returns what happened.

        A manual check (console, CLI) is an operator action and goes to the audit log.
        """
        async with self._lock:
            if trigger == "manual":
                async with self._db.transaction() as conn:
                    await audit.record(conn, at=self._clock.time(), action=f"{self.name}.check")
            async with LeasedRun(self._host, self.job(), trigger=trigger) as run:
                if run.acquired:
                    self._standby_holder = None
                    self._running = True
                    self._idle.clear()
                    try:
                        run.result = await self._pass(run)
                    finally:
                        self._running = False
                        self._idle.set()
            if run.result.get("status") == "skipped":
                self._standby_holder = run.holder
            elif run.acquired:
                self.last_error = run.error
            return run.result

    async def _pass(self, run: LeasedRun) -> dict[str, Any]:
        started = asyncio.get_running_loop().time()
        counts = await self.run_pass(run.started_at)
        seconds = asyncio.get_running_loop().time() - started
        run.counts = {**counts, "seconds": round(seconds, 4)}
        return {"status": "ok", **run.counts}

    def state(self) -> ServiceState:
        if not self.enabled:
            return ServiceState.DISABLED
        if self._running:
            return ServiceState.RUNNING
        if self._scheduler is None:
            return ServiceState.STOPPED
        if self._standby_holder:
            return ServiceState.STANDBY
        if self.last_error:
            return ServiceState.ERROR
        return ServiceState.IDLE

    async def _published(self) -> dict[str, Any] | None:
        """This service's job as another (running) engine published it, if one did."""
        jobs = await schedules.published(self._db, now=self._clock.time(), reader=self._owner)
        return jobs.get(f"{self.name}.check")

    async def _served_elsewhere(self) -> bool:
        """Some other process holds this service's lease, or another engine is alive."""
        now = self._clock.time()
        return bool(await self._leases.holder(self.lease_name, now)) or any(
            e != self._owner for e in await self._leases.alive_engines(now))

    async def status(self) -> dict[str, Any]:
        last = (await runs.last_runs(self._db, self.name)).get("pass")
        if self._scheduler is not None:
            nxt = self._scheduler.next_run(f"{self.name}.check")
        elif (job := await self._published()) is not None:
            # Not scheduled here (an attached console): as the running engine published it.
            at = job["next_run"] if job["enabled"] else None
            nxt = None if at is None else datetime.fromtimestamp(at, UTC)
        elif self.enabled and last is not None and await self._served_elsewhere():
            # No engine published a schedule: an interval after the last pass started.
            nxt = datetime.fromtimestamp(last["started_at"] + self.interval, UTC)
        else:
            nxt = None
        return {
            "state": str(self.state()),
            "last_run": isoformat(last["finished_at"]) if last else None,
            "last_outcome": last["outcome"] if last else None,
            "last_counts": last["counts"] if last else None,
            "next_run": None if nxt is None else nxt.isoformat(timespec="seconds"),
            "interval_seconds": self.interval,
            "last_error": self.last_error or (last["error"] if last and
                                              last["outcome"] == "error" else None),
        }
