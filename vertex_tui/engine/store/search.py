"""SQL of email search (FTS5 trigram index `email_jobs_fts`, migration 0008) and of cancel.

Free text and `to:`/`subject:`/`error:` pieces of 3+ characters are an FTS5 MATCH (substring,
case-insensitive): the index is read newest first and joined to the jobs, so a first page
stops after `limit` hits instead of scanning the table. A piece of 1-2 characters cannot be
a trigram query: it becomes a LIKE on the jobs' own columns, applied while walking the jobs
newest first (by the MATCH rows if there are other pieces, else by id): fast when it is
common, a scan of the table when it is rare.

PostgreSQL (no FTS5): every piece is an ILIKE '%piece%' on the jobs' columns, which the GIN
trigram indexes of pg_trgm (migration 0008) answer for pieces of 3+ characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vertex_tui.engine import audit
from vertex_tui.engine.email.models import EmailJob
from vertex_tui.engine.search import Query
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.dialect import Dialect, Sql

TRIGRAM = 3
_COLUMNS = {"to": "to_header", "subject": "subject", "error": "last_error"}
_FREE = ("to_header", "subject", "last_error", "message_id")
CANCELLABLE = ("pending", "failed")


def _phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _plan(
    q: Query, now: float, statuses: Sequence[str] | None = None, dialect: Dialect = "sqlite"
) -> tuple[str, list[str], list[Any], str]:
    """(FROM clause, WHERE parts, parameters, id column) for `q`; `statuses` narrows further."""
    match: list[str] = []
    where: list[str] = []
    params: list[Any] = []
    # PostgreSQL: no FTS5 table; every piece is an ILIKE (the trigram indexes serve it).
    trigram = TRIGRAM if dialect == "sqlite" else 1 << 30
    like = "LIKE" if dialect == "sqlite" else "ILIKE"
    for piece in q.text:
        if len(piece) >= trigram:
            match.append(_phrase(piece))
        else:
            where.append("(" + " OR ".join(f"j.{c} {like} ? ESCAPE '\\'" for c in _FREE) + ")")
            params += [_like(piece)] * len(_FREE)
    for name, piece in q.fields:
        column = _COLUMNS[name]
        if len(piece) >= trigram:
            match.append(f"{column} : {_phrase(piece)}")
        else:
            where.append(f"j.{column} {like} ? ESCAPE '\\'")
            params.append(_like(piece))
    wanted = set(q.statuses) if q.statuses is not None else None
    if statuses is not None:
        wanted = set(statuses) if wanted is None else wanted & set(statuses)
    if wanted is not None:
        where.append(f"j.status IN ({', '.join('?' * len(wanted))})" if wanted else "1 = 0")
        params += sorted(wanted)
    for job_id in q.ids:
        where.append("j.id = ?")
        params.append(job_id)
    if q.older is not None:
        where.append("j.created_at <= ?")
        params.append(now - q.older)
    if q.newer is not None:
        where.append("j.created_at >= ?")
        params.append(now - q.newer)
    if match:
        # The MATCH goes first in the parameters: it is the first WHERE part.
        return (
            "email_jobs_fts AS f JOIN email_jobs AS j ON j.id = f.rowid",
            ["email_jobs_fts MATCH ?", *where],
            [" AND ".join(match), *params],
            "f.rowid",
        )
    return "email_jobs AS j", where, params, "j.id"


async def page(
    db: Database, q: Query, *, now: float, limit: int = 50, before_id: int | None = None
) -> list[EmailJob]:
    """One page of matching jobs, newest first; `before_id` continues from the last one."""
    source, where, params, key = _plan(q, now, dialect=db.dialect)
    if before_id is not None:
        where.append(f"{key} < ?")
        params.append(before_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    columns = ", ".join(f"j.{c.strip()}" for c in EmailJob.COLUMNS.split(","))
    rows = await db.read(
        f"SELECT {columns} FROM {source}{clause} ORDER BY {key} DESC LIMIT ?", [*params, limit]
    )
    return [EmailJob.from_row(r) for r in rows]


async def count(db: Database, q: Query, *, now: float, cap: int | None = None) -> int:
    """How many jobs match (at most `cap`, when given: the caller shows "cap+")."""
    source, where, params, _ = _plan(q, now, dialect=db.dialect)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    if q.statuses is not None and not q.statuses:  # no status can match (`IN ()`: SQLite only)
        return 0
    if q.empty or q == Query(statuses=q.statuses):  # by status only: the kept counts
        marks = ", ".join("?" * len(q.statuses or ()))
        row = await db.read_one(
            "SELECT sum(n) FROM email_status_counts"
            + (f" WHERE status IN ({marks})" if q.statuses is not None else ""),
            sorted(q.statuses or ()),
        )
        total = int(row[0] or 0) if row else 0
        return total if cap is None else min(total, cap)
    if cap is None:
        row = await db.read_one(f"SELECT count(*) FROM {source}{clause}", params)
    else:
        row = await db.read_one(
            f"SELECT count(*) FROM (SELECT 1 FROM {source}{clause} LIMIT ?) AS hits", [*params, cap]
        )
    return int(row[0]) if row else 0


async def matching_ids(
    db: Database, q: Query, *, now: float, statuses: Sequence[str], cap: int
) -> list[int]:
    """Ids (newest first, at most `cap`) of the jobs matching `q` whose status is one of
    `statuses`: what a bulk action over "all matching" captures when it is confirmed."""
    source, where, params, key = _plan(q, now, statuses, db.dialect)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = await db.read(
        f"SELECT {key} FROM {source}{clause} ORDER BY {key} DESC LIMIT ?", [*params, cap]
    )
    return [int(r[0]) for r in rows]


_FINISHED_BEFORE = Sql(
    "search.count_finished_before",
    sqlite="SELECT count(*) FROM email_jobs INDEXED BY ix_email_jobs_finished"
    " WHERE finished_at < ? AND status IN ('sent', 'failed', 'cancelled')",
    postgresql="SELECT count(*) FROM email_jobs"
    " WHERE finished_at < ? AND status IN ('sent', 'failed', 'cancelled')",
)


async def count_finished_before(db: Database, cutoff: float) -> int:
    """How many jobs `email cleanup` would delete now (sent, failed, cancelled before)."""
    row = await db.read_one(_FINISHED_BEFORE, (cutoff,))
    return int(row[0]) if row else 0


async def cancel(
    db: Database, *, now: float, ids: Sequence[int], search: str | None = None
) -> list[int]:
    """Pending or failed jobs among `ids` become cancelled (kept; never claimed, since claims
    take only pending jobs; retryable). Returns the ids cancelled; audited as email.cancel."""
    chosen: list[int] = []
    async with db.transaction() as conn:
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows = await conn.execute_fetchall(
                "UPDATE email_jobs SET status = 'cancelled', finished_at = ?, updated_at = ?,"
                " lease_owner = NULL, lease_expires_at = NULL"
                f" WHERE status IN ('pending', 'failed') AND id IN ({','.join('?' * len(chunk))})"
                " RETURNING id",
                [now, now, *chunk],
            )
            chosen += [int(r[0]) for r in rows]
        chosen.sort()
        await audit.record(
            conn, at=now, action="email.cancel", count=len(chosen), ids=chosen[:100],
            requested=len(ids), search=search,
        )
    return chosen
