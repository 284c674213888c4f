"""Restoring a PostgreSQL database from a pg_dump backup, with the engines stopped.

As on SQLite (restore.py): under the `maintenance` lease, with no engine alive, from a backup
that verifies (sha256 as recorded, `pg_restore --list`), of a schema this release can open,
and recorded and verified or `--force`d. The dump is restored into a new database beside the
live one and checked there; then two renames swap it in: the live database becomes
`<name>_before_restore_<stamp>` (kept: the old data aside) and the new one takes its name.
The replaced database's backup records, drills and newer audit entries are carried over.
Needs a role that may create and rename databases (CREATEDB, owner of the live database).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vertex_tui.engine.backup import folder, manager, pgdump, schema
from vertex_tui.engine.backup.restore import (
    _find_record,
    _Keeper,
    _take_lease,
    refuse_early,
    refuse_unverified,
    trusted,
)
from vertex_tui.engine.clock import Clock, SystemClock
from vertex_tui.engine.errors import StoreError, UsageError
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import audit
from vertex_tui.engine.store import backups as store
from vertex_tui.engine.store import leases as leases_store
from vertex_tui.engine.store.backend import open_database

MAINTENANCE_LEASE = "maintenance"
NAME_MAX = 63  # PostgreSQL's identifier length


def aside_name(live: str, stamp: str) -> str:
    suffix = f"_before_restore_{stamp.lower()}"
    return live[: NAME_MAX - len(suffix)] + suffix


def free_aside_name(url: str, live: str, stamp: str) -> str:
    """`aside_name`, or with `_2`, `_3`... when a restore of the same second kept one already
    (a restore takes well under a second; the rename onto a taken name failed)."""
    from vertex_tui.engine.store import pgbackup

    name, n = aside_name(live, stamp), 1
    while pgbackup.exists(url, name):
        n += 1
        name = aside_name(live, f"{stamp}_{n}")
    return name


async def restore(settings: Settings, backup: Path, *, owner: str,
                  clock: Clock | None = None, force: bool = False) -> dict[str, Any]:
    """Replace the PostgreSQL database by the one in the dump `backup`; see the module."""
    from vertex_tui.engine.store import pgadmin, pgbackup, pgmigrate
    from vertex_tui.engine.store.pgurl import database_name, display_url

    assert settings.database_url is not None
    clock = clock or SystemClock()
    url = settings.database_url.reveal()
    live = database_name(url)
    backup = backup.absolute()
    refuse_early(backup, postgresql=True)
    dump = manager.database_file_of(backup)
    now = clock.time()
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    scratch_name = pgdump.scratch_name("restore")
    db = await open_database(settings)
    leases = Leases(db, owner)
    try:
        await _take_lease(db, leases, now)
    except BaseException:
        await db.close()
        raise
    keeper = _Keeper(leases, clock)
    scratch: str | None = None
    try:
        record = await _find_record(db, backup)
        away = folder.elsewhere(settings, record.host if record else None)
        if away:
            raise UsageError(f"{backup} cannot be restored on this host: {away}")
        # verify asks first whose database a dump holds: an intact dump of another database
        # is not restorable (exit 2, as a foreign SQLite file), rather than a backup that
        # fails its check (exit 1).
        refuse_unverified(backup, await asyncio.to_thread(
            manager.verify, backup, record.sha256 if record else None, settings.pg_bin))
        if not force and not trusted(record):
            raise UsageError(f"{backup} cannot be checked: it is not a recorded, verified "
                             f"backup of {display_url(url)}; if you trust it, rerun with --force")
        scratch = await asyncio.to_thread(pgadmin.create_database, url, scratch_name,
                                          note=pgadmin.scratch_note(live))
        await asyncio.to_thread(pgdump.restore_into, dump, scratch, settings.pg_bin)
        tables, applied = await asyncio.to_thread(pgbackup.schema_history, scratch)
        problem = schema.history_problem(tables, applied, pgmigrate.load_migrations())
        if problem:
            raise manager.NotRestorable(f"{backup} is {problem}")
        await keeper.stop()
        if keeper.lost:
            raise manager.BackupFailed(f"the maintenance lease on {display_url(url)} was lost "
                                       "while restoring; nothing was replaced")
    except BaseException:
        await keeper.stop()
        with contextlib.suppress(StoreError):
            await leases.release(MAINTENANCE_LEASE)
        await db.close()
        if scratch is not None:
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(pgadmin.drop_database, url, scratch_name)
        raise
    # The maintenance lease stays in the live database until the swap: an engine starting
    # now refuses; afterwards it is in the database kept aside.
    await db.close()
    aside = await asyncio.to_thread(free_aside_name, url, live, stamp)
    try:
        await asyncio.to_thread(_swap, url, live, scratch_name, aside)
    except BaseException:  # nothing swapped (or undone): the restored copy goes
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(pgadmin.drop_database, url, scratch_name)
        raise
    try:
        kept = await _finish(settings, aside, backup, owner=owner, now=now, clock=clock)
    except (StoreError, OSError) as exc:
        raise manager.BackupFailed(
            f"{display_url(url)} was restored from {backup} (previous database kept as "
            f"{aside}), but finishing failed: {exc}") from None
    version, rows = await asyncio.to_thread(pgbackup.smoke, url, manager.SMOKE_TABLES)
    return {"restored_from": str(backup), "previous_saved_as": aside,
            "carried_over": kept, "forced": not trusted(record), "warnings": [],
            "schema_version": version, "rows": rows}


def _swap(url: str, live: str, scratch: str, aside: str) -> None:
    """live -> aside, then scratch -> live; each rename from a session on a database that is
    not renamed (the scratch one, then the one aside), so no maintenance database is needed.
    If the second rename fails the first is undone."""
    from vertex_tui.engine.store import pgbackup
    from vertex_tui.engine.store.pgurl import with_database

    pgbackup.rename_database(with_database(url, scratch), live, aside)
    try:
        pgbackup.rename_database(with_database(url, aside), scratch, live)
    except StoreError:
        pgbackup.rename_database(with_database(url, scratch), aside, live)
        raise


async def _finish(settings: Settings, aside: str, backup: Path, *, owner: str, now: float,
                  clock: Clock) -> dict[str, int]:
    from vertex_tui.engine.store import pgbackup
    from vertex_tui.engine.store.pgurl import with_database

    assert settings.database_url is not None
    url = settings.database_url.reveal()
    restored = await open_database(settings)  # migrates a dump of an older schema
    try:
        kept = await asyncio.to_thread(pgbackup.carry_over, url, with_database(url, aside),
                                       store.REPLACED_ON_RESTORE, "audit_log")
        async with restored.transaction() as conn:
            await leases_store.drop_restored(conn, now, owner)
            await audit.record(conn, at=clock.time(), action="backup.restore", path=str(backup),
                               previous_saved_as=f"database {aside}")
    finally:
        await restored.close()
    return kept
