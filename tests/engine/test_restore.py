"""Restore refuses what it must not put in place of the database, never leaves the platform
locked behind a dead restorer, and keeps every database file private.

Real SQLite files in tmp_path, or a real PostgreSQL database (tests naming a `backend_*`
fixture run on both; the others test SQLite file features, each says why); "dead" holders are
real processes that have exited.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.db import Target, query

from vertex_tui.engine.backup import manager, pgdump
from vertex_tui.engine.backup.restore import MAINTENANCE_LEASE, MAINTENANCE_TTL, restore
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import StoreError, UsageError
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import pgadmin
from vertex_tui.engine.store.db import Database, DatabaseCorrupt
from vertex_tui.engine.store.pgurl import database_name

HOUR = 3600.0
SERVER_NOW = "SELECT extract(epoch FROM clock_timestamp())"  # PostgreSQL: the server's time


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def subjects(db: Target) -> list[str]:
    return [r[0] for r in query(db, "SELECT subject FROM email_jobs ORDER BY id")]


def dead_pid() -> int:
    """The pid of a real process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def asides(settings: Settings) -> list[Path] | list[str]:
    """What restores kept aside: files beside the SQLite file, or databases on the server."""
    if settings.database_url is not None:
        pattern = database_name(settings.database_url.reveal()) + "\\_before\\_restore\\_%"
        return [r[0] for r in query(settings, "SELECT datname FROM pg_database WHERE datname"
                                    " LIKE ? ORDER BY datname", (pattern,))]
    found = settings.db_path.parent.glob(f"{settings.db_path.name}.before-restore-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


def scratches(settings: Settings) -> list[str]:
    """PostgreSQL: the scratch databases restores made and did not drop (none on SQLite)."""
    if settings.database_url is None:
        return []
    return [r[0] for r in query(settings, "SELECT datname FROM pg_database"
                                " WHERE datname LIKE 'vt\\_restore\\_%'")]


def sqlite_copy(src: Path, dest: Path) -> Path:
    """A consistent copy of `src` made with SQLite's backup API (not recorded anywhere)."""
    with contextlib.closing(sqlite3.connect(src)) as a, contextlib.closing(
        sqlite3.connect(dest)
    ) as b:
        a.backup(b)
    return dest


def damage(db: Path, *, spare: tuple[str, ...] = ("schema_migrations", "leases")) -> None:
    """Overwrite with junk every page of every table and index except page 1 (the header and
    the schema) and the tables in `spare`, as a failing disk would; SQLite must then call
    the file malformed."""
    keep = ("sqlite_schema", *spare, *(f"sqlite_autoindex_{t}_1" for t in spare))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        marks = ",".join("?" * len(keep))
        pages = [p for (p,) in conn.execute(
            f"SELECT pageno FROM dbstat WHERE name NOT IN ({marks})", keep)]
    assert pages, "nothing to damage"
    with db.open("r+b") as fh:
        for page in pages:
            fh.seek((page - 1) * page_size)
            fh.write(b"\xa5" * page_size)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="malformed"):
            conn.execute("PRAGMA quick_check").fetchall()


def made_with(settings: Settings, dest: Path, statements: tuple[str, ...], *,
              copy: bool) -> Path:
    """A database at `dest`, recorded nowhere: a copy of the live one (`copy`) or a new,
    empty one, then `statements` run in it only. A SQLite file (a copy: the backup API), or
    a pg_dump archive of a scratch database (a copy: made from the live one)."""
    if settings.database_url is None:
        if copy:
            sqlite_copy(settings.db_path, dest)
        for statement in statements:
            query(dest, statement)
        return dest
    url = settings.database_url.reveal()
    name = f"vt_copy_{os.getpid()}"
    scratch = pgadmin.create_database(url, name, template=database_name(url) if copy else None)
    try:
        for statement in statements:
            query(scratch, statement)
        pgdump.dump(pgdump.PgSource(url=scratch), dest)
    finally:
        pgadmin.drop_database(url, name)
    return dest


def copy_of(settings: Settings, dest: Path, *changes: str) -> Path:
    """A copy of the live database at `dest` with the SQL `changes` made in the copy only."""
    return made_with(settings, dest, changes, copy=True)


