"""SQL of the SMTP relay state each delivering engine publishes (see email/relay.py).

Each engine writes its view of the relay to `engine_flags` under `smtp:<owner>` when it
changes, and withdraws it when it stops; readers (the CLI `status`, an attached console) trust
only the entries of engines whose heartbeat is alive.
"""

from __future__ import annotations

import json

from vertex_tui.engine.email.relay import RelayState
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.leases import alive_engines_query

PREFIX = "smtp:"


async def publish(db: Database, owner: str, state: RelayState, *, at: float) -> None:
    doc = json.dumps({"state": state.state, "since": state.since, "error": state.error})
    await db.write(
        "INSERT INTO engine_flags (name, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
        " updated_at = excluded.updated_at",
        (f"{PREFIX}{owner}", doc, at),
    )


async def withdraw(db: Database, owner: str) -> None:
    await db.write("DELETE FROM engine_flags WHERE name = ?", (f"{PREFIX}{owner}",))


async def published(db: Database, *, now: float, exclude: str | None = None) -> list[RelayState]:
    """The relay states published by engines alive at `now` (other than `exclude`)."""
    rows = await db.read(
        f"SELECT value FROM engine_flags WHERE name IN (SELECT '{PREFIX}' || owner"
        f" FROM ({alive_engines_query(db)}) AS alive WHERE owner <> :exclude)",
        {"now": now, "exclude": exclude or ""},
    )
    states = []
    for (value,) in rows:
        doc = json.loads(value)
        states.append(RelayState(state=doc["state"], since=doc["since"], error=doc["error"]))
    return states
