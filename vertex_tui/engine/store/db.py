"""The database: one SQLite file in WAL mode, reached through aiosqlite.

The one module that knows aiosqlite: the query modules see `Database` and, inside a
transaction, the `Connection` protocol of `conn.py` (implemented here by `SqliteConnection`).

One writer connection (write transactions are serialized in-process by a lock and across
processes by SQLite's own lock, taken up front with `BEGIN IMMEDIATE`) and one reader
connection, so snapshots for the console never wait behind a write. A locked database is
waited for; a file that is not SQLite is refused and never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import aiosqlite

from vertex_tui.engine.errors import ForeignDatabase, StoreError
from vertex_tui.engine.store.conn import Connection, Params, Result, Row, SyncConnection
from vertex_tui.engine.store.dialect import Dialect, Statement
from vertex_tui.engine.store.migrations_list import check_numbering, parse_migrations

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5_000
# How long a write waits for a lock held outside this Database (another process on SQLite,
# another session on PostgreSQL: its `lock_timeout`) before `StoreError` "stayed locked".
LOCK_WAIT_S = 300.0

T = TypeVar("T")

# The driver's base error: what escapes as neither StoreError nor DatabaseCorrupt.
DriverError = sqlite3.Error

__all__ = ["Connection", "Database", "DriverError", "Params", "Result", "Row", "check_numbering"]


# SQLITE_CORRUPT and SQLITE_NOTADB (primary codes): the file's pages are damaged.
_CORRUPT_CODES = (11, 26)
MALFORMED = "database disk image is malformed"


class DatabaseCorrupt(StoreError):
    """The database file is damaged (SQLite: "database disk image is malformed")."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"database {path}: {MALFORMED}; run 'vertex-tui doctor' for what to do")


def is_corrupt(exc: BaseException) -> bool:
    """True for SQLite's "database disk image is malformed" (and "file is not a database")."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _CORRUPT_CODES
    return "malformed" in str(exc)


def quick_check(path: Path) -> list[str]:
    """`PRAGMA quick_check` of the file at `path`, opened read-only: [] if it is sound, else
    the problems SQLite reports (a damaged page that cannot even be read is one problem)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if is_corrupt(exc):
            return [str(exc)]
        raise
    finally:
        conn.close()
    problems = [str(r[0]) for r in rows]
    return [] if problems == ["ok"] else problems


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def check_sqlite_file(path: Path) -> None:
    """Refuse a path that exists but is not a SQLite database (it is never overwritten)."""
    if not path.exists():
        if not path.parent.is_dir():
            raise StoreError(f"database folder {path.parent} does not exist")
        return
    if path.is_dir():
        raise StoreError(f"database path {path} is a folder, not a SQLite file")
    try:
        with path.open("rb") as fh:
            header = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read database {path}: {exc.strerror}") from None
    if header and header != SQLITE_MAGIC:
        raise StoreError(f"{path} is not a SQLite database; refusing to open or overwrite it")


def foreign_tables(path: Path) -> list[str]:
    """The tables of the SQLite file at `path` if it is another program's database (tables,
    and no `schema_migrations`: vertex-tui creates that first, in a transaction of its own,
    so any vertex-tui database with tables has it); [] otherwise, and when the file cannot be
    read far enough to tell (the open that follows says why). Read-only: nothing is written,
    not even WAL mode."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            names = [str(r[0]) for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return []
    return [] if not names or "schema_migrations" in names else names


def create_private(path: Path) -> None:
    """Create `path` empty and 0600 if it does not exist: SQLite creates its -wal and -shm
    (and journal) files with the mode of the database file, so they are private too."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def split_statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (trigger bodies stay whole)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if statement and not all(
                part.strip().startswith("--") or not part.strip() for part in statement.splitlines()
            ):
                statements.append(statement)
            buffer = ""
    if buffer.strip() and not all(
        p.strip().startswith("--") or not p.strip() for p in buffer.splitlines()
    ):
        raise ValueError(f"incomplete SQL statement at end of script: {buffer.strip()[:60]}")
    return statements


