"""Restoring the database from a backup, with the engine out of the way.

Restore runs with no connection of ours open on the database: it checks (under a
`maintenance` lease, which engines refuse to start under) that no engine is alive, verifies
the backup, keeps the current file aside under a timestamped name, swaps the restored copy
in, checks it, brings back the replaced database's backup records and newer audit entries
(`store.backups.carry_over`), and records the action in the restored database's audit log.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vertex_tui.engine import audit
from vertex_tui.engine.backup import manager
from vertex_tui.engine.clock import Clock, SystemClock
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import backups as store
from vertex_tui.engine.store.db import Database

MAINTENANCE_LEASE = "maintenance"


async def restore(settings: Settings, backup: Path, *, owner: str,
                  clock: Clock | None = None) -> dict[str, Any]:
    clock = clock or SystemClock()
    backup = backup.absolute()
    now = clock.time()
    db = await Database.open(settings.db_path)
    try:
        leases = Leases(db, owner)
        engines = await leases.alive_engines(now)
        if engines:
            raise UsageError(f"an engine is running on {settings.db_path} "
                             f"({', '.join(engines)}); stop it before restoring")
        if not await leases.acquire(MAINTENANCE_LEASE, now, 3600):
            holder = await leases.holder(MAINTENANCE_LEASE, now)
            raise UsageError(f"another restore is in progress ({holder})")
        record = await store.by_path(db, str(backup))
    except BaseException:
        await db.close()
        raise
    try:
        verdict = await asyncio.to_thread(manager.verify, backup,
                                          record.sha256 if record else None)
        if not verdict.ok:
            raise manager.BackupFailed(f"{backup} does not verify: {verdict.reason}")
    except BaseException:
        await leases.release(MAINTENANCE_LEASE)
        await db.close()
        raise
    # The maintenance lease stays in the old file until the swap: an engine starting during
    # the copy sees it and refuses; after the swap the old file (lease and all) is aside.
    await db.close()
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        aside, smoke = await asyncio.to_thread(manager.restore_database, backup,
                                               settings.db_path, stamp)
    except BaseException:
        db = await Database.open(settings.db_path)
        try:
            await Leases(db, owner).release(MAINTENANCE_LEASE)
        finally:
            await db.close()
        raise
    restored = await Database.open(settings.db_path)
    try:
        kept = await store.carry_over(restored, aside) if aside.exists() else {}
        async with restored.transaction() as conn:
            # The copy holds the leases of the moment it was taken (a backup job's own lease,
            # with hours to run): their holders hold nothing in this database now.
            await conn.execute("DELETE FROM leases WHERE acquired_at < ?", (now,))
            await audit.record(conn, at=clock.time(), action="backup.restore", path=str(backup),
                               previous_saved_as=str(aside))
    finally:
        await restored.close()
    return {"restored_from": str(backup), "previous_saved_as": str(aside),
            "carried_over": kept, **smoke}
