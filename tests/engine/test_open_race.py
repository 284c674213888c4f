"""Opening a brand-new SQLite file while another connection switches it to WAL and migrates.

The order of a real race (an engine and a `status` started together), made deterministic: the
other side (a plain sqlite3 connection here) holds the empty file's write lock when
`Database.open` first reads it, then switches it to WAL and holds a write transaction while
the opener's WAL pragma is retried, then commits. The opener must then go on (its writes wait
for the lock, never for a snapshot of its own it cannot let go), not stay "locked" for its
whole lock wait.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from vertex_tui.engine.store.db import Database


async def test_a_new_file_switched_to_wal_meanwhile_is_opened_once_the_other_commits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "v.db"
    path.touch()
    other = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)

    def run(sql: str) -> None:
        other.execute(sql).fetchall()

    await asyncio.to_thread(run, "BEGIN IMMEDIATE")  # the file still empty, its lock taken
    caplog.set_level(logging.WARNING, logger="vertex_tui.engine.store.db")
    opening = asyncio.create_task(Database.open(path, lock_wait=20))
    for _ in range(200):  # the opener has read the empty file and waits for the lock
        if "is locked; waiting" in caplog.text or opening.done():
            break
        await asyncio.sleep(0.05)
    assert "is locked; waiting" in caplog.text and not opening.done()
    await asyncio.to_thread(run, "ROLLBACK")
    await asyncio.to_thread(run, "PRAGMA journal_mode=WAL")
    await asyncio.to_thread(run, "BEGIN IMMEDIATE")  # a migration of the other side, open
    await asyncio.to_thread(run, "CREATE TABLE elsewhere (x)")
    await asyncio.sleep(2.5)  # the opener's pragma retried (every <= 1 s) meanwhile
    await asyncio.to_thread(run, "COMMIT")
    # Before the fix its WAL pragma's unfinished statement held a read snapshot from before
    # that commit: every BEGIN IMMEDIATE failed SQLITE_BUSY_SNAPSHOT for the whole lock wait.
    db = await asyncio.wait_for(opening, 10)
    try:
        assert (await db.read("PRAGMA journal_mode"))[0][0] == "wal"
        assert (await db.read("SELECT count(*) FROM schema_migrations"))[0][0] > 0
        assert await db.read("SELECT name FROM sqlite_master WHERE name = 'elsewhere'")
    finally:
        await db.close()
        other.close()
