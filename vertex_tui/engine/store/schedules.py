"""The schedules a running engine publishes, for processes that schedule nothing themselves.

An attached console or a CLI command runs no scheduler: without this it could only guess an
engine's next runs from its own environment, which over SSH is rarely the engine's (a service's
EnvironmentFile is not the operator's shell). Each engine that runs services writes its jobs
(schedule, enabled, next run) to `engine_flags` under `schedule:<owner>` with its heartbeat;
readers trust only the entries of engines whose heartbeat is alive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from vertex_tui.engine.scheduling import ScheduledJob
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.leases import alive_engines_query

PREFIX = "schedule:"


async def publish(db: Database, owner: str, jobs: Iterable[ScheduledJob], *, at: float) -> None:
    """Write `owner`'s jobs, and drop the entries of engines no longer alive."""
    doc = {j.name: {"schedule": j.schedule, "enabled": j.enabled, "paused": j.paused,
                    "next_run": None if j.next_run is None else j.next_run.timestamp(),
                    "params": j.params}
           for j in jobs}
    params = {"name": f"{PREFIX}{owner}", "doc": json.dumps(doc, sort_keys=True), "now": at}
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO engine_flags (name, value, updated_at) VALUES (:name, :doc, :now)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at", params)
        await conn.execute(
            f"DELETE FROM engine_flags WHERE name LIKE '{PREFIX}%' AND name <> :name"
            f" AND substr(name, {len(PREFIX) + 1}) NOT IN ({alive_engines_query(db)})", params)


async def withdraw(db: Database, owner: str) -> None:
    await db.write("DELETE FROM engine_flags WHERE name = ?", (f"{PREFIX}{owner}",))


async def published(db: Database, *, now: float, reader: str) -> dict[str, dict[str, Any]]:
    """Job name -> {"schedule", "enabled", "paused", "next_run" (epoch or None), "params"}
    (`params`: settings of the job readers need, e.g. the video rotation interval), as
    published by an
    engine alive at `now` other than `reader`: the first by owner that published any job (a
    process that runs only the email workers, e.g. `email drain`, schedules nothing)."""
    rows = await db.read(
        f"SELECT value FROM engine_flags WHERE name IN (SELECT '{PREFIX}' || owner"
        f" FROM ({alive_engines_query(db)}) AS alive WHERE owner <> :reader) ORDER BY name",
        {"now": now, "reader": reader})
    for (value,) in rows:
        doc: dict[str, dict[str, Any]] = json.loads(value)
        if doc:
            return doc
    return {}
