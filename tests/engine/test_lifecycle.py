"""The lifecycle service over a real database: statuses, notices through the email outbox,
late passes, renewals, history, disabled notifications, events, service_runs, failing passes,
the lease, the uniqueness guard and the summary."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import StoreError
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.lifecycle import notice_for
from vertex_tui.engine.service import ServiceState
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import lifecycle as lstore

H = 3_600.0
DAY = 86_400.0
WEEK = 7 * DAY
T0 = 1_800_000_000.0


def raw(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        with conn:
            return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


async def notices(engine: Engine) -> list[tuple[Any, ...]]:
    """(entity_kind, entity_id, kind, period_end, status) of every notice, in id order."""
    rows = await engine.db.read(
        "SELECT entity_kind, entity_id, kind, period_end, status FROM lifecycle_notifications"
        " ORDER BY id")
    return [tuple(r) for r in rows]


async def emails(engine: Engine) -> list[dict[str, Any]]:
    rows = await engine.db.read(
        "SELECT message_id, recipients, to_header, subject, body, headers, status, sender"
        " FROM email_jobs ORDER BY id")
    return [dict(r) for r in rows]


async def assert_outbox(engine: Engine) -> int:
    """Sent notices and their email jobs match one to one (by Message-ID, owner recipient)."""
    rows = await engine.db.read(
        "SELECT n.message_id, n.entity_kind, coalesce(p.owner_email, q.owner_email),"
        " (SELECT count(*) FROM email_jobs e WHERE e.message_id = n.message_id),"
        " (SELECT recipients FROM email_jobs e WHERE e.message_id = n.message_id)"
        " FROM lifecycle_notifications n"
        " LEFT JOIN projects p ON n.entity_kind = 'project' AND p.id = n.entity_id"
        " LEFT JOIN portraits q ON n.entity_kind = 'portrait' AND q.id = n.entity_id"
        " WHERE n.status = 'sent'")
    for message_id, _, owner, count, recipients in rows:
        assert count == 1, message_id
        assert json.loads(recipients) == [owner]
    total = await engine.db.read("SELECT count(*) FROM email_jobs")
    assert total[0][0] == len(rows)
    return len(rows)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def settings(backend_settings: Settings) -> Settings:
    """Every test here runs on SQLite and on PostgreSQL (conftest's `backend`)."""
    return backend_settings


# ---- notices ----------------------------------------------------------------------------------


async def test_notices_go_out_in_order_each_once_to_the_owner(
    settings: Settings, clock: FakeClock
) -> None:
    end = T0 + 10 * DAY
    async with Engine(settings, run=[], clock=clock) as engine:
        pid = await engine.lifecycle.add_project(name="Gallery", owner="Ann <ann@example.com>",
                                                 subscription_end=end)
        for t in (T0, end - WEEK, end - WEEK + H, end - DAY, end - H, end, end + DAY):
            clock.set(t)
            assert (await engine.lifecycle.check())["status"] == "ok"
            assert (await engine.lifecycle.check())["sent"] == {}, "a second pass adds nothing"
        assert [n[2] for n in await notices(engine)] == ["7days", "24hours", "expired"]
        assert all(n[:2] == ("project", pid) and n[3] == end and n[4] == "sent"
                   for n in await notices(engine))
        mails = await emails(engine)
        assert [json.loads(m["recipients"]) for m in mails] == [["ann@example.com"]] * 3
        assert [m["subject"] for m in mails] == [
            "Your subscription for Gallery ends in 7 days",
            "Your subscription for Gallery ends in 24 hours",
            "Your subscription for Gallery has ended",
        ]
        assert all(json.loads(m["headers"]) == {"X-Vertex-Notice": "lifecycle"} for m in mails)
        assert all(m["status"] == "pending" for m in mails)
        assert all(m["sender"] == settings.email_from for m in mails)
        assert len({m["message_id"] for m in mails}) == 3
        assert await assert_outbox(engine) == 3


async def test_a_late_pass_sends_only_the_most_urgent_notice(
    settings: Settings, clock: FakeClock
) -> None:
    async with Engine(settings, run=[], clock=clock) as engine:
        await engine.lifecycle.add_portrait(title="Late", owner="o@example.com",
                                            subscription_end=T0 + 12 * H)
        result = await engine.lifecycle.check()
        assert result["sent"] == {"24hours": 1}
        clock.set(T0 + 10 * H)
        assert (await engine.lifecycle.check())["sent"] == {}
        # Missed the end by two days: expired, and never a stale 7-day or 24-hour one.
        clock.set(T0 + 3 * DAY)
        assert (await engine.lifecycle.check())["sent"] == {"expired": 1}
        assert [n[2] for n in await notices(engine)] == ["24hours", "expired"]
        assert await assert_outbox(engine) == 2


async def test_a_pass_after_a_long_outage_jumps_straight_to_expired(
    settings: Settings, clock: FakeClock
) -> None:
    async with Engine(settings, run=[], clock=clock) as engine:
        await engine.lifecycle.add_portrait(title="Outage", owner="o@example.com",
                                            subscription_end=T0 + 3 * DAY)
        assert (await engine.lifecycle.check())["sent"] == {"7days": 1}
        clock.set(T0 + 3 * DAY + 5 * H)  # the 24-hour window passed while nobody ran
        assert (await engine.lifecycle.check())["sent"] == {"expired": 1}
        assert [n[2] for n in await notices(engine)] == ["7days", "expired"]


async def test_renewal_starts_a_new_period_and_keeps_the_old_notices(
    settings: Settings, clock: FakeClock
) -> None:
    seen: list[ev.Event] = []
    first = T0 + 5 * DAY
    async with Engine(settings, run=[], clock=clock) as engine:
        engine.events.subscribe(seen.append)
        qid = await engine.lifecycle.add_portrait(title="Renew", owner="o@example.com",
                                                  subscription_end=first)
        assert (await engine.lifecycle.check())["sent"] == {"7days": 1}
        clock.set(first + H)
        assert (await engine.lifecycle.check())["sent"] == {"expired": 1}
        status = await engine.db.read_one("SELECT lifecycle_status FROM portraits WHERE id = ?",
                                          (qid,))
        assert status is not None and status[0] == "archived"
        # Renewed after it ended: active again, a new period.
        second = first + 30 * DAY
        await engine.lifecycle.renew("portrait", qid, second)
        seen.clear()
        clock.set(first + 2 * H)
        result = await engine.lifecycle.check()
        assert result["sent"] == {}
        status = await engine.db.read_one("SELECT lifecycle_status FROM portraits WHERE id = ?",
                                          (qid,))
        assert status is not None and status[0] == "active"
        changed = [e for e in seen if isinstance(e, ev.LifecycleStatusChanged)]
        assert changed and changed[0].entity_kind == "portrait"
        for t in (second - WEEK, second - DAY, second):
            clock.set(t)
            assert sum((await engine.lifecycle.check())["sent"].values()) == 1
        got = await notices(engine)
        assert [(n[2], n[3]) for n in got] == [
            ("7days", first), ("expired", first),
            ("7days", second), ("24hours", second), ("expired", second),
        ]
        assert await assert_outbox(engine) == 5


async def test_renewal_to_an_end_in_the_same_second_is_still_a_new_period(
    settings: Settings, clock: FakeClock
) -> None:
    """Ends are REAL: two periods may share their whole second. Each gets its own notice and
    mail, and the pass must not fail on a clash of Message-IDs (it would fail forever)."""
    async with Engine(settings, run=[], clock=clock) as engine:
        pid = await engine.lifecycle.add_project(name="Frac", owner="o@example.com",
                                                 subscription_end=T0 + H + 0.25)
        assert (await engine.lifecycle.check())["sent"] == {"24hours": 1}
        await engine.lifecycle.renew("project", pid, T0 + H + 0.75)
        clock.advance(60)
        result = await engine.lifecycle.check()
        assert result["status"] == "ok", result
        assert result["sent"] == {"24hours": 1}
        assert [(n[2], n[3]) for n in await notices(engine)] == [
            ("24hours", T0 + H + 0.25), ("24hours", T0 + H + 0.75)]
        assert await assert_outbox(engine) == 2


async def test_a_first_pass_over_years_of_history_mails_nothing_old(
    settings: Settings, clock: FakeClock
) -> None:
    """Expired notices only while the end lies within the last 7 days; older ends are recorded
    as skipped (so they are never mailed later either)."""
    async with Engine(settings, run=[], clock=clock) as engine:
        ends = [T0 - d * DAY - 1 for d in range(7, 3 * 365)]  # every day of 3 years, all old
        recent = [T0 - 1, T0 - 3 * DAY, T0 - WEEK + 1]
        await engine.db.write_many(
            "INSERT INTO portraits (title, owner_email, subscription_end, created_at)"
            " VALUES (?, ?, ?, ?)",
            [(f"h{i}", f"h{i}@example.com", end, T0) for i, end in enumerate(ends + recent)])
        result = await engine.lifecycle.check()
        assert result["sent"] == {"expired": len(recent)}
        assert result["skipped"] == len(ends)
        got = await notices(engine)
        assert {n[3] for n in got if n[4] == "sent"} == set(recent)
        assert {n[3] for n in got if n[4] == "skipped"} == set(ends)
        assert await assert_outbox(engine) == len(recent)
        # Later passes never mail the skipped ones.
        for _ in range(3):
            clock.advance(DAY)
            assert (await engine.lifecycle.check())["sent"] == {}
        assert await assert_outbox(engine) == len(recent)
        doc = await engine.lifecycle.summary()
        assert doc["notifications"]["expired"] == len(recent)
        assert doc["notifications_skipped"] == len(ends)
        assert doc["archived"] == len(ends) + len(recent)


async def test_an_end_moved_into_the_past_gets_the_expired_notice_within_seven_days(
    settings: Settings, clock: FakeClock
) -> None:
    async with Engine(settings, run=[], clock=clock) as engine:
        a = await engine.lifecycle.add_portrait(title="a", owner="a@example.com",
                                                subscription_end=T0 + 90 * DAY)
        b = await engine.lifecycle.add_portrait(title="b", owner="b@example.com",
                                                subscription_end=T0 + 90 * DAY)
        await engine.lifecycle.check()
        clock.advance(H)
        await engine.lifecycle.renew("portrait", a, T0 - 2 * DAY)   # cancelled, backdated
        await engine.lifecycle.renew("portrait", b, T0 - 30 * DAY)  # long ago: not mailed
        result = await engine.lifecycle.check()
        assert result["sent"] == {"expired": 1}
        assert result["skipped"] == 1
        assert sorted((n[1], n[4]) for n in await notices(engine)) == [(a, "sent"), (b, "skipped")]


async def test_disabled_notifications_update_statuses_and_send_nothing(
    settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    seen: list[ev.Event] = []
    settings = settings_factory(lifecycle_notifications_enabled=False)
    async with Engine(settings, run=[], clock=clock) as engine:
        engine.events.subscribe(seen.append)
        ids = [await engine.lifecycle.add_portrait(title=f"d{i}", owner="d@example.com",
                                                   subscription_end=T0 + off)
               for i, off in enumerate((-H, H, 3 * DAY, 30 * DAY))]
        for t in (T0, T0 + 2 * DAY, T0 + 10 * DAY):
            clock.set(t)
            result = await engine.lifecycle.check()
            assert result["status"] == "ok"
            assert result["sent"] == {} and result["emails"] == 0
        rows = await engine.db.read("SELECT id, lifecycle_status FROM portraits ORDER BY id")
        assert [tuple(r) for r in rows] == [(ids[0], "archived"), (ids[1], "archived"),
                                            (ids[2], "archived"), (ids[3], "active")]
        assert await notices(engine) == []
        assert await emails(engine) == []
        assert not any(isinstance(e, (ev.NoticesQueued, ev.EmailEnqueued)) for e in seen)
        assert any(isinstance(e, ev.LifecycleStatusChanged) for e in seen)


async def test_subject_stays_one_line_whatever_the_name(
    settings: Settings, clock: FakeClock
) -> None:
    """Names are written by the platform; a line break in one must not reach a header."""
    async with Engine(settings, run=[], clock=clock) as engine:
        await engine.db.write(
            "INSERT INTO projects (name, owner_email, subscription_end, created_at)"
            " VALUES (?, 'o@example.com', ?, ?)", ("Evil\r\nBcc: x@attacker.test", T0 + H, T0))
        await engine.db.write(
            "INSERT INTO portraits (title, owner_email, subscription_end, created_at)"
            " VALUES (?, 'o@example.com', ?, ?)", ("Odd\u2028Title\x0bhere", T0 + H, T0))
        assert (await engine.lifecycle.check())["emails"] == 2
        for mail in await emails(engine):
            assert len(mail["subject"].splitlines()) == 1, mail["subject"]
            assert "\r" not in mail["subject"] and "\n" not in mail["subject"]


# ---- outbox: one transaction ------------------------------------------------------------------


async def test_notice_and_its_email_commit_together_or_not_at_all(
    settings: Settings, clock: FakeClock
) -> None:
    """If the email insert fails, the notice (and the statuses) roll back with it; the pass
    is recorded as an error and the next one sends everything exactly once."""
    async with Engine(settings, run=[], clock=clock) as engine:
        for i in range(5):
            await engine.lifecycle.add_portrait(title=f"o{i}", owner=f"o{i}@example.com",
                                                subscription_end=T0 + i * DAY + H)
        pg = engine.db.dialect == "postgresql"
        if pg:
            await engine.db.write(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'mail store unavailable'; END $$")
            await engine.db.write("CREATE TRIGGER boom BEFORE INSERT ON email_jobs"
                                  " FOR EACH ROW EXECUTE FUNCTION boom()")
        else:
            await engine.db.write(
                "CREATE TRIGGER boom BEFORE INSERT ON email_jobs"
                " BEGIN SELECT RAISE(ABORT, 'mail store unavailable'); END")
        result = await engine.lifecycle.check()
        assert result["status"] == "error"
        assert "mail store unavailable" in result["error"]
        assert await notices(engine) == []
        statuses = await engine.db.read("SELECT DISTINCT lifecycle_status FROM portraits")
        assert [r[0] for r in statuses] == [None], "statuses rolled back with the notices"
        assert engine.lifecycle.last_error is not None
        await engine.db.write("DROP TRIGGER boom ON email_jobs" if pg else "DROP TRIGGER boom")
        clock.advance(60)
        result = await engine.lifecycle.check()
        assert result["status"] == "ok"
        assert result["sent"] == {"24hours": 1, "7days": 4}
        assert await assert_outbox(engine) == 5
        assert engine.lifecycle.last_error is None
        runs = await engine.db.read(
            "SELECT outcome, error FROM service_runs WHERE service = 'lifecycle' ORDER BY id")
        assert [r[0] for r in runs] == ["error", "ok"]
        assert "mail store unavailable" in runs[0][1]


async def test_a_failing_pass_never_stops_the_service(
    settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    """A pass against a database that lost a table fails, is recorded, and the scheduled
    service keeps its job; once the table is back the next pass works."""
    async with Engine(settings, run=["lifecycle"], clock=clock) as engine:
        await engine.lifecycle.add_project(name="p", owner="p@example.com",
                                           subscription_end=T0 + DAY)
        await engine.db.write("ALTER TABLE lifecycle_notifications RENAME TO ln_away")
        result = await engine.lifecycle.check()
        assert result["status"] == "error"
        assert "lifecycle_notifications" in result["error"]
        status = await engine.lifecycle.status()
        assert status["state"] == "error"
        assert status["last_outcome"] == "error"
        assert status["next_run"] is not None, "still scheduled"
        assert engine.running() == ["lifecycle"]
        await engine.db.write("ALTER TABLE ln_away RENAME TO lifecycle_notifications")
        clock.advance(60)
        result = await engine.lifecycle.check()
        assert result["status"] == "ok" and result["sent"] == {"24hours": 1}
        status = await engine.lifecycle.status()
        assert status["state"] in ("idle", "running")
        assert status["last_outcome"] == "ok" and status["last_error"] is None


# ---- events and service_runs ------------------------------------------------------------------


async def test_events_and_service_runs_of_each_pass(settings: Settings, clock: FakeClock) -> None:
    seen: list[ev.Event] = []
    async with Engine(settings, run=[], clock=clock) as engine:
        engine.events.subscribe(seen.append)
        await engine.lifecycle.add_project(name="p", owner="p@example.com",
                                           subscription_end=T0 + 2 * DAY)
        await engine.lifecycle.add_portrait(title="q", owner="q@example.com",
                                            subscription_end=T0 - H)
        await engine.lifecycle.add_portrait(title="r", owner="r@example.com",
                                            subscription_end=T0 + 60 * DAY)
        first = await engine.lifecycle.check()
        clock.advance(H)
        second = await engine.lifecycle.check()
        changed = [e for e in seen if isinstance(e, ev.LifecycleStatusChanged)]
        assert {e.entity_kind for e in changed} == {"project", "portrait"}
        by_kind = {e.entity_kind: e.changes for e in changed}
        assert by_kind["project"]["expiring"] == 1
        assert by_kind["portrait"]["archived"] == 1 and by_kind["portrait"]["active"] == 1
        queued = [e for e in seen if isinstance(e, ev.NoticesQueued)]
        assert len(queued) == 1
        assert queued[0].sent == {"7days": 1, "expired": 1} and queued[0].skipped == 0
        enqueued = [e for e in seen if isinstance(e, ev.EmailEnqueued)]
        assert [e.count for e in enqueued] == [2]
        passes = [e for e in seen if isinstance(e, ev.PassCompleted) and e.service == "lifecycle"]
        assert [p.ok for p in passes] == [True, True]
        assert passes[0].counts["emails"] == 2
        rows = await engine.db.read(
            "SELECT outcome, counts, started_at, finished_at, owner FROM service_runs"
            " WHERE service = 'lifecycle' AND job = 'pass' ORDER BY id")
        assert len(rows) == 2
        for row, result in zip(rows, (first, second), strict=True):
            counts = json.loads(row["counts"])
            assert row["outcome"] == "ok"
            assert row["owner"] == engine.owner
            assert row["finished_at"] >= row["started_at"]
            assert counts["seconds"] >= 0
            assert counts["sent"] == result["sent"]
            assert counts["emails"] == result["emails"]
        assert json.loads(rows[0]["counts"])["full"] is True
        assert json.loads(rows[1]["counts"])["full"] is False


async def test_a_pass_runs_only_under_its_lease(settings: Settings, clock: FakeClock) -> None:
    seen: list[ev.Event] = []
    async with Engine(settings, run=[], clock=clock) as engine:
        engine.events.subscribe(seen.append)
        await engine.lifecycle.add_project(name="p", owner="p@example.com",
                                           subscription_end=T0 + DAY)
        other = Leases(engine.db, "elsewhere:1:abc")
        # PostgreSQL: leases expire by the server's clock, which the fake clock does not move.
        pg = engine.db.dialect == "postgresql"
        assert await other.acquire("lifecycle", T0, 1.0 if pg else 600)
        result = await engine.lifecycle.check()
        assert result["status"] == "skipped" and result["holder"] == "elsewhere:1:abc"
        assert engine.lifecycle.state() is ServiceState.STOPPED or \
            engine.lifecycle.state() is ServiceState.STANDBY
        assert await notices(engine) == []
        assert any(isinstance(e, ev.JobSkipped) and e.service == "lifecycle" for e in seen)
        row = await engine.db.read_one(
            "SELECT outcome, error FROM service_runs WHERE service = 'lifecycle'")
        assert row is not None and row[0] == "skipped" and "elsewhere:1:abc" in row[1]
        # Once the holder's lease expires, this process takes over.
        clock.set(T0 + 601)
        if pg:
            await asyncio.sleep(1.1)
        assert (await engine.lifecycle.check())["status"] == "ok"
        assert len(await notices(engine)) == 1


async def test_a_lease_left_by_a_killed_process_of_this_host_is_taken_over(
    settings: Settings, clock: FakeClock
) -> None:
    """A pass killed mid-way leaves its lease for hours (TTL = 2 intervals + 60 s); a
    process of this host that no longer exists holds nothing, so the next pass runs."""
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()
    dead_owner = f"{socket.gethostname()}:{gone.pid}:deadbeef"
    async with Engine(settings, run=[], clock=clock) as engine:
        await engine.lifecycle.add_project(name="p", owner="p@example.com",
                                           subscription_end=T0 + DAY)
        assert await Leases(engine.db, dead_owner).acquire("lifecycle", T0, 7260)
        await engine.db.write(
            "INSERT INTO service_runs (service, job, owner, started_at) VALUES"
            " ('lifecycle', 'pass', ?, ?)", (dead_owner, T0 - 5))
        result = await engine.lifecycle.check()
        assert result["status"] == "ok", result
        assert len(await notices(engine)) == 1
        assert await engine.leases.holder("lifecycle", T0) == engine.owner
        left = await engine.db.read(
            "SELECT outcome FROM service_runs WHERE owner = ?", (dead_owner,))
        assert [r[0] for r in left] == ["error"], "the killed pass is recorded as interrupted"


# ---- uniqueness ---------------------------------------------------------------------------------


async def test_the_unique_key_alone_keeps_a_repeated_pass_from_duplicating(
    settings: Settings, clock: FakeClock
) -> None:
    """Forget the incremental bookkeeping (as a second process with its own view would) and
    run full passes again: the constraint turns every repeat into nothing."""
    async with Engine(settings, run=[], clock=clock) as engine:
        for i, off in enumerate((-H, H, 3 * DAY, -3 * DAY, -30 * DAY)):
            await engine.lifecycle.add_portrait(title=f"u{i}", owner=f"u{i}@example.com",
                                                subscription_end=T0 + off)
        first = await engine.lifecycle.check()
        assert first["emails"] == 4 and first["skipped"] == 1
        before = await notices(engine)
        for _ in range(3):
            await engine.db.write("DELETE FROM engine_flags WHERE name = ?",
                                  (lstore.LAST_PASS_FLAG,))
            await engine.db.write("INSERT INTO lifecycle_dirty SELECT 'portrait', id"
                                  " FROM portraits WHERE true ON CONFLICT DO NOTHING")
            again = await engine.lifecycle.check()
            assert again["full"] is True
            assert again["sent"] == {} and again["skipped"] == 0 and again["emails"] == 0
        assert await notices(engine) == before
        assert await assert_outbox(engine) == 4
        with pytest.raises((sqlite3.IntegrityError, StoreError), match=r"(?i)unique"):
            await engine.db.write(
                "INSERT INTO lifecycle_notifications (entity_kind, entity_id, kind, period_end,"
                " status, created_at) SELECT entity_kind, entity_id, kind, period_end, status, 0"
                " FROM lifecycle_notifications LIMIT 1")


async def test_two_engines_checking_at_once_give_each_notice_once(
    settings: Settings, clock: FakeClock
) -> None:
    async with Engine(settings, run=[], clock=clock) as a, \
            Engine(settings, run=[], clock=clock) as b:
        for i in range(50):
            await a.lifecycle.add_portrait(title=f"c{i}", owner=f"c{i}@example.com",
                                           subscription_end=T0 + (i - 25) * 6 * H)
        results = await asyncio.gather(a.lifecycle.check(), b.lifecycle.check())
        assert sorted(r["status"] for r in results) == ["ok", "skipped"]
        # Bypass the lease: both passes at once, straight to the pass itself.
        clock.advance(2 * DAY)
        counts = await asyncio.gather(a.lifecycle.run_pass(clock.time()),
                                      b.lifecycle.run_pass(clock.time()))
        got = await notices(a)
        keys = [(n[0], n[1], n[2], n[3]) for n in got]
        assert len(keys) == len(set(keys))
        expected = 0
        for i in range(50):
            end = T0 + (i - 25) * 6 * H
            kinds = {n[0] for n in (notice_for(end, T0), notice_for(end, T0 + 2 * DAY)) if n}
            expected += len(kinds)
        assert len(got) == expected
        first_pass = sum(r.get("emails", 0) for r in results)
        assert first_pass + sum(c["emails"] for c in counts) == await assert_outbox(a)


# ---- summary ------------------------------------------------------------------------------------


async def test_summary_counts_notices_and_the_next_twenty_expirations(
    settings: Settings, clock: FakeClock
) -> None:
    async with Engine(settings, run=[], clock=clock) as engine:
        for i in range(15):
            await engine.lifecycle.add_project(name=f"P{i}", owner=f"p{i}@example.com",
                                               subscription_end=T0 + (i + 1) * DAY)
            await engine.lifecycle.add_portrait(title=f"Q{i}", owner=f"q{i}@example.com",
                                                subscription_end=T0 + (i + 1) * DAY + H)
        await engine.lifecycle.add_portrait(title="gone", owner="g@example.com",
                                            subscription_end=T0 - DAY)
        await engine.lifecycle.add_portrait(title="forever", owner="f@example.com",
                                            subscription_end=None)
        doc = await engine.lifecycle.summary()
        assert doc["unknown"] == 32, "nothing computed before the first pass"
        await engine.lifecycle.check()
        doc = await engine.lifecycle.summary()
        assert (doc["active"], doc["expiring"], doc["archived"]) == (18, 13, 1)
        assert doc["by_kind"]["project"] == {"active": 8, "expiring": 7}
        assert doc["notifications"] == {"7days": 12, "24hours": 1, "expired": 1}
        assert doc["notifications_last_24h"] == doc["notifications"]
        upcoming = doc["upcoming"]
        assert len(upcoming) == 20
        ends = [u["seconds_left"] for u in upcoming]
        assert ends == sorted(ends) and ends[0] == DAY and all(e > 0 for e in ends)
        assert {u["kind"] for u in upcoming} == {"project", "portrait"}
        assert upcoming[0]["subscription_end"].endswith("+00:00")
        assert upcoming[0]["name"] == "P0" and upcoming[0]["owner"] == "p0@example.com"
        # Two days later: all-time counts stay, the last 24 h only holds the new ones.
        clock.advance(2 * DAY)
        await engine.lifecycle.check()
        doc = await engine.lifecycle.summary()
        assert doc["notifications_last_24h"] == {"7days": 4, "24hours": 2, "expired": 3}
        assert doc["notifications"] == {"7days": 16, "24hours": 3, "expired": 4}
        assert all(u["seconds_left"] > 0 for u in doc["upcoming"])


async def test_next_run_without_a_scheduler_follows_the_last_pass(
    settings: Settings, clock: FakeClock
) -> None:
    """An engine that does not schedule the passes (an attached console) shows when the
    running engine runs the next one: an interval after the last pass started."""
    async with Engine(settings, run=[], clock=clock) as engine:
        assert (await engine.lifecycle.status())["next_run"] is None, "no pass yet"
        started = clock.time()
        assert (await engine.lifecycle.check())["status"] == "ok"
        status = await engine.lifecycle.status()
        expected = datetime.fromtimestamp(started + engine.lifecycle.interval, UTC)
        assert status["next_run"] == expected.isoformat(timespec="seconds")
        assert status["state"] == "stopped"
