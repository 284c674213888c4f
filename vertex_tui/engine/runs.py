"""One path for every job run: lease, record, run, finish, publish, release.

    async with LeasedRun(host, job, trigger="schedule") as run:
        if run.acquired:
            run.result = await job.run(run)
    return run.result

`run_job(host, job, trigger)` is exactly that. On entry, `LeasedRun`
- skips a scheduled run of a paused job (`jobs pause`; nothing recorded: "paused" is the
  job's state, not a run);
- takes the job's singleton lease, or takes it over from a holder that is dead — its
  engine heartbeat is stale (whatever host it ran on) or, on this host, its process is gone
  — marking the runs that holder left `running` as interrupted. If another live process
  holds it (or this process is already running the job), the run is a skip: recorded in
  `service_runs` as `skipped` with the holder, published as `JobSkipped`, `acquired` False.
  A skip never counts as the job's last run (`store.runs.last_runs` ignores skips), so a
  standby engine does not hide the holder's real run;
- records the run as `running` in `service_runs`.
On exit it finishes the record (`ok`, or `error` if the body raised, called `fail()` or
returned a result whose status is "failed"/"error"), publishes `PassCompleted` and releases
the lease (unless the job holds it between passes). An exception in the body is the run's
error: logged with its traceback, recorded, published, returned as {"status": "error"} —
one failing run never stops a service. Cancellation is recorded and propagates.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any, Protocol

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import Clock
from vertex_tui.engine.leases import Leases, dead_here
from vertex_tui.engine.service import Job
from vertex_tui.engine.store import engines as engines_store
from vertex_tui.engine.store import jobs as jobs_store
from vertex_tui.engine.store import runs as runs_store
from vertex_tui.engine.store.db import Database

log = logging.getLogger(__name__)

FAILED = ("failed", "error")


class RunHost(Protocol):
    """What a run needs of the process it runs in (the Engine, or a service's own parts)."""

    @property
    def db(self) -> Database: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def events(self) -> ev.EventBus: ...

    @property
    def leases(self) -> Leases: ...

    @property
    def owner(self) -> str: ...


class Host:
    """A `RunHost` from its parts (services are built with these, not with the Engine)."""

    def __init__(self, *, db: Database, clock: Clock, events: ev.EventBus, leases: Leases,
                 owner: str) -> None:
        self.db, self.clock, self.events, self.leases, self.owner = (
            db, clock, events, leases, owner)


# Jobs running in this process, by (database file, owner, job name): a second trigger of a
# job that is running here is a skip, even though the lease is ours.
_in_flight: set[tuple[str, str, str]] = set()


async def is_dead(db: Database, owner: str, now: float) -> bool:
    """A lease holder is dead when its engine heartbeat is stale (any host), or when it is
    a process of this host that no longer exists (a CLI run keeps no heartbeat)."""
    return await engines_store.heartbeat_stale(db, owner, now) or dead_here(owner)


async def alive_owners(host: RunHost, now: float, *, dead: str | None = None) -> list[str]:
    """Owners that may still be running: every owner of an unexpired lease (engines by
    their heartbeat, CLI runs by the job lease they hold) and this process — except `dead`,
    a holder just found dead, and engines whose heartbeat is stale (killed on any host:
    their other leases outlive them until they expire or are taken over)."""
    stale = await engines_store.stale_heartbeats(host.db, now)
    alive = {*await host.leases.live_owners(now), host.owner} - {dead} - (stale - {host.owner})
    return sorted(o for o in alive if o)


async def mark_interrupted(host: RunHost, service: str, *, dead: str | None = None) -> int:
    """Runs of `service` left `running` by processes that are gone (see `alive_owners`)
    become errors."""
    now = host.clock.time()
    return await runs_store.mark_interrupted(
        host.db, service=service, alive_owners=await alive_owners(host, now, dead=dead), at=now)


class LeasedRun:
    """The async context manager every job run goes through (see the module docstring)."""

    def __init__(self, host: RunHost, job: Job, *, trigger: str = "schedule") -> None:
        self.host = host
        self.job = job
        self.trigger = trigger
        self.acquired = False
        self.paused = False
        self.holder: str | None = None
        self.took_over: str | None = None  # the dead holder the lease was taken from
        self.counts: dict[str, Any] = {}
        self.error: str | None = None  # set by fail(): the run failed without raising
        self.note: str | None = None  # stored in the error column of an ok run (warnings)
        self.result: dict[str, Any] = {}
        self.seconds = 0.0
        self.started_at = 0.0
        self._run_id: int | None = None
        self._t0 = 0.0
        self._key = (str(host.db.path), host.owner, job.name)

    def fail(self, error: str) -> None:
        self.error = error

    async def __aenter__(self) -> LeasedRun:
        host, job = self.host, self.job
        now = self.started_at = host.clock.time()
        if self.trigger == "schedule" and await jobs_store.is_paused(host.db, job.name):
            self.paused = True
            self.result = {"status": "paused", "job": job.name}
            return self
        if self._key in _in_flight:
            return await self._skip(now, host.owner)
        if job.lease is not None and not await self._take_lease(now):
            return await self._skip(now, await host.leases.holder(job.lease, now))
        _in_flight.add(self._key)
        try:
            if job.record == "always":
                self._run_id = await runs_store.start_run(
                    host.db, service=job.service, job=job.run_key, owner=host.owner, at=now)
        except BaseException:
            _in_flight.discard(self._key)
            if job.lease is not None:
                await asyncio.shield(host.leases.release(job.lease))
            raise
        self.acquired = True
        self._t0 = asyncio.get_running_loop().time()
        return self

    async def _take_lease(self, now: float) -> bool:
        lease, leases = self.job.lease, self.host.leases
        assert lease is not None
        if await leases.acquire(lease, now, self.job.lease_ttl):
            return True
        holder = await leases.holder(lease, now)
        if holder is None:  # it expired in between
            return await leases.acquire(lease, now, self.job.lease_ttl)
        if holder == self.host.owner or not await is_dead(self.host.db, holder, now):
            return False
        log.warning("lease %s was held by %s, which no longer runs; taking it over", lease,
                    holder, extra={"service": self.job.service})
        if not await leases.take_over(lease, holder, now, self.job.lease_ttl):
            return False
        self.took_over = holder
        await mark_interrupted(self.host, self.job.service, dead=holder)
        return True

    async def _skip(self, now: float, holder: str | None) -> LeasedRun:
        job = self.job
        self.holder = holder
        reason = f"another run holds the lease ({holder or 'this process'})"
        if job.record == "always":
            await runs_store.record_skip(self.host.db, service=job.service, job=job.run_key,
                                         owner=self.host.owner, at=now, reason=reason)
        self.host.events.publish(ev.JobSkipped(at=now, service=job.service, job=job.run_key,
                                               holder=holder))
        self.result = {"status": "skipped", "reason": reason, "holder": holder}
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool:
        if not self.acquired:
            return False
        host, job = self.host, self.job
        self.seconds = asyncio.get_running_loop().time() - self._t0
        swallow = isinstance(exc, Exception)
        if exc is not None:
            self.error = f"{type(exc).__name__}: {exc}" if swallow else "cancelled"
            if swallow:
                log.error("%s failed", job.name, exc_info=(exc_type, exc, tb),  # type: ignore[arg-type]
                          extra={"service": job.service})
                self.result = {"status": "error", "error": self.error}
        elif self.error is None and self.result.get("status") in FAILED:
            self.error = str(self.result.get("error") or "failed")
        ok = self.error is None
        try:
            await asyncio.shield(self._finish(ok))
        finally:
            _in_flight.discard(self._key)
            if job.lease is not None and not job.hold_between:  # else: released at stop
                try:
                    await asyncio.shield(host.leases.release(job.lease))
                except Exception:
                    log.exception("releasing lease %s failed", job.lease)
        return swallow

    async def _finish(self, ok: bool) -> None:
        host, job = self.host, self.job
        now = host.clock.time()
        outcome = "ok" if ok else "error"
        error = self.error if not ok else self.note
        if self._run_id is not None:
            await runs_store.finish_run(host.db, self._run_id, at=now, outcome=outcome,
                                        counts=self.counts, error=error)
        elif not ok or any(self.counts.values()):  # record="changes"
            await runs_store.record_run(host.db, service=job.service, job=job.run_key,
                                        owner=host.owner, started_at=self.started_at,
                                        finished_at=now, outcome=outcome, counts=self.counts,
                                        error=error)
        else:
            return  # a quiet run that changed nothing: neither recorded nor published
        host.events.publish(ev.PassCompleted(at=now, service=job.service, ok=ok,
                                             counts=dict(self.counts), error=self.error,
                                             job=job.name))


async def run_job(host: RunHost, job: Job, *, trigger: str = "schedule") -> dict[str, Any]:
    """One run of `job` through `LeasedRun`; returns its result (see the module docstring)."""
    async with LeasedRun(host, job, trigger=trigger) as run:
        if run.acquired:
            run.result = dict(await job.run(run) or {})
    return run.result
