"""`EmailQueue.enqueue_stream`: messages stored chunk by chunk in one transaction, all or none,
with one `EmailEnqueued` event after the commit. On both backends (a real SQLite file, a real
PostgreSQL database); the rows' visibility is checked from a second connection, as another
process would see them."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.email.message import PreparedEmail, prepare
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import InvalidMessage
from vertex_tui.engine.settings import Settings


def count(settings: Settings) -> int:
    if settings.database_url is not None:
        with psycopg.connect(settings.database_url.reveal()) as pg:
            return int(pg.execute("SELECT count(*) FROM email_jobs").fetchone()[0])
    with contextlib.closing(sqlite3.connect(settings.db_path, timeout=30)) as conn:
        return int(conn.execute("SELECT count(*) FROM email_jobs").fetchone()[0])


def prepared(n: int, *, fail_at: int | None = None) -> Iterator[PreparedEmail]:
    for i in range(n):
        if i == fail_at:
            raise InvalidMessage(f"line {i + 1}: broken")
        yield prepare(to=f"u{i}@example.com", subject=f"s{i}", body="b")


async def test_a_failure_after_several_chunks_stores_nothing_and_tells_no_one(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    seen: list[ev.Event] = []
    async with Engine(settings, clock=clock, run=[]) as engine:
        engine.events.subscribe(seen.append)
        consumed = 0

        def counted() -> Iterator[PreparedEmail]:
            nonlocal consumed
            for p in prepared(2_600, fail_at=2_500):
                consumed += 1
                yield p

        with pytest.raises(InvalidMessage, match="line 2501: broken"):
            await engine.email.enqueue_stream(counted(), chunk_rows=1_000)
        assert consumed == 2_500  # two chunks were inserted before the failure...
        assert count(settings) == 0  # ...and rolled back
        assert [e for e in seen if isinstance(e, ev.EmailEnqueued)] == []
        # The queue stays usable, ids go on from where the sequence was (SQLite's rolls back
        # with the rows; PostgreSQL's identity never hands a value out twice).
        ids = await engine.email.enqueue_stream(prepared(3))
        first = 1 if settings.database_url is None else 2_001
        assert list(ids) == [first, first + 1, first + 2]


async def test_every_chunk_is_committed_once_and_announced_after_the_commit(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    visible_at_event: list[int] = []
    events: list[ev.EmailEnqueued] = []

    def on_event(event: Any) -> None:
        if isinstance(event, ev.EmailEnqueued):
            events.append(event)
            visible_at_event.append(count(settings))

    async with Engine(settings, clock=clock, run=[]) as engine:
        engine.events.subscribe(on_event)
        ids = await engine.email.enqueue_stream(prepared(2_345), chunk_rows=1_000)
        assert len(ids) == 2_345 and list(ids) == list(range(1, 2_346))
        assert [e.count for e in events] == [2_345]
        assert events[0].job_ids == tuple(range(1, 101))
        assert visible_at_event == [2_345]  # committed before anyone heard of it
        assert (await engine.email.stats()).pending == 2_345
        # enqueue_many keeps its contract: ids in order, all or none.
        many = await engine.email.enqueue_many(
            {"to": f"m{i}@example.com", "subject": "s", "body": "b"} for i in range(5)
        )
        assert many == list(range(2_346, 2_351))
