"""Named leases on a real SQLite file and a real PostgreSQL database (each test runs on
both): one owner at a time, taken over only once expired.

Time differs by backend: on SQLite a lease expires by the caller's clock (`now`, a fake
clock here); on PostgreSQL by the database server's clock whatever `now` says (hosts'
clocks disagree), so there `Timeline.advance` ages the leases instead of moving `now`."""

from __future__ import annotations

import asyncio

import pytest

from vertex_tui.engine.leases import Leases
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.db import Database

NOW = 1_800_000_000.0
TTL = 30.0


class Timeline:
    """`now` for the callers, moved by `advance` (which ages every lease on PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = NOW

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        await self.age(seconds)

    async def age(self, seconds: float, name: str | None = None) -> None:
        """As if `seconds` had passed on the server for the leases (or the one `name`)."""
        if self.db.dialect == "postgresql":
            await self.db.write(
                "UPDATE leases SET acquired_at = acquired_at - ?, expires_at = expires_at - ?"
                + (" WHERE name = ?" if name else ""),
                (seconds, seconds, *([name] if name else [])))


@pytest.fixture
def db(backend_db: Database) -> Database:
    return backend_db


@pytest.fixture
def t(db: Database) -> Timeline:
    return Timeline(db)


async def _shape(db: Database, name: str) -> tuple[str, float] | None:
    """(owner, seconds from acquisition to expiry) of lease `name`."""
    row = await db.read_one(
        "SELECT owner, acquired_at, expires_at FROM leases WHERE name = ?", (name,))
    return None if row is None else (row[0], pytest.approx(row[2] - row[1], abs=0.5))


async def test_acquire_when_free(db: Database, t: Timeline) -> None:
    a = Leases(db, "A")
    assert await a.acquire("backup", t.now, TTL) is True
    assert await _shape(db, "backup") == ("A", TTL)
    assert await a.holder("backup", t.now) == "A"
    if db.dialect == "sqlite":  # SQLite stores the caller's times as given
        row = await db.read_one("SELECT acquired_at, expires_at FROM leases")
        assert row is not None and tuple(row) == (NOW, NOW + TTL)


async def test_refused_while_another_owner_holds_it(db: Database, t: Timeline) -> None:
    a, b = Leases(db, "A"), Leases(db, "B")
    assert await a.acquire("backup", t.now, TTL)
    await t.advance(1)
    assert await b.acquire("backup", t.now, TTL) is False
    await t.advance(TTL - 2)
    assert await b.acquire("backup", t.now, TTL) is False
    assert await _shape(db, "backup") == ("A", TTL)
    assert await b.holder("backup", t.now) == "A"


async def test_taken_over_once_expired(db: Database, t: Timeline) -> None:
    a, b = Leases(db, "A"), Leases(db, "B")
    assert await a.acquire("backup", t.now, TTL)
    await t.advance(TTL)
    assert await a.holder("backup", t.now) is None  # expired at its expiry
    assert await b.acquire("backup", t.now, TTL) is True
    assert await _shape(db, "backup") == ("B", TTL)
    # The old owner cannot come back while B holds it.
    await t.advance(1)
    assert await a.acquire("backup", t.now, TTL) is False
    assert await a.holder("backup", t.now) == "B"


async def test_renew_by_owner_extends_and_keeps_acquired_at(db: Database, t: Timeline) -> None:
    a = Leases(db, "A")
    assert await a.acquire("lifecycle", t.now, TTL)
    await t.advance(20)
    assert await a.acquire("lifecycle", t.now, TTL) is True
    assert await _shape(db, "lifecycle") == ("A", 20 + TTL)
    # Renewing after its own lease expired (nobody took it) also works.
    await t.advance(200)
    assert await a.acquire("lifecycle", t.now, TTL) is True
    assert (await _shape(db, "lifecycle"))[0] == "A"  # type: ignore[index]


async def test_release_only_by_owner(db: Database, t: Timeline) -> None:
    a, b = Leases(db, "A"), Leases(db, "B")
    assert await a.acquire("video", t.now, TTL)
    await b.release("video")
    assert await _shape(db, "video") == ("A", TTL)
    assert await b.acquire("video", t.now + 1, TTL) is False
    await a.release("video")
    assert await _shape(db, "video") is None
    assert await b.acquire("video", t.now + 1, TTL) is True
    assert await b.holder("video", t.now + 1) == "B"


async def test_release_all_drops_only_our_leases(db: Database, t: Timeline) -> None:
    a, b = Leases(db, "A"), Leases(db, "B")
    for name in ("one", "two"):
        assert await a.acquire(name, t.now, TTL)
    assert await b.acquire("three", t.now, TTL)
    await a.release_all()
    rows = await db.read("SELECT name, owner FROM leases ORDER BY name")
    assert [tuple(r) for r in rows] == [("three", "B")]


async def test_leases_are_independent_by_name(db: Database, t: Timeline) -> None:
    a, b = Leases(db, "A"), Leases(db, "B")
    assert await a.acquire("backup", t.now, TTL)
    assert await b.acquire("lifecycle", t.now, TTL)
    assert await a.holder("backup", t.now) == "A"
    assert await a.holder("lifecycle", t.now) == "B"
    assert await a.holder("nothing", t.now) is None


async def test_alive_engines_lists_unexpired_heartbeats_only(db: Database, t: Timeline) -> None:
    a, b, c = Leases(db, "A"), Leases(db, "B"), Leases(db, "C")
    assert await a.acquire("engine:A", t.now, TTL)
    assert await b.acquire("engine:B", t.now - 100, TTL)  # stale heartbeat:
    await t.age(100, "engine:B")  # beaten 100 s ago
    assert await c.acquire("engine:C", t.now, 5)
    assert await c.acquire("backup", t.now, TTL)  # not a heartbeat
    assert sorted(await a.alive_engines(t.now)) == ["A", "C"]
    await t.advance(10)
    assert sorted(await a.alive_engines(t.now)) == ["A"]
    await t.advance(TTL - 10)
    assert await a.alive_engines(t.now) == []


async def test_racing_owners_only_one_wins(db: Database, t: Timeline) -> None:
    contenders = [Leases(db, f"owner-{i}") for i in range(8)]
    results = await asyncio.gather(*(c.acquire("rotation", t.now, TTL) for c in contenders))
    assert sum(results) == 1
    winner = contenders[results.index(True)].owner
    assert await contenders[0].holder("rotation", t.now) == winner


async def test_two_databases_on_one_file_share_leases(backend_settings: Settings) -> None:
    """Two engine processes are two connections on one database: the lease is shared."""
    first, second = await open_database(backend_settings), await open_database(backend_settings)
    t = Timeline(first)
    try:
        a, b = Leases(first, "A"), Leases(second, "B")
        assert await a.acquire("backup", t.now, TTL)
        await t.advance(1)
        assert await b.acquire("backup", t.now, TTL) is False
        assert await b.holder("backup", t.now) == "A"
        await t.advance(TTL)
        assert await b.acquire("backup", t.now, TTL) is True
        assert await a.holder("backup", t.now) == "B"
    finally:
        await first.close()
        await second.close()
