"""Email search, and cancel: cancelled jobs are kept, counted, audited, never sent and
retryable. Search and cancel run on both backends (FTS5 on SQLite, ILIKE over pg_trgm indexes
on PostgreSQL; a FakeClock moves time on both). Two tests are about SQLite's own machinery and
stay there: the FTS5 index kept in step by triggers, and the upgrade of a version 7 file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.db import query

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.metrics import families
from vertex_tui.engine.search import SearchError
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store.db import Database, load_migrations, split_statements

if TYPE_CHECKING:
    from conftest import Idle, TestSink, WaitFor

EMAIL = ["email"]


def fts_ids(db_path: Path, match: str) -> set[int]:
    """Row ids the index itself holds for `match` (not joined to the jobs: a stale entry of a
    deleted or changed job would show here)."""
    return {r[0] for r in query(db_path, "SELECT rowid FROM email_jobs_fts WHERE email_jobs_fts"
                                         " MATCH ?", (match,))}


def fts_consistent(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, timeout=30)
    try:  # raises "database disk image is malformed" if index and jobs disagree
        conn.execute("INSERT INTO email_jobs_fts (email_jobs_fts, rank) VALUES"
                     " ('integrity-check', 1)")
    finally:
        conn.close()


def msg(to: str, subject: str = "Hello") -> dict[str, str]:
    return {"to": to, "subject": subject, "body": "b"}


async def settle(engine: Engine, wait_for: WaitFor, **expected: int) -> None:
    want = {"pending": 0, "sending": 0, "sent": 0, "failed": 0, "cancelled": 0, **expected}

    async def check() -> bool:
        s = await engine.email.stats()
        return {k: getattr(s, k) for k in want} == want

    await wait_for(check, message=f"queue counts {want}")


async def test_free_text_finds_the_last_error_and_every_term_works(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    """On both backends: FTS5 on SQLite, ILIKE over pg_trgm indexes on PostgreSQL."""
    settings = backend_settings_factory(sink=sink_550)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        q = engine.email
        sent = await q.enqueue_many([msg(f"user{i}@example.com", f"Invoice {i}")
                                     for i in range(7)])
        clock.advance(3 * 3600)
        failed = await q.enqueue_many([msg(f"bounce-{i}@example.com", "Welcome")
                                       for i in range(13)])
        await settle(engine, wait_for, sent=7, failed=13)

        # The case: 13 jobs failed with "mailbox unavailable"; `/mailbox` found 0.
        assert [j.id for j in await q.list_jobs(search="mailbox")] == sorted(failed)[::-1]
        assert {j.id for j in await q.search("MAILBOX unavailable")} == set(failed)
        assert {j.id for j in await q.search('"mailbox unavailable"')} == set(failed)
        assert await q.search('"unavailable mailbox"') == []
        assert {j.id for j in await q.search("error:5.1.1")} == set(failed)
        assert {j.id for j in await q.search("to:bounce-1")} == {failed[1], *failed[10:13]}
        assert {j.id for j in await q.search("subject:invoice")} == set(sent)
        assert {j.id for j in await q.search("status:sent")} == set(sent)
        assert await q.search("status:sent mailbox") == []
        assert [j.id for j in await q.search(f"id:{failed[4]}")] == [failed[4]]
        assert {j.id for j in await q.search("older:2h")} == set(sent)
        assert {j.id for j in await q.search("newer:1h")} == set(failed)
        # Free text reads the Message-ID too.
        detail = await q.get_job(sent[3])
        assert [j.id for j in await q.search(detail.job.message_id.strip("<>"))] == [sent[3]]
        # Shorter than a trigram: a LIKE while walking the jobs (same answers).
        assert {j.id for j in await q.search("r5")} == {sent[5]}
        assert {j.id for j in await q.search("to:-3 mailbox")} == {failed[3]}
        # Paging continues below the last id, with the same answers.
        first = await q.search("mailbox", limit=5)
        rest = await q.search("mailbox", limit=50, before_id=first[-1].id)
        assert [j.id for j in first + rest] == sorted(failed)[::-1]
        assert await q.count_matching("mailbox") == 13
        assert await q.count_matching("mailbox", cap=5) == 5
        assert await q.count_matching("") == 20
        assert await q.count_matching("status:failed", status="sent") == 0

        with pytest.raises(SearchError, match="unknown search term from:"):
            await q.list_jobs(search="from:bob")


async def test_the_index_stays_in_step_on_insert_status_change_and_cleanup(
    settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    settings = settings_factory(sink=sink_550)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        q = engine.email
        await q.pause()
        [job] = await q.enqueue_many([msg("bounce-x@example.com", "Quarterly report")])
        # Insert: indexed in the enqueue's own transaction.
        assert fts_ids(settings.db_path, '"quarterly"') == {job}
        assert fts_ids(settings.db_path, 'last_error : "mailbox"') == set()
        await q.resume()
        await settle(engine, wait_for, failed=1)
        # Status change with a new last error: the old entry replaced, not added to.
        assert fts_ids(settings.db_path, 'last_error : "mailbox"') == {job}
        fts_consistent(settings.db_path)
        sink_550.behaviour.reject = ()
        await q.retry(job_id=job)
        await settle(engine, wait_for, sent=1)
        fts_consistent(settings.db_path)
        assert [j.id for j in await q.search("status:sent quarterly")] == [job]

        # Cleanup: deleted jobs leave the index in the same transaction.
        [keep] = await q.enqueue_many([msg("keep@example.com", "Quarterly report")])
        await settle(engine, wait_for, sent=2)
        query(settings.db_path, "UPDATE email_jobs SET finished_at = ? WHERE id = ?",
              (clock.time() - 40 * 86_400, job))
        assert await q.cleanup(30) == 1
        assert fts_ids(settings.db_path, '"quarterly"') == {keep}
        fts_consistent(settings.db_path)


async def test_cancelled_jobs_are_kept_counted_audited_never_sent_and_retryable(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
    idle: Idle,
) -> None:
    settings = backend_settings_factory(sink=sink)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        q = engine.email
        await q.pause()
        ids = await q.enqueue_many([msg(f"u{i}@example.com", "Promo" if i < 3 else "Receipt")
                                    for i in range(5)])
        chosen = await q.matching_ids("promo", eligible=("pending", "failed"))
        assert sorted(chosen) == ids[:3]
        assert await q.cancel(ids=chosen, search="promo") == ids[:3]
        with pytest.raises(UsageError, match="only pending or failed"):
            await q.cancel(job_id=ids[0])  # already cancelled

        await q.resume()
        await settle(engine, wait_for, sent=2, cancelled=3)
        await idle(engine, clock)  # the workers looked again and found nothing to claim
        clock.advance(60)
        await idle(engine, clock)
        assert len(sink.received) == 2
        stats = await q.stats()
        assert (stats.sent, stats.cancelled) == (2, 3)
        assert stats.to_json()["cancelled"] == 3
        status = await engine.status()
        assert status["services"]["email"]["cancelled"] == 3
        gauges = {tuple(sample.labels.items()): sample.value
                  for family in families({"status": status, "backup_last_success": {}})
                  if family.name == "vertex_email_jobs" for sample in family.samples}
        assert gauges[(("status", "cancelled"),)] == 3
        assert {j.id for j in await q.search("status:cancelled")} == set(ids[:3])
        with pytest.raises(UsageError, match="only pending or failed"):
            await q.cancel(job_id=ids[4])  # sent

        [(actor, count, detail)] = query(
            settings,
            "SELECT actor, count, detail FROM audit_log WHERE action = 'email.cancel'")
        assert count == 3
        assert actor and json.loads(detail)["ids"] == ids[:3]
        assert json.loads(detail)["search"] == "promo"

        # Retryable: back to pending with a fresh round, then sent.
        assert await q.retry(job_id=ids[0]) == [ids[0]]
        assert await q.retry(ids=ids[1:3]) == ids[1:3]
        await settle(engine, wait_for, sent=5)
        assert len(sink.received) == 5


async def test_upgrading_a_version_7_database_keeps_jobs_attempts_and_ids(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                 " name TEXT NOT NULL, applied_at REAL NOT NULL)")
    for number, name, script in load_migrations()[:7]:
        for statement in split_statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (number, name))
    for i in range(1, 5):
        conn.execute(
            "INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject, body,"
            " max_attempts, created_at, updated_at, next_attempt_at, status, last_error)"
            " VALUES (?, 's@x', '[]', ?, 'Hi', 'b', 3, 0, 0, 0, ?, ?)",
            (f"<m{i}@x>", f"u{i}@x", "failed" if i % 2 else "sent",
             "mailbox unavailable" if i % 2 else None))
        conn.execute("INSERT INTO email_attempts (job_id, round, attempt, owner, at, outcome,"
                     " encrypted) VALUES (?, 1, 1, 'o', 0, 'sent', 1)", (i,))
    conn.execute("DELETE FROM email_jobs WHERE id = 4")  # the highest id, cleaned up
    conn.close()

    db = await Database.open(path)

    async def rows(text: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await db.read(text)]

    try:
        assert await rows("SELECT count(*) FROM email_attempts") == [(3,)]
        assert await rows("SELECT seq FROM sqlite_sequence WHERE name = 'email_jobs'") == [
            (4,)]
        assert await rows("SELECT rowid FROM email_jobs_fts WHERE email_jobs_fts MATCH"
                             " 'mailbox' ORDER BY rowid") == [(1,), (3,)]
        counts = dict(await rows("SELECT status, n FROM email_status_counts"))
        assert counts == {"pending": 0, "sending": 0, "sent": 1, "failed": 2, "cancelled": 0}
        # The foreign key points at the new table: deleting a job still removes its attempts.
        await db.write("DELETE FROM email_jobs WHERE id = 1")
        assert await rows("SELECT job_id FROM email_attempts ORDER BY job_id") == [
            (2,), (3,)]
        assert await rows("PRAGMA foreign_key_check") == []
    finally:
        await db.close()
