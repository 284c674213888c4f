"""The database on PostgreSQL: psycopg 3 (async) over a connection pool.

`PgDatabase` has the public API of the SQLite `Database` (`db.py`): `read`, `read_one`,
`write`, `write_many`, `transaction()` (a `Connection`), `run_transaction(fn)` (a
`SyncConnection`), `migrate`, `close`, `corrupt`, `path` (here the URL with its password
masked) and `dialect`. It subclasses `Database` for the type alone, so the store's functions
take either; it overrides every public member (a test checks), none of SQLite's machinery runs.

- Statements are written with SQLite's `?` and `:name` placeholders; `translate` turns them
  into psycopg's `%s` / `%(name)s` once per statement text (cached), leaving string literals,
  quoted names, comments, dollar quotes and `::` casts alone, and doubling a literal `%`.
- Reads, `write` and each statement outside a transaction run in autocommit on a pooled
  connection: one statement is its own transaction, as on SQLite. `transaction()` holds one
  pooled connection inside BEGIN ... COMMIT (ROLLBACK on error).
- `run_transaction(fn)` runs `fn` on a worker thread over a sync psycopg connection of a
  small sync pool, BEGIN to COMMIT there: one hop from the event loop for the whole hot path
  (no await, so no loop round trip, between its statements), like SQLite's writer thread.
- Rows (`PgRow`) answer `row[0]`, `row["col"]`, `keys()`, iteration and `len`, as
  `sqlite3.Row` does. Booleans are sent as 0/1 and come back as 1/0, `numeric` results
  (`sum(bigint)`) as int (float when they have a fraction), so Python sees what SQLite gives.
- A test's fake clock can stand in for the server's (`use_test_clock`, see server_time): each
  statement then runs with the server's time replaced by that clock's.
- Driver errors become `StoreError` with one line naming the database (password masked).
- A pooled connection the server closed while it sat idle (restart, failover) is replaced at
  checkout, so a restart costs the next statements no error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import select
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar, NoReturn, TypeVar

import psycopg
import psycopg_pool
from psycopg.adapt import AdaptersMap, Dumper, Loader

from vertex_tui.engine.errors import StoreError
from vertex_tui.engine.store.conn import Params, Result, Row, SyncConnection
from vertex_tui.engine.store.db import LOCK_WAIT_S, Database
from vertex_tui.engine.store.dialect import Dialect, Statement
from vertex_tui.engine.store.pgmigrate import migrate_url
from vertex_tui.engine.store.pgurl import display_url
from vertex_tui.engine.store.server_time import pinned

log = logging.getLogger(__name__)

T = TypeVar("T")

DriverError = psycopg.Error

# The migrations use SQL-standard function bodies (14), DROP DATABASE ... FORCE (13).
OLDEST_SERVER = 140000
# A session idle inside a transaction this long is ended by the server: an engine frozen
# mid-transaction (SIGSTOP, a paused VM) would otherwise keep its row locks for ever, and the
# other engines' SKIP LOCKED claims and reaper would skip those jobs until it died. No
# transaction of ours waits on anything but its own statements.
IDLE_IN_TRANSACTION_S = 60.0
# Every pooled session: the idle-in-transaction limit above, and a lock wait bounded like
# SQLite's `lock_wait`: a statement waiting longer for a lock held outside the engine (an
# operator's psql left in an open transaction, a long migration by hand) is cancelled
# (SQLSTATE 55P03) and reported as "stayed locked", instead of waiting without limit.
_SET_SESSION = ("SELECT set_config('idle_in_transaction_session_timeout', %s, false),"
                " set_config('lock_timeout', %s, false)")
LOCK_NOT_AVAILABLE = "55P03"

# Worth waiting for at start: no server yet (refused, no route, timeout, no such host yet),
# or a server that answers but cannot take us now. libpq reports connection failures
# without a SQLSTATE; what the server refuses for good ("password authentication failed",
# 'database "x" does not exist', no pg_hba.conf entry) comes as FATAL and is not retried.
_RETRY_STATES = {"57P03", "53300"}  # cannot_connect_now (starting up), too_many_connections
_RETRY_FATAL = ("starting up", "shutting down", "recovery mode", "too many clients")


def _session_settings(idle_ms: int, lock_wait: float) -> tuple[str, str]:
    """The values of `_SET_SESSION`; a lock wait is at least 1 ms (0 would mean no limit)."""
    return str(idle_ms), str(max(1, int(lock_wait * 1000)))


def _worth_waiting(exc: psycopg.OperationalError) -> bool:
    if exc.sqlstate is not None:
        return exc.sqlstate in _RETRY_STATES
    text = str(exc)
    return "FATAL" not in text or any(reason in text for reason in _RETRY_FATAL)


# ---- placeholders ---------------------------------------------------------------------------

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _skip_quoted(sql: str, i: int, quote: str, backslash: bool) -> int:
    """The index just past the quoted text starting at `sql[i]` (a doubled quote is one)."""
    j = i + 1
    n = len(sql)
    while j < n:
        c = sql[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _literal_end(sql: str, i: int) -> int:
    """If a literal, quoted name, comment or dollar-quoted text starts at `sql[i]`, the index
    just past it; else `i`."""
    c = sql[i]
    if c == "'":
        escaped = i > 0 and sql[i - 1] in "eE" and (i < 2 or not (sql[i - 2].isalnum()
                                                                 or sql[i - 2] == "_"))
        return _skip_quoted(sql, i, "'", escaped)
    if c == '"':
        return _skip_quoted(sql, i, '"', False)
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return len(sql) if end < 0 else end + 2
    if c == "$" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
        match = _DOLLAR_TAG.match(sql, i)
        if match:
            end = sql.find(match.group(0), match.end())
            return len(sql) if end < 0 else end + len(match.group(0))
    return i


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """`sql` with SQLite's placeholders (`?`, `:name`) as psycopg's (`%s`, `%(name)s`) and
    every other `%` doubled; literals, quoted names, comments and `::` casts untouched."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        end = _literal_end(sql, i)
        if end > i:
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        c = sql[i]
        if c == "?":
            out.append("%s")
        elif c == "%":
            out.append("%%")
        elif c == ":" and sql.startswith("::", i):
            out.append("::")
            i += 2
            continue
        elif c == ":" and (match := _NAME.match(sql, i + 1)):
            out.append(f"%({match.group(0)})s")
            i = match.end()
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


