"""Per-kind figures of the backup folder for the backup panel: count and size of the backups
on disk, the last success, the last verification."""

from __future__ import annotations

from typing import Any

from vertex_tui.engine.store.db import Database


async def by_kind(db: Database) -> dict[str, dict[str, Any]]:
    """kind -> {count, total_size, last_ok_at, last_verified_at, last_verified_ok,
    last_verified_error} over the backups still on disk (status ok; deleted ones are gone)."""
    rows = await db.read(
        "SELECT kind, COUNT(*), COALESCE(SUM(size), 0), MAX(finished_at)"
        " FROM backups WHERE status = 'ok' GROUP BY kind")
    out: dict[str, dict[str, Any]] = {
        str(kind): {"count": int(count), "total_size": int(total),
                    "last_ok_at": None if last is None else float(last),
                    "last_verified_at": None, "last_verified_ok": None,
                    "last_verified_error": None}
        for kind, count, total, last in rows}
    checks = await db.read(
        "SELECT kind, verified_at, verified, error FROM backups b"
        " WHERE verified_at IS NOT NULL AND status IN ('ok', 'failed') AND verified_at = ("
        "  SELECT MAX(verified_at) FROM backups c WHERE c.kind = b.kind"
        "  AND c.status IN ('ok', 'failed'))")
    for kind, at, ok, error in checks:
        doc = out.setdefault(str(kind), {"count": 0, "total_size": 0, "last_ok_at": None})
        doc.update(last_verified_at=float(at), last_verified_ok=bool(ok),
                   last_verified_error=None if ok else error)
    return out
