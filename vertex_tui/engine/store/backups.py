"""SQL of the backup service: the `backups` history and restore drills."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.store.db import Database, Row


@dataclass(frozen=True, kw_only=True)
class BackupRecord:
    id: int
    kind: str
    status: str
    path: str | None
    size: int | None
    sha256: str | None
    started_at: float
    finished_at: float | None
    duration: float | None
    verified: bool
    verified_at: float | None
    verify_seconds: float | None
    trigger: str
    error: str | None
    warnings: str | None
    detail: dict[str, Any]
    host: str | None = None  # whose backup folder holds the file (None: made before 0011)

    COLUMNS = ("id, kind, status, path, size, sha256, started_at, finished_at, duration,"
               " verified, verified_at, verify_seconds, trigger, error, warnings, detail, host")

    @classmethod
    def from_row(cls, r: Row) -> BackupRecord:
        return cls(id=r[0], kind=r[1], status=r[2], path=r[3], size=r[4], sha256=r[5],
                   started_at=r[6], finished_at=r[7], duration=r[8], verified=bool(r[9]),
                   verified_at=r[10], verify_seconds=r[11], trigger=r[12], error=r[13],
                   warnings=r[14], detail=json.loads(r[15] or "{}"), host=r[16])

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "path": self.path, "size": self.size,
                "sha256": self.sha256, "verified": self.verified, "status": self.status,
                "started_at": isoformat(self.started_at),
                "finished_at": isoformat(self.finished_at),
                "duration_seconds": self.duration, "verify_seconds": self.verify_seconds,
                "verified_at": isoformat(self.verified_at), "trigger": self.trigger,
                "error": self.error, "warnings": self.warnings, "detail": self.detail,
                "host": self.host}


async def insert_running(db: Database, *, kind: str, at: float, trigger: str,
                         owner: str, host: str | None = None) -> int:
    rows = await db.write(
        "INSERT INTO backups (kind, status, started_at, trigger, owner, host)"
        " VALUES (?, 'running', ?, ?, ?, ?) RETURNING id",
        (kind, at, trigger, owner, host),
    )
    return int(rows[0][0])


async def finish_ok(db: Database, backup_id: int, *, at: float, path: str, size: int,
                    sha256: str, duration: float, verify_seconds: float,
                    warnings: str | None, detail: dict[str, Any]) -> None:
    await db.write(
        "UPDATE backups SET status = 'ok', path = ?, size = ?, sha256 = ?, finished_at = ?,"
        " duration = ?, verified = 1, verified_at = ?, verify_seconds = ?, warnings = ?,"
        " detail = ? WHERE id = ?",
        (path, size, sha256, at, duration, at, verify_seconds, warnings,
         json.dumps(detail, default=str), backup_id),
    )


async def finish_failed(db: Database, backup_id: int, *, at: float, started_at: float,
                        error: str) -> None:
    await db.write(
        "UPDATE backups SET status = 'failed', finished_at = ?, duration = ?, error = ?,"
        " verified = 0 WHERE id = ?",
        (at, at - started_at, error, backup_id),
    )


async def mark_interrupted(db: Database, *, alive_owners: Sequence[str], at: float) -> int:
    marks = ",".join("?" * len(alive_owners)) or "''"
    rows = await db.write(
        "UPDATE backups SET status = 'failed', finished_at = ?,"
        " error = 'interrupted: the process making it stopped'"
        f" WHERE status = 'running' AND owner NOT IN ({marks}) RETURNING id",
        (at, *alive_owners),
    )
    return len(rows)


async def history(db: Database, *, kind: str | None = None, limit: int = 50,
                  include_deleted: bool = False) -> list[BackupRecord]:
    where, params = [], []
    if kind:
        where.append("kind = ?")
        params.append(kind)
    if not include_deleted:
        where.append("status <> 'deleted'")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await db.read(
        f"SELECT {BackupRecord.COLUMNS} FROM backups {clause}"
        " ORDER BY started_at DESC, id DESC LIMIT ?", [*params, limit],
    )
    return [BackupRecord.from_row(r) for r in rows]


async def last_success(db: Database) -> dict[str, float]:
    """kind -> when its latest successful backup finished (rotation keeps the newest)."""
    rows = await db.read("SELECT kind, max(finished_at) FROM backups WHERE status = 'ok'"
                         " AND finished_at IS NOT NULL GROUP BY kind")
    return {str(r[0]): float(r[1]) for r in rows}


async def last_success_size(db: Database) -> dict[str, int]:
    """kind -> size in bytes of its latest successful backup."""
    rows = await db.read(
        "SELECT b.kind, b.size FROM backups AS b WHERE b.status = 'ok' AND b.size IS NOT NULL"
        " AND b.id = (SELECT n.id FROM backups AS n WHERE n.kind = b.kind AND n.status = 'ok'"
        "             AND n.finished_at IS NOT NULL ORDER BY n.finished_at DESC, n.id DESC"
        "             LIMIT 1)"
    )
    return {str(r[0]): int(r[1]) for r in rows}


def _here(host: str | None) -> tuple[str, tuple[str, ...]]:
    """With `host`: only records whose file is in its folder (written there, or before
    hosts were recorded)."""
    return ("", ()) if host is None else (" AND (host = ? OR host IS NULL)", (host,))


async def for_rotation(db: Database, kind: str, *, host: str | None = None) -> list[
        BackupRecord]:
    """The records rotation weighs for `kind`; with `host`, only those whose file is there."""
    here, params = _here(host)
    rows = await db.read(
        f"SELECT {BackupRecord.COLUMNS} FROM backups WHERE kind = ?"
        f" AND status IN ('ok', 'failed'){here}", (kind, *params),
    )
    return [BackupRecord.from_row(r) for r in rows]


async def mark_deleted(db: Database, ids: Sequence[int], at: float) -> None:
    async with db.transaction() as conn:
        await conn.executemany("UPDATE backups SET status = 'deleted', deleted_at = ?"
                               " WHERE id = ?", [(at, i) for i in ids])


async def by_path(db: Database, path: str) -> BackupRecord | None:
    row = await db.read_one(
        f"SELECT {BackupRecord.COLUMNS} FROM backups WHERE path = ? ORDER BY id DESC LIMIT 1",
        (path,),
    )
    return None if row is None else BackupRecord.from_row(row)


async def set_verified(db: Database, backup_id: int, *, ok: bool, at: float,
                       seconds: float, error: str | None) -> None:
    await db.write(
        "UPDATE backups SET verified = ?, verified_at = ?, verify_seconds = ?,"
        " error = CASE WHEN ? = 1 THEN error ELSE ? END WHERE id = ?",
        (int(ok), at, seconds, int(ok), error, backup_id),
    )


async def newest_restorable(db: Database, *, host: str | None = None) -> BackupRecord | None:
    """The newest verified database or full backup (with `host`: whose file is there)."""
    here, params = _here(host)
    row = await db.read_one(
        f"SELECT {BackupRecord.COLUMNS} FROM backups WHERE status = 'ok' AND verified = 1"
        f" AND kind IN ('database', 'full'){here} ORDER BY started_at DESC, id DESC LIMIT 1",
        params,
    )
    return None if row is None else BackupRecord.from_row(row)


async def record_drill(db: Database, *, at: float, backup_id: int | None, path: str | None,
                       ok: bool, duration: float | None, error: str | None,
                       detail: dict[str, Any]) -> None:
    await db.write(
        "INSERT INTO restore_drills (at, backup_id, path, ok, duration, error, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, backup_id, path, int(ok), duration, error, json.dumps(detail, default=str)),
    )


async def last_drill(db: Database, *, ok_only: bool = False) -> dict[str, Any] | None:
    row = await db.read_one(
        "SELECT at, backup_id, path, ok, duration, error, detail FROM restore_drills"
        f"{' WHERE ok = 1' if ok_only else ''} ORDER BY id DESC LIMIT 1",
    )
    if row is None:
        return None
    return {"at": isoformat(row[0]), "backup_id": row[1], "path": row[2], "ok": bool(row[3]),
            "duration_seconds": row[4], "error": row[5], "detail": json.loads(row[6])}


async def folder_token(db: Database, *, token: str, host: str, at: float) -> str:
    """The token of the shared backup folder: the one recorded, or `token` if none was."""
    await db.write("INSERT INTO backup_folder (id, token, host, created_at) VALUES (1, ?, ?, ?)"
                   " ON CONFLICT (id) DO NOTHING", (token, host, at))
    row = await db.read_one("SELECT token FROM backup_folder WHERE id = 1")
    return str(row[0]) if row else token


# Tables that describe the backup folder and what operators did rather than the platform's
# data: a restore keeps the replaced database's view of them (see `carry_over`).
REPLACED_ON_RESTORE = ("restore_drills", "backups")  # children first: the drills point at backups


async def carry_over(db: Database, previous: Path) -> dict[str, int]:
    """After a restore, bring back from the replaced database (`previous`) the backup records
    and drills, wholesale, and the audit entries newer than the restored copy's.

    The restored copy knows the backups of the moment it was taken: without this, every later
    backup would vanish from listing and rotation while its file stays on disk, the restored
    backup itself would show as still running (it was, when copied), and the trail of what
    operators did since would be lost. Returns the rows brought back per table.
    """
    await db.write("ATTACH DATABASE ? AS previous", (str(previous),))
    try:
        counts: dict[str, int] = {}
        async with db.transaction() as conn:
            for table in REPLACED_ON_RESTORE:
                await conn.execute(f"DELETE FROM main.{table}")
            for table in (*reversed(REPLACED_ON_RESTORE), "audit_log"):
                ours = [r[1] for r in await conn.execute_fetchall(
                    f"PRAGMA main.table_info({table})")]
                theirs = {r[1] for r in await conn.execute_fetchall(
                    f"PRAGMA previous.table_info({table})")}
                columns = ", ".join(c for c in ours if c in theirs)
                newer = ("WHERE id > (SELECT coalesce(max(id), 0) FROM main.audit_log)"
                         if table == "audit_log" else "")
                cur = await conn.execute(f"INSERT INTO main.{table} ({columns})"
                                         f" SELECT {columns} FROM previous.{table} {newer}")
                counts[table] = cur.rowcount
        return counts
    finally:
        await db.write("DETACH DATABASE previous")
