"""Named leases: a row with an owner and an expiry (see engine/leases.py for their use).

Acquire, release and take-over are single statements, so two processes racing for one lease
cannot both win.
"""

from __future__ import annotations

from vertex_tui.engine.store.conn import Connection
from vertex_tui.engine.store.db import Database

# Owners of unexpired engine heartbeat leases (`engine:<owner>`), as a subquery to reuse.
ALIVE_ENGINES = "SELECT owner FROM leases WHERE name LIKE 'engine:%' AND expires_at > :now"


async def acquire(db: Database, name: str, owner: str, now: float, until: float) -> bool:
    """Take or extend `name` for `owner` until `until`; True if `owner` holds it afterwards."""
    rows = await db.write(
        "INSERT INTO leases (name, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET "
        "  owner = excluded.owner, expires_at = excluded.expires_at, "
        "  acquired_at = CASE WHEN leases.owner = excluded.owner "
        "                     THEN leases.acquired_at ELSE excluded.acquired_at END "
        "WHERE leases.owner = excluded.owner OR leases.expires_at <= excluded.acquired_at "
        "RETURNING owner",
        (name, owner, now, until),
    )
    return bool(rows) and rows[0][0] == owner


async def release(db: Database, name: str, owner: str) -> None:
    """Drop `name` if `owner` holds it."""
    await db.write("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))


async def release_all(db: Database, owner: str) -> None:
    await db.write("DELETE FROM leases WHERE owner = ?", (owner,))


async def holder(db: Database, name: str, now: float) -> str | None:
    """The owner of `name` if it is held and unexpired."""
    row = await db.read_one(
        "SELECT owner FROM leases WHERE name = ? AND expires_at > ?", (name, now)
    )
    return None if row is None else str(row[0])


async def live_owners(db: Database, now: float) -> list[str]:
    """Owners of any unexpired lease."""
    rows = await db.read("SELECT DISTINCT owner FROM leases WHERE expires_at > ?", (now,))
    return [str(r[0]) for r in rows]


async def alive_engines(db: Database, now: float) -> list[str]:
    """Owners of unexpired engine heartbeat leases (`engine:<owner>`)."""
    rows = await db.read(ALIVE_ENGINES, {"now": now})
    return [str(r[0]) for r in rows]


async def drop_restored(conn: Connection, before: float, owner: str) -> None:
    """In a just restored database, the leases of the moment its copy was taken (acquired
    before `before`) and `owner`'s: their holders hold nothing in this database."""
    await conn.execute("DELETE FROM leases WHERE acquired_at < ? OR owner = ?", (before, owner))
