"""SQL of the lifecycle service: entities, set-wise status updates, the notice outbox.

Statuses and notices are decided by SQL over index ranges, never row by row in Python. The
CASE expressions mirror the pure policy in `vertex_tui.engine.lifecycle` (tests hold the two
to the same table). A full pass (the first one) covers every row; later passes cover only the
rows marked dirty by triggers (new rows, changed ends) and the rows whose end crossed a
threshold since the previous pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.errors import NotFound
from vertex_tui.engine.store.db import Connection, Database

DAY = 86_400.0
WEEK = 7 * DAY
LAST_PASS_FLAG = "lifecycle.last_pass"
TABLES = {"project": ("projects", "name"), "portrait": ("portraits", "title")}

STATUS_CASE = (
    "CASE WHEN subscription_end IS NULL THEN 'active'"
    " WHEN subscription_end <= :now THEN 'archived'"
    f" WHEN subscription_end <= :now + {WEEK} THEN 'expiring' ELSE 'active' END"
)
NOTICE_CASE = (
    "CASE WHEN subscription_end <= :now THEN 'expired'"
    f" WHEN subscription_end <= :now + {DAY} THEN '24hours' ELSE '7days' END"
)
# Expired notices go out only while the end lies within the last 7 days.
NOTICE_STATUS_CASE = f"CASE WHEN subscription_end <= :now - {WEEK} THEN 'skipped' ELSE 'sent' END"
# The period in a Message-ID: exact, since two periods may share their whole second.
PERIOD_TEXT = (
    "CASE WHEN subscription_end = CAST(subscription_end AS INTEGER)"
    " THEN CAST(CAST(subscription_end AS INTEGER) AS TEXT)"
    " ELSE printf('%!.17g', subscription_end) END"
)
# What str.splitlines() breaks on: a name (written by the platform) goes into a Subject.
LINE_BREAKS = (13, 10, 11, 12, 28, 29, 30, 133, 8232, 8233)


def _one_line(expr: str) -> str:
    for code in LINE_BREAKS:
        expr = f"replace({expr}, char({code}), ' ')"
    return expr


SUBJECTS = {
    "7days": "Your subscription for %s ends in 7 days",
    "24hours": "Your subscription for %s ends in 24 hours",
    "expired": "Your subscription for %s has ended",
}
BODIES = {
    "7days": "Hello,\n\nthe subscription for \"%s\" ends on %s.\n"
             "Renew it to keep it active.\n\n-- Vertex AR\n",
    "24hours": "Hello,\n\nthe subscription for \"%s\" ends on %s, in less than 24 hours.\n"
               "Renew it now to keep it active.\n\n-- Vertex AR\n",
    "expired": "Hello,\n\nthe subscription for \"%s\" ended on %s and it has been archived.\n"
               "Renew it to bring it back.\n\n-- Vertex AR\n",
}


@dataclass(frozen=True, kw_only=True)
class PassCounts:
    changes: dict[str, dict[str, int]]
    sent: dict[str, int]
    skipped: int
    emails: int
    full: bool

    def to_json(self) -> dict[str, Any]:
        return {"full": self.full, "changes": self.changes, "sent": self.sent,
                "skipped": self.skipped, "emails": self.emails}


def _candidates(table: str, kind: str) -> str:
    """Rows an incremental pass must look at: dirty ones and threshold crossings."""
    return (
        f"SELECT entity_id FROM lifecycle_dirty WHERE entity_kind = '{kind}'"
        f" UNION ALL SELECT id FROM {table} WHERE subscription_end > :last"
        "  AND subscription_end <= :now"
        f" UNION ALL SELECT id FROM {table} WHERE subscription_end > :last + {DAY}"
        f"  AND subscription_end <= :now + {DAY}"
        f" UNION ALL SELECT id FROM {table} WHERE subscription_end > :last + {WEEK}"
        f"  AND subscription_end <= :now + {WEEK}"
    )


async def _update_statuses(conn: Connection, table: str, kind: str,
                           params: dict[str, Any], full: bool) -> dict[str, int]:
    changes: dict[str, int] = {}
    set_clause = f"SET lifecycle_status = {STATUS_CASE}, status_changed_at = :now"
    if full:
        ranges = {
            "archived": "subscription_end <= :now",
            "expiring": f"subscription_end > :now AND subscription_end <= :now + {WEEK}",
            "active": f"(subscription_end > :now + {WEEK} OR subscription_end IS NULL)",
        }
        # NOT INDEXED: a full pass rewrites (nearly) every row, so walk the table in rowid
        # order. Through ix_*_end the planner visits rows in end order (a MULTI-INDEX OR for
        # 'active'): random pages, each row growing from NULL, ~10x slower at 1M rows.
        for status, where in ranges.items():
            cur = await conn.execute(
                f"UPDATE {table} NOT INDEXED SET lifecycle_status = '{status}',"
                f" status_changed_at = :now WHERE {where} AND lifecycle_status IS NOT '{status}'",
                params)
            changes[status] = cur.rowcount
        return changes
    cur = await conn.execute(
        f"UPDATE {table} {set_clause} WHERE id IN (SELECT entity_id FROM lifecycle_dirty"
        f" WHERE entity_kind = '{kind}') AND lifecycle_status IS NOT {STATUS_CASE}", params)
    changes["recomputed"] = cur.rowcount
    cur = await conn.execute(
        f"UPDATE {table} SET lifecycle_status = 'archived', status_changed_at = :now"
        " WHERE subscription_end > :last AND subscription_end <= :now"
        " AND lifecycle_status IS NOT 'archived'", params)
    changes["archived"] = cur.rowcount
    cur = await conn.execute(
        f"UPDATE {table} SET lifecycle_status = 'expiring', status_changed_at = :now"
        f" WHERE subscription_end > :last + {WEEK} AND subscription_end <= :now + {WEEK}"
        " AND subscription_end > :now AND lifecycle_status IS NOT 'expiring'", params)
    changes["expiring"] = cur.rowcount
    return changes


async def _queue_notices(conn: Connection, table: str, kind: str, label: str,
                         params: dict[str, Any], full: bool) -> tuple[dict[str, int], int]:
    scope = "" if full else f"id IN ({_candidates(table, kind)}) AND"
    # Only the notices this statement inserts are this pass's: ids grow monotonically.
    before = next(iter(await conn.execute_fetchall(
        "SELECT coalesce(max(id), 0) FROM lifecycle_notifications")))[0]
    params = {**params, "kind": kind, "before": before}
    await conn.execute(
        "INSERT INTO lifecycle_notifications"
        " (entity_kind, entity_id, kind, period_end, status, message_id, created_at)"
        f" SELECT '{kind}', id, {NOTICE_CASE}, subscription_end, {NOTICE_STATUS_CASE},"
        f" CASE WHEN {NOTICE_STATUS_CASE} = 'sent' THEN printf('<lifecycle.{kind}.%d.%s.%s@%s>',"
        f"   id, {NOTICE_CASE}, {PERIOD_TEXT}, :domain) END, :now"
        f" FROM {table} WHERE {scope} subscription_end IS NOT NULL"
        f" AND subscription_end <= :now + {WEEK}"
        # In id order, not end order (ix_*_end): the unique key grows at its end and the
        # email insert below reads the entities in page order (-25% CPU at 100k notices).
        " ORDER BY id ON CONFLICT DO NOTHING", params)
    rows = await conn.execute_fetchall(
        "SELECT kind, status, count(*) FROM lifecycle_notifications"
        " WHERE id > :before GROUP BY kind, status", params)
    sent = {r[0]: r[2] for r in rows if r[1] == "sent"}
    skipped = sum(r[2] for r in rows if r[1] == "skipped")
    if sent:
        subject = "CASE n.kind " + " ".join(
            f"WHEN '{k}' THEN printf(:subject_{k}, {_one_line('e.' + label)})"
            for k in SUBJECTS) + " END"
        body = "CASE n.kind " + " ".join(
            f"WHEN '{k}' THEN printf(:body_{k}, e.{label},"
            " strftime('%Y-%m-%d %H:%M UTC', n.period_end, 'unixepoch'))" for k in BODIES
        ) + " END"
        await conn.execute(
            "INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject, body,"
            " html, headers, status, attempts, max_attempts, created_at, updated_at,"
            " next_attempt_at)"
            f" SELECT n.message_id, :sender, json_array(e.owner_email), e.owner_email, {subject},"
            f" {body}, NULL, :headers, 'pending', 0, :max_attempts, :now, :now, :now"
            f" FROM lifecycle_notifications n JOIN {table} e ON e.id = n.entity_id"
            " WHERE n.id > :before AND n.status = 'sent'", params)
    return sent, skipped


async def run_pass(db: Database, *, now: float, notify: bool, sender: str, domain: str,
                   max_attempts: int) -> PassCounts:
    """One lifecycle pass in one transaction: statuses, notices and their mail (outbox)."""
    params: dict[str, Any] = {
        "now": now, "sender": sender, "domain": domain, "max_attempts": max_attempts,
        "headers": json.dumps({"X-Vertex-Notice": "lifecycle"}),
        **{f"subject_{k}": v for k, v in SUBJECTS.items()},
        **{f"body_{k}": v for k, v in BODIES.items()},
    }
    changes: dict[str, dict[str, int]] = {}
    sent: dict[str, int] = {}
    skipped = 0
    async with db.transaction() as conn:
        rows = await conn.execute_fetchall(
            "SELECT value FROM engine_flags WHERE name = ?", (LAST_PASS_FLAG,))
        last = float(next(iter(rows))[0]) if rows else None
        full = last is None
        params["last"] = last if last is not None else 0.0
        for kind, (table, label) in TABLES.items():
            changes[kind] = await _update_statuses(conn, table, kind, params, full)
            if notify:
                kind_sent, kind_skipped = await _queue_notices(conn, table, kind, label,
                                                               params, full)
                for k, n in kind_sent.items():
                    sent[k] = sent.get(k, 0) + n
                skipped += kind_skipped
        await conn.execute("DELETE FROM lifecycle_dirty")
        await conn.execute(
            "INSERT INTO engine_flags (name, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (LAST_PASS_FLAG, repr(now), now))
    return PassCounts(changes=changes, sent=sent, skipped=skipped,
                      emails=sum(sent.values()), full=full)


# ---- entities ---------------------------------------------------------------------------


async def add_project(db: Database, *, name: str, owner: str, end: float | None,
                      now: float) -> int:
    rows = await db.write(
        "INSERT INTO projects (name, owner_email, subscription_end, created_at)"
        " VALUES (?, ?, ?, ?) RETURNING id", (name, owner, end, now))
    return int(rows[0][0])


async def project_end(db: Database, project_id: int) -> float | None:
    row = await db.read_one("SELECT subscription_end FROM projects WHERE id = ?", (project_id,))
    if row is None:
        raise NotFound(f"no project with id {project_id}")
    return None if row[0] is None else float(row[0])


async def add_portrait(db: Database, *, title: str, owner: str, project_id: int | None,
                       end: float | None, now: float) -> int:
    rows = await db.write(
        "INSERT INTO portraits (project_id, title, owner_email, subscription_end, created_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id", (project_id, title, owner, end, now))
    return int(rows[0][0])


async def set_subscription_end(db: Database, kind: str, entity_id: int,
                               end: float | None) -> None:
    table = TABLES[kind][0]
    rows = await db.write(f"UPDATE {table} SET subscription_end = ? WHERE id = ? RETURNING id",
                          (end, entity_id))
    if not rows:
        raise NotFound(f"no {kind} with id {entity_id}")


async def summary(db: Database, *, now: float, upcoming: int = 20) -> dict[str, Any]:
    counts = {"active": 0, "expiring": 0, "archived": 0, "unknown": 0}
    by_kind: dict[str, dict[str, int]] = {}
    for kind, (table, _) in TABLES.items():
        rows = await db.read(f"SELECT lifecycle_status, count(*) FROM {table} GROUP BY 1")
        by_kind[kind] = {str(r[0] or "unknown"): int(r[1]) for r in rows}
        for status, n in by_kind[kind].items():
            counts[status] = counts.get(status, 0) + n
    notices = {"7days": 0, "24hours": 0, "expired": 0}
    recent = dict(notices)
    for r in await db.read("SELECT kind, count(*) FROM lifecycle_notifications"
                           " WHERE status = 'sent' GROUP BY kind"):
        notices[r[0]] = r[1]
    for r in await db.read("SELECT kind, count(*) FROM lifecycle_notifications"
                           " WHERE status = 'sent' AND created_at >= ? GROUP BY kind",
                           (now - DAY,)):
        recent[r[0]] = r[1]
    skipped = await db.read_one(
        "SELECT count(*) FROM lifecycle_notifications WHERE status = 'skipped'")
    rows = await db.read(
        "SELECT * FROM (SELECT 'project' AS kind, id, name AS label, owner_email,"
        "   subscription_end FROM projects WHERE subscription_end > :now"
        "   ORDER BY subscription_end LIMIT :n)"
        " UNION ALL SELECT * FROM (SELECT 'portrait', id, title, owner_email, subscription_end"
        "   FROM portraits WHERE subscription_end > :now ORDER BY subscription_end LIMIT :n)"
        " ORDER BY subscription_end LIMIT :n", {"now": now, "n": upcoming})
    return {
        "active": counts["active"], "expiring": counts["expiring"],
        "archived": counts["archived"], "unknown": counts["unknown"], "by_kind": by_kind,
        "notifications": notices, "notifications_last_24h": recent,
        "notifications_skipped": int(skipped[0]) if skipped else 0,
        "upcoming": [{"kind": r[0], "id": r[1], "name": r[2], "owner": r[3],
                      "subscription_end": isoformat(r[4]), "seconds_left": r[4] - now}
                     for r in rows],
    }
