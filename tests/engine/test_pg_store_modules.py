"""The store modules converted to both dialects (leases, engines, requests, schedules, relay,
jobs, audit), each run on SQLite and on a real PostgreSQL (`backend_db`), and the race a
console request must survive on PostgreSQL: several engines picking at once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from vertex_tui.engine.email.relay import RelayState
from vertex_tui.engine.scheduling import ScheduledJob
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import (
    audit,
    engines,
    jobs,
    leases,
    relay,
    requests,
    runs,
    schedules,
)
from vertex_tui.engine.store import doctor as doctor_store
from vertex_tui.engine.store import log as log_store
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.pg import PgDatabase

if TYPE_CHECKING:
    from conftest import Query

NOW = 1_800_000_000.0


async def test_leases_and_engines(backend_db: Database) -> None:
    db = backend_db
    assert await leases.acquire(db, "engine:h1:1:a", "h1:1:a", NOW, NOW + 30)
    assert await leases.acquire(db, "engine:h2:2:b", "h2:2:b", NOW, NOW + 30)
    assert await leases.acquire(db, "video", "h1:1:a", NOW, NOW + 60)
    assert await leases.acquire(db, "backup", "h1:1:a", NOW, NOW + 60)
    assert not await leases.acquire(db, "video", "h2:2:b", NOW + 1, NOW + 61)  # held
    assert await leases.holder(db, "video", NOW + 1) == "h1:1:a"
    # PostgreSQL: expiries follow the server's clock, whatever `now` says (test_pg_services
    # covers them); here a lease expires by being aged.
    pg = db.dialect == "postgresql"
    if pg:
        await db.write("UPDATE leases SET expires_at = expires_at - 3600 WHERE name = 'video'")
    assert await leases.acquire(db, "video", "h2:2:b", NOW + 61, NOW + 90)  # expired: taken
    assert sorted(await leases.alive_engines(db, NOW + 1)) == ["h1:1:a", "h2:2:b"]
    alive = await engines.alive(db, NOW + 1, heartbeat_ttl=30)
    assert [(e["owner"], e["host"], e["pid"], e["leases"]) for e in alive] == [
        ("h1:1:a", "h1", 1, ["backup"]), ("h2:2:b", "h2", 2, ["video"])]
    if pg:
        await db.write("UPDATE leases SET expires_at = expires_at - 3600 WHERE name = 'backup'")
    assert await engines.holders(db, ["video", "backup", "nope"], NOW + 62) == {
        "video": "h2:2:b"}
    assert not await engines.heartbeat_stale(db, "h1:1:a", NOW + 1)
    if pg:
        await db.write("UPDATE leases SET expires_at = expires_at - 3600"
                       " WHERE name = 'engine:h1:1:a'")
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
    if db.dialect == "postgresql":  # expiries follow the server's clock: age a's heartbeat
        await db.write("UPDATE leases SET expires_at = expires_at - 3600 WHERE name = 'engine:a'")
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



async def test_the_query_fixture_reads_either_backend(backend_settings: Settings, query: Query,
                                                      backend: str) -> None:
    """`query(settings, sql, params)` runs on the database the settings name (SQLite's file or
    PostgreSQL), committed, with the store's placeholders."""
    await (await open_database(backend_settings)).close()  # migrated
    assert (backend_settings.database_url is None) == (backend == "sqlite")
    assert query(backend_settings, "INSERT INTO engine_flags VALUES (?, 'v', ?)",
                 ("f%", 1.5)) == []
    assert query(backend_settings, "SELECT name, updated_at FROM engine_flags"
                 " WHERE name LIKE 'f%'") == [("f%", 1.5)]
    assert query(backend_settings, "SELECT count(*) FROM engine_flags WHERE name = :n",
                 {"n": "f%"}) == [(1,)]


async def test_service_runs_on_both_backends(backend_db: Database) -> None:
    db = backend_db
    run = await runs.start_run(db, service="video", job="video.check", owner="a", at=NOW)
    await runs.finish_run(db, run, at=NOW + 2, outcome="error", counts={"seconds": 1.5},
                          error="boom")
    await runs.record_skip(db, service="video", job="video.check", owner="b", at=NOW + 3,
                           reason="held by a")
    await runs.record_run(db, service="backup", job="backup.database", owner="a",
                          started_at=NOW, finished_at=NOW + 1, outcome="ok", counts={"n": 2})
    stuck = await runs.start_run(db, service="video", job="video.rotate", owner="gone", at=NOW)
    assert (await runs.last_runs(db, "video"))["video.check"]["error"] == "boom"
    real = await runs.last_real_runs(db)
    assert real[("video", "video.check")]["duration_s"] == 1.5
    assert real[("backup", "backup.database")]["counts"] == {"n": 2}
    assert [r["outcome"] for r in await runs.history(db, service="video", job="video.check")
            ] == ["skipped", "error"]
    assert [(e["service"], e["error"]) for e in await runs.recent_errors(db)] == [
        ("video", "boom")]
    running = await doctor_store.running(db)
    assert [(r.table, r.id, r.what) for r in running] == [
        ("service_runs", stuck, "video.video.rotate")]
    assert await runs.mark_interrupted(db, service="video", alive_owners=["a"], at=NOW + 5) == 1
    assert await runs.mark_interrupted(db, service="video", alive_owners=[], at=NOW + 6) == 0


async def test_engine_log_on_both_backends(backend_db: Database) -> None:
    db = backend_db
    assert await log_store.append(db, [(NOW + i, "email", 20 + 10 * (i % 2), "email.delivery",
                                        f"sent {i} 100%", "a") for i in range(6)]) == 6
    async with db.transaction() as conn:
        await audit.record(conn, at=NOW + 10, action="email.retry", count=3, actor="op")
    entries, cursor = await log_store.read(db, since=NOW, level=30)
    assert [e["message"] for e in entries] == ["sent 1 100%", "sent 3 100%", "sent 5 100%"]
    found, _ = await log_store.read(db, search="100%", limit=2)
    assert [e["message"] for e in found] == ["sent 4 100%", "sent 5 100%"]  # the latest two
    # In words on both dialects; the action's name ("retry") still finds it.
    audited, _ = await log_store.read(db, service="email", search="retry")
    assert [e["message"] for e in audited] == ["op: retried mail, 3 affected"]
    later, after = await log_store.read(db, after=cursor)
    assert later == [] and after == cursor
    assert await log_store.prune(db, before=NOW + 3) == 3
