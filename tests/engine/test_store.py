"""The store on real databases: migrations, refusing bad files, waiting out locks, whole
transactions in one hop.

Behaviour both backends share runs on a SQLite file and on a PostgreSQL database (`backend`):
the tables made, a newer schema refused, idempotent migrations, foreign keys, transactions,
waiting for another connection's lock (SQLite: `BEGIN EXCLUSIVE` on the file; PostgreSQL: a
table lock, and the migration lock an engine starting meanwhile waits for). What is about the
SQLite file itself stays SQLite-only: WAL and pragmas, refusing files that are not databases,
aiosqlite's threads and `split_statements` (PostgreSQL runs each migration script whole).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.db import database_of, query

from vertex_tui.engine.errors import StoreError
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import pgmigrate
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.conn import SyncConnection
from vertex_tui.engine.store.db import (
    SQLITE_MAGIC,
    Database,
    check_numbering,
    load_migrations,
    split_statements,
)

if TYPE_CHECKING:
    from conftest import WaitFor

FOUNDATION_TABLES = {
    "schema_migrations",
    "leases",
    "service_runs",
    "audit_log",
    "engine_flags",
    "email_jobs",
    "email_attempts",
    "email_status_counts",  # a view on PostgreSQL (sums of deltas, no hot row)
}

# Tables and views of the schema, per dialect.
TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')",
    "postgresql": "SELECT table_name FROM information_schema.tables"
                  " WHERE table_schema = current_schema()",
}
# The whole schema as rows, to compare before and after (PostgreSQL: columns, indexes,
# triggers of our schema).
SCHEMA = {
    "sqlite": "SELECT type, name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name",
    "postgresql": "SELECT 'column', table_name || '.' || column_name, data_type"
                  " FROM information_schema.columns WHERE table_schema = current_schema()"
                  " UNION ALL SELECT 'index', indexname, indexdef FROM pg_indexes"
                  " WHERE schemaname = current_schema()"
                  " UNION ALL SELECT 'trigger', tgname, tgrelid::regclass::text FROM pg_trigger"
                  " WHERE NOT tgisinternal ORDER BY 1, 2",
}
# A refused statement: the error each backend raises (SQLite's driver error as it is;
# PostgreSQL's become one-line StoreErrors).
NO_SUCH_TABLE = {"sqlite": (sqlite3.OperationalError, "no such table"),
                 "postgresql": (StoreError, 'relation "no_such_table" does not exist')}
FOREIGN_KEY = {"sqlite": (sqlite3.IntegrityError, "FOREIGN KEY"),
               "postgresql": (StoreError, "violates foreign key constraint")}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A SQLite database (the SQLite-only tests)."""
    database = await Database.open(tmp_path / "vertex.db")
    try:
        yield database
    finally:
        await database.close()


def shipped_migrations(dialect: str) -> list[tuple[int, str, str]]:
    return load_migrations() if dialect == "sqlite" else pgmigrate.load_migrations()


def dialect_of(settings: Settings) -> str:
    return "sqlite" if settings.database_url is None else "postgresql"


def _schema(settings: Settings) -> list[tuple[Any, ...]]:
    return query(settings, SCHEMA[dialect_of(settings)])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kept(settings: Settings) -> Any:
    """What a refused open must leave as it was: the SQLite file byte for byte; on
    PostgreSQL, the schema and its versions."""
    if dialect_of(settings) == "sqlite":
        return _digest(settings.db_path)
    return _schema(settings), query(settings, "SELECT * FROM schema_migrations")


def _worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def _assert_no_thread_left(before: set[threading.Thread]) -> None:
    """A failed open must close its connections: their worker threads are not daemons."""
    for thread in _worker_threads() - before:
        await asyncio.to_thread(thread.join, 2.0)  # a closed connection's thread ends at once
    assert _worker_threads() - before == set()


