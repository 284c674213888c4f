"""Who counts as alive when runs left `running` are cleaned up (`runs.alive_owners`), on both
backends: an engine is alive by its heartbeat, whatever host it runs on, and dead once the
heartbeat is stale, even while other leases of its own have hours left (a killed engine's
singletons are only freed when taken over)."""

from __future__ import annotations

import time

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import SystemClock
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.runs import Host, alive_owners
from vertex_tui.engine.store.db import Database

HOUR = 3600.0


async def test_an_engine_with_a_stale_heartbeat_is_dead_whatever_else_it_holds(
    backend_db: Database,
) -> None:
    now = time.time()  # PostgreSQL compares against its own clock: use real time on both
    dead, live, cli, me = ("far-host:1:dead", "far-host:2:live", "here:3:cli", "here:4:me")
    rows = [
        ("engine:" + dead, dead, now - 100, now - 60),  # stopped beating a minute ago
        ("backup:database", dead, now - 100, now + 6 * HOUR),  # ...but holds this for hours
        ("engine:" + live, live, now - 100, now + 30),
        ("lifecycle", live, now - 100, now + HOUR),
        ("email.rollup", cli, now - 1, now + 600),  # a CLI run: no heartbeat, a job lease
    ]
    for row in rows:
        await backend_db.write("INSERT INTO leases (name, owner, acquired_at, expires_at)"
                               " VALUES (?, ?, ?, ?)", row)
    host = Host(db=backend_db, clock=SystemClock(), events=ev.EventBus(),
                leases=Leases(backend_db, me), owner=me)

    assert await alive_owners(host, now) == sorted([live, cli, me])
    # A holder just found dead is left out too, and this process is always in.
    assert await alive_owners(host, now, dead=cli) == sorted([live, me])