TestClock = Callable[[], float] | None


def _prepared(statement: Statement, params: Params | None, clock: TestClock = None
              ) -> tuple[str, Params | None]:
    """What psycopg runs: the PostgreSQL text, translated when there are parameters (without
    them psycopg sends the text as it is: no placeholder, no `%%`); with a test's `clock`,
    its time in place of the server's."""
    text = statement if isinstance(statement, str) else statement.postgresql
    if clock is not None:
        text = pinned(text, clock())
    if not params:
        return text, None
    return translate(text), params


# ---- rows and types -------------------------------------------------------------------------


class PgRow:
    """One result row: `row[0]`, `row["col"]` (as sqlite3.Row, a name also matches in
    another case), `keys()`, iteration, `len`, equality with another row."""

    __slots__ = ("_names", "_values")

    def __init__(self, values: Sequence[Any], names: dict[str, int]) -> None:
        self._values = tuple(values)
        self._names = names

    def __getitem__(self, key: int | str | slice, /) -> Any:
        if isinstance(key, str):
            index = self._names.get(key)
            if index is None:
                index = self._names.get(key.lower())
                if index is None:
                    raise IndexError(f"no such column: {key}")
            return self._values[index]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PgRow):
            return self._values == other._values and self.keys() == other.keys()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._names, self._values, strict=False))!r})"


def pg_row(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    """psycopg row factory making `PgRow`s (one name index per result)."""
    names: dict[str, int] = {}
    for index, column in enumerate(cursor.description or ()):
        names.setdefault(column.name, index)

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, names)

    return make


