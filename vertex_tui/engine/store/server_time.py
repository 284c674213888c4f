"""The database server's clock, for engines on several hosts (PostgreSQL).

Leases and retry times are epoch seconds compared across engines; hosts whose clocks disagree
would steal live leases (a clock ahead sees them expired) or wait on dead ones (a clock
behind). Engines on PostgreSQL read time as their own clock plus its offset from the
server's (`engine.clock.ServerClock`), measured here, so every engine uses one timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.dialect import Sql

NOW = Sql("server_time.now",
          sqlite="SELECT (julianday('now') - 2440587.5) * 86400.0",
          postgresql="SELECT extract(epoch FROM clock_timestamp())::double precision")


def offset_of(samples: Sequence[tuple[float, float, float]]) -> float:
    """Server minus local time from (local before, server, local after) samples: the one with
    the shortest round trip, its server time against the middle of that trip."""
    before, server, after = min(samples, key=lambda s: s[2] - s[0])
    return server - (before + after) / 2


async def clock_offset(db: Database, local: Callable[[], float], samples: int = 3) -> float:
    """How far the database server's clock is ahead of `local` (seconds; negative: behind)."""
    taken = []
    for _ in range(samples):
        before = local()
        rows = await db.read(NOW)
        after = local()
        taken.append((before, float(rows[0][0]), after))
    return offset_of(taken)
