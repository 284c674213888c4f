"""The engine itself on PostgreSQL (VERTEX_DATABASE_URL): it opens through `open_database`,
migrates, follows pauses, lists engines and jobs, and leaves no SQLite file behind. (The
services' own SQL moves to both dialects in their own modules.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import StoreError
from vertex_tui.engine.settings import DatabaseUrl, Settings
from vertex_tui.engine.store import leases as lease_store
from vertex_tui.engine.store.pg import PgDatabase


async def test_an_engine_opens_on_postgresql(settings_factory: Callable[..., Settings],
                                             pg_url: str, tmp_path: Path) -> None:
    settings = settings_factory(database_url=DatabaseUrl(pg_url))
    async with Engine(settings, clock=FakeClock(), run=[]) as engine:
        assert isinstance(engine.db, PgDatabase) and engine.db.dialect == "postgresql"
        assert await engine.jobs.set_paused("video.check", True)
        assert await engine.jobs.follow_pauses() is not None
        snapshot = {j["job"]: j for j in await engine.jobs.snapshot()}
        assert snapshot["video.check"]["paused"] is True
        assert await engine.engines() == [] and await engine.recent_errors() == []
    assert not settings.db_path.exists()
    assert list(tmp_path.glob("*.db")) == []


async def test_an_engine_refuses_a_database_being_restored(
        settings_factory: Callable[..., Settings], pg_url: str) -> None:
    from vertex_tui.engine.backup.restore import MAINTENANCE_LEASE

    clock = FakeClock()
    db = await PgDatabase.open(pg_url)
    db.use_test_clock(clock.time)  # the lease on the engine's (fake) timeline
    try:
        assert await lease_store.acquire(db, MAINTENANCE_LEASE, "restorer", clock.time(),
                                         clock.time() + 600)
    finally:
        await db.close()
    settings = settings_factory(database_url=DatabaseUrl(pg_url))
    with pytest.raises(StoreError, match="is being restored by restorer") as caught:
        async with Engine(settings, clock=clock, run=[]):
            pass
    assert "postgresql://" in str(caught.value)