class _BoolAsInt(Dumper):
    """True/False go out as 1/0: the schema keeps booleans as integers on both backends."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _BoolAsInt01(Loader):
    """A boolean result (`SELECT a > b`) as 1/0, what SQLite gives (JSON shows 1, not true)."""

    def load(self, data: Any) -> int:
        return 1 if bytes(data) == b"t" else 0


class _NumericAsNumber(Loader):
    """`numeric` (what sum() of bigint gives) as int, or float when it has a fraction."""

    def load(self, data: Any) -> Any:
        text = bytes(data)
        if b"." in text or b"e" in text.lower() or text in (b"NaN", b"Infinity", b"-Infinity"):
            return float(text)
        return int(text)


ADAPTERS = AdaptersMap(psycopg.adapters)
ADAPTERS.register_dumper(bool, _BoolAsInt)
ADAPTERS.register_loader("numeric", _NumericAsNumber)
ADAPTERS.register_loader("bool", _BoolAsInt01)


# ---- errors ---------------------------------------------------------------------------------


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


class _Errors:
    """Turns driver errors into one-line `StoreError`s naming the database."""

    def __init__(self, label: str, lock_wait: float) -> None:
        self.label = label
        self.lock_wait = lock_wait

    def fail(self, exc: BaseException) -> NoReturn:
        if getattr(exc, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise StoreError(f"database {self.label} stayed locked by another session for"
                             f" {self.lock_wait:g} s") from None
        raise StoreError(f"database {self.label}: {first_line(exc)}") from None

    @contextlib.contextmanager
    def mapped(self) -> Iterator[None]:
        try:
            yield
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            self.fail(exc)


# ---- connections ----------------------------------------------------------------------------


class PgConnection:
    """`Connection` (conn.py) over a pooled psycopg connection inside `transaction()`."""

    __slots__ = ("_clock", "_conn", "_errors")

    def __init__(self, conn: psycopg.AsyncConnection[Any], errors: _Errors,
                 clock: TestClock = None) -> None:
        self._conn = conn
        self._errors = errors
        self._clock = clock

    async def execute(self, sql: Statement, params: Params = ()) -> Result:
        text, args = _prepared(sql, params, self._clock)
        with self._errors.mapped():
            cursor = await self._conn.execute(text, args)
        return Result(cursor.rowcount)

    async def execute_fetchall(self, sql: Statement, params: Params = ()) -> list[Row]:
        text, args = _prepared(sql, params, self._clock)
        with self._errors.mapped():
            cursor = await self._conn.execute(text, args)
            return await cursor.fetchall() if cursor.description is not None else []

    async def executemany(self, sql: Statement, rows: Iterable[Sequence[Any]]) -> Result:
        rows = list(rows)
        if not rows:
            return Result(0)
        text, _ = _prepared(sql, rows[0] or None, self._clock)
        with self._errors.mapped():
            async with self._conn.cursor() as cursor:
                await cursor.executemany(text, rows)
                return Result(cursor.rowcount)


class _SyncCursor:
    """What `PgSyncConnection.execute` gives back: `rowcount` and the rows (read at once)."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rowcount: int, rows: list[Any]) -> None:
        self.rowcount = rowcount
        self._rows = rows

    def fetchall(self) -> list[Any]:
        return self._rows


class PgSyncConnection:
    """`SyncConnection` (conn.py) over a sync psycopg connection, for `run_transaction`."""

    __slots__ = ("_clock", "_conn", "_errors")

    def __init__(self, conn: psycopg.Connection[Any], errors: _Errors,
                 clock: TestClock = None) -> None:
        self._conn = conn
        self._errors = errors
        self._clock = clock

    def execute(self, sql: Statement, parameters: Params = (), /) -> _SyncCursor:
        text, args = _prepared(sql, parameters, self._clock)
        with self._errors.mapped():
            cursor = self._conn.execute(text, args)
            rows = cursor.fetchall() if cursor.description is not None else []
            return _SyncCursor(cursor.rowcount, rows)


# ---- the database ---------------------------------------------------------------------------


