"""The audit log: who did what, when, to how many. Written in the action's own transaction."""

from __future__ import annotations

import getpass
import json
import os
from typing import Any

from vertex_tui.engine.store.conn import Connection


def current_actor() -> str:
    """The OS user running this process (falls back to the numeric uid)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


async def record(
    conn: Connection,
    *,
    at: float,
    action: str,
    count: int | None = None,
    actor: str | None = None,
    **detail: Any,
) -> None:
    """Append one audit entry inside the caller's transaction."""
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, count, detail) VALUES (?, ?, ?, ?, ?)",
        (at, actor or current_actor(), action, count, json.dumps(detail, default=str)),
    )
