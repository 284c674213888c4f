"""Paused jobs: durable flags in `engine_flags` (`job_paused:<job>`) every engine follows.

A pause or resume is an operator action, audited in the same transaction.
"""

from __future__ import annotations

import json
from typing import Any

from vertex_tui.engine.store import audit
from vertex_tui.engine.store.db import Database

PREFIX = "job_paused:"


async def set_paused(db: Database, job: str, paused: bool, *, at: float,
                     actor: str | None = None) -> bool:
    """Pause or resume `job`; returns False if it already was in that state (still audited:
    the operator asked)."""
    name = PREFIX + job
    async with db.transaction() as conn:
        # One statement each way, so two operators pausing at once (PostgreSQL: no writer
        # lock) cannot both insert: the flag row's key decides.
        if paused:
            result = await conn.execute(
                "INSERT INTO engine_flags (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, json.dumps({"by": actor or audit.current_actor()}), at))
        else:
            result = await conn.execute("DELETE FROM engine_flags WHERE name = ?", (name,))
        changed = result.rowcount == 1
        await audit.record(conn, at=at, action="job.pause" if paused else "job.resume",
                           actor=actor, job=job, changed=changed)
    return changed


async def is_paused(db: Database, job: str) -> bool:
    return await db.read_one("SELECT 1 FROM engine_flags WHERE name = ?",
                             (PREFIX + job,)) is not None


async def paused(db: Database) -> dict[str, dict[str, Any]]:
    """Job name -> {"at", "by"} for every paused job."""
    rows = await db.read(
        f"SELECT substr(name, {len(PREFIX) + 1}), value, updated_at FROM engine_flags"
        f" WHERE name LIKE '{PREFIX}%'")
    return {str(r[0]): {**json.loads(r[1]), "at": r[2]} for r in rows}
