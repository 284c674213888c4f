"""The SQLite store on real files: migrations, pragmas, refusing bad files, waiting out locks."""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vertex_tui.engine.errors import StoreError
from vertex_tui.engine.store.db import (
    SQLITE_MAGIC,
    Database,
    check_numbering,
    load_migrations,
    split_statements,
)

FOUNDATION_TABLES = {
    "schema_migrations",
    "leases",
    "service_runs",
    "audit_log",
    "engine_flags",
    "email_jobs",
    "email_attempts",
    "email_status_counts",
}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "vertex.db")
    try:
        yield database
    finally:
        await database.close()


def _schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    conn.close()
    return [tuple(r) for r in rows]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def _assert_no_thread_left(before: set[threading.Thread]) -> None:
    """A failed open must close its connections: their worker threads are not daemons."""
    for thread in _worker_threads() - before:
        await asyncio.to_thread(thread.join, 2.0)  # a closed connection's thread ends at once
    assert _worker_threads() - before == set()


# --- migrations and pragmas ----------------------------------------------------------------


async def test_migrations_create_the_tables(db: Database) -> None:
    rows = await db.read("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = {r[0] for r in rows}
    assert tables >= FOUNDATION_TABLES
    versions = [r[0] for r in await db.read("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [number for number, _, _ in load_migrations()]
    assert versions[0] == 1
    counts = await db.read("SELECT status, n FROM email_status_counts ORDER BY status")
    assert {r[0]: r[1] for r in counts} == {"failed": 0, "pending": 0, "sending": 0, "sent": 0}


async def test_a_database_of_a_newer_release_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "vertex.db"
    first = await Database.open(path)
    newest = load_migrations()[-1][0]
    await first.write("INSERT INTO schema_migrations (version, name, applied_at)"
                      " VALUES (?, ?, ?)", (newest + 1, f"{newest + 1:04d}_future.sql", 1.0))
    await first.close()
    digest = _digest(path)
    before = _worker_threads()
    with pytest.raises(StoreError, match=rf"schema version {newest + 1}, newer .* \({newest}\)"):
        await Database.open(path)
    assert _digest(path) == digest
    await _assert_no_thread_left(before)


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


async def test_migrations_are_idempotent_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "vertex.db"
    first = await Database.open(path)
    await first.write(
        "INSERT INTO audit_log (at, actor, action) VALUES (?, ?, ?)", (1.0, "test", "kept")
    )
    await first.close()
    schema = _schema(path)
    second = await Database.open(path)
    try:
        assert await second.migrate() == load_migrations()[-1][0]
        rows = await second.read("SELECT count(*) FROM schema_migrations")
        assert rows[0][0] == len(load_migrations())
        kept = await second.read("SELECT action FROM audit_log")
        assert [r[0] for r in kept] == ["kept"]
    finally:
        await second.close()
    assert _schema(path) == schema


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
    # ... and actually enforced on the writer.
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await db.write(
            "INSERT INTO email_attempts (job_id, round, attempt, owner, at, outcome) "
            "VALUES (424242, 1, 1, 'me', 0, 'sent')"
        )


async def test_transaction_rolls_back_on_error(db: Database) -> None:
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


async def test_write_many_and_returning(db: Database) -> None:
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


@contextmanager
def exclusive_lock(path: Path, seconds: float) -> Iterator[threading.Event]:
    """Another connection (own thread) holds `BEGIN EXCLUSIVE` for `seconds`, writes, commits."""
    locked = threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=5)
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("INSERT INTO audit_log (at, actor, action) VALUES (0, 'other', 'held')")
            locked.set()
            time.sleep(seconds)
            conn.execute("COMMIT")
            conn.close()
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)
            locked.set()

    thread = threading.Thread(target=hold, name="lock-holder")
    thread.start()
    try:
        assert locked.wait(5)
        assert not errors, errors
        yield locked
    finally:
        thread.join(10)
        assert not thread.is_alive()
        assert not errors, errors


async def test_write_waits_for_another_connections_exclusive_lock(db: Database) -> None:
    with exclusive_lock(db.path, 1.0):
        started = time.monotonic()
        await db.write("INSERT INTO audit_log (at, actor, action) VALUES (1, 'me', 'waited')")
        waited = time.monotonic() - started
    assert waited >= 0.5
    rows = await db.read("SELECT actor, action FROM audit_log ORDER BY id")
    assert [tuple(r) for r in rows] == [("other", "held"), ("me", "waited")]


async def test_transaction_waits_for_another_connections_exclusive_lock(db: Database) -> None:
    with exclusive_lock(db.path, 0.6):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO audit_log (at, actor, action) VALUES (1, 'me', 'in-tx')"
            )
    rows = await db.read("SELECT action FROM audit_log ORDER BY id")
    assert [r[0] for r in rows] == ["held", "in-tx"]


async def test_reads_are_not_blocked_by_another_writer(db: Database) -> None:
    await db.write("INSERT INTO audit_log (at, actor, action) VALUES (1, 'me', 'before')")
    with exclusive_lock(db.path, 0.6):
        rows = await db.read("SELECT action FROM audit_log")
        # Read during the lock: the other's write is not committed yet.
        assert [r[0] for r in rows] == ["before"]


