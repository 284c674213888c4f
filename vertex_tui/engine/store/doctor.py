"""SQL of `vertex-tui doctor`: every lease, the runs and backups left 'running', and the
restorable backups of a database that may be damaged (read through a read-only connection
of its own, so a damaged file is never written)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vertex_tui.engine.store import server_time
from vertex_tui.engine.store.db import Database

INTERRUPTED_RUN = "interrupted: the process running it stopped (cleared by doctor)"
INTERRUPTED_BACKUP = "interrupted: the process making it stopped (cleared by doctor)"


@dataclass(frozen=True, kw_only=True)
class LeaseRow:
    name: str
    owner: str
    acquired_at: float
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class RunningRow:
    """A `service_runs` row (table 'service_runs') or a backup (table 'backups') still
    marked running."""

    table: str
    id: int
    what: str
    owner: str
    started_at: float


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A backup a damaged database could be restored from (newest first)."""

    kind: str
    path: str
    sha256: str | None
    finished_at: float | None


async def server_now(db: Database) -> float:
    """The database server's time (epoch seconds): what PostgreSQL leases expire against."""
    rows = await db.read(server_time.NOW)
    return float(rows[0][0])


async def leases(db: Database) -> list[LeaseRow]:
    rows = await db.read("SELECT name, owner, acquired_at, expires_at FROM leases ORDER BY name")
    return [LeaseRow(name=r[0], owner=r[1], acquired_at=r[2], expires_at=r[3]) for r in rows]


async def running(db: Database) -> list[RunningRow]:
    rows = await db.read(
        "SELECT 'service_runs', id, service || '.' || job, owner, started_at FROM service_runs"
        " WHERE outcome = 'running'"
        " UNION ALL SELECT 'backups', id, kind, owner, started_at FROM backups"
        " WHERE status = 'running' ORDER BY 5")
    return [RunningRow(table=r[0], id=r[1], what=r[2], owner=r[3], started_at=r[4])
            for r in rows]


async def clear(db: Database, *, leases: Sequence[LeaseRow], runs: Sequence[RunningRow],
                at: float) -> dict[str, int]:
    """Delete exactly the leases and interrupt exactly the runs given (still as found)."""
    counts = {"leases": 0, "runs": 0, "backups": 0}
    async with db.transaction() as conn:
        for lease in leases:
            cur = await conn.execute(
                "DELETE FROM leases WHERE name = ? AND owner = ? AND expires_at = ?",
                (lease.name, lease.owner, lease.expires_at))
            counts["leases"] += cur.rowcount
        for run in runs:
            if run.table == "service_runs":
                cur = await conn.execute(
                    "UPDATE service_runs SET outcome = 'error', finished_at = ?, error = ?"
                    " WHERE id = ? AND outcome = 'running'", (at, INTERRUPTED_RUN, run.id))
                counts["runs"] += cur.rowcount
            else:
                cur = await conn.execute(
                    "UPDATE backups SET status = 'failed', finished_at = ?, verified = 0,"
                    " error = ? WHERE id = ? AND status = 'running'",
                    (at, INTERRUPTED_BACKUP, run.id))
                counts["backups"] += cur.rowcount
    return counts


def restorable(path: Path, *, paths: Sequence[str] = ()) -> list[Candidate]:
    """Verified database and full backups recorded in the database at `path` (those at
    `paths` only, when given), newest first: what doctor offers and restore trusts when the
    database is damaged.

    Blocking, on a read-only connection of its own. The records are read only when the
    backups table and its indexes pass `PRAGMA quick_check(backups)`; raises
    `sqlite3.DatabaseError` when they do not, or cannot be read (their pages are damaged)."""
    where = f" AND path IN ({', '.join('?' * len(paths))})" if paths else ""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        found = [str(r[0]) for r in conn.execute("PRAGMA quick_check(backups)").fetchall()]
        if found != ["ok"]:
            raise sqlite3.DatabaseError(f"the backups table is damaged: {'; '.join(found[:3])}")
        rows = conn.execute(
            "SELECT kind, path, sha256, finished_at FROM backups WHERE status = 'ok'"
            " AND verified = 1 AND kind IN ('database', 'full') AND path IS NOT NULL" + where
            + " ORDER BY started_at DESC, id DESC", tuple(paths)).fetchall()
    return [Candidate(kind=r[0], path=r[1], sha256=r[2], finished_at=r[3]) for r in rows]
