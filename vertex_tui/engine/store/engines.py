"""Engines as the database sees them: heartbeat leases (`engine:<owner>`) and what they hold."""

from __future__ import annotations

import json
from typing import Any

from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.dialect import Sql

HEARTBEAT_PREFIX = "engine:"

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
    "   WHERE l.owner = h.owner AND l.name <> h.name AND l.expires_at > :now)"
    + _ALIVE_TAIL,
)


async def heartbeat_stale(db: Database, owner: str, now: float) -> bool:
    """True if `owner` kept an engine heartbeat that has expired (it stopped beating without
    releasing it: killed, frozen or cut off), whatever host it ran on."""
    row = await db.read_one("SELECT expires_at FROM leases WHERE name = ?",
                            (HEARTBEAT_PREFIX + owner,))
    return row is not None and float(row[0]) <= now


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
    rows = await db.read(
        f"SELECT name, owner FROM leases WHERE name IN ({marks}) AND expires_at > ?",
        (*names, now))
    return {str(r[0]): str(r[1]) for r in rows}
