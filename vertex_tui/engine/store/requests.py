"""Requests from attached consoles, picked up by a running engine (at most one picks each)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.dialect import Sql

STALE_SECONDS = 600.0

_PICK_HEAD = ("UPDATE requests SET picked_by = ?, picked_at = ? WHERE picked_by IS NULL"
              " AND id IN (SELECT id FROM requests WHERE picked_by IS NULL AND requested_at > ?"
              " ORDER BY id LIMIT ?")
_PICK_TAIL = ") RETURNING id, action, args, requested_by, requested_at"
# The outer `picked_by IS NULL` is what makes a pick exactly-once on PostgreSQL (READ
# COMMITTED): an engine that waited for another's pick re-checks the row and skips it. SKIP
# LOCKED lets it take the next open request instead of waiting.
PICK = Sql("requests.pick", sqlite=_PICK_HEAD + _PICK_TAIL,
           postgresql=_PICK_HEAD + " FOR UPDATE SKIP LOCKED" + _PICK_TAIL)


@dataclass(frozen=True, kw_only=True)
class Request:
    id: int
    action: str
    args: dict[str, Any]
    requested_by: str
    requested_at: float
    picked_by: str | None = None
    finished_at: float | None = None
    outcome: str | None = None
    result: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "args": self.args,
                "requested_by": self.requested_by,
                "requested_at": isoformat(self.requested_at), "picked_by": self.picked_by,
                "finished_at": isoformat(self.finished_at), "outcome": self.outcome,
                "result": self.result}


async def submit(db: Database, *, action: str, args: dict[str, Any], actor: str,
                 at: float) -> int:
    rows = await db.write(
        "INSERT INTO requests (action, args, requested_by, requested_at) VALUES (?, ?, ?, ?)"
        " RETURNING id", (action, json.dumps(args), actor, at))
    return int(rows[0][0])


async def pick(db: Database, *, owner: str, at: float, limit: int = 5) -> list[Request]:
    """Claim open requests for this engine; requests older than STALE_SECONDS expire."""
    rows = await db.write(PICK, (owner, at, at - STALE_SECONDS, limit))
    return [Request(id=r[0], action=r[1], args=json.loads(r[2]), requested_by=r[3],
                    requested_at=r[4], picked_by=owner) for r in rows]


async def finish(db: Database, request_id: int, *, at: float, ok: bool, result: Any) -> None:
    await db.write(
        "UPDATE requests SET finished_at = ?, outcome = ?, result = ? WHERE id = ?",
        (at, "ok" if ok else "error", json.dumps(result, default=str), request_id))


async def get(db: Database, request_id: int) -> Request | None:
    row = await db.read_one(
        "SELECT id, action, args, requested_by, requested_at, picked_by, finished_at, outcome,"
        " result FROM requests WHERE id = ?", (request_id,))
    if row is None:
        return None
    return Request(id=row[0], action=row[1], args=json.loads(row[2]), requested_by=row[3],
                   requested_at=row[4], picked_by=row[5], finished_at=row[6], outcome=row[7],
                   result=None if row[8] is None else json.loads(row[8]))