def foreign(settings: Settings, dest: Path) -> Path:
    """A database that is not vertex-tui's (one table of notes)."""
    return made_with(settings, dest, ("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)",
                                      "INSERT INTO notes (id, text) VALUES (1, 'hello')"),
                     copy=False)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask of a shell: files would be created 0644 unless made private."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def backed_up(settings: Settings, clock: FakeClock) -> Path:
    """A database with mail 'one', a verified database backup of it, then mail 'two'."""
    async with Engine(settings, run=[], clock=clock) as engine:
        await engine.email.enqueue(to="a@example.com", subject="one", body="b")
        made = await engine.backup.run("database")
        assert made["status"] == "ok", made
        clock.advance(HOUR)
        await engine.email.enqueue(to="b@example.com", subject="two", body="b")
    return Path(made["path"])


async def assert_engine_starts(settings: Settings, clock: FakeClock) -> None:
    async with Engine(settings, run=[], clock=clock) as engine:
        assert await engine.leases.holder(MAINTENANCE_LEASE, clock.time()) is None


# ---- F1: only a vertex-tui database this release can open, and only a verified backup ------


@pytest.mark.parametrize("force", [False, True])
async def test_an_intact_database_that_is_not_vertex_tui_is_refused_before_the_swap(
    backend_settings: Settings, clock: FakeClock, tmp_path: Path, force: bool
) -> None:
    settings = backend_settings
    await backed_up(settings, clock)
    other = foreign(settings, tmp_path / "other.db")
    other_before = sha256(other)

    with pytest.raises(UsageError, match="not a vertex-tui database"):
        await restore(settings, other, owner="test-restorer", clock=clock, force=force)
    assert sha256(other) == other_before
    assert asides(settings) == [] and scratches(settings) == []
    assert not list(tmp_path.glob(".v.db.tmp-*"))
    # Nothing left locked, nothing migrated on top of anything: the next start is normal.
    await assert_engine_starts(settings, clock)
    assert subjects(settings) == ["one", "two"]
    if settings.database_url is None:
        assert query(other, "SELECT name FROM sqlite_master") == [("notes",)]