def _heard_from_while_idle(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True if the server sent something to an idle pooled connection: what it sends before
    it closes one (a restart, a failover, pg_terminate_backend). A poll, no round trip."""
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        return True
    return bool(readable)


async def _alive_async(conn: psycopg.AsyncConnection[Any]) -> bool:
    """False for a pooled connection the server closed while it sat idle (tried with an
    empty query only when the server sent it something: a healthy one costs a poll)."""
    if not _heard_from_while_idle(conn):
        return True
    try:
        await conn.execute("")
    except psycopg.OperationalError:
        return False
    return True


def _alive_sync(conn: psycopg.Connection[Any]) -> bool:
    if not _heard_from_while_idle(conn):
        return True
    try:
        conn.execute("")
    except psycopg.OperationalError:
        return False
    return True



async def connect_with_retry(url: str, label: str, timeout: float
                             ) -> psycopg.AsyncConnection[Any]:
    """A connection to `url`, waiting with backoff (up to `timeout` s) for a server that is
    not there yet; then, or at once for other failures (bad password, no such database),
    one-line `StoreError`."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    warned = False
    while True:
        left = deadline - time.monotonic()
        try:
            return await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=max(2, min(10, int(left) + 1)),
                row_factory=pg_row, context=ADAPTERS)
        except psycopg.OperationalError as exc:
            if not _worth_waiting(exc):
                raise StoreError(f"cannot use database {label}: {first_line(exc)}") from None
            if time.monotonic() + delay >= deadline:
                raise StoreError(
                    f"cannot connect to database {label} (waited {timeout:g} s,"
                    f" VERTEX_DATABASE_CONNECT_TIMEOUT): {first_line(exc)}") from None
            if not warned:
                log.info("database %s is not reachable yet (%s); waiting up to %g s",
                         label, first_line(exc), timeout)
                warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class PgDatabase(Database):
    """An open vertex-tui database on PostgreSQL. `await PgDatabase.open(url)`; `close()`."""

    dialect: ClassVar[Dialect] = "postgresql"

    def __init__(self, url: str, pool: psycopg_pool.AsyncConnectionPool[Any],
                 pool_size: int, session: tuple[str, str], lock_wait: float) -> None:
        # No super().__init__(): none of SQLite's parts (writer, reader, lock) exist here.
        self._url = url
        self.label = display_url(url)
        self.path = self.label
        self.corrupt = False  # PostgreSQL has no "damaged file" state of ours to refuse on
        self._pool = pool
        self._pool_size = pool_size
        self._session = session  # `_SET_SESSION`'s values: the sync pool's get the async one's
        self._sync_pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._sync_lock = asyncio.Lock()
        self._errors = _Errors(self.label, lock_wait)
        self._test_clock: TestClock = None  # see use_test_clock

    @classmethod
    async def open(  # type: ignore[override]
        cls, url: str, *, connect_timeout: float = 30.0, migrate: bool = True,
        pool_size: int = 8, idle_in_transaction: float = IDLE_IN_TRANSACTION_S,
        lock_wait: float = LOCK_WAIT_S, **_: Any,
    ) -> PgDatabase:
        """Connect (waiting up to `connect_timeout` s for the server), migrate, open the pool.

        `lock_wait` bounds each statement's wait for a lock (`lock_timeout`), as it bounds
        SQLite's wait for another process's lock. SQLite's `check` means nothing here.
        """
        label = display_url(url)
        probe = await connect_with_retry(url, label, connect_timeout)
        version = probe.info.server_version
        await probe.close()
        if version < OLDEST_SERVER:
            raise StoreError(f"database {label} is PostgreSQL {version // 10000}.{version % 100}"
                             f"; vertex-tui needs {OLDEST_SERVER // 10000} or newer")
        if migrate:
            await asyncio.to_thread(migrate_url, url, label)
        session = _session_settings(int(idle_in_transaction * 1000), lock_wait)

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(_SET_SESSION, session)

        pool: psycopg_pool.AsyncConnectionPool[Any] = psycopg_pool.AsyncConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, name="vertex",
            kwargs={"autocommit": True, "row_factory": pg_row, "context": ADAPTERS},
            configure=configure, timeout=60.0)
        try:
            await pool.open(wait=True, timeout=max(5.0, connect_timeout))
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            await pool.close()
            raise StoreError(f"cannot connect to database {label}: {first_line(exc)}") from None
        return cls(url, pool, pool_size, session, lock_wait)

    def use_test_clock(self, clock: TestClock) -> None:
        """Tests only: read "now" from `clock` (a FakeClock's `time`) instead of the server's
        clock, in every statement from now on (None: the server's again). See server_time
        for why this is a seam for code and not a setting."""
        self._test_clock = clock

    async def close(self) -> None:
        await self._pool.close()
        if self._sync_pool is not None:
            await asyncio.to_thread(self._sync_pool.close)
            self._sync_pool = None

    async def migrate(self) -> int:
        """Apply pending migrations (under the advisory lock); returns the schema version."""
        return await asyncio.to_thread(migrate_url, self._url, self.label)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A live pooled connection. A server restart or failover closes every pooled one:
        each found dead goes back (the pool discards it) and the next is taken, so the
        statement gets a live connection, not an error per dead one. (The pool's own
        `check` would wait a backoff second and more between dead ones.)"""
        for _ in range(self._pool_size + 1):
            async with self._pool.connection() as conn:
                if not await _alive_async(conn):
                    continue
                yield conn
                return
        raise StoreError(f"database {self.label}: every pooled connection was closed")

    @contextlib.contextmanager
    def _sync_connection(self, pool: psycopg_pool.ConnectionPool[Any]
                         ) -> Iterator[psycopg.Connection[Any]]:
        for _ in range(self._pool_size + 1):
            with pool.connection() as conn:
                if not _alive_sync(conn):
                    continue
                yield conn
                return
        raise StoreError(f"database {self.label}: every pooled connection was closed")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgConnection]:
        """A write transaction on one pooled connection: COMMIT on success, ROLLBACK on error."""
        with self._errors.mapped():
            async with self._connection() as conn, conn.transaction():
                yield PgConnection(conn, self._errors, self._test_clock)

    async def _sync(self) -> psycopg_pool.ConnectionPool[Any]:
        async with self._sync_lock:
            if self._sync_pool is None:
                pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
                    self._url, min_size=1, max_size=max(2, self._pool_size // 2), open=False,
                    name="vertex-sync", timeout=60.0, configure=self._configure_sync,
                    kwargs={"autocommit": True, "row_factory": pg_row, "context": ADAPTERS})
                with self._errors.mapped():
                    await asyncio.to_thread(pool.open, True, 30.0)
                self._sync_pool = pool
            return self._sync_pool

    def _configure_sync(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(_SET_SESSION, self._session)

    async def run_transaction(self, fn: Callable[[SyncConnection], T]) -> T:
        """`fn(conn)` inside one transaction, on a worker thread (one hop): `fn` gets a
        `SyncConnection` and must only run SQL and compute. The transaction ends on that
        thread (COMMIT, or ROLLBACK when `fn` raised), so a cancelled caller never leaves it
        open."""
        pool = await self._sync()
        errors = self._errors
        clock = self._test_clock

        def run() -> T:
            with errors.mapped(), self._sync_connection(pool) as conn, conn.transaction():
                return fn(PgSyncConnection(conn, errors, clock))

        return await asyncio.to_thread(run)

    async def write(self, sql: Statement, params: Params = ()) -> list[Row]:
        """One statement in its own transaction (autocommit); its rows (for `RETURNING`)."""
        return await self.read(sql, params)

    async def write_many(self, sql: Statement, rows: Iterable[Sequence[Any]]) -> int:
        """`executemany` in one transaction; returns the number of rows changed."""
        async with self.transaction() as conn:
            result = await conn.executemany(sql, rows)
            return result.rowcount

    async def read(self, sql: Statement, params: Params = ()) -> list[Row]:
        """Rows of one statement, on a pooled connection in autocommit."""
        text, args = _prepared(sql, params, self._test_clock)
        with self._errors.mapped():
            async with self._connection() as conn:
                cursor = await conn.execute(text, args)
                return await cursor.fetchall() if cursor.description is not None else []

    async def read_one(self, sql: Statement, params: Params = ()) -> Row | None:
        rows = await self.read(sql, params)
        return rows[0] if rows else None
