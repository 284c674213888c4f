"""The backup service: cron jobs for each kind, rotation and restore drills, under leases.

Only the process holding `backup:<job>` runs that job, so several engines on one database
back up once. Every run lands in `backups` (kinds database/storage/full) and `service_runs`,
and emits events; operator triggers, verifies and restores go to `audit_log`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vertex_tui.engine import events as ev
from vertex_tui.engine.backup import folder, manager
from vertex_tui.engine.backup.files import remove, stale_temps
from vertex_tui.engine.backup.pgdump import PgSource
from vertex_tui.engine.backup.retention import BackupInfo, RetentionPolicy, to_delete
from vertex_tui.engine.clock import Clock, isoformat
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.runs import Host, LeasedRun, alive_owners, mark_interrupted
from vertex_tui.engine.scheduling import Scheduler, next_cron_time
from vertex_tui.engine.service import Cron, Job, ServiceState
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import audit, runs, schedules
from vertex_tui.engine.store import backups as store
from vertex_tui.engine.store.db import Database

log = logging.getLogger(__name__)

KINDS = ("database", "storage", "full")
JOBS = (*KINDS, "rotation", "drill")
LEASE_TTL = 6 * 3600.0
SUFFIX = {"database": ".db", "storage": ".tar.gz", "full": ""}
DUMP_SUFFIX = ".dump"  # a database backup of PostgreSQL: a pg_dump custom-format archive
PER_HOST = ("rotation", "drill")  # on PostgreSQL, unshared folders: each host its own files


def backup_name(kind: str, at: float, suffix: str | None = None) -> str:
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{stamp}{SUFFIX[kind] if suffix is None else suffix}"


def _unused_name(folder: Path, kind: str, at: float, suffix: str | None = None) -> Path:
    """`folder/backup_name(...)`, with -1, -2, ... added if a backup of that second exists
    (a second run in the same second must not replace the first one's file)."""
    suffix = SUFFIX[kind] if suffix is None else suffix
    name = backup_name(kind, at, suffix)
    stem = name[: len(name) - len(suffix)]
    candidate, n = folder / name, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = folder / f"{stem}-{n}{suffix}"
    return candidate


class BackupService:
    """Backups of one engine process; usable for queries and runs without being started."""

    name = "backup"

    def __init__(self, *, db: Database, settings: Settings, clock: Clock,
                 events: ev.EventBus, leases: Leases, owner: str,
                 scheduler: Scheduler | None = None) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._events = events
        self._leases = leases
        self._owner = owner
        self._jobs = scheduler
        self._scheduler: Scheduler | None = None  # set while started
        self._cancel = threading.Event()
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._standby: set[str] = set()
        self.last_error: str | None = None
        self._host = Host(db=db, clock=clock, events=events, leases=leases, owner=owner)
        self._bodies: dict[str, Callable[[LeasedRun], Awaitable[dict[str, Any]]]] = {
            **{kind: functools.partial(self._backup, kind) for kind in KINDS},
            "rotation": self._rotate, "drill": self._drill}

    # ---- configuration ------------------------------------------------------------------

    def schedule_of(self, job: str) -> str:
        return str(getattr(self._settings, f"backup_{job}_schedule"))

    def enabled(self, job: str) -> bool:
        return bool(getattr(self._settings, f"backup_{job}_enabled"))

    async def schedule(self) -> list[dict[str, Any]]:
        """Every job with its cron schedule, enabled flag, next run (None if disabled) and
        last real run (epoch seconds, outcome; skips do not count).

        Where this process schedules nothing (an attached console, a CLI command), the jobs
        are those a running engine published (its configuration, not this shell's); with no
        engine running, this process's own configuration."""
        now = self._clock.time()
        published = {} if self._scheduler is not None else await schedules.published(
            self._db, now=now, reader=self._owner)
        last = await runs.last_runs(self._db, self.name)
        out = []
        for job in JOBS:
            spec, enabled, nxt = self.schedule_of(job), self.enabled(job), None
            if (theirs := published.get(f"backup.{job}")) is not None:
                spec = str(theirs["schedule"]).removeprefix("cron ")
                enabled = bool(theirs["enabled"])
                at = theirs["next_run"] if enabled else None
                nxt = None if at is None else datetime.fromtimestamp(at, UTC)
            elif enabled and self._scheduler is not None:
                nxt = self._scheduler.next_run(f"backup.{job}")
            elif enabled:
                nxt = next_cron_time(spec, self._settings.timezone,
                                     datetime.fromtimestamp(now, UTC))
            run = last.get(job)
            out.append({"job": job, "schedule": spec, "enabled": enabled,
                        "next_run": None if nxt is None else nxt.isoformat(timespec="seconds"),
                        "running": job in self._running,
                        # From service_runs, by any process: rotation and drill write no
                        # backup row, so backup history alone cannot say when they last ran.
                        "last_run": isoformat(run["finished_at"]) if run else None,
                        "last_outcome": run["outcome"] if run else None,
                        "last_error": run["error"] if run and run["outcome"] == "error"
                        else None})
        return out

    # ---- service lifecycle --------------------------------------------------------------------

    def job(self, job: str) -> Job:
        """`backup.<job>` on its cron schedule, under the lease `backup:<job>` (rotation and
        drill of a host's own folder, on PostgreSQL: `backup:<job>@<host>`)."""
        here = folder.scope(self._settings)
        lease = f"backup:{job}" if here is None or job not in PER_HOST else (
            f"backup:{job}@{here}")
        return Job(name=f"backup.{job}",
                   trigger=Cron(expr=self.schedule_of(job),
                                misfire_grace=self._settings.backup_misfire_grace_seconds),
                   run=self._bodies[job], enabled=self.enabled(job), lease=lease,
                   lease_ttl=LEASE_TTL,
                   invoke=functools.partial(self._invoke, job))

    def jobs(self) -> list[Job]:
        return [self.job(j) for j in JOBS]

    def actions(self) -> dict[str, Any]:
        return {"backup.run": self.run}

    def settings(self) -> dict[str, Any]:
        s = self._settings
        return {**{f"{j}_schedule": self.schedule_of(j) for j in JOBS},
                **{f"{j}_enabled": self.enabled(j) for j in JOBS},
                "keep_last": s.backup_keep_last, "backup_dir": str(s.backup_dir)}

    def _source(self) -> manager.Source:
        s = self._settings
        if s.database_url is None:
            return s.db_path
        return PgSource(url=s.database_url.reveal(), bin_dir=s.pg_bin)

    async def start(self) -> None:
        await folder.check_shared(self._db, self._settings, self._clock.time())
        await self.recover()
        self._cancel.clear()
        if self._jobs is None:  # a service on its own (no engine): its own scheduler
            scheduler = Scheduler(self._settings.timezone)
            for job in self.jobs():
                scheduler.add_job(job, functools.partial(self._invoke, job.run_key, "schedule"),
                                  now=self._clock.time())
            scheduler.start()
            self._scheduler = scheduler
        else:
            self._scheduler = self._jobs  # the engine schedules `jobs()` on it
        self._events.publish(ev.ServiceStarted(at=self._clock.time(), service=self.name))

    async def _invoke(self, job: str, trigger: str) -> dict[str, Any]:
        if trigger != "schedule":
            return await self.run(job, trigger=trigger)
        try:
            return await self.run(job, trigger="schedule")
        except Exception:
            log.exception("scheduled backup job %s failed", job, extra={"service": "backup"})
            return {"job": job, "status": "error"}

    async def stop(self, grace: float = 8.0) -> None:
        if self._scheduler is not None:
            if self._jobs is None:
                self._scheduler.shutdown()
            self._scheduler = None
        self._cancel.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        self._events.publish(ev.ServiceStopped(at=self._clock.time(), service=self.name))

    async def recover(self) -> None:
        """Fail records and remove temp files left by processes that died mid-backup."""
        now = self._clock.time()
        # Alive: engines with a live heartbeat, and any process holding a lease (a CLI run).
        await store.mark_interrupted(self._db, alive_owners=await alive_owners(self._host, now),
                                     at=now)
        await mark_interrupted(self._host, self.name)
        for kind in KINDS:
            for leftover in stale_temps(self._settings.backup_dir.absolute() / kind):
                log.warning("removing leftover temp file %s", leftover)
                remove(leftover)

    def state(self) -> ServiceState:
        if self._running:
            return ServiceState.RUNNING
        if self._scheduler is None:
            return ServiceState.STOPPED
        if self.last_error:
            return ServiceState.ERROR
        if self._standby:
            return ServiceState.STANDBY
        return ServiceState.IDLE

    async def status(self) -> dict[str, Any]:
        jobs = await self.schedule()
        upcoming = sorted(j["next_run"] for j in jobs if j["next_run"])
        last = await store.history(self._db, limit=1)
        return {"state": str(self.state()),
                "last_run": isoformat(last[0].finished_at or last[0].started_at) if last
                else None,
                "last_outcome": last[0].status if last else None,
                "next_run": upcoming[0] if upcoming else None,
                "last_error": self.last_error, "jobs": jobs,
                "last_verified_restore": await store.last_drill(self._db, ok_only=True)}

    # ---- runs ---------------------------------------------------------------------------------

    async def run(self, job: str, *, trigger: str = "manual") -> dict[str, Any]:
        """Run one job now (if this process can take its lease); returns what happened."""
        if job not in JOBS:
            raise UsageError(f"unknown backup job {job!r}; expected one of {', '.join(JOBS)}")
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            async with LeasedRun(self._host, self.job(job), trigger=trigger) as run:
                if run.acquired:
                    self._standby.discard(job)
                    self._running.add(job)
                    try:
                        if self._scheduler is None or run.took_over is not None:
                            # A one-off run (CLI), or one that took the lease from a dead
                            # holder (killed, maybe on another host), cleans up after a
                            # killed run as a starting service would.
                            await self.recover()
                        if trigger == "manual":
                            async with self._db.transaction() as conn:
                                await audit.record(conn, at=run.started_at,
                                                   action=f"backup.run.{job}")
                        run.result = await self._bodies[job](run)
                    finally:
                        self._running.discard(job)
            if run.result.get("status") == "skipped":
                self._standby.add(job)
                return {"job": job, **run.result}
            return run.result
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _backup(self, kind: str, run: LeasedRun) -> dict[str, Any]:
        s = self._settings
        started = self._clock.time()
        backup_id = await store.insert_running(self._db, kind=kind, at=started,
                                               trigger=run.trigger, owner=self._owner,
                                               host=folder.this_host())
        self._events.publish(ev.BackupStarted(at=started, kind=kind, trigger=run.trigger))
        try:
            # Inside the try: a backup folder that cannot be made is a failed backup, recorded.
            if not s.backup_dir.exists():
                s.backup_dir.mkdir(parents=True, mode=0o700)
            await folder.check_shared(self._db, s, started)
            source = self._source()
            suffix = DUMP_SUFFIX if kind == "database" and s.database_url else None
            final = _unused_name(s.backup_dir.absolute() / kind, kind, started, suffix)
            if kind == "database":
                artifact = await asyncio.to_thread(manager.backup_database, source, final,
                                                   self._cancel)
            elif kind == "storage":
                artifact = await asyncio.to_thread(manager.backup_storage, s.storage_dir,
                                                   final, self._cancel)
            else:
                artifact = await asyncio.to_thread(manager.backup_full, source,
                                                   s.storage_dir, final, self._cancel)
        except Exception as exc:
            error = _describe(exc)
            now = self._clock.time()
            log.error("%s backup failed: %s", kind, error, extra={"service": self.name})
            await store.finish_failed(self._db, backup_id, at=now, started_at=started,
                                      error=error)
            run.fail(error)
            self.last_error = f"{kind} backup failed: {error}"
            self._events.publish(ev.BackupFinished(at=now, kind=kind, ok=False, path=None,
                                                   size=None, error=error))
            return {"job": kind, "status": "failed", "error": error, "id": backup_id}
        now = self._clock.time()
        warnings = "; ".join(artifact.warnings) or None
        await store.finish_ok(self._db, backup_id, at=now, path=str(artifact.path),
                              size=artifact.size, sha256=artifact.sha256,
                              duration=artifact.copy_seconds,
                              verify_seconds=artifact.verify_seconds, warnings=warnings,
                              detail=artifact.detail)
        run.counts, run.note = {"bytes": artifact.size}, warnings
        self.last_error = None
        if warnings:
            log.warning("%s backup %s: %s", kind, artifact.path, warnings)
        log.info("%s backup written: %s (%d bytes)", kind, artifact.path, artifact.size,
                 extra={"service": self.name})
        self._events.publish(ev.BackupFinished(at=now, kind=kind, ok=True,
                                               path=str(artifact.path), size=artifact.size,
                                               warnings=warnings))
        return {"job": kind, "status": "ok", "id": backup_id, "path": str(artifact.path),
                "size": artifact.size, "sha256": artifact.sha256,
                "seconds": round(artifact.copy_seconds, 3), "warnings": warnings}

    async def _rotate(self, run: LeasedRun) -> dict[str, Any]:
        s = self._settings
        policy = RetentionPolicy(keep_last=s.backup_keep_last, keep_daily=s.backup_keep_daily,
                                 keep_weekly=s.backup_keep_weekly,
                                 keep_monthly=s.backup_keep_monthly, timezone=s.timezone)
        deleted: dict[str, int] = run.counts
        try:
            await folder.check_shared(self._db, s, self._clock.time())
            for kind in KINDS:
                records = await folder.rotatable(self._db, s, kind)
                infos = [BackupInfo(id=r.id, started_at=r.started_at, status=r.status,
                                    verified=r.verified) for r in records]
                doomed = to_delete(infos, policy)
                paths = {r.id: r.path for r in records}
                for backup_id in sorted(doomed):
                    path = paths[backup_id]
                    if path:
                        await asyncio.to_thread(remove, Path(path))
                await store.mark_deleted(self._db, sorted(doomed), self._clock.time())
                deleted[kind] = len(doomed)
        except Exception as exc:
            error = _describe(exc)
            run.fail(error)
            self.last_error = f"rotation failed: {error}"
            self._events.publish(ev.RotationFinished(at=self._clock.time(),
                                                     deleted=sum(deleted.values()), error=error))
            return {"job": "rotation", "status": "failed", "error": error, "deleted": deleted}
        self._events.publish(ev.RotationFinished(at=self._clock.time(),
                                                 deleted=sum(deleted.values())))
        return {"job": "rotation", "status": "ok", "deleted": deleted}

    async def _drill(self, run: LeasedRun) -> dict[str, Any]:
        return await self.drill()

    async def drill(self) -> dict[str, Any]:
        """Restore the newest verified database backup into a temp folder and check it."""
        now = self._clock.time()
        here = folder.scope(self._settings)
        record = await store.newest_restorable(self._db, host=here)
        if record is None or not record.path:
            error = "no verified database or full backup to drill" + (
                f" on host {here}" if here else "")
            await store.record_drill(self._db, at=now, backup_id=None, path=None, ok=False,
                                     duration=None, error=error, detail={})
            self._events.publish(ev.RestoreDrillFinished(at=now, ok=False, path=None,
                                                         error=error))
            return {"job": "drill", "status": "failed", "error": error}
        try:
            with tempfile.TemporaryDirectory(prefix="vertex-drill-") as workdir:
                url = self._settings.database_url
                detail = await asyncio.to_thread(
                    manager.drill, Path(record.path), Path(workdir),
                    url.reveal() if url else None, self._settings.pg_bin)
        except Exception as exc:
            error = _describe(exc)
            await store.record_drill(self._db, at=now, backup_id=record.id, path=record.path,
                                     ok=False, duration=None, error=error, detail={})
            self.last_error = f"restore drill failed: {error}"
            self._events.publish(ev.RestoreDrillFinished(at=now, ok=False, path=record.path,
                                                         error=error))
            return {"job": "drill", "status": "failed", "error": error, "path": record.path}
        await store.record_drill(self._db, at=now, backup_id=record.id, path=record.path,
                                 ok=True, duration=detail["seconds"], error=None, detail=detail)
        self._events.publish(ev.RestoreDrillFinished(at=now, ok=True, path=record.path))
        return {"job": "drill", "status": "ok", "path": record.path, **detail}

    # ---- operator tools -------------------------------------------------------------------

    async def history(self, *, kind: str | None = None, limit: int = 50) -> list[
            store.BackupRecord]:
        return await store.history(self._db, kind=kind, limit=limit)

    async def verify(self, path: Path) -> manager.Verdict:
        """Check a backup file or folder; the result is stored on its record, if any."""
        path = path.resolve() if path.exists() else path
        record = await store.by_path(self._db, str(path))
        away = folder.elsewhere(self._settings, record.host if record else None)
        if away:
            raise UsageError(f"{path} cannot be verified on this host: {away}")
        verdict = await asyncio.to_thread(manager.verify, path,
                                          record.sha256 if record else None,
                                          self._settings.pg_bin)
        now = self._clock.time()
        if record is not None:
            await store.set_verified(self._db, record.id, ok=verdict.ok, at=now,
                                     seconds=verdict.seconds,
                                     error=None if verdict.ok else verdict.reason)
        async with self._db.transaction() as conn:
            await audit.record(conn, at=now, action="backup.verify", path=str(path),
                               ok=verdict.ok, reason=verdict.reason)
        return verdict

    async def expected_sha256(self, path: Path) -> str | None:
        record = await store.by_path(self._db, str(path.resolve()))
        return record.sha256 if record else None

    async def last_drill(self) -> dict[str, Any] | None:
        return await store.last_drill(self._db)

    async def panel(self) -> dict[str, Any]:
        """The backup panel: each kind's freshness, next run, last verification, count and
        size (engine/backup/overview.py), and the last drill with its result."""
        from vertex_tui.engine.backup import overview

        kinds = await overview.panel(self._db, self._settings, self._clock.time(),
                                     await self.schedule(), KINDS)
        return {"kinds": kinds, "last_drill": await store.last_drill(self._db)}

    async def rotation_preview(self) -> dict[str, list[dict[str, Any]]]:
        """What `rotation` would delete now, per kind; deletes nothing."""
        from vertex_tui.engine.backup import overview

        return await overview.rotation_preview(self._db, self._settings, KINDS)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__