def load_migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every SQLite migration shipped with the package, in order."""
    folder = resources.files("vertex_tui.engine.store") / "migrations"
    return parse_migrations((entry.name, entry) for entry in folder.iterdir())


def _text(sql: Statement) -> str:
    """The SQLite text of a statement (a plain string, or an `Sql`'s sqlite variant)."""
    return sql if isinstance(sql, str) else sql.sqlite


async def _pragma(conn: aiosqlite.Connection, setting: str) -> list[Row]:
    """`PRAGMA setting`, its rows read to the end, so its statement is finished at once.

    aiosqlite's thread keeps the last call's result (a cursor, from `execute`) until its next
    call succeeds, and a statement whose rows are not all read keeps its read transaction
    open. `PRAGMA journal_mode=WAL`, run on a file that another process switched to WAL after
    this connection first read it, opens one: left open, its snapshot soon predates the
    other's next commit, and every `BEGIN IMMEDIATE` here then fails SQLITE_BUSY_SNAPSHOT
    (taken for "locked") with nothing ever letting go, for the whole lock wait.
    """
    return list(await conn.execute_fetchall(f"PRAGMA {setting}"))


class SqliteConnection:
    """`Connection` over an aiosqlite connection (see `conn.py`)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: Statement, params: Params = ()) -> Result:
        cursor = await self._conn.execute(_text(sql), params)
        return Result(cursor.rowcount, cursor.lastrowid)

    async def execute_fetchall(self, sql: Statement, params: Params = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(_text(sql), params))

    async def executemany(self, sql: Statement, rows: Iterable[Sequence[Any]]) -> Result:
        cursor = await self._conn.executemany(_text(sql), rows)
        return Result(cursor.rowcount, cursor.lastrowid)


class SqliteSyncConnection:
    """`SyncConnection` over the writer's sqlite3 connection (`run_transaction`): `execute`
    takes an `Sql` too; anything else is the sqlite3 connection's own (`in_transaction`...)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: Statement, parameters: Params = (), /) -> sqlite3.Cursor:
        return self._conn.execute(_text(sql), parameters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class Database:
    """An open vertex-tui database. Use `await Database.open(path)`; close with `close()`.

    This is the SQLite backend; `pg.PgDatabase` (PostgreSQL) subclasses it for the type and
    overrides every public member. Hosts open either through `store.backend.open_database`.
    """

    dialect: ClassVar[Dialect] = "sqlite"
    path: Path | str  # the file; on PostgreSQL the URL with its password masked

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        lock_wait: float,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._lock_wait = lock_wait
        # Set once SQLite reports the file damaged: from then on nothing more is written to
        # it (a shutdown's lease release included), so the evidence stays as it was found.
        self.corrupt = False

    def use_test_clock(self, clock: Callable[[], float] | None) -> None:
        """Tests only: on PostgreSQL, read "now" from `clock` instead of the server's clock
        (server_time). Nothing to do here: SQLite compares the times its callers pass."""

    @classmethod
    async def open(
        cls, path: Path | str, *, lock_wait: float = LOCK_WAIT_S, migrate: bool = True,
        check: bool = False,
    ) -> Database:
        """Open (creating if absent) and migrate the database at `path`.

        `lock_wait` bounds how long a write waits for another process's lock before
        giving up with `StoreError`. `check` runs `PRAGMA quick_check` first (an engine
        that is about to write): a damaged file raises `DatabaseCorrupt` untouched.
        """
        path = Path(path)
        check_sqlite_file(path)
        foreign = await asyncio.to_thread(foreign_tables, path)
        if foreign:
            raise ForeignDatabase(str(path), foreign, "VERTEX_DB_PATH")
        try:
            create_private(path)
        except OSError as exc:
            raise StoreError(f"cannot create database {path}: {exc.strerror}") from None
        if check and path.stat().st_size:
            try:
                problems = await asyncio.to_thread(quick_check, path)
            except sqlite3.OperationalError as exc:
                raise StoreError(f"cannot use database {path}: {exc}") from None
            if problems:
                raise DatabaseCorrupt(path)
        writer = reader = None
        try:
            writer = await cls._connect(path, lock_wait)
            db = cls(path, writer, writer, lock_wait)
            # Run to its end (`_pragma`): left unfinished, this statement kept the read
            # transaction it opened on a file another process had just switched to WAL.
            await db._retry_locked(lambda: _pragma(writer, "journal_mode=WAL"))
            if migrate:
                await db.migrate()
            reader = await cls._connect(path, lock_wait)
            db._reader = reader
            return db
        except sqlite3.DatabaseError as exc:
            for conn in (writer, reader):
                if conn is not None:
                    await conn.close()
            if is_corrupt(exc):
                raise DatabaseCorrupt(path) from None
            raise StoreError(f"cannot use database {path}: {exc}") from None
        except DatabaseCorrupt:
            for conn in (writer, reader):
                if conn is not None:
                    await conn.close()
            raise
        except BaseException:
            for conn in (writer, reader):
                if conn is not None:
                    await conn.close()
            raise

    @staticmethod
    async def _connect(path: Path, lock_wait: float) -> aiosqlite.Connection:
        # SQLite's own busy wait must not outlast `lock_wait`, or that bound means nothing.
        busy_ms = max(0, min(BUSY_TIMEOUT_MS, int(lock_wait * 1000)))
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=busy_ms / 1000)
        try:
            conn.row_factory = sqlite3.Row
            for setting in (f"busy_timeout={busy_ms}", "synchronous=NORMAL", "foreign_keys=ON"):
                await _pragma(conn, setting)
        except BaseException:
            # Its worker thread is not a daemon: a leaked connection keeps the process alive.
            await conn.close()
            raise
        return conn

    async def close(self) -> None:
        await self._reader.close()
        if self._writer is not self._reader:
            await self._writer.close()

    async def _retry_locked(self, operation: Any) -> Any:
        """Run `operation()` (a coroutine factory), waiting out another process's lock."""
        deadline = time.monotonic() + self._lock_wait
        delay = 0.05
        warned = False
        while True:
            try:
                return await operation()
            except sqlite3.DatabaseError as exc:
                self._raise_if_corrupt(exc)
                if not _is_locked(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"database {self.path} stayed locked by another process for "
                        f"{self._lock_wait:.0f} s"
                    ) from None
                if not warned:
                    log.warning("database %s is locked; waiting", self.path)
                    warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _raise_if_corrupt(self, exc: BaseException) -> None:
        if is_corrupt(exc):
            self.corrupt = True
            raise DatabaseCorrupt(Path(self.path)) from None

    def _refuse_if_corrupt(self) -> None:
        if self.corrupt:
            raise DatabaseCorrupt(Path(self.path))

    async def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction; returns the schema version."""
        async with self.transaction() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
        migrations = load_migrations()
        newest = migrations[-1][0] if migrations else 0
        found = await self.read("SELECT max(version) FROM schema_migrations")
        version = found[0][0] or 0
        if version > newest:
            raise StoreError(
                f"database {self.path} has schema version {version}, newer than this vertex-tui"
                f" knows ({newest}): it was used by a newer release; run that release"
            )
        for number, name, sql in migrations:
            async with self.transaction() as conn:
                rows = await conn.execute_fetchall("SELECT max(version) FROM schema_migrations")
                version = next(iter(rows))[0] or 0
                if number <= version:
                    continue
                log.info("applying migration %s", name)
                for statement in split_statements(sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (number, name, time.time()),
                )
                version = number
        return version

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A write transaction (`BEGIN IMMEDIATE`), committed on success, rolled back on error."""
        async with self._write_lock:
            self._refuse_if_corrupt()
            conn = self._writer
            try:
                await self._retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
            except asyncio.CancelledError:
                # aiosqlite still runs a BEGIN its caller stopped waiting for: left open, every
                # later statement on this connection (a lease release at shutdown...) would
                # run inside it and be lost at close. End it; without one, nothing to end.
                with contextlib.suppress(sqlite3.OperationalError):
                    await asyncio.shield(conn.execute("ROLLBACK"))
                raise
            try:
                yield SqliteConnection(conn)
            except BaseException as exc:
                with contextlib.suppress(sqlite3.DatabaseError):
                    await conn.execute("ROLLBACK")
                self._raise_if_corrupt(exc)
                raise
            try:
                await conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._raise_if_corrupt(exc)
                raise

    async def run_transaction(self, fn: Callable[[SyncConnection], T]) -> T:
        """`fn(conn)` inside one write transaction, run on the writer's thread in one hop.

        `transaction()` costs a round trip to that thread per statement (BEGIN, each
        statement, COMMIT: each a hand-over of the GIL and a wake-up of the event loop);
        this costs one, for the statements of a hot path (the queue's group commits). `fn`
        gets the plain connection (`SyncConnection`) and runs on the writer thread: it must only
        run SQL and compute. The transaction ends on that thread (COMMIT, or ROLLBACK when
        `fn` raised), so a caller cancelled meanwhile never leaves it open.
        """
        async with self._write_lock:
            writer = self._writer

            def run() -> T:
                conn: sqlite3.Connection = writer._conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(SqliteSyncConnection(conn))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result

            # aiosqlite's own hand-over to its thread (what its `execute` uses), untyped there.
            on_thread = cast(Callable[[Callable[[], T]], Awaitable[T]], writer._execute)
            result: T = await self._retry_locked(lambda: on_thread(run))
            return result

    async def write(self, sql: Statement, params: Params = ()) -> list[Row]:
        """One statement in its own transaction; returns its rows (for `RETURNING`)."""
        async with self._write_lock:
            self._refuse_if_corrupt()
            conn = self._writer

            async def run() -> list[Row]:
                return list(await conn.execute_fetchall(_text(sql), params))

            result: list[Row] = await self._retry_locked(run)
            return result

    async def write_many(self, sql: Statement, rows: Iterable[Sequence[Any]]) -> int:
        """`executemany` in one transaction; returns the number of rows changed."""
        async with self.transaction() as conn:
            cursor = await conn.executemany(sql, rows)
            return cursor.rowcount

    async def read(self, sql: Statement, params: Params = ()) -> list[Row]:
        """Rows of a read-only query, on the reader connection."""
        conn = self._reader

        async def run() -> list[Row]:
            return list(await conn.execute_fetchall(_text(sql), params))

        result: list[Row] = await self._retry_locked(run)
        return result

    async def read_one(self, sql: Statement, params: Params = ()) -> Row | None:
        rows = await self.read(sql, params)
        return rows[0] if rows else None