async def test_open_waits_for_a_lock_held_on_an_existing_database(tmp_path: Path) -> None:
    path = tmp_path / "vertex.db"
    await (await Database.open(path)).close()
    with exclusive_lock(path, 0.6):
        db = await Database.open(path)
    try:
        rows = await db.read("SELECT action FROM audit_log")
        assert [r[0] for r in rows] == ["held"]
    finally:
        await db.close()


async def test_tiny_lock_wait_gives_store_error_mentioning_locked(tmp_path: Path) -> None:
    path = tmp_path / "vertex.db"
    db = await Database.open(path, lock_wait=0.2)
    try:
        with exclusive_lock(path, 1.0):
            with pytest.raises(StoreError, match="locked") as info:
                await db.write("INSERT INTO audit_log (at, actor, action) VALUES (1, 'me', 'x')")
            # It gave up while the lock was still held: lock_wait bounds the wait, SQLite's
            # own busy timeout included.
            assert await db.read("SELECT action FROM audit_log") == []
        assert str(path) in str(info.value)
        # Once the lock is gone the same Database works again.
        await db.write("INSERT INTO audit_log (at, actor, action) VALUES (2, 'me', 'after')")
        rows = await db.read("SELECT action FROM audit_log ORDER BY id")
        assert [r[0] for r in rows] == ["held", "after"]
    finally:
        await db.close()


# --- split_statements --------------------------------------------------------------------------

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


async def test_a_transaction_cancelled_while_waiting_to_begin_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    """aiosqlite runs a BEGIN whose caller was cancelled (at shutdown, say) once the lock it
    waits for frees. Left open, the next statements would run inside it and vanish at close:
    a released lease would still be there after the process exits."""
    path = tmp_path / "vertex.db"
    db = await Database.open(path, lock_wait=30)
    try:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

        async def write_in_transaction() -> None:
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO audit_log (at, actor, action)"
                                   " VALUES (1, 'test', 'never')")

        task = asyncio.create_task(write_in_transaction())
        await asyncio.sleep(0.3)  # its BEGIN IMMEDIATE now waits in aiosqlite's thread
        task.cancel()
        other.execute("ROLLBACK")  # the lock frees: that BEGIN now runs
        other.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        await db.write("INSERT INTO audit_log (at, actor, action) VALUES (2, 'test', 'kept')")
        with sqlite3.connect(path) as check:  # another connection sees it: it was committed
            rows = check.execute("SELECT action FROM audit_log").fetchall()
        assert rows == [("kept",)]
    finally:
        await db.close()


# --- run_transaction: a whole write transaction in one hop to the writer thread ---------------


def _insert_action(conn: sqlite3.Connection, action: str) -> int:
    row = conn.execute(
        "INSERT INTO audit_log (at, actor, action) VALUES (1, 'test', ?) RETURNING id", (action,)
    ).fetchone()
    return int(row[0])


async def test_run_transaction_commits_and_returns_what_fn_returns(db: Database) -> None:
    def two_inserts(conn: sqlite3.Connection) -> list[int]:
        assert conn.in_transaction  # fn runs inside BEGIN IMMEDIATE ... COMMIT
        return [_insert_action(conn, "a"), _insert_action(conn, "b")]

    ids = await db.run_transaction(two_inserts)
    assert ids == [1, 2]
    with sqlite3.connect(db.path) as check:  # committed: another connection sees both rows
        rows = check.execute("SELECT id, action FROM audit_log ORDER BY id").fetchall()
    check.close()
    assert rows == [(1, "a"), (2, "b")]


async def test_run_transaction_rolls_back_everything_when_fn_raises(db: Database) -> None:
    def half_then_fail(conn: sqlite3.Connection) -> None:
        _insert_action(conn, "lost")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await db.run_transaction(half_then_fail)
    assert await db.read("SELECT * FROM audit_log") == []
    # No transaction left open: the next writes of either kind commit.
    await db.run_transaction(lambda conn: _insert_action(conn, "kept"))
    await db.write("INSERT INTO audit_log (at, actor, action) VALUES (2, 'test', 'also')")
    with sqlite3.connect(db.path) as check:
        rows = check.execute("SELECT action FROM audit_log ORDER BY id").fetchall()
    check.close()
    assert rows == [("kept",), ("also",)]


async def test_run_transaction_waits_for_another_connections_exclusive_lock(
    db: Database,
) -> None:
    with exclusive_lock(db.path, 0.6):
        await db.run_transaction(lambda conn: _insert_action(conn, "after"))
    rows = await db.read("SELECT action FROM audit_log ORDER BY id")
    assert [r[0] for r in rows] == ["held", "after"]


async def test_run_transaction_cancelled_mid_way_still_ends_its_transaction(db: Database) -> None:
    """The caller stops waiting while `fn` runs on the writer thread: the transaction still
    ends there (here: commits), and the next write on the connection is its own."""
    inside, release = threading.Event(), threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        _insert_action(conn, "in-flight")
        inside.set()
        assert release.wait(10)

    task = asyncio.create_task(db.run_transaction(slow))
    assert await asyncio.to_thread(inside.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await db.write("INSERT INTO audit_log (at, actor, action) VALUES (2, 'test', 'next')")
    await db.close()  # a transaction left open would lose 'next' here
    with sqlite3.connect(db.path) as check:
        rows = check.execute("SELECT action FROM audit_log ORDER BY id").fetchall()
    check.close()
    assert rows == [("in-flight",), ("next",)]
