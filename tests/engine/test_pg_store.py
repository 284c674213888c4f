"""The PostgreSQL `Database` (store/pg.py) against a real server: the same calls as SQLite's."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from vertex_tui.engine.errors import StoreError
from vertex_tui.engine.store import pgmigrate
from vertex_tui.engine.store.conn import SyncConnection
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.dialect import Sql
from vertex_tui.engine.store.pg import PgDatabase, PgRow, translate
from vertex_tui.engine.store.pgurl import with_database
from vertex_tui.testing.pgserver import PgServer

# ---- placeholders (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(("sqlite", "psycopg_text"), [
    ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
    ("UPDATE t SET a = :a WHERE id = :id", "UPDATE t SET a = %(a)s WHERE id = %(id)s"),
    ("SELECT ?::bigint, x::text FROM t", "SELECT %s::bigint, x::text FROM t"),
    ("SELECT '?', 'a:b', ':name' FROM t WHERE c = ?",
     "SELECT '?', 'a:b', ':name' FROM t WHERE c = %s"),
    ("SELECT 'it''s ?' , ?", "SELECT 'it''s ?' , %s"),
    ("SELECT \"we?ird:col\" FROM t WHERE a = ?", "SELECT \"we?ird:col\" FROM t WHERE a = %s"),
    ("SELECT * FROM t WHERE s LIKE 'a%' AND n % 2 = ?",
     "SELECT * FROM t WHERE s LIKE 'a%%' AND n %% 2 = %s"),
    ("SELECT 1 -- what? :no\nFROM t WHERE a = ?", "SELECT 1 -- what? :no\nFROM t WHERE a = %s"),
    ("SELECT /* ? :x */ a FROM t WHERE b = :b", "SELECT /* ? :x */ a FROM t WHERE b = %(b)s"),
    ("SELECT $$ ? :x $$, $q$it's ?$q$, ?", "SELECT $$ ? :x $$, $q$it's ?$q$, %s"),
    ("SELECT E'a\\'?' , ?", "SELECT E'a\\'?' , %s"),
    ("SELECT arr[1:2] FROM t WHERE a = ?", "SELECT arr[1:2] FROM t WHERE a = %s"),
    ("SELECT 1", "SELECT 1"),
])
def test_placeholders_become_psycopg_ones_outside_literals(sqlite: str, psycopg_text: str) -> None:
    assert translate(sqlite) == psycopg_text


# ---- a database per test ---------------------------------------------------------------------


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[PgDatabase]:
    database = await PgDatabase.open(pg_url)
    yield database
    await database.close()


def test_pg_database_overrides_every_public_member_of_database() -> None:
    """PgDatabase subclasses the SQLite Database for the type only: nothing SQLite-specific
    may be inherited, so a member added to Database fails here until PostgreSQL has it."""
    public = {name for name in vars(Database) if not name.startswith("_")}
    assert {"read", "write", "transaction", "run_transaction", "migrate", "open"} <= public
    inherited = {name for name in public - {"dialect"}
                 if name not in vars(PgDatabase) and not isinstance(vars(Database)[name], property)}
    assert inherited == set()
    assert (Database.dialect, PgDatabase.dialect) == ("sqlite", "postgresql")
    for name in ("read", "read_one", "write", "write_many"):
        ours, theirs = inspect.signature(getattr(PgDatabase, name)), inspect.signature(
            getattr(Database, name))
        assert list(ours.parameters) == list(theirs.parameters), name


async def test_read_write_and_rows_like_sqlite(db: PgDatabase) -> None:
    rows = await db.write(
        "INSERT INTO engine_flags (name, value, updated_at) VALUES (?, ?, ?) RETURNING *",
        ("paused", "1", 1_700_000_000.25))
    row = rows[0]
    assert isinstance(row, PgRow)
    assert row[0] == row["name"] == row["NAME"] == "paused"
    assert row.keys() == ["name", "value", "updated_at"]
    assert list(row) == ["paused", "1", 1_700_000_000.25] and len(row) == 3
    assert dict(row) == {"name": "paused", "value": "1", "updated_at": 1_700_000_000.25}
    assert row[1:] == ("1", 1_700_000_000.25)
    with pytest.raises(IndexError):
        row["nope"]
    found = await db.read_one("SELECT value FROM engine_flags WHERE name = :name",
                              {"name": "paused"})
    assert found is not None and found["value"] == "1"
    assert await db.read_one("SELECT value FROM engine_flags WHERE name = ?", ("x",)) is None
    assert await db.write("DELETE FROM engine_flags WHERE name = ?", ("nothing",)) == []
    assert db.path == db.path.replace("********", "") and db.path.startswith("postgresql://")


async def test_types_come_back_as_sqlite_gives_them(db: PgDatabase) -> None:
    """Booleans go in as 0/1; sums of bigint come back as int, epoch times as float (no
    float4 rounding), sizes past 2 GiB and dates past 2038 intact."""
    await db.write("INSERT INTO backups (kind, status, size, started_at, verified, owner)"
                   " VALUES (?, ?, ?, ?, ?, ?)",
                   ("database", "ok", 5 * 2**30, 4_102_444_800.123456, True, "t"))
    row = await db.read_one("SELECT size, started_at, verified, sum(size) OVER () AS total,"
                            " avg(size) OVER () AS mean FROM backups")
    assert row is not None
    assert row["size"] == 5 * 2**30 and row["started_at"] == 4_102_444_800.123456
    assert row["verified"] == 1 and type(row["verified"]) is int
    assert row["total"] == 5 * 2**30 and type(row["total"]) is int
    assert row["mean"] == 5 * 2**30
    flags = await db.read_one("SELECT 2 > 1 AS yes, 1 > 2 AS no, NULL::boolean AS unknown")
    assert flags is not None and list(flags) == [1, 0, None] and type(flags[0]) is int
    stats = await db.read("SELECT sum(n) FROM email_status_counts")
    assert stats[0][0] == 0 and type(stats[0][0]) is int


async def test_transaction_commits_or_rolls_back(db: PgDatabase) -> None:
    insert = "INSERT INTO audit_log (at, actor, action) VALUES (?, ?, ?)"
    async with db.transaction() as conn:
        result = await conn.execute(insert, (1.0, "t", "kept"))
        assert result.rowcount == 1 and result.lastrowid is None  # ids: use RETURNING
        back = await conn.execute_fetchall(f"{insert} RETURNING id, action", (2.0, "t", "also"))
        assert back[0]["action"] == "also"
        many = await conn.executemany(insert, [(3.0, "t", f"m{i}") for i in range(4)])
        assert many.rowcount == 4
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute(insert, (9.0, "t", "lost"))
            raise RuntimeError("boom")
    actions = [r[0] for r in await db.read("SELECT action FROM audit_log ORDER BY at")]
    assert actions == ["kept", "also", "m0", "m1", "m2", "m3"]
    assert await db.write_many(insert, [(10.0, "t", "w1"), (11.0, "t", "w2")]) == 2
    assert await db.write_many(insert, []) == 0


async def test_run_transaction_is_one_transaction_on_a_thread(db: PgDatabase) -> None:
    def work(conn: SyncConnection) -> list[int]:
        ids = [conn.execute("INSERT INTO audit_log (at, actor, action) VALUES (?, 't', ?)"
                            " RETURNING id", (float(i), f"a{i}")).fetchall()[0][0]
               for i in range(3)]
        updated = conn.execute("UPDATE audit_log SET actor = :who WHERE id = ANY(:ids)",
                               {"who": "u", "ids": ids})
        assert updated.rowcount == 3
        assert conn.execute("UPDATE audit_log SET actor = 'x' WHERE id < 0").fetchall() == []
        return ids

    ids = await db.run_transaction(work)
    assert len(ids) == 3
    assert [r[0] for r in await db.read("SELECT actor FROM audit_log")] == ["u"] * 3

    def fails(conn: SyncConnection) -> None:
        conn.execute("DELETE FROM audit_log")
        raise ValueError("rolled back")

    with pytest.raises(ValueError, match="rolled back"):
        await db.run_transaction(fails)
    assert len(await db.read("SELECT id FROM audit_log")) == 3


async def test_sql_statements_pick_their_dialect(db: PgDatabase) -> None:
    both = Sql("test.pg_store.pick", sqlite="SELECT 'sqlite' AS d",
               postgresql="SELECT 'postgresql'::text AS d, ?::int AS n")
    assert (await db.read(both, (7,)))[0][:] == ("postgresql", 7)
    async with db.transaction() as conn:
        assert (await conn.execute_fetchall(both, (8,)))[0]["n"] == 8
    assert await db.run_transaction(lambda c: c.execute(both, (9,)).fetchall()[0][1]) == 9


async def test_driver_errors_are_one_line_store_errors(db: PgDatabase) -> None:
    with pytest.raises(StoreError) as caught:
        await db.read("SELECT nope FROM engine_flags WHERE name = ?", ("x",))
    message = str(caught.value)
    assert message.count("\n") == 0 and 'column "nope" does not exist' in message
    assert str(caught.value).startswith(f"database {db.path}: ")
    with pytest.raises(StoreError, match="duplicate key"):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO leases VALUES ('a', 'o', 0, 1)")
            await conn.execute("INSERT INTO leases VALUES ('a', 'o', 0, 1)")
    assert await db.read("SELECT * FROM leases") == []  # the first insert was rolled back
    with pytest.raises(StoreError, match="syntax error"):
        await db.run_transaction(lambda c: c.execute("SELEC 1"))


# ---- opening: unreachable servers, bad credentials, migrations ---------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_server_is_waited_for_then_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql://vertex:hunter2-secret@127.0.0.1:{_closed_port()}/vertex"
    with caplog.at_level(logging.INFO), pytest.raises(StoreError) as caught:
        await PgDatabase.open(url, connect_timeout=0.6)
    message = str(caught.value)
    assert "\n" not in message and "hunter2" not in message
    assert "cannot connect to database postgresql://vertex:********@127.0.0.1" in message
    assert "waited 0.6 s" in message and "VERTEX_DATABASE_CONNECT_TIMEOUT" in message
    assert "not reachable yet" in caplog.text and "hunter2" not in caplog.text


@contextlib.contextmanager
def late_proxy(target_port: int, delay: float) -> Iterator[int]:
    """A loopback port that refuses connections for `delay` s, then forwards to the server
    (a PostgreSQL that is still starting, as seen by an engine started at the same time)."""
    import threading

    port = _closed_port()
    stop = threading.Event()
    opened: list[socket.socket] = []

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        if stop.wait(delay):
            return
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(0.1)
            while not stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(("127.0.0.1", target_port))
                opened.extend((client, upstream))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


async def test_a_server_that_comes_up_during_the_wait_is_used(pg_server: PgServer,
                                                              pg_url: str) -> None:
    assert pg_server.port is not None
    with late_proxy(pg_server.port, delay=0.8) as port:
        url = pg_url.replace(f":{pg_server.port}/", f":{port}/")
        with pytest.raises(psycopg.OperationalError):  # nothing there yet
            psycopg.connect(url, connect_timeout=2).close()
        db = await PgDatabase.open(url, connect_timeout=30)
        try:
            assert (await db.read("SELECT 1 AS one"))[0]["one"] == 1
        finally:
            await db.close()


async def test_a_missing_database_fails_at_once_with_one_line(pg_server: PgServer) -> None:
    url = with_database(pg_server.admin_url, "vt_no_such_database")
    with pytest.raises(StoreError) as caught:
        await PgDatabase.open(url, connect_timeout=60)  # not retried: no 60 s wait
    assert 'database "vt_no_such_database" does not exist' in str(caught.value)
    assert "\n" not in str(caught.value)


async def _versions(url: str) -> list[Any]:
    db = await PgDatabase.open(url, migrate=False)
    try:
        return [r[0] for r in await db.read("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        await db.close()


async def test_two_engines_starting_at_once_apply_each_migration_once(
        pg_server: PgServer) -> None:
    """Without the advisory lock the second CREATE TABLE of the same migration fails
    ("relation already exists") and one of the opens raises."""
    url = pg_server.database(migrated=False)
    try:
        opened = await asyncio.gather(*(PgDatabase.open(url) for _ in range(3)))
        for db in opened:
            await db.close()
        assert await _versions(url) == [n for n, _, _ in pgmigrate.load_migrations()]
    finally:
        pg_server.drop(url)


async def test_a_schema_newer_than_this_release_is_refused(pg_url: str) -> None:
    db = await PgDatabase.open(pg_url)
    try:
        await db.write("INSERT INTO schema_migrations VALUES (?, ?, ?)", (99, "0099_future.sql", 0))
        with pytest.raises(StoreError, match="schema version 99, newer than this vertex-tui"):
            await db.migrate()
    finally:
        await db.close()
    with pytest.raises(StoreError, match="newer than this vertex-tui knows"):
        await PgDatabase.open(pg_url)


async def test_a_cancelled_transaction_commits_nothing_and_frees_its_connection(
        pg_url: str) -> None:
    db = await PgDatabase.open(pg_url, pool_size=1)  # one connection: a leak would hang
    try:
        inside = asyncio.Event()

        async def slow() -> None:
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO leases VALUES ('x', 'o', 0, 1)")
                inside.set()
                await conn.execute("SELECT pg_sleep(30)")

        task = asyncio.create_task(slow())
        await inside.wait()
        await asyncio.sleep(0.1)  # in the sleep, on the server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(db.read("SELECT * FROM leases"), 10) == []
    finally:
        await db.close()


async def test_the_pool_size_setting_bounds_the_connections(pg_url: str, tmp_path: Any) -> None:
    from vertex_tui.engine.settings import DatabaseUrl, Settings
    from vertex_tui.engine.store.backend import open_database

    settings = Settings(database_url=DatabaseUrl(pg_url), database_pool_size=3,
                        db_path=tmp_path / "unused.db")
    db = await open_database(settings)
    try:
        await asyncio.gather(*(db.read("SELECT pg_sleep(0.2)") for _ in range(8)))
        with psycopg.connect(pg_url) as conn:
            others = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                                  " current_database() AND pid <> pg_backend_pid()").fetchone()
        assert others == (3,)
    finally:
        await db.close()
    assert not (tmp_path / "unused.db").exists()


async def test_connections_the_server_closed_are_replaced_without_an_error(
        pg_url: str, wait_for: Any) -> None:
    """A server restart or failover closes every pooled connection; the next statements get
    live ones (the pool's checkout check), not one error per dead connection."""
    db = await PgDatabase.open(pg_url, pool_size=4)
    try:
        await asyncio.gather(*(db.read("SELECT pg_sleep(0.05)") for _ in range(4)))
        await db.run_transaction(lambda c: c.execute("SELECT 1").fetchall())
        with psycopg.connect(pg_url, autocommit=True) as admin:
            others = ("FROM pg_stat_activity WHERE datname = current_database()"
                      " AND pid <> pg_backend_pid()")
            assert admin.execute(f"SELECT count(pg_terminate_backend(pid)) {others}"
                                 ).fetchone() == (5,)  # 4 async + 1 sync connection

            def gone() -> bool:
                return admin.execute(f"SELECT count(*) {others}").fetchone() == (0,)

            await wait_for(gone, message="the terminated backends to exit")
        for _ in range(6):
            assert (await db.read("SELECT 1 AS one"))[0]["one"] == 1
        for _ in range(3):
            assert await db.run_transaction(lambda c: c.execute("SELECT 2").fetchall()[0][0]) == 2
    finally:
        await db.close()


async def test_a_server_older_than_needed_is_refused_in_one_line(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vertex_tui.engine.store import pg

    monkeypatch.setattr(pg, "OLDEST_SERVER", 990000)  # as if the real 15 were too old
    with pytest.raises(StoreError) as caught:
        await PgDatabase.open(pg_url)
    assert "is PostgreSQL 15." in str(caught.value) and "needs 99 or newer" in str(caught.value)


async def test_a_session_frozen_inside_a_transaction_loses_its_locks(pg_url: str) -> None:
    """An engine stopped mid-transaction (SIGSTOP, a paused VM) must not keep its row locks
    for ever: the server ends the idle transaction and another session can lock the row."""
    db = await PgDatabase.open(pg_url, idle_in_transaction=1.0)
    try:
        await db.write("CREATE TABLE frozen (id bigint PRIMARY KEY, v text)")
        await db.write("INSERT INTO frozen VALUES (1, 'a')")
        with pytest.raises(StoreError):  # its next statement finds the session ended
            async with db.transaction() as conn:
                await conn.execute("SELECT v FROM frozen WHERE id = 1 FOR UPDATE")
                # Another session cannot take the row while the transaction is alive...
                with psycopg.connect(pg_url, autocommit=True) as other:
                    with pytest.raises(psycopg.errors.LockNotAvailable):
                        other.execute("SELECT v FROM frozen WHERE id = 1 FOR UPDATE NOWAIT")
                    # ...and can once the server has ended it for idling (1 s here).
                    for _ in range(100):
                        await asyncio.sleep(0.1)
                        try:
                            with other.transaction():
                                other.execute(
                                    "SELECT v FROM frozen WHERE id = 1 FOR UPDATE NOWAIT")
                            break
                        except psycopg.errors.LockNotAvailable:
                            continue
                    else:
                        raise AssertionError("the idle transaction kept its lock for 10 s")
                await conn.execute("UPDATE frozen SET v = 'b' WHERE id = 1")
        # Nothing the frozen transaction did was committed, and the pool serves on.
        assert [tuple(r) for r in await db.read("SELECT v FROM frozen")] == [("a",)]
    finally:
        await db.close()
