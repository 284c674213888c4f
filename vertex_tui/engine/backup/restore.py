"""Restoring the database from a backup, with the engine out of the way.

Restore holds the `maintenance` lease (which engines refuse to start under) in the live
database, renewed every `MAINTENANCE_RENEW` seconds, so a restorer that dies frees it within
`MAINTENANCE_TTL` (at once for other processes of this host, which see its pid is gone). It
checks that no engine is alive, verifies the backup, refuses what is not a vertex-tui
database this release can open (checked on the source, then on the temporary copy, before
anything is replaced), and asks for `force` unless the file is a recorded, verified backup
whose sha256 still matches. Then it keeps the current file aside under a timestamped name,
swaps the checked copy in, brings back the replaced database's backup records and newer
audit entries (`store.backups.carry_over`), and records the action in the audit log.

Refusals of input that is no backup to restore here (missing, a storage archive, another
backend's, another format or schema) are `UsageError`s (exit 2); a backup that is one but
fails its checks (damaged, sha256 changed) is `BackupFailed` (exit 1). A damaged live file
has its backup records read the way `vertex-tui doctor` reads them (store/doctor.py), so the
backup doctor names is restored as the recorded, verified backup it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vertex_tui.engine.backup import manager, pgdump, swap
from vertex_tui.engine.clock import Clock, SystemClock
from vertex_tui.engine.errors import StoreError, UsageError
from vertex_tui.engine.leases import Leases, dead_here
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import audit
from vertex_tui.engine.store import backups as store
from vertex_tui.engine.store import doctor as records_of_damaged
from vertex_tui.engine.store import leases as leases_store
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.db import MALFORMED, Database, DatabaseCorrupt, quick_check
from vertex_tui.engine.store.sqlitefile import DatabaseError

log = logging.getLogger(__name__)

MAINTENANCE_LEASE = "maintenance"
MAINTENANCE_TTL = 60.0
MAINTENANCE_RENEW = 15.0


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def trusted(record: store.BackupRecord | None) -> bool:
    """A backup this database made, finished, verified and with a recorded sha256."""
    return (record is not None and record.status == "ok" and record.verified
            and bool(record.sha256) and record.kind in ("database", "full"))


class _Keeper:
    """Renews the maintenance lease while the slow steps run in worker threads."""

    def __init__(self, leases: Leases, clock: Clock) -> None:
        self._leases = leases
        self._clock = clock
        self._stop = asyncio.Event()
        self.lost = False
        self._task = asyncio.create_task(self._run(), name="maintenance-lease")

    async def _run(self) -> None:
        while not await self._clock.wait(self._stop, MAINTENANCE_RENEW):
            if not await self._leases.acquire(MAINTENANCE_LEASE, self._clock.time(),
                                              MAINTENANCE_TTL):
                self.lost = True
                return

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(self._task, return_exceptions=True)


async def _find_record(db: Database, backup: Path) -> store.BackupRecord | None:
    record = await store.by_path(db, str(backup))
    if record is None and backup.resolve() != backup:
        record = await store.by_path(db, str(backup.resolve()))
    return record


def refuse_early(backup: Path, *, postgresql: bool) -> None:
    """Refuse (exit 2), before the live database is opened, a path that is no backup of this
    backend's database at all: missing, a storage archive, the other backend's format."""
    if not backup.exists():
        raise manager.NotRestorable(f"{backup} does not exist")
    is_dump = pgdump.is_dump(manager.database_file_of(backup))  # refuses a storage archive
    if postgresql and not is_dump:
        raise manager.NotRestorable(
            f"{backup} is not a pg_dump archive: a PostgreSQL database is restored from a "
            "database or full backup made on PostgreSQL")
    if is_dump and not postgresql:
        raise manager.NotRestorable(
            f"{backup} is a pg_dump archive: a SQLite database is restored from a database or "
            "full backup made on SQLite")


def refuse_unverified(backup: Path, verdict: manager.Verdict) -> None:
    """No restore from a backup that does not verify: bad input (exit 2) when it is no
    vertex-tui backup this release can open, a failed backup (exit 1) when it is one that is
    damaged or changed."""
    if verdict.ok:
        return
    if verdict.not_a_backup:
        raise manager.NotRestorable(f"{backup} is {verdict.reason}")
    raise manager.BackupFailed(f"{backup} does not verify: {verdict.reason}")


def _recorded_in_damaged(db_path: Path, backup: Path) -> tuple[str | None, bool, bool]:
    """(recorded sha256, trusted, records readable) of `backup` in the damaged database at
    `db_path`, read as doctor reads them: read-only, and only if the backups table passes
    its own check. Blocking."""
    try:
        found = records_of_damaged.restorable(db_path, paths=(str(backup),
                                                              str(backup.resolve())))
    except DatabaseError:
        return None, False, False
    if not found:
        return None, False, True
    return found[0].sha256, bool(found[0].sha256), True


async def _take_lease(db: Database, leases: Leases, now: float) -> None:
    engines = [e for e in await leases.alive_engines(now) if not dead_here(e)]
    if engines:
        raise UsageError(f"an engine is running on {db.path} "
                         f"({', '.join(engines)}); stop it before restoring")
    if await leases.acquire(MAINTENANCE_LEASE, now, MAINTENANCE_TTL):
        return
    holder = await leases.live_holder(MAINTENANCE_LEASE, now)  # frees a dead one
    if holder is not None or not await leases.acquire(MAINTENANCE_LEASE, now, MAINTENANCE_TTL):
        raise UsageError(f"another restore is in progress ({holder or 'another process'})")


async def restore(settings: Settings, backup: Path, *, owner: str,
                  clock: Clock | None = None, force: bool = False) -> dict[str, Any]:
    """Replace the database by the one in `backup`; see the module's docstring."""
    clock = clock or SystemClock()
    backup = backup.absolute()
    db_path = settings.db_path
    if settings.database_url is not None:
        from vertex_tui.engine.backup import pgrestore

        return await pgrestore.restore(settings, backup, owner=owner, clock=clock, force=force)
    refuse_early(backup, postgresql=False)
    if same_file(backup, db_path) or same_file(backup / manager.FULL_DB, db_path):
        raise UsageError(f"{backup} is the live database {db_path} itself; restore from a "
                         "backup of it")
    now = clock.time()
    db: Database | None = None
    leases: Leases | None = None
    record: store.BackupRecord | None = None
    damaged = False
    try:
        # Checked before anything is written: a damaged file goes aside exactly as found.
        db = await open_database(settings, check=True)
        leases = Leases(db, owner)
        await _take_lease(db, leases, now)
        record = await _find_record(db, backup)
        sha256, recorded, readable = (record.sha256 if record else None), trusted(record), True
    except DatabaseCorrupt:
        # The live file is damaged: it is not written (no lease); its backup records are
        # read as doctor reads them, and a backup found there restores as a recorded one.
        # Without them only the operator's word (--force) will do. The file goes aside as is.
        damaged, record, leases = True, None, None
        if db is not None:
            await db.close()
            db = None
        sha256, recorded, readable = await asyncio.to_thread(_recorded_in_damaged, db_path,
                                                             backup)
    except BaseException:
        if db is not None:
            if leases is not None:
                with contextlib.suppress(StoreError):
                    await leases.release(MAINTENANCE_LEASE)
            await db.close()
        raise
    keeper = _Keeper(leases, clock) if leases is not None else None
    try:
        tmp = await _prepare(backup, db_path, sha256, force=force or recorded,
                             unreadable=not readable)
        if keeper is not None:
            await keeper.stop()
            if keeper.lost:
                swap.discard_temp(tmp)
                raise manager.BackupFailed(
                    f"the maintenance lease on {db_path} was lost while restoring; nothing "
                    "was replaced")
    except BaseException:
        if keeper is not None:
            await keeper.stop()
        if db is not None:
            if leases is not None:
                with contextlib.suppress(StoreError):
                    await leases.release(MAINTENANCE_LEASE)
            await db.close()
        raise
    # The maintenance lease stays in the old file until the swap: an engine starting now
    # sees it and refuses; after the swap the old file (lease and all) is aside.
    if db is not None:
        await db.close()
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        aside, smoke = await asyncio.to_thread(swap.swap_in, tmp, db_path, stamp, damaged)
    except BaseException:
        if not damaged:
            db = await open_database(settings)
            try:
                await Leases(db, owner).release(MAINTENANCE_LEASE)
            finally:
                await db.close()
        raise
    try:
        kept, warnings = await _finish(settings, aside, backup, owner=owner, now=now,
                                       clock=clock)
    except (StoreError, OSError) as exc:
        raise manager.BackupFailed(
            f"{db_path} was restored from {backup} (previous database saved as {aside}), "
            f"but finishing failed: {exc}") from None
    return {"restored_from": str(backup), "previous_saved_as": str(aside),
            "carried_over": kept, "forced": not recorded, "warnings": warnings,
            **smoke}


