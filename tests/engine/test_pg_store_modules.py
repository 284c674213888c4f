"""The store modules converted to both dialects (leases, engines, requests, schedules, relay,
jobs, audit), each run on SQLite and on a real PostgreSQL (`backend_db`), and the race a
console request must survive on PostgreSQL: several engines picking at once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from vertex_tui.engine.email.relay import RelayState
from vertex_tui.engine.scheduling import ScheduledJob
from vertex_tui.engine.store import audit, engines, jobs, leases, relay, requests, schedules
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.pg import PgDatabase

NOW = 1_800_000_000.0


async def test_leases_and_engines(backend_db: Database) -> None:
    db = backend_db
    assert await leases.acquire(db, "engine:h1:1:a", "h1:1:a", NOW, NOW + 30)
    assert await leases.acquire(db, "engine:h2:2:b", "h2:2:b", NOW, NOW + 30)
    assert await leases.acquire(db, "video", "h1:1:a", NOW, NOW + 60)
    assert await leases.acquire(db, "backup", "h1:1:a", NOW, NOW + 60)
    assert not await leases.acquire(db, "video", "h2:2:b", NOW + 1, NOW + 61)  # held
    assert await leases.holder(db, "video", NOW + 1) == "h1:1:a"
    assert await leases.acquire(db, "video", "h2:2:b", NOW + 61, NOW + 90)  # expired: taken
    assert sorted(await leases.alive_engines(db, NOW + 1)) == ["h1:1:a", "h2:2:b"]
    alive = await engines.alive(db, NOW + 1, heartbeat_ttl=30)
    assert [(e["owner"], e["host"], e["pid"], e["leases"]) for e in alive] == [
        ("h1:1:a", "h1", 1, ["backup"]), ("h2:2:b", "h2", 2, ["video"])]
    assert await engines.holders(db, ["video", "backup", "nope"], NOW + 62) == {
        "video": "h2:2:b"}
    assert not await engines.heartbeat_stale(db, "h1:1:a", NOW + 1)
    assert await engines.heartbeat_stale(db, "h1:1:a", NOW + 31)
    await leases.release_all(db, "h1:1:a")
    assert await leases.live_owners(db, NOW + 1) == ["h2:2:b"]


async def test_published_schedules_and_relay_states_of_live_engines(backend_db: Database
                                                                   ) -> None:
    db = backend_db
    for owner in ("a", "b"):
        assert await leases.acquire(db, f"engine:{owner}", owner, NOW, NOW + 30)
    job = ScheduledJob(name="backup.database", schedule="0 2 * * *", enabled=True,
                       next_run=datetime.fromtimestamp(NOW + 3600, UTC))
    await schedules.publish(db, "a", [job], at=NOW)
    doc = await schedules.published(db, now=NOW + 1, reader="b")
    assert doc["backup.database"]["next_run"] == NOW + 3600
    assert await schedules.published(db, now=NOW + 1, reader="a") == {}  # its own: skipped
    await relay.publish(db, "a", RelayState(state="UNREACHABLE", since=NOW, error="refused"),
                        at=NOW)
    states = await relay.published(db, now=NOW + 1, exclude="b")
    assert [s.state for s in states] == ["UNREACHABLE"]
    assert await relay.published(db, now=NOW + 31) == []  # a's heartbeat expired
    await schedules.publish(db, "b", [], at=NOW + 40)  # drops the entries of dead engines
    rows = await db.read("SELECT name FROM engine_flags WHERE name LIKE 'schedule:%'")
    assert [r[0] for r in rows] == ["schedule:b"]


async def test_paused_jobs_are_audited(backend_db: Database) -> None:
    db = backend_db
    assert await jobs.set_paused(db, "video.check", True, at=NOW, actor="op")
    assert not await jobs.set_paused(db, "video.check", True, at=NOW + 1, actor="op")
    assert await jobs.is_paused(db, "video.check")
    assert await jobs.paused(db) == {"video.check": {"by": "op", "at": NOW}}
    assert await jobs.set_paused(db, "video.check", False, at=NOW + 2, actor="op")
    assert not await jobs.set_paused(db, "video.check", False, at=NOW + 3, actor="op")
    rows = await db.read("SELECT action, actor, detail FROM audit_log ORDER BY at")
    assert [(r[0], json.loads(r[2])["changed"]) for r in rows] == [
        ("job.pause", True), ("job.pause", False), ("job.resume", True), ("job.resume", False)]
    async with db.transaction() as conn:
        await audit.record(conn, at=NOW + 4, action="x", count=2**40, actor="op", k="v")
    row = await db.read_one("SELECT count, detail FROM audit_log WHERE action = 'x'")
    assert row is not None and row[0] == 2**40 and json.loads(row[1]) == {"k": "v"}


async def test_requests_round_trip(backend_db: Database) -> None:
    db = backend_db
    first = await requests.submit(db, action="video.check", args={"a": 1}, actor="op", at=NOW)
    stale = await requests.submit(db, action="old", args={}, actor="op",
                                  at=NOW - requests.STALE_SECONDS - 1)
    picked = await requests.pick(db, owner="e1", at=NOW + 1)
    assert [(r.id, r.action, r.args) for r in picked] == [(first, "video.check", {"a": 1})]
    assert await requests.pick(db, owner="e2", at=NOW + 2) == []
    await requests.finish(db, first, at=NOW + 3, ok=True, result={"done": 1})
    got = await requests.get(db, first)
    assert got is not None and (got.picked_by, got.outcome, got.result) == ("e1", "ok",
                                                                            {"done": 1})
    assert (await requests.get(db, stale)) is not None and await requests.get(db, 10**12) is None


async def test_concurrent_pickers_run_each_request_once(pg_url: str) -> None:
    """8 engines pick from 400 open requests at once on PostgreSQL: every request is picked
    exactly once. (Without the outer `picked_by IS NULL`, READ COMMITTED lets a picker that
    waited behind another overwrite its pick: the same request runs twice.)"""
    setup = await PgDatabase.open(pg_url)
    pickers = [await PgDatabase.open(pg_url, migrate=False, pool_size=2) for _ in range(8)]
    try:
        await setup.write_many(
            "INSERT INTO requests (action, args, requested_by, requested_at)"
            " VALUES (?, '{}', 'op', ?)", [(f"a{i}", NOW) for i in range(400)])
        seen: list[tuple[int, str]] = []
        start = asyncio.Event()

        async def pick(db: PgDatabase, owner: str) -> None:
            await start.wait()
            while picked := await requests.pick(db, owner=owner, at=NOW + 1, limit=7):
                seen.extend((r.id, owner) for r in picked)

        tasks = [asyncio.create_task(pick(db, f"e{i}")) for i, db in enumerate(pickers)]
        start.set()
        await asyncio.gather(*tasks)
        twice = [i for i, n in Counter(i for i, _ in seen).items() if n > 1]
        assert twice == [] and len(seen) == 400
        rows = await setup.read("SELECT picked_by, count(*) FROM requests GROUP BY picked_by")
        assert sum(r[1] for r in rows) == 400 and None not in {r[0] for r in rows}
        # Each recorded picker is the one that got the row back (no pick overwritten).
        owners = dict(seen)
        stored = await setup.read("SELECT id, picked_by FROM requests")
        assert all(owners[r[0]] == r[1] for r in stored)
        assert len({owner for _, owner in seen}) > 1  # they did run side by side
    finally:
        for db in (setup, *pickers):
            await db.close()


@pytest.mark.parametrize("paused", [True, False])
async def test_concurrent_pause_or_resume_changes_once(pg_url: str, paused: bool) -> None:
    """Two operators pausing (resuming) the same job at once on PostgreSQL: one changes it,
    the other is told it already was, and neither fails."""
    dbs = [await PgDatabase.open(pg_url, migrate=False) for _ in range(4)]
    try:
        if not paused:
            await jobs.set_paused(dbs[0], "j", True, at=NOW, actor="op")
        changed = await asyncio.gather(*(jobs.set_paused(db, "j", paused, at=NOW + 1,
                                                         actor=f"op{i}")
                                         for i, db in enumerate(dbs)))
        assert sorted(changed) == [False, False, False, True]
        assert await jobs.is_paused(dbs[0], "j") is paused
    finally:
        for db in dbs:
            await db.close()
