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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vertex_tui.engine.backup import manager, swap
from vertex_tui.engine.clock import Clock, SystemClock
from vertex_tui.engine.errors import StoreError, UsageError
from vertex_tui.engine.leases import Leases, dead_here
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import audit
from vertex_tui.engine.store import backups as store
from vertex_tui.engine.store import leases as leases_store
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.db import MALFORMED, Database, DatabaseCorrupt, quick_check

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
    except DatabaseCorrupt:
        # The live file is damaged: its leases and records cannot be trusted, so the backup
        # can only be restored on the operator's word (--force); the file goes aside as is.
        damaged, record, leases = True, None, None
        if db is not None:
            await db.close()
            db = None
    except BaseException:
        if db is not None:
            if leases is not None:
                with contextlib.suppress(StoreError):
                    await leases.release(MAINTENANCE_LEASE)
            await db.close()
        raise
    keeper = _Keeper(leases, clock) if leases is not None else None
    try:
        tmp = await _prepare(backup, db_path, record, force=force, damaged=damaged)
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
            "carried_over": kept, "forced": not trusted(record), "warnings": warnings,
            **smoke}


async def _prepare(backup: Path, db_path: Path, record: store.BackupRecord | None, *,
                   force: bool, damaged: bool) -> Path:
    """Verify `backup`, check it is restorable and allowed, and copy it to a checked temp file."""
    verdict = await asyncio.to_thread(manager.verify, backup,
                                      record.sha256 if record else None)
    if not verdict.ok:
        raise manager.BackupFailed(f"{backup} does not verify: {verdict.reason}")
    # On the source first, so a foreign file is refused before --force is even asked for;
    # again on the copy (prepare_restore), which is what gets swapped in.
    problem = await asyncio.to_thread(swap.schema_problem, manager.database_file_of(backup))
    if problem:
        raise swap.NotRestorable(f"{backup} is {problem}")
    if not force and not trusted(record):
        why = (f"the current database is damaged ({MALFORMED}), so its backup records cannot "
               "be read" if damaged else f"it is not a recorded, verified backup of {db_path}")
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
