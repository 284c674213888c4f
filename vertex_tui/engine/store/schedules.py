"""The schedules a running engine publishes, for processes that schedule nothing themselves.

An attached console or a CLI command runs no scheduler: without this it could only guess an
engine's next runs from its own environment, which over SSH is rarely the engine's (a service's
EnvironmentFile is not the operator's shell). Each engine that runs services writes its jobs
(schedule, enabled, next run) to `engine_flags` under `schedule:<owner>` with its heartbeat;
readers trust only the entries of engines whose heartbeat is alive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from vertex_tui.engine.scheduling import ScheduledJob
from vertex_tui.engine.store.db import Database

PREFIX = "schedule:"


async def publish(db: Database, owner: str, jobs: Iterable[ScheduledJob], *, at: float,
                  alive: Sequence[str]) -> None:
    """Write `owner`'s jobs, and drop the entries of engines no longer alive."""
    doc = {j.name: {"schedule": j.schedule, "enabled": j.enabled,
                    "next_run": None if j.next_run is None else j.next_run.timestamp()}
           for j in jobs}
    keep = [f"{PREFIX}{o}" for o in {*alive, owner}]
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO engine_flags (name, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (f"{PREFIX}{owner}", json.dumps(doc, sort_keys=True), at))
        await conn.execute(
            f"DELETE FROM engine_flags WHERE name LIKE '{PREFIX}%'"
            f" AND name NOT IN ({', '.join('?' * len(keep))})", keep)


async def withdraw(db: Database, owner: str) -> None:
    await db.write("DELETE FROM engine_flags WHERE name = ?", (f"{PREFIX}{owner}",))


async def published(db: Database, owners: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Job name -> {"schedule", "enabled", "next_run" (epoch or None)}, from the first of
    `owners` (in sorted order) that published any job (a process that runs only the email
    workers, e.g. `email drain`, schedules nothing)."""
    if not owners:
        return {}
    names = [f"{PREFIX}{o}" for o in sorted(owners)]
    rows = await db.read(
        f"SELECT name, value FROM engine_flags WHERE name IN ({', '.join('?' * len(names))})",
        names)
    by_name = {str(r[0]): str(r[1]) for r in rows}
    for name in names:
        doc: dict[str, dict[str, Any]] = json.loads(by_name.get(name, "{}"))
        if doc:
            return doc
    return {}


async def published_by_others(db: Database, alive: Sequence[str],
                              owner: str) -> dict[str, dict[str, Any]]:
    """`published()` of the alive engines other than `owner` (the reader itself)."""
    return await published(db, [o for o in alive if o != owner])
