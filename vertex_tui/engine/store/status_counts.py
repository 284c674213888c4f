"""Email jobs by status, without a hot row.

SQLite (one writer at a time) keeps `email_status_counts` with row triggers: one row per
status, updated in place. On PostgreSQL those rows would be updated by every concurrent
writer: each waits for the last one's commit and two transactions touching two statuses in
opposite order deadlock. There (migration postgresql/0001) the triggers only append deltas to
`email_status_deltas` (statement-level: one row per status per statement), and the view
`email_status_counts` sums them, so readers use the same `SELECT status, n FROM
email_status_counts` on both. `compact` folds the deltas into one row per status, in one
statement; housekeeping runs it so the sum stays short.
"""

from __future__ import annotations

from vertex_tui.engine.store.db import Database

# The DELETE sees the deltas committed when it starts; the INSERT puts back their sum per
# status (in the same statement, so the view never shows them missing). A delta committed by
# another writer meanwhile is not in the DELETE's snapshot: it stays and is counted. Two
# compactions at once: the second waits on the first's rows, then skips them (deleted).
_COMPACT = (
    "WITH gone AS (DELETE FROM email_status_deltas RETURNING status, n)"
    " INSERT INTO email_status_deltas (status, n)"
    " SELECT status, sum(n) FROM gone GROUP BY status RETURNING status"
)


async def compact(db: Database) -> int:
    """Fold the PostgreSQL status deltas into one row per status; returns how many delta
    rows there are fewer now (0 on SQLite, whose counts are kept in place)."""
    if db.dialect != "postgresql":
        return 0
    async with db.transaction() as conn:
        before = await conn.execute_fetchall("SELECT count(*) FROM email_status_deltas")
        after = await conn.execute_fetchall(_COMPACT)
    return int(before[0][0]) - len(after)


async def counts(db: Database) -> dict[str, int]:
    """Status -> number of jobs (every status, 0 included)."""
    rows = await db.read("SELECT status, n FROM email_status_counts")
    return {str(r[0]): int(r[1]) for r in rows}
