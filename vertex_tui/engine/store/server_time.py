"""The database server's clock, for engines on several hosts (PostgreSQL).

Leases and retry times are epoch seconds compared across engines; hosts whose clocks disagree
would steal live leases (a clock ahead sees them expired) or wait on dead ones (a clock
behind). So on PostgreSQL every expiry is set and compared inside the statement against the
server's clock (`STATEMENT_NOW`, `CLOCK_NOW`: the only spellings of server time the store
uses, a test checks), and engines read time as their own clock plus its offset from the
server's (`engine.clock.ServerClock`), measured here, so every engine uses one timeline.

Tests move time with a `FakeClock`, which cannot move the server's clock. For them, and only
for them, a PostgreSQL database can be told to read "now" from that clock instead
(`Database.use_test_clock`, which `Engine` calls for a FakeClock alone): each statement then
runs with the two expressions replaced by the fake clock's time, exactly (`pinned`). The
store's statements stay the production ones (the server still decides what is expired; the
fake clock only says when "now" is), and there is no way to reach this from configuration:
no setting, no URL parameter, no server setting (a GUC could be set from the URL's
`options` or `ALTER ROLE`), only code that hands the database a clock.

Why not pass the engine's clock (`ServerClock`) to the statements as `now` instead: then a
lease's fate is whatever the caller's clock says, and the guarantee rests on every process
(CLI one-shots, consoles) using a well-measured offset, and on no host clock stepping
between two heartbeats' measurements; a host stepped an hour ahead would steal every live
lease until its next measurement. The server's own clock has none of those failure modes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.dialect import Sql

# The server's time in epoch seconds: one value for the whole statement, and the time of
# the moment (clock_timestamp: not frozen at the start of a transaction, unlike now()).
STATEMENT_NOW = "extract(epoch FROM statement_timestamp())::float8"
CLOCK_NOW = "extract(epoch FROM clock_timestamp())::float8"
SERVER_TIMES = (STATEMENT_NOW, CLOCK_NOW)

NOW = Sql("server_time.now",
          sqlite="SELECT (julianday('now') - 2440587.5) * 86400.0",
          postgresql=f"SELECT {CLOCK_NOW}")


def pinned(text: str, now: float) -> str:
    """`text` with the server's time replaced by `now` (a test's clock; see the module)."""
    if "_timestamp()" not in text:
        return text
    literal = f"({float(now)!r}::float8)"  # repr: the same double back, to the last bit
    for expression in SERVER_TIMES:
        text = text.replace(expression, literal)
    return text


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
