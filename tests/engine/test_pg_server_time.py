"""Engines on hosts whose clocks disagree share one timeline on PostgreSQL: the server's.

Skewed hosts are engines with a system clock an hour off (a real clock, shifted); the server
is real. Every time an engine passes to the store (`now`, lease and retry expiries) is then
the server's: a console's request is not stale to an engine an hour ahead, a live lease is not
expired to it. On its own clock (the control) the request looks an hour old and is dropped.

A test's FakeClock stands in for the server's clock (`use_test_clock`), exactly, in every
statement and only when code hands one over: a skewed system clock never does."""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.db import query

from vertex_tui.engine import store as store_package
from vertex_tui.engine.clock import FakeClock, ServerClock, SystemClock
from vertex_tui.engine.engine import HEARTBEAT_TTL, Engine
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.settings import DatabaseUrl, Settings
from vertex_tui.engine.store import email, leases, requests, server_time
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.pg import PgDatabase
from vertex_tui.engine.store.server_time import NOW, clock_offset, offset_of

HOUR = 3600.0


class SkewedClock(SystemClock):
    """This host's clock, `skew` seconds off the true time."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew


@pytest.mark.parametrize(("samples", "offset"), [
    ([(10.0, 20.0, 12.0)], 9.0),                      # server 20 at local 11
    ([(10.0, 20.0, 16.0), (20.0, 25.5, 21.0)], 5.0),  # the shortest trip wins
    ([(100.0, 40.0, 100.0)], -60.0),                  # the server is behind
])
def test_the_offset_comes_from_the_shortest_round_trip(
        samples: list[tuple[float, float, float]], offset: float) -> None:
    assert offset_of(samples) == offset


async def test_the_offset_measures_a_skewed_local_clock(backend_db: Database) -> None:
    offset = await clock_offset(backend_db, SkewedClock(-HOUR).time)
    assert HOUR - 60 < offset < HOUR + 60  # the server is an hour ahead of that clock


async def test_a_skewed_engine_works_on_the_servers_time(
        backend_settings_factory: Callable[..., Settings], backend: str) -> None:
    settings = backend_settings_factory()
    console_db = await open_database(settings)  # a console on a host with a true clock
    try:
        assert await Leases(console_db, "holder").acquire("video", time.time(), 60)
        ahead = SkewedClock(+HOUR)
        first = await requests.submit(console_db, action="video.check", args={}, actor="op",
                                      at=time.time())
        # The control: on its own clock the engine finds the fresh request an hour old.
        assert await requests.pick(console_db, owner="skewed", at=ahead.time()) == []
        async with Engine(settings, clock=ahead, run=[]) as engine:
            if backend == "sqlite":  # one host: its own clock, as before
                assert engine.clock is ahead
                return
            assert isinstance(engine.clock, ServerClock) and engine.clock.base is ahead
            # A skewed system clock never stands in for the server's (only a FakeClock does).
            [(server_now,)] = await engine.db.read(NOW)
            assert abs(server_now - time.time()) < 60
            assert abs(engine.clock.time() - time.time()) < 60
            picked = await requests.pick(engine.db, owner=engine.owner, at=engine.clock.time())
            assert [r.id for r in picked] == [first]
            assert not await engine.leases.acquire("video", engine.clock.time(), 60)
            assert await engine.leases.live_holder("video", engine.clock.time()) == "holder"
    finally:
        await console_db.close()


async def test_a_host_whose_clock_runs_ahead_still_sees_a_live_engine_alive(
        settings_factory: Callable[..., Settings], pg_url: str) -> None:
    settings = settings_factory(database_url=DatabaseUrl(pg_url))
    skew = HEARTBEAT_TTL + 60
    async with Engine(settings, run=["email"]) as live, \
            Engine(settings, clock=SkewedClock(skew), run=[]) as ahead:
        # The control: on that host's own clock the live heartbeat has long expired.
        [(expires,)] = query(pg_url, "SELECT expires_at FROM leases WHERE name = ?",
                             (live.heartbeat_name,))
        assert expires < time.time() + skew - 30
        assert live.owner in [e["owner"] for e in (await ahead.status())["engines"]]


def job_row(at: float) -> tuple[object, ...]:
    return ("<pin@t>", "s@t", '["p@t"]', "p@t", "pin", "b", None, "{}", 1, at, at, at)


async def test_a_fake_clock_stands_in_for_the_servers_in_every_statement(pg_url: str) -> None:
    """Exactly its time (to the last bit) in reads, autocommit writes and transactions,
    moving when it moves; handed back, the server's clock again."""
    clock = FakeClock(start=1_800_000_000.0)
    db = await PgDatabase.open(pg_url, migrate=False, pool_size=2)
    try:
        db.use_test_clock(clock.time)
        assert [tuple(r) for r in await db.read(NOW)] == [(clock.time(),)]
        [job_id] = await email.insert_jobs(db, [job_row(clock.time() + 5)])  # a transaction
        # A new job is due at the earlier of its own time and the (fake) server's.
        assert query(pg_url, "SELECT next_attempt_at FROM email_jobs") == [(clock.time(),)]
        clock.advance(0.1)  # not a whole microsecond count in binary: still exact
        now = clock.time()
        [job] = await email.claim(db, owner="w", now=now, lease_until=now + 60, limit=1)
        assert query(pg_url, "SELECT lease_expires_at FROM email_jobs") == [(now + 60,)]
        assert await leases.acquire(db, "pin", "w", now, now + 30)
        assert query(pg_url, "SELECT acquired_at, expires_at FROM leases WHERE name = 'pin'"
                     ) == [(now, now + 30)]
        assert await leases.holder(db, "pin", now) == "w"
        clock.advance(59)
        assert await email.reap_expired(db, clock.time()) == 0
        assert await leases.holder(db, "pin", clock.time()) is None  # its 30 s are over
        clock.advance(1)
        assert await email.reap_expired(db, clock.time()) == 1
        db.use_test_clock(None)
        [(server_now,)] = await db.read(NOW)
        assert abs(server_now - time.time()) < 60
    finally:
        await db.close()
    assert job.id == job_id


