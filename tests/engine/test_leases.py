"""Named leases on a real SQLite file: one owner at a time, taken over only once expired."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vertex_tui.engine.leases import Leases
from vertex_tui.engine.store.db import Database

NOW = 1_800_000_000.0
TTL = 30.0


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "vertex.db")
    try:
        yield database
    finally:
        await database.close()


async def _row(db: Database, name: str) -> tuple[str, float, float] | None:
    row = await db.read_one(
        "SELECT owner, acquired_at, expires_at FROM leases WHERE name = ?", (name,)
    )
    return None if row is None else (row[0], row[1], row[2])


async def test_acquire_when_free(db: Database) -> None:
    a = Leases(db, "A")
    assert await a.acquire("backup", NOW, TTL) is True
    assert await _row(db, "backup") == ("A", NOW, NOW + TTL)
    assert await a.holder("backup", NOW) == "A"


async def test_refused_while_another_owner_holds_it(db: Database) -> None:
    a, b = Leases(db, "A"), Leases(db, "B")
    assert await a.acquire("backup", NOW, TTL)
    assert await b.acquire("backup", NOW + 1, TTL) is False
    assert await b.acquire("backup", NOW + TTL - 0.001, TTL) is False
    assert await _row(db, "backup") == ("A", NOW, NOW + TTL)
    assert await b.holder("backup", NOW + 1) == "A"


async def test_taken_over_once_expired(db: Database) -> None:
    a, b = Leases(db, "A"), Leases(db, "B")
    assert await a.acquire("backup", NOW, TTL)
    assert await a.holder("backup", NOW + TTL) is None  # expired at its expiry
    assert await b.acquire("backup", NOW + TTL, TTL) is True
    assert await _row(db, "backup") == ("B", NOW + TTL, NOW + 2 * TTL)
    # The old owner cannot come back while B holds it.
    assert await a.acquire("backup", NOW + TTL + 1, TTL) is False
    assert await a.holder("backup", NOW + TTL + 1) == "B"


async def test_renew_by_owner_extends_and_keeps_acquired_at(db: Database) -> None:
    a = Leases(db, "A")
    assert await a.acquire("lifecycle", NOW, TTL)
    assert await a.acquire("lifecycle", NOW + 20, TTL) is True
    assert await _row(db, "lifecycle") == ("A", NOW, NOW + 20 + TTL)
    # Renewing after its own lease expired (nobody took it) also works.
    assert await a.acquire("lifecycle", NOW + 200, TTL) is True
    assert (await _row(db, "lifecycle"))[0] == "A"  # type: ignore[index]


async def test_release_only_by_owner(db: Database) -> None:
    a, b = Leases(db, "A"), Leases(db, "B")
    assert await a.acquire("video", NOW, TTL)
    await b.release("video")
    assert await _row(db, "video") == ("A", NOW, NOW + TTL)
    assert await b.acquire("video", NOW + 1, TTL) is False
    await a.release("video")
    assert await _row(db, "video") is None
    assert await b.acquire("video", NOW + 1, TTL) is True
    assert await b.holder("video", NOW + 1) == "B"


async def test_release_all_drops_only_our_leases(db: Database) -> None:
    a, b = Leases(db, "A"), Leases(db, "B")
    for name in ("one", "two"):
        assert await a.acquire(name, NOW, TTL)
    assert await b.acquire("three", NOW, TTL)
    await a.release_all()
    rows = await db.read("SELECT name, owner FROM leases ORDER BY name")
    assert [tuple(r) for r in rows] == [("three", "B")]


async def test_leases_are_independent_by_name(db: Database) -> None:
    a, b = Leases(db, "A"), Leases(db, "B")
    assert await a.acquire("backup", NOW, TTL)
    assert await b.acquire("lifecycle", NOW, TTL)
    assert await a.holder("backup", NOW) == "A"
    assert await a.holder("lifecycle", NOW) == "B"
    assert await a.holder("nothing", NOW) is None


async def test_alive_engines_lists_unexpired_heartbeats_only(db: Database) -> None:
    a, b, c = Leases(db, "A"), Leases(db, "B"), Leases(db, "C")
    assert await a.acquire("engine:A", NOW, TTL)
    assert await b.acquire("engine:B", NOW - 100, TTL)  # stale heartbeat
    assert await c.acquire("engine:C", NOW, 5)
    assert await c.acquire("backup", NOW, TTL)  # not a heartbeat
    assert sorted(await a.alive_engines(NOW)) == ["A", "C"]
    assert sorted(await a.alive_engines(NOW + 10)) == ["A"]
    assert await a.alive_engines(NOW + TTL) == []


async def test_racing_owners_only_one_wins(db: Database) -> None:
    contenders = [Leases(db, f"owner-{i}") for i in range(8)]
    results = await asyncio.gather(*(c.acquire("rotation", NOW, TTL) for c in contenders))
    assert sum(results) == 1
    winner = contenders[results.index(True)].owner
    assert await contenders[0].holder("rotation", NOW) == winner


async def test_two_databases_on_one_file_share_leases(tmp_path: Path) -> None:
    """Two engine processes are two connections on one file: the lease is shared."""
    path = tmp_path / "shared.db"
    first, second = await Database.open(path), await Database.open(path)
    try:
        a, b = Leases(first, "A"), Leases(second, "B")
        assert await a.acquire("backup", NOW, TTL)
        assert await b.acquire("backup", NOW + 1, TTL) is False
        assert await b.holder("backup", NOW + 1) == "A"
        assert await b.acquire("backup", NOW + TTL + 1, TTL) is True
        assert await a.holder("backup", NOW + TTL + 1) == "B"
    finally:
        await first.close()
        await second.close()