def _sessions(settings: Settings) -> int:
    """PostgreSQL: the sessions on this test's database but the one asking."""
    rows = query(settings, "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                 " current_database() AND pid <> pg_backend_pid()")
    return int(rows[0][0])


# --- migrations and pragmas ----------------------------------------------------------------


async def test_migrations_create_the_tables(backend_db: Database) -> None:
    db = backend_db
    tables = {r[0] for r in await db.read(TABLES[db.dialect])}
    assert tables >= FOUNDATION_TABLES
    versions = [r[0] for r in await db.read("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [number for number, _, _ in shipped_migrations(db.dialect)]
    assert versions[0] == 1
    counts = await db.read("SELECT status, n FROM email_status_counts ORDER BY status")
    assert {r[0]: r[1] for r in counts} == {
        "failed": 0, "pending": 0, "sending": 0, "sent": 0, "cancelled": 0}


async def test_a_database_of_a_newer_release_is_refused_and_kept(
    backend_settings: Settings, wait_for: WaitFor
) -> None:
    settings = backend_settings
    first = await open_database(settings)
    newest = shipped_migrations(first.dialect)[-1][0]
    await first.write("INSERT INTO schema_migrations (version, name, applied_at)"
                      " VALUES (?, ?, ?)", (newest + 1, f"{newest + 1:04d}_future.sql", 1.0))
    await first.close()
    before, threads = _kept(settings), _worker_threads()
    with pytest.raises(StoreError, match=rf"schema version {newest + 1}, newer .* \({newest}\)"):
        await open_database(settings)
    assert _kept(settings) == before
    if first.dialect == "postgresql":  # its connections closed: the server ends their sessions soon
        await wait_for(lambda: _sessions(settings) == 0, message="no session left")
    else:
        await _assert_no_thread_left(threads)


@pytest.mark.parametrize(("numbers", "problem"), [
    ([1, 2, 3], None),
    ([3, 1, 2], None),                     # found in any order
    ([1, 2, 2, 3], "expected version 3, found 2"),
    ([1, 3], "expected version 2, found 3"),
    ([2, 3], "expected version 1, found 2"),
])
def test_migration_numbering_has_no_gap_and_no_twin(numbers: list[int],
                                                     problem: str | None) -> None:
    migrations = [(n, f"{n:04d}_x.sql") for n in numbers]
    if problem is None:
        check_numbering(migrations)
    else:
        with pytest.raises(RuntimeError, match=problem):
            check_numbering(migrations)


async def test_migrations_are_idempotent_on_reopen(backend_settings: Settings) -> None:
    settings = backend_settings
    first = await open_database(settings)
    await first.write(
        "INSERT INTO audit_log (at, actor, action) VALUES (?, ?, ?)", (1.0, "test", "kept")
    )
    await first.close()
    schema = _schema(settings)
    second = await open_database(settings)
    try:
        shipped = shipped_migrations(second.dialect)
        assert await second.migrate() == shipped[-1][0]
        rows = await second.read("SELECT count(*) FROM schema_migrations")
        assert rows[0][0] == len(shipped)
        kept = await second.read("SELECT action FROM audit_log")
        assert [r[0] for r in kept] == ["kept"]
    finally:
        await second.close()
    assert _schema(settings) == schema


# SQLite only: WAL and pragmas are the file's settings (PostgreSQL has neither).
async def test_journal_mode_is_wal_and_persists(db: Database) -> None:
    assert (await db.read_one("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
    with sqlite3.connect(db.path) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    plain.close()


async def test_foreign_keys_and_synchronous_normal_on_both_connections(db: Database) -> None:
    assert (await db.read_one("PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]
    assert (await db.read_one("PRAGMA synchronous"))[0] == 1  # type: ignore[index]  # NORMAL
    async with db.transaction() as conn:
        rows = await conn.execute_fetchall("PRAGMA foreign_keys")
        assert next(iter(rows))[0] == 1


async def test_foreign_keys_are_enforced(backend_db: Database) -> None:
    error, message = FOREIGN_KEY[backend_db.dialect]
    with pytest.raises(error, match=message):
        await backend_db.write(
            "INSERT INTO email_attempts (job_id, round, attempt, owner, at, outcome) "
            "VALUES (424242, 1, 1, 'me', 0, 'sent')"
        )
    assert await backend_db.read("SELECT * FROM email_attempts") == []


async def test_transaction_rolls_back_on_error(backend_db: Database) -> None:
    db = backend_db
    with pytest.raises(RuntimeError, match="boom"):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO audit_log (at, actor, action) VALUES (1, 'test', 'lost')"
            )
            raise RuntimeError("boom")
    assert await db.read("SELECT * FROM audit_log") == []
    # The connection is usable afterwards (no transaction left open).
    await db.write("INSERT INTO audit_log (at, actor, action) VALUES (2, 'test', 'kept')")
    assert [r[0] for r in await db.read("SELECT action FROM audit_log")] == ["kept"]


async def test_write_many_and_returning(backend_db: Database) -> None:
    db = backend_db
    n = await db.write_many(
        "INSERT INTO audit_log (at, actor, action) VALUES (?, ?, ?)",
        [(float(i), "test", f"a{i}") for i in range(5)],
    )
    assert n == 5
    rows = await db.write(
        "INSERT INTO audit_log (at, actor, action) VALUES (9, 'test', 'z') RETURNING id"
    )
    assert rows[0][0] == 6


# --- files that are not (usable) databases ---------------------------------------------------
# SQLite only: about the file (PostgreSQL's bad URLs and missing databases: test_pg_store).


async def test_text_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 50)
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        await Database.open(path)
    message = str(info.value)
    assert "not a SQLite database" in message
    assert str(path) in message
    assert "\n" not in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def _garbage_after_header(path: Path) -> None:
    path.write_bytes(SQLITE_MAGIC + random.Random(1).randbytes(3 * 4096))


def _clobbered_real_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.executemany("INSERT INTO t VALUES (?)", [(str(i) * 40,) for i in range(300)])
    conn.close()
    data = bytearray(path.read_bytes())
    assert data.startswith(SQLITE_MAGIC)
    data[100:] = random.Random(2).randbytes(len(data) - 100)  # keep the 100-byte header only
    path.write_bytes(bytes(data))


def _truncated_header(path: Path) -> None:
    path.write_bytes(SQLITE_MAGIC)


@pytest.mark.parametrize(
    "make", [_garbage_after_header, _clobbered_real_database, _truncated_header]
)
async def test_corrupt_sqlite_file_gives_store_error_and_is_not_modified(
    tmp_path: Path, make: object
) -> None:
    path = tmp_path / "vertex.db"
    make(path)  # type: ignore[operator]
    before = _digest(path)
    threads = _worker_threads()
    with pytest.raises(StoreError) as info:
        await Database.open(path, lock_wait=1)
    message = str(info.value)
    assert str(path) in message
    assert "not a database" in message or "malformed" in message
    assert _digest(path) == before
    await _assert_no_thread_left(threads)


async def test_missing_parent_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "folder" / "vertex.db"
    with pytest.raises(StoreError, match="does not exist"):
        await Database.open(path)
    assert not (tmp_path / "no").exists()


async def test_a_folder_as_database_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a folder"):
        await Database.open(tmp_path)


async def test_empty_file_becomes_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "vertex.db"
    path.touch()
    db = await Database.open(path)
    try:
        assert (await db.read_one("SELECT count(*) FROM email_jobs"))[0] == 0  # type: ignore[index]
    finally:
        await db.close()
    assert path.read_bytes().startswith(SQLITE_MAGIC)


# --- another process holding the lock ----------------------------------------------------------


class Held:
    """The lock another connection holds (see `exclusive_lock`): `release` ends it early."""

    def __init__(self) -> None:
        self.locked = threading.Event()
        self.release = threading.Event()
        self.committed = threading.Event()
        # Set just before its COMMIT: a statement of ours that waited for the lock finishes
        # after this (`committed` is set only once the COMMIT has returned in the holder's
        # thread, which may run after our statement got the freed lock and returned).
        self.releasing = threading.Event()


def _hold_sqlite(path: Path, seconds: float, held: Held) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("INSERT INTO audit_log (at, actor, action) VALUES (0, 'other', 'held')")
    held.locked.set()
    held.release.wait(seconds)
    held.releasing.set()
    conn.execute("COMMIT")
    held.committed.set()
    conn.close()


def _hold_postgresql(url: str, seconds: float, held: Held) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (pgmigrate.MIGRATION_LOCK,))
            conn.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
            conn.execute("INSERT INTO audit_log (at, actor, action) VALUES (0, 'other', 'held')")
            held.locked.set()
            held.release.wait(seconds)
            held.releasing.set()
        held.committed.set()


@contextmanager
def exclusive_lock(settings: Settings, seconds: float) -> Iterator[Held]:
    """Another connection (own thread) holds the write lock for `seconds` (or until the
    block ends), writes, commits.

    SQLite: `BEGIN EXCLUSIVE` on the file. PostgreSQL: an EXCLUSIVE lock on audit_log (reads
    go on, writes to it wait) and the migration lock (an engine opening waits for it)."""
    held = Held()
    errors: list[BaseException] = []
    database = database_of(settings)

    def hold() -> None:
        try:
            if isinstance(database, Path):
                _hold_sqlite(database, seconds, held)
            else:
                _hold_postgresql(database, seconds, held)
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)
            held.locked.set()

    thread = threading.Thread(target=hold, name="lock-holder")
    thread.start()
    try:
        assert held.locked.wait(5)
        assert not errors, errors
        yield held
    finally:
        held.release.set()
        thread.join(10)
        assert not thread.is_alive()
        assert not errors, errors


async def test_write_waits_for_another_connections_exclusive_lock(
    backend_settings: Settings, backend_db: Database
) -> None:
    db = backend_db
    with exclusive_lock(backend_settings, 1.0) as held:
        await db.write("INSERT INTO audit_log (at, actor, action) VALUES (1, 'me', 'waited')")
        assert held.releasing.is_set()  # it waited for the other's commit
    rows = await db.read("SELECT actor, action FROM audit_log ORDER BY id")
    assert [tuple(r) for r in rows] == [("other", "held"), ("me", "waited")]


async def test_transaction_waits_for_another_connections_exclusive_lock(
    backend_settings: Settings, backend_db: Database
) -> None:
    db = backend_db
    with exclusive_lock(backend_settings, 0.6) as held:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO audit_log (at, actor, action) VALUES (1, 'me', 'in-tx')"
            )
            assert held.releasing.is_set()
    rows = await db.read("SELECT action FROM audit_log ORDER BY id")
    assert [r[0] for r in rows] == ["held", "in-tx"]


async def test_reads_are_not_blocked_by_another_writer(
    backend_settings: Settings, backend_db: Database
) -> None:
    db = backend_db
    await db.write("INSERT INTO audit_log (at, actor, action) VALUES (1, 'me', 'before')")
    with exclusive_lock(backend_settings, 30) as held:
        rows = await db.read("SELECT action FROM audit_log")
        # Read during the lock: the other's write is not committed yet.
        assert not held.committed.is_set()
        assert [r[0] for r in rows] == ["before"]


async def test_open_waits_for_a_lock_held_on_an_existing_database(
    backend_settings: Settings,
) -> None:
    """SQLite: the other's write lock on the file; PostgreSQL: the migration lock another
    engine starting at the same time holds."""
    await (await open_database(backend_settings)).close()
    with exclusive_lock(backend_settings, 0.6) as held:
        db = await open_database(backend_settings)
        assert held.releasing.is_set()
    try:
        rows = await db.read("SELECT action FROM audit_log")
        assert [r[0] for r in rows] == ["held"]
    finally:
        await db.close()


async def test_tiny_lock_wait_gives_store_error_mentioning_locked(
    backend_settings: Settings,
) -> None:
    """`lock_wait` bounds a write's wait for a lock held outside this Database: SQLite's
    busy timeout and retries; PostgreSQL's `lock_timeout` on every pooled session (without
    it a psql left in an open transaction held the engine's writes for ever)."""
    db = await open_database(backend_settings, lock_wait=0.2)
    try:
        with exclusive_lock(backend_settings, 30):
            with pytest.raises(StoreError, match="stayed locked") as info:
                await db.write("INSERT INTO audit_log (at, actor, action) VALUES (1, 'me', 'x')")
            # It gave up while the lock was still held: lock_wait bounds the wait, SQLite's
            # own busy timeout included.
            assert await db.read("SELECT action FROM audit_log") == []
            # A transaction and a one-hop transaction give up the same way.
            with pytest.raises(StoreError, match="stayed locked"):
                async with db.transaction() as conn:
                    await conn.execute(
                        "INSERT INTO audit_log (at, actor, action) VALUES (1, 'me', 'y')")
            with pytest.raises(StoreError, match="stayed locked"):
                await db.run_transaction(lambda c: c.execute(
                    "INSERT INTO audit_log (at, actor, action) VALUES (1, 'me', 'z')"))
        assert str(db.path) in str(info.value)  # the file, or the URL without its password
        assert "\n" not in str(info.value)
        # Once the lock is gone the same Database works again.
        await db.write("INSERT INTO audit_log (at, actor, action) VALUES (2, 'me', 'after')")
        rows = await db.read("SELECT action FROM audit_log ORDER BY id")
        assert [r[0] for r in rows] == ["held", "after"]
    finally:
        await db.close()


# --- split_statements --------------------------------------------------------------------------
# SQLite only: its migrations are split into statements here; PostgreSQL runs a script whole.

SCRIPT = """
-- a comment on its own
CREATE TABLE a (x INTEGER); -- trailing comment
CREATE TABLE n (k TEXT PRIMARY KEY, v INTEGER);

CREATE TRIGGER tr_a AFTER INSERT ON a BEGIN
    UPDATE n SET v = v + 1 WHERE k = 'a';
    UPDATE n SET v = v + 2 WHERE k = 'b';
END;
INSERT INTO n (k, v) VALUES ('a;b', 0), ('b', 0);
-- the end
"""


def test_split_statements_keeps_trigger_bodies_whole() -> None:
    statements = split_statements(SCRIPT)
    assert len(statements) == 4
    assert "CREATE TABLE a (x INTEGER);" in statements[0]
    trigger = statements[2]
    assert trigger.startswith("CREATE TRIGGER tr_a")
    assert trigger.rstrip().endswith("END;")
    assert trigger.count("UPDATE n") == 2
    assert statements[3] == "INSERT INTO n (k, v) VALUES ('a;b', 0), ('b', 0);"
    assert all(sqlite3.complete_statement(s) for s in statements)


def test_split_statements_result_runs_statement_by_statement() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        for statement in split_statements(SCRIPT):
            conn.execute(statement)
        conn.execute("INSERT INTO a VALUES (1)")
        assert conn.execute("SELECT k, v FROM n ORDER BY k").fetchall() == [("a;b", 0), ("b", 2)]
    finally:
        conn.close()


def test_split_statements_refuses_an_incomplete_script() -> None:
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("CREATE TABLE a (x INTEGER);\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n")
    assert split_statements("-- nothing\n\n-- here\n") == []


def test_shipped_migrations_split_with_triggers_whole() -> None:
    migrations = load_migrations()
    assert [n for n, _, _ in migrations] == sorted({n for n, _, _ in migrations})
    foundation = split_statements(migrations[0][2])
    triggers = [s for s in foundation if s.upper().startswith("CREATE TRIGGER")]
    assert len(triggers) >= 3
    assert all(t.rstrip().upper().endswith("END;") for t in triggers)


async def test_a_transaction_cancelled_while_waiting_for_a_lock_leaves_no_transaction_open(
    backend_settings: Settings, backend_db: Database
) -> None:
    """SQLite: aiosqlite runs a BEGIN whose caller was cancelled (at shutdown, say) once the
    lock it waits for frees. Left open, the next statements would run inside it and vanish at
    close: a released lease would still be there after the process exits. PostgreSQL: the
    statement waiting for the lock is cancelled with its caller; its write never lands."""
    db = backend_db

    async def write_in_transaction() -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO audit_log (at, actor, action)"
                               " VALUES (1, 'test', 'never')")

    with exclusive_lock(backend_settings, 30) as held:  # another process holds the lock
        task = asyncio.create_task(write_in_transaction())
        await asyncio.sleep(0.3)  # it now waits for the lock
        assert not task.done()
        task.cancel()
        held.release.set()  # the lock frees: on SQLite, that BEGIN now runs
        with pytest.raises(asyncio.CancelledError):
            await task
    assert held.committed.is_set()
    await db.write("INSERT INTO audit_log (at, actor, action) VALUES (2, 'test', 'kept')")
    # Another connection sees it: it was committed.
    assert query(backend_settings, "SELECT action FROM audit_log ORDER BY id") == [
        ("held",), ("kept",)]


# --- run_transaction: a whole write transaction in one hop to the writer thread ---------------


def _insert_action(conn: SyncConnection, action: str) -> int:
    rows = conn.execute(
        "INSERT INTO audit_log (at, actor, action) VALUES (1, 'test', ?) RETURNING id", (action,)
    ).fetchall()
    return int(rows[0][0])


def _actions(settings: Settings) -> list[tuple[Any, ...]]:
    """What another connection sees committed."""
    return query(settings, "SELECT action FROM audit_log ORDER BY id")


async def test_run_transaction_commits_and_returns_what_fn_returns(
    backend_settings: Settings, backend_db: Database
) -> None:
    def two_inserts(conn: SyncConnection) -> list[int]:
        first = _insert_action(conn, "a")
        assert _actions(backend_settings) == []  # fn runs inside one transaction
        return [first, _insert_action(conn, "b")]

    ids = await backend_db.run_transaction(two_inserts)
    assert ids == [1, 2]
    # Committed: another connection sees both rows.
    assert query(backend_settings, "SELECT id, action FROM audit_log ORDER BY id") == [
        (1, "a"), (2, "b")]


async def test_run_transaction_rolls_back_everything_when_fn_raises(
    backend_settings: Settings, backend_db: Database
) -> None:
    db = backend_db

    def half_then_fail(conn: SyncConnection) -> None:
        _insert_action(conn, "lost")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    error, message = NO_SUCH_TABLE[db.dialect]
    with pytest.raises(error, match=message):
        await db.run_transaction(half_then_fail)
    assert await db.read("SELECT * FROM audit_log") == []
    # No transaction left open: the next writes of either kind commit.
    await db.run_transaction(lambda conn: _insert_action(conn, "kept"))
    await db.write("INSERT INTO audit_log (at, actor, action) VALUES (2, 'test', 'also')")
    assert _actions(backend_settings) == [("kept",), ("also",)]


async def test_run_transaction_waits_for_another_connections_exclusive_lock(
    backend_settings: Settings, backend_db: Database
) -> None:
    db = backend_db
    with exclusive_lock(backend_settings, 0.6) as held:
        await db.run_transaction(lambda conn: _insert_action(conn, "after"))
        assert held.releasing.is_set()
    rows = await db.read("SELECT action FROM audit_log ORDER BY id")
    assert [r[0] for r in rows] == ["held", "after"]


async def test_run_transaction_cancelled_mid_way_still_ends_its_transaction(
    backend_settings: Settings, backend_db: Database, wait_for: WaitFor
) -> None:
    """The caller stops waiting while `fn` runs on the writer thread: the transaction still
    ends there (here: commits), and the next writes, of either kind, are their own."""
    db = backend_db
    inside, release = threading.Event(), threading.Event()

    def slow(conn: SyncConnection) -> None:
        _insert_action(conn, "in-flight")
        inside.set()
        assert release.wait(10)

    task = asyncio.create_task(db.run_transaction(slow))
    assert await asyncio.to_thread(inside.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await wait_for(lambda: _actions(backend_settings) == [("in-flight",)],
                   message="the cancelled transaction to commit on its thread")
    await db.write("INSERT INTO audit_log (at, actor, action) VALUES (2, 'test', 'next')")
    await db.run_transaction(lambda conn: _insert_action(conn, "after"))
    await db.close()  # a transaction left open would lose 'next' or 'after' here
    assert _actions(backend_settings) == [("in-flight",), ("next",), ("after",)]