async def test_a_database_of_a_newer_schema_is_refused_even_with_force(
    backend_settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    settings = backend_settings
    await backed_up(settings, clock)
    newer = copy_of(settings, tmp_path / "newer.db",
                    "INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 0)")
    with pytest.raises(UsageError, match="schema version 999 is newer"):
        await restore(settings, newer, owner="test-restorer", clock=clock, force=True)
    assert subjects(settings) == ["one", "two"] and asides(settings) == []
    assert scratches(settings) == []
    await assert_engine_starts(settings, clock)


async def test_a_database_with_a_foreign_schema_history_is_refused(
    backend_settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    settings = backend_settings
    await backed_up(settings, clock)
    other = copy_of(settings, tmp_path / "foreign.db",
                    "UPDATE schema_migrations SET name = '0002_something_else.sql'"
                    " WHERE version = 2")
    with pytest.raises(UsageError, match=r"migration 2 is '0002_something_else\.sql'"):
        await restore(settings, other, owner="test-restorer", clock=clock, force=True)
    assert subjects(settings) == ["one", "two"]


async def test_a_vertex_tui_file_that_is_not_a_recorded_backup_needs_force(
    backend_settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    settings = backend_settings
    backup = await backed_up(settings, clock)
    stray = tmp_path / "copied-by-hand.db"
    stray.write_bytes(backup.read_bytes())
    with pytest.raises(UsageError, match=r"not a recorded, verified backup.*--force"):
        await restore(settings, stray, owner="test-restorer", clock=clock)
    assert subjects(settings) == ["one", "two"] and asides(settings) == []
    await assert_engine_starts(settings, clock)

    result = await restore(settings, stray, owner="test-restorer", clock=clock, force=True)
    assert result["forced"] is True
    assert subjects(settings) == ["one"]
    assert len(asides(settings)) == 1


async def test_a_recorded_verified_backup_restores_without_force(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    backup = await backed_up(settings, clock)
    result = await restore(settings, backup, owner="test-restorer", clock=clock)
    assert result["forced"] is False and result["warnings"] == []
    assert subjects(settings) == ["one"]


async def test_a_backup_that_failed_its_last_verify_needs_force(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    backup = await backed_up(settings, clock)
    query(settings, "UPDATE backups SET verified = 0")
    with pytest.raises(UsageError, match="--force"):
        await restore(settings, backup, owner="test-restorer", clock=clock)
    assert subjects(settings) == ["one", "two"]
    # Recorded and verified again, but the file was rewritten since: its sha256 differs.
    query(settings, "UPDATE backups SET verified = 1")
    copy_of(settings, backup, "UPDATE email_jobs SET subject = 'tampered'")
    with pytest.raises(manager.BackupFailed, match="sha256 differs"):
        await restore(settings, backup, owner="test-restorer", clock=clock)
    assert subjects(settings) == ["one", "two"]


# ---- F2: never locked out by a dead restorer, never onto itself -----------------------------


# SQLite only: paths to the live file; a dump is never the live database.
async def test_restoring_the_live_database_onto_itself_is_refused(
    settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    await backed_up(settings, clock)
    link = tmp_path / "link.db"
    link.symlink_to(settings.db_path)
    for path in (settings.db_path, link, tmp_path / "." / settings.db_path.name):
        with pytest.raises(UsageError, match="is the live database"):
            await restore(settings, path, owner="test-restorer", clock=clock, force=True)
    assert subjects(settings.db_path) == ["one", "two"] and asides(settings) == []
    assert query(settings.db_path, "SELECT count(*) FROM leases") == [(0,)]
    await assert_engine_starts(settings, clock)


def dead_maintenance_lease(settings: Settings, clock: FakeClock) -> None:
    """The maintenance lease, held for an hour yet by a process of this host that is gone."""
    dead = f"{socket.gethostname()}:{dead_pid()}:deadbeef"
    query(settings, "INSERT INTO leases (name, owner, acquired_at, expires_at)"
          " VALUES (?, ?, ?, ?)", (MAINTENANCE_LEASE, dead, clock.time(), clock.time() + HOUR))


async def test_a_maintenance_lease_of_a_dead_process_of_this_host_is_freed_at_once(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    await backed_up(settings, clock)
    dead_maintenance_lease(settings, clock)
    # Every command and engine start used to fail with "being restored by <dead pid>".
    async with Engine(settings, run=[], clock=clock) as engine:
        assert (await engine.email.stats()).pending == 2
    assert query(settings, "SELECT count(*) FROM leases WHERE name = ?",
                 (MAINTENANCE_LEASE,)) == [(0,)]


async def test_a_maintenance_lease_of_a_dead_process_does_not_block_the_next_restore(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    backup = await backed_up(settings, clock)
    dead_maintenance_lease(settings, clock)
    await restore(settings, backup, owner="test-restorer", clock=clock)
    assert subjects(settings) == ["one"]
    await assert_engine_starts(settings, clock)


async def test_the_restore_renews_its_lease_while_it_works(
    backend_settings: Settings, clock: FakeClock, wait_for: Any
) -> None:
    """Held with a short TTL and renewed: while the (slow) verification runs, the lease in
    the live database keeps moving ahead of the clock."""
    import asyncio
    import threading

    settings = backend_settings
    backup = await backed_up(settings, clock)
    if settings.database_url is not None:
        # The restore holds its lease on the server's clock and the engines below judge it
        # on theirs (a test's FakeClock stands in for the server's there): one timeline.
        clock = FakeClock(start=float(query(settings, SERVER_NOW)[0][0]))
    release = threading.Event()
    real_verify = manager.verify

    def slow_verify(path: Path, *args: Any) -> manager.Verdict:
        release.wait(30)
        return real_verify(path, *args)

    mp = pytest.MonkeyPatch()
    mp.setattr(manager, "verify", slow_verify)
    try:
        task = asyncio.create_task(restore(settings, backup, owner="test-restorer", clock=clock))

        def expiry() -> float | None:
            rows = query(settings, "SELECT expires_at FROM leases WHERE name = ?",
                         (MAINTENANCE_LEASE,))
            return rows[0][0] if rows else None

        def now() -> float:
            """The time leases are held by: the clock's, or on PostgreSQL the server's."""
            if settings.database_url is None:
                return clock.time()
            return float(query(settings, SERVER_NOW)[0][0])

        first = await wait_for(expiry, message="the maintenance lease")
        assert first == pytest.approx(now() + MAINTENANCE_TTL, abs=5)
        # A live restorer blocks engines and other restores...
        with pytest.raises(StoreError, match="being restored by test-restorer"):
            async with Engine(settings, run=[], clock=clock):
                pass
        with pytest.raises(UsageError, match="another restore is in progress"):
            await restore(settings, backup, owner="second-restorer", clock=clock)
        # ...and keeps its short lease ahead of the clock; one that stopped renewing (dead
        # on another host) is stale after MAINTENANCE_TTL, not an hour.
        for _ in range(3):
            before = expiry() or 0
            # FakeClock keeps a heap of (deadline, seq, future), one per sleeper.
            await wait_for(lambda: [d for d, _, f in clock._sleepers
                                    if not f.done() and d > clock.time()],
                           message="the lease keeper to sleep")
            clock.advance(20)
            await wait_for(lambda b=before: (expiry() or 0) > b
                           and (expiry() or 0) >= now() + MAINTENANCE_TTL - 1,
                           message="the lease renewed")
        release.set()
        result = await task
    finally:
        release.set()
        mp.undo()
    assert subjects(settings) == ["one"] and result["forced"] is False
    await assert_engine_starts(settings, clock)


# ---- a damaged live database --------------------------------------------------------------


# SQLite only: a damaged file (PostgreSQL has no file to damage).
async def test_restore_onto_a_damaged_database_needs_force_and_keeps_the_damaged_file(
    settings: Settings, clock: FakeClock
) -> None:
    backup = await backed_up(settings, clock)
    damage(settings.db_path)
    with pytest.raises(DatabaseCorrupt):
        async with Engine(settings, clock=clock):
            pass
    damaged = sha256(settings.db_path)

    with pytest.raises(UsageError, match=r"damaged.*--force"):
        await restore(settings, backup, owner="test-restorer", clock=clock)
    result = await restore(settings, backup, owner="test-restorer", clock=clock, force=True)
    assert result["forced"] is True and "damaged" in result["warnings"][0]
    (aside,) = asides(settings)
    assert Path(result["previous_saved_as"]) == aside
    assert sha256(aside) == damaged  # kept as it was found, for forensics
    assert subjects(settings.db_path) == ["one"]
    async with Engine(settings, run=[], clock=clock) as engine:
        assert (await engine.email.stats()).pending == 1


# ---- private files ------------------------------------------------------------------------


# SQLite only: file modes of the database file, its WAL and shm.
async def test_the_database_and_its_wal_and_shm_are_created_private(
    settings: Settings, clock: FakeClock, umask_022: None
) -> None:
    assert not settings.db_path.exists()
    async with Engine(settings, run=[], clock=clock) as engine:
        await engine.email.enqueue(to="a@example.com", subject="one", body="b")
        files = [settings.db_path, Path(f"{settings.db_path}-wal"),
                 Path(f"{settings.db_path}-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert mode(settings.db_path) == 0o600


# SQLite only: file modes of the restored and kept-aside files.
async def test_restored_and_before_restore_files_are_private(
    settings: Settings, clock: FakeClock, umask_022: None
) -> None:
    backup = await backed_up(settings, clock)
    os.chmod(settings.db_path, 0o644)  # a database made by an older release
    await restore(settings, backup, owner="test-restorer", clock=clock)
    (aside,) = asides(settings)
    assert mode(aside) == 0o600
    assert mode(settings.db_path) == 0o600
    async with Engine(settings, run=[], clock=clock) as engine:
        await engine.email.enqueue(to="c@example.com", subject="three", body="b")
        for suffix in ("-wal", "-shm"):
            assert mode(Path(f"{settings.db_path}{suffix}")) == 0o600
    assert not list(settings.db_path.parent.glob(".v.db.tmp-*"))


# SQLite only: PRAGMA quick_check of a damaged file.
async def test_an_open_that_runs_the_quick_check_refuses_a_damaged_file_untouched(
    settings: Settings, clock: FakeClock
) -> None:
    await backed_up(settings, clock)
    damage(settings.db_path)
    before = sha256(settings.db_path)
    with pytest.raises(DatabaseCorrupt, match="database disk image is malformed"):
        await Database.open(settings.db_path, check=True)
    # Without the check the damage shows at the first read of a damaged table, in one
    # error naming the file; nothing more is written afterwards.
    db = await Database.open(settings.db_path)
    try:
        with pytest.raises(DatabaseCorrupt, match=str(settings.db_path)):
            await db.read("SELECT count(*) FROM email_jobs")
        assert db.corrupt
        with pytest.raises(DatabaseCorrupt):
            await db.write("DELETE FROM leases")
    finally:
        await db.close()
    assert sha256(settings.db_path) == before
