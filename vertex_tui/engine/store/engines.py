"""Engines as the database sees them: heartbeat leases (`engine:<owner>`) and what they hold."""

from __future__ import annotations

import json
from typing import Any

from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.dialect import Sql
from vertex_tui.engine.store.leases import SERVER_NOW

HEARTBEAT_PREFIX = "engine:"
# PostgreSQL: expiries against the server's clock (see store/leases.py), not the caller's.
STALE = Sql("engines.heartbeat_stale",
            sqlite="SELECT expires_at <= :now FROM leases WHERE name = :name",
            postgresql=f"SELECT expires_at <= {SERVER_NOW} FROM leases WHERE name = :name")

_ALIVE_TAIL = (" FROM leases h WHERE h.name LIKE 'engine:%' AND h.expires_at > :now"
               " ORDER BY h.owner")
# The other leases each live engine holds, as a JSON list of names (sorted).
ALIVE = Sql(
    "engines.alive",
    sqlite="SELECT h.owner, h.acquired_at, h.expires_at,"
    " (SELECT json_group_array(l.name) FROM (SELECT name FROM leases"
    "   WHERE owner = h.owner AND name <> h.name AND expires_at > :now ORDER BY name) l)"
    + _ALIVE_TAIL,
    postgresql="SELECT h.owner, h.acquired_at, h.expires_at,"
    " (SELECT coalesce(json_agg(l.name ORDER BY l.name), '[]')::text FROM leases l"
    f"   WHERE l.owner = h.owner AND l.name <> h.name AND l.expires_at > {SERVER_NOW})"
    + _ALIVE_TAIL.replace(":now", SERVER_NOW),
)


async def heartbeat_stale(db: Database, owner: str, now: float) -> bool:
    """True if `owner` kept an engine heartbeat that has expired (it stopped beating without
    releasing it: killed, frozen or cut off), whatever host it ran on."""
    row = await db.read_one(STALE, {"name": HEARTBEAT_PREFIX + owner, "now": now})
    return row is not None and bool(row[0])


async def alive(db: Database, now: float, *, heartbeat_ttl: float) -> list[dict[str, Any]]:
    """Every engine whose heartbeat is alive at `now`: owner, host, pid, since (its first
    beat), heartbeat_at (its last), and the names of the other leases it holds."""
    rows = await db.read(ALIVE, {"now": now})
    out = []
    for owner, since, expires, held in rows:
        host, _, rest = str(owner).partition(":")
        pid = rest.partition(":")[0]
        out.append({"owner": owner, "host": host,
                    "pid": int(pid) if pid.isdigit() else None,
                    "since": isoformat(since),
                    "heartbeat_at": isoformat(float(expires) - heartbeat_ttl),
                    "leases": json.loads(held)})
    return out


async def holders(db: Database, names: list[str], now: float) -> dict[str, str]:
    """Lease name -> owner, for those of `names` held and unexpired at `now`."""
    if not names:
        return {}
    marks = ",".join("?" * len(names))
    live = "expires_at > ?" if db.dialect == "sqlite" else f"expires_at > {SERVER_NOW}"
    rows = await db.read(f"SELECT name, owner FROM leases WHERE name IN ({marks}) AND {live}",
                         (*names, now) if db.dialect == "sqlite" else names)
    return {str(r[0]): str(r[1]) for r in rows}
