"""Named leases: a row with an owner and an expiry (see engine/leases.py for their use).

Acquire, release and take-over are single statements, so two processes racing for one lease
cannot both win.

On PostgreSQL, engines run on several hosts whose clocks disagree: every expiry is set and
compared against the database server's clock (`SERVER_NOW`), never the caller's `now`, so a
host whose clock runs ahead cannot steal a live lease and one running behind does not wait
on a dead holder. (SQLite is one host: its callers' `now` is the clock there. Tests move
time with a fake clock on both: see `server_time` for how it stands in for the server's.)
"""

from __future__ import annotations

from vertex_tui.engine.store.conn import Connection
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.dialect import Sql
from vertex_tui.engine.store.server_time import CLOCK_NOW

# The database server's time, as epoch seconds (clock_timestamp: not frozen at the start of
# a transaction, unlike now(); see server_time).
SERVER_NOW = CLOCK_NOW

# Owners of unexpired engine heartbeat leases (`engine:<owner>`), as a subquery to reuse.
ALIVE_ENGINES = "SELECT owner FROM leases WHERE name LIKE 'engine:%' AND expires_at > :now"


_UPSERT = (
    " ON CONFLICT (name) DO UPDATE SET "
    "  owner = excluded.owner, expires_at = excluded.expires_at, "
    "  acquired_at = CASE WHEN leases.owner = excluded.owner "
    "                     THEN leases.acquired_at ELSE excluded.acquired_at END "
    "WHERE leases.owner = excluded.owner OR leases.expires_at <= excluded.acquired_at "
    "RETURNING owner")
ACQUIRE = Sql(
    "leases.acquire",
    sqlite="INSERT INTO leases (name, owner, acquired_at, expires_at)"
    " VALUES (:name, :owner, :now, :until)" + _UPSERT,
    postgresql="INSERT INTO leases (name, owner, acquired_at, expires_at)"
    f" SELECT CAST(:name AS text), CAST(:owner AS text), t.at, t.at + CAST(:ttl AS double"
    f" precision) FROM (SELECT {SERVER_NOW} AS at) AS t" + _UPSERT)
# Named parameters: the PostgreSQL texts leave :now out (a dict's unused keys are ignored).
HOLDER = Sql("leases.holder",
             sqlite="SELECT owner FROM leases WHERE name = :name AND expires_at > :now",
             postgresql="SELECT owner FROM leases WHERE name = :name"
             f" AND expires_at > {SERVER_NOW}")
LIVE_OWNERS = Sql(
    "leases.live_owners",
    sqlite="SELECT DISTINCT owner FROM leases WHERE expires_at > :now",
    postgresql=f"SELECT DISTINCT owner FROM leases WHERE expires_at > {SERVER_NOW}")
ALIVE = Sql("leases.alive_engines",
            sqlite=ALIVE_ENGINES,
            postgresql=f"SELECT owner FROM leases WHERE name LIKE 'engine:%'"
            f" AND expires_at > {SERVER_NOW}")


def alive_engines_query(db: Database) -> str:
    """`ALIVE_ENGINES` for `db`'s dialect, to embed as a subquery (named parameter :now)."""
    return ALIVE.text(db.dialect)


async def acquire(db: Database, name: str, owner: str, now: float, until: float) -> bool:
    """Take or extend `name` for `owner` until `until` (PostgreSQL: for `until - now`
    seconds of the server's clock); True if `owner` holds it afterwards."""
    rows = await db.write(ACQUIRE, {"name": name, "owner": owner, "now": now, "until": until,
                                    "ttl": until - now})
    return bool(rows) and rows[0][0] == owner


async def release(db: Database, name: str, owner: str) -> None:
    """Drop `name` if `owner` holds it."""
    await db.write("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))


async def release_all(db: Database, owner: str) -> None:
    await db.write("DELETE FROM leases WHERE owner = ?", (owner,))


async def holder(db: Database, name: str, now: float) -> str | None:
    """The owner of `name` if it is held and unexpired."""
    row = await db.read_one(HOLDER, {"name": name, "now": now})
    return None if row is None else str(row[0])


async def live_owners(db: Database, now: float) -> list[str]:
    """Owners of any unexpired lease."""
    rows = await db.read(LIVE_OWNERS, {"now": now})
    return [str(r[0]) for r in rows]


async def alive_engines(db: Database, now: float) -> list[str]:
    """Owners of unexpired engine heartbeat leases (`engine:<owner>`)."""
    rows = await db.read(ALIVE, {"now": now})
    return [str(r[0]) for r in rows]


async def drop_restored(conn: Connection, before: float, owner: str) -> None:
    """In a just restored database, the leases of the moment its copy was taken (acquired
    before `before`) and `owner`'s: their holders hold nothing in this database."""
    await conn.execute("DELETE FROM leases WHERE acquired_at < ? OR owner = ?", (before, owner))
