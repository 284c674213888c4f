"""A database of either backend on a test's FakeClock, for tests that call the store itself.

SQLite compares the times its callers pass; PostgreSQL compares leases and retries against
the server's clock, which a FakeClock cannot move, so there the fake clock stands in for it
(`Database.use_test_clock`, see vertex_tui/engine/store/server_time.py). An `Engine` given a
FakeClock does the same for its own database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.db import Database


@asynccontextmanager
async def database_on(settings: Settings, clock: FakeClock) -> AsyncIterator[Database]:
    """`settings`' database, open, its "now" `clock`'s; closed afterwards."""
    db = await open_database(settings)
    db.use_test_clock(clock.time)
    try:
        yield db
    finally:
        await db.close()