async def test_only_a_fake_clock_is_handed_to_the_database(
        settings_factory: Callable[..., Settings], pg_url: str) -> None:
    settings = settings_factory(database_url=DatabaseUrl(pg_url))
    fake = FakeClock(start=1_000_000_000.0)
    async with Engine(settings, clock=fake, run=[]) as engine:
        assert engine.clock is fake
        assert [tuple(r) for r in await engine.db.read(NOW)] == [(fake.time(),)]
    async with Engine(settings, run=[]) as engine:  # the system clock: the server's time
        [(server_now,)] = await engine.db.read(NOW)
        assert abs(server_now - time.time()) < 60


def test_no_host_hands_the_database_a_test_clock() -> None:
    """Nothing a deployment runs (CLI, console, demo, services) makes a FakeClock or hands
    a clock to the database: only `Engine` does, for the FakeClock a test gave it. (Settings
    have no such field; the scan looked: it finds the Engine's call.)"""
    package = Path(store_package.__file__).parents[2]  # vertex_tui/
    calls = sorted(
        (path.relative_to(package).as_posix(), hit)
        for path in package.rglob("*.py")
        for hit in re.findall(r"(?<!def )use_test_clock\(|FakeClock\(", path.read_text()))
    assert calls == [("engine/engine.py", "use_test_clock(")]


# The server's time, however a statement could spell it (PostgreSQL and SQL standard).
SERVER_TIME = re.compile(
    r"\b(now|statement_timestamp|clock_timestamp|transaction_timestamp|timeofday)\s*\(\s*\)"
    r"|\b(current_timestamp|current_time|current_date|localtimestamp|localtime)\b", re.I)


def sql_strings(path: Path) -> list[str]:
    """The string constants of a module, docstrings left out (they are prose, not SQL)."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                          | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr)}
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docs]


def test_the_store_reads_the_servers_time_only_where_a_fake_clock_can_stand_in() -> None:
    """Every statement of the store and every PostgreSQL migration: the server's time only
    as `server_time.STATEMENT_NOW` / `CLOCK_NOW` (what a fake clock replaces); any other
    spelling would run on the server's clock under a test's fake one."""
    root = Path(store_package.__file__).parent
    found = [(path.name, m.group(0)) for path in sorted(root.rglob("*.py"))
             for text in sql_strings(path) for m in SERVER_TIME.finditer(text)]
    found += [(path.name, m.group(0)) for path in sorted(root.rglob("postgresql/*.sql"))
              for m in SERVER_TIME.finditer(path.read_text())]
    # The two definitions themselves are all there is (the scan did look: it finds them).
    assert found == [("server_time.py", "statement_timestamp()"),
                     ("server_time.py", "clock_timestamp()")]
    assert set(server_time.SERVER_TIMES) == {server_time.STATEMENT_NOW, server_time.CLOCK_NOW}
