"""engine_log: the engine's event log (see migration 0010), read together with audit_log.

Rows are written in batches (`append`), read newest-last with filters (`read`), followed
by a cursor (`Cursor`: the last id seen in each of the two tables) and pruned by age.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vertex_tui.engine.eventlog import AUDIT_WORDS, BACKUP_RUN_PREFIX, Cursor
from vertex_tui.engine.store.db import Database

INFO = 20


async def append(db: Database, rows: Sequence[tuple[float, str, int, str, str, str]]) -> int:
    """Insert (at, service, level, event, message, owner) rows in one transaction."""
    if not rows:
        return 0
    return await db.write_many(
        "INSERT INTO engine_log (at, service, level, event, message, owner)"
        " VALUES (?, ?, ?, ?, ?, ?)", rows)


def _words() -> str:
    """SQL for an audit action in words (eventlog.AUDIT_WORDS; constants of ours, quoted)."""
    assert not any("'" in text for pair in AUDIT_WORDS.items() for text in pair)
    cases = " ".join(f"WHEN '{action}' THEN '{words}'" for action, words in AUDIT_WORDS.items())
    n = len(BACKUP_RUN_PREFIX)
    return (f"CASE action {cases} ELSE CASE WHEN substr(action, 1, {n}) = '{BACKUP_RUN_PREFIX}'"
            f" THEN 'ran the ' || substr(action, {n + 1}) || ' backup job' ELSE action END END")


# Operator actions come from audit_log as info rows of the service their action names
# ("email.retry" -> email; "job.pause" -> the job's service is not known: "engine").
_ENTRIES = (
    "SELECT 'log' AS src, id, at, service, level, event, message, '' AS detail FROM engine_log"
    " WHERE id > :log_id AND id <= :log_top AND at >= :since"
    " UNION ALL"
    " SELECT 'audit', id, at,"
    "  CASE WHEN instr(action, '.') > 0 AND substr(action, 1, instr(action, '.') - 1)"
    "   IN ('email', 'backup', 'lifecycle', 'video')"
    "   THEN substr(action, 1, instr(action, '.') - 1) ELSE 'engine' END,"
    f"  {INFO}, 'audit.' || action,"
    f"  actor || ': ' || {_words()} || coalesce(', ' || count || ' affected', ''), detail"
    " FROM audit_log WHERE id > :audit_id AND id <= :audit_top AND at >= :since"
)


async def read(db: Database, *, since: float = 0.0,
               service: str | Sequence[str] | None = None, level: int = 0,
               search: str | Sequence[str] | None = None,
               after: Cursor | None = None, limit: int = 1000,
               until: float | None = None) -> tuple[list[dict[str, Any]], Cursor]:
    """Entries at or after `since` (and at or before `until`, and after the cursor),
    filtered by service (one name or any of several), minimum level and case-insensitive
    texts (each in message or event); the latest `limit` of them, oldest first, and the
    cursor after the newest entry read."""
    after = after or Cursor()
    # The cursor first, and only rows up to it: a row written meanwhile is the next read's.
    top = await db.read(
        "SELECT (SELECT coalesce(max(id), 0) FROM engine_log),"
        " (SELECT coalesce(max(id), 0) FROM audit_log)")
    cursor = Cursor(log_id=max(after.log_id, int(top[0][0])),
                    audit_id=max(after.audit_id, int(top[0][1])))
    where = ["level >= :level"]
    params: dict[str, Any] = {"log_id": after.log_id, "audit_id": after.audit_id,
                              "log_top": cursor.log_id, "audit_top": cursor.audit_id,
                              "since": since, "level": level, "limit": limit}
    if isinstance(service, str):
        service = [service] if service else None
    if service is not None:  # several names: any of them; none: nothing matches
        names = {f"service{n}": name for n, name in enumerate(service)}
        where.append(f"service IN ({', '.join(':' + n for n in names)})" if names else "1 = 0")
        params.update(names)
    if until is not None:
        where.append("at <= :until")
        params["until"] = until
    texts = [search] if isinstance(search, str) else list(search or ())
    for n, text in enumerate(t for t in texts if t):
        where.append(f"(instr(lower(message), :text{n}) > 0 OR instr(lower(event), :text{n})"
                     f" > 0 OR instr(lower(detail), :text{n}) > 0)")
        params[f"text{n}"] = text.lower()
    rows = await db.read(
        f"SELECT * FROM (SELECT * FROM ({_ENTRIES}) AS entries WHERE {' AND '.join(where)}"
        " ORDER BY at DESC, src DESC, id DESC LIMIT :limit) AS latest ORDER BY at, src, id",
        params)
    entries = [{"at": r[2], "service": r[3], "level": int(r[4]), "event": r[5],
                "message": r[6] + _detail(r[7])} for r in rows]
    return entries, cursor


async def prune(db: Database, *, before: float) -> int:
    """Delete engine_log rows older than `before`; returns how many."""
    rows = await db.write("DELETE FROM engine_log WHERE at < ? RETURNING id", (before,))
    return len(rows)


def _detail(detail: str) -> str:
    """An audit entry's JSON detail as ` (key value, ...)`, empty values left out."""
    if not detail:
        return ""
    try:
        parsed = json.loads(detail)
    except ValueError:
        return f" ({detail})"
    if not isinstance(parsed, dict):
        return f" ({detail})"
    shown = [f"{k} {v}" for k, v in parsed.items() if v not in (None, "", [], {})]
    return f" ({', '.join(shown)})" if shown else ""