async def _prepare(backup: Path, db_path: Path, sha256: str | None, *, force: bool,
                   unreadable: bool) -> Path:
    """Verify `backup` (against the recorded `sha256`), check it is restorable and allowed
    (`force`: recorded and trusted, or the operator's word), and copy it to a checked temp
    file. `unreadable`: the live database is damaged and its backup records unreadable."""
    # Whose database it holds is part of verify, so a foreign file is refused before
    # --force is even asked for; again on the copy (prepare_restore), which is swapped in.
    refuse_unverified(backup, await asyncio.to_thread(manager.verify, backup, sha256))
    if not force:
        why = (f"the current database is damaged ({MALFORMED}) and its backup records cannot "
               "be read" if unreadable
               else f"it is not a recorded, verified backup of {db_path}")
        raise UsageError(f"{backup} cannot be checked: {why}; if you trust it, rerun with "
                         "--force")
    return await asyncio.to_thread(swap.prepare_restore, backup, db_path)


async def _finish(settings: Settings, aside: Path, backup: Path, *, owner: str, now: float,
                  clock: Clock) -> tuple[dict[str, int], list[str]]:
    restored = await open_database(settings)
    warnings: list[str] = []
    try:
        kept: dict[str, int] = {}
        if aside.exists():
            if await asyncio.to_thread(quick_check, aside):
                warnings.append(f"the replaced database {aside} is damaged: its backup "
                                "records and audit entries were not carried over")
            else:
                kept = await store.carry_over(restored, aside)
        async with restored.transaction() as conn:
            # The copy holds the leases of the moment it was taken (a backup job's own lease,
            # with hours to run): their holders hold nothing in this database now.
            await leases_store.drop_restored(conn, now, owner)
            await audit.record(conn, at=clock.time(), action="backup.restore", path=str(backup),
                               previous_saved_as=str(aside))
    finally:
        await restored.close()
    for warning in warnings:
        log.warning("%s", warning)
    return kept, warnings
