"""service_runs: one row per scheduler pass or job run (start, end, outcome, counts, error)."""

from __future__ import annotations

import json
from typing import Any

from vertex_tui.engine.store.db import Database


async def start_run(db: Database, *, service: str, job: str, owner: str, at: float) -> int:
    rows = await db.write(
        "INSERT INTO service_runs (service, job, owner, started_at) VALUES (?, ?, ?, ?)"
        " RETURNING id",
        (service, job, owner, at),
    )
    return int(rows[0][0])


async def finish_run(db: Database, run_id: int, *, at: float, outcome: str,
                     counts: dict[str, Any] | None = None, error: str | None = None) -> None:
    await db.write(
        "UPDATE service_runs SET finished_at = ?, outcome = ?, counts = ?, error = ?"
        " WHERE id = ?",
        (at, outcome, json.dumps(counts or {}, default=str), error, run_id),
    )


async def record_skip(db: Database, *, service: str, job: str, owner: str, at: float,
                      reason: str) -> None:
    await db.write(
        "INSERT INTO service_runs (service, job, owner, started_at, finished_at, outcome, error)"
        " VALUES (?, ?, ?, ?, ?, 'skipped', ?)",
        (service, job, owner, at, at, reason),
    )


async def last_runs(db: Database, service: str) -> dict[str, dict[str, Any]]:
    """The latest finished run of each job of `service`, by any process. Skips do not count:
    a standby engine's skip must not hide the holder's real run."""
    rows = await db.read(
        "SELECT job, started_at, finished_at, outcome, counts, error FROM service_runs"
        " WHERE id IN (SELECT max(id) FROM service_runs WHERE service = ?"
        "              AND outcome NOT IN ('running', 'skipped') GROUP BY job)",
        (service,),
    )
    return {
        r[0]: {"started_at": r[1], "finished_at": r[2], "outcome": r[3],
               "counts": json.loads(r[4]), "error": r[5]}
        for r in rows
    }


async def mark_interrupted(db: Database, *, service: str, alive_owners: list[str],
                           at: float) -> int:
    """Runs left 'running' by processes that are gone become errors."""
    marks = ",".join("?" * len(alive_owners)) or "''"
    rows = await db.write(
        "UPDATE service_runs SET outcome = 'error', finished_at = ?,"
        " error = 'interrupted: the process running it stopped'"
        f" WHERE service = ? AND outcome = 'running' AND owner NOT IN ({marks}) RETURNING id",
        (at, service, *alive_owners),
    )
    return len(rows)


async def recent_errors(db: Database, limit: int = 10) -> list[dict[str, Any]]:
    """The latest failed passes and runs of every service, newest first."""
    rows = await db.read(
        "SELECT * FROM (SELECT service, job, finished_at, error FROM service_runs"
        "  WHERE outcome = 'error' ORDER BY id DESC LIMIT :n) AS runs"
        " UNION ALL SELECT * FROM (SELECT 'email', 'job ' || id, finished_at, last_error"
        "  FROM email_jobs WHERE finished_at IS NOT NULL AND status = 'failed'"
        "  ORDER BY finished_at DESC LIMIT :n) AS jobs"
        " ORDER BY 3 DESC LIMIT :n", {"n": limit})
    return [{"service": r[0], "job": r[1], "at": r[2], "error": r[3]} for r in rows]


async def record_run(db: Database, *, service: str, job: str, owner: str, started_at: float,
                     finished_at: float, outcome: str, counts: dict[str, Any] | None = None,
                     error: str | None = None) -> None:
    """A finished run in one statement (jobs that record only runs that changed something)."""
    await db.write(
        "INSERT INTO service_runs (service, job, owner, started_at, finished_at, outcome,"
        " counts, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (service, job, owner, started_at, finished_at, outcome,
         json.dumps(counts or {}, default=str), error),
    )


def _run_doc(r: Any) -> dict[str, Any]:
    counts = json.loads(r["counts"])
    seconds = counts.get("seconds") if isinstance(counts, dict) else None
    if not isinstance(seconds, (int, float)):
        seconds = None if r["finished_at"] is None else r["finished_at"] - r["started_at"]
    return {"id": r["id"], "service": r["service"], "job": r["job"], "owner": r["owner"],
            "started_at": r["started_at"], "finished_at": r["finished_at"],
            "outcome": r["outcome"], "counts": counts, "error": r["error"],
            "duration_s": None if seconds is None else round(float(seconds), 4)}


async def last_real_runs(db: Database) -> dict[tuple[str, str], dict[str, Any]]:
    """(service, job) -> its latest finished run that was not a skip, by any process."""
    rows = await db.read(
        "SELECT * FROM service_runs WHERE id IN (SELECT max(id) FROM service_runs"
        " WHERE outcome NOT IN ('running', 'skipped') GROUP BY service, job)")
    return {(r["service"], r["job"]): _run_doc(r) for r in rows}


async def history(db: Database, *, service: str, job: str, limit: int = 20) -> list[
        dict[str, Any]]:
    """Runs of one job (skips included), newest first."""
    rows = await db.read(
        "SELECT * FROM service_runs WHERE service = ? AND job = ? ORDER BY id DESC LIMIT ?",
        (service, job, limit))
    return [_run_doc(r) for r in rows]
