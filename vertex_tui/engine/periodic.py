"""A service whose work is one pass, run every N seconds and on demand, under a named lease.

Lifecycle and videos share this: the lease keeps one process at a time on the pass (others
are `standby` and take over when the holder's lease expires), each pass is recorded in
`service_runs` with counts and duration, and a failing pass is logged and recorded but never
stops the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any

from vertex_tui.engine import audit
from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import Clock, isoformat
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.scheduling import Scheduler
from vertex_tui.engine.service import ServiceState
from vertex_tui.engine.store import runs, schedules
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

    async def start(self) -> None:
        self._scheduler = scheduler = self._jobs
        first = datetime.fromtimestamp(self._clock.time(), UTC)
        scheduler.add_interval(self.name, self.interval, self._scheduled, enabled=self.enabled,
                               first_run=first)
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

    async def _scheduled(self) -> None:
        if self._scheduler is None:  # stopping
            return
        try:
            await self.check(trigger="schedule")
        except Exception:
            log.exception("%s pass failed", self.name, extra={"service": self.name})

    async def check(self, *, trigger: str = "manual") -> dict[str, Any]:
        """One pass now, if this process can hold the lease; returns what happened.

        A manual check (console, CLI) is an operator action and goes to the audit log.
        """
        async with self._lock:
            now = self._clock.time()
            if trigger == "manual":
                async with self._db.transaction() as conn:
                    await audit.record(conn, at=now, action=f"{self.name}.check")
            if not (await self._leases.acquire(self.lease_name, now, self.lease_ttl)
                    or await self._take_over_dead(now)):
                holder = await self._leases.holder(self.lease_name, now)
                self._standby_holder = holder
                reason = f"lease held by {holder}"
                await runs.record_skip(self._db, service=self.name, job="pass",
                                       owner=self._owner, at=now, reason=reason)
                self._events.publish(ev.JobSkipped(at=now, service=self.name, job="pass",
                                                   holder=holder))
                return {"status": "skipped", "reason": reason, "holder": holder}
            self._standby_holder = None
            run_id = await runs.start_run(self._db, service=self.name, job="pass",
                                          owner=self._owner, at=now)
            self._running = True
            self._idle.clear()
            started = asyncio.get_running_loop().time()
            try:
                counts = await self.run_pass(now)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("%s pass failed", self.name, extra={"service": self.name})
                self.last_error = error
                await runs.finish_run(self._db, run_id, at=self._clock.time(),
                                      outcome="error", error=error)
                self._events.publish(ev.PassCompleted(at=self._clock.time(), service=self.name,
                                                      ok=False, counts={}, error=error))
                return {"status": "error", "error": error}
            finally:
                self._running = False
                self._idle.set()
            seconds = asyncio.get_running_loop().time() - started
            counts = {**counts, "seconds": round(seconds, 4)}
            self.last_error = None
            await runs.finish_run(self._db, run_id, at=self._clock.time(), outcome="ok",
                                  counts=counts)
            self._events.publish(ev.PassCompleted(at=self._clock.time(), service=self.name,
                                                  ok=True, counts=counts))
            return {"status": "ok", **counts}

    async def _take_over_dead(self, now: float) -> bool:
        """Take the lease from a holder on this host whose process is gone (killed mid-pass),
        rather than standing by until its TTL (hours) runs out; its run was interrupted."""
        holder = await self._leases.holder(self.lease_name, now)
        if holder is None or not _gone_here(holder):
            return False
        log.warning("lease %s was held by %s, which no longer runs; taking it over",
                    self.lease_name, holder, extra={"service": self.name})
        if not await self._leases.take_over(self.lease_name, holder, now, self.lease_ttl):
            return False
        alive = [*await self._leases.alive_engines(now), self._owner]
        await runs.mark_interrupted(self._db, service=self.name, alive_owners=alive, at=now)
        return True

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
        return jobs.get(self.name)

    async def status(self) -> dict[str, Any]:
        last = (await runs.last_runs(self._db, self.name)).get("pass")
        if self._scheduler is not None:
            nxt = self._scheduler.next_run(self.name)
        elif (job := await self._published()) is not None:
            # Not scheduled here (an attached console): as the running engine published it.
            at = job["next_run"] if job["enabled"] else None
            nxt = None if at is None else datetime.fromtimestamp(at, UTC)
        elif self.enabled and last is not None:
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


def _gone_here(owner: str) -> bool:
    """True if `owner` (host:pid:nonce, see engine.new_owner) is a process of this host
    that no longer exists."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
