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
from vertex_tui.engine.store.dialect import Sql

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
# What str.splitlines() breaks on: a name (written by the platform) goes into a Subject.
LINE_BREAKS = (13, 10, 11, 12, 28, 29, 30, 133, 8232, 8233)


def _one_line(expr: str, chr_fn: str) -> str:
    for code in LINE_BREAKS:
        expr = f"replace({expr}, {chr_fn}({code}), ' ')"
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


# ---- the statements, per table and dialect ------------------------------------------------
#
# PostgreSQL (READ COMMITTED) differs in more than spelling: other transactions commit while
# a pass runs. The pass therefore takes the dirty marks at its start (`DELETE ... RETURNING`,
# the ids then passed as the array :taken), so a mark committed meanwhile stays for the next
# pass; and the
# notices it inserts feed the email insert through `RETURNING` in the same statement, so a
# notice another transaction inserted is never mailed twice nor taken for ours (SQLite's one
# writer makes the end-of-pass DELETE and `max(id)` before/after exact there).

def _candidates(table: str, kind: str, dirty: str) -> str:
    """Rows an incremental pass must look at: dirty ones and threshold crossings."""
    return (
        f"{dirty}"
        f" UNION ALL SELECT id FROM {table} WHERE subscription_end > :last"
        "  AND subscription_end <= :now"
        f" UNION ALL SELECT id FROM {table} WHERE subscription_end > :last + {DAY}"
        f"  AND subscription_end <= :now + {DAY}"
        f" UNION ALL SELECT id FROM {table} WHERE subscription_end > :last + {WEEK}"
        f"  AND subscription_end <= :now + {WEEK}"
    )


FULL_RANGES = {
    "archived": "subscription_end <= :now",
    "expiring": f"subscription_end > :now AND subscription_end <= :now + {WEEK}",
    "active": f"(subscription_end > :now + {WEEK} OR subscription_end IS NULL)",
}
# NOT INDEXED (SQLite): a full pass rewrites (nearly) every row, so walk the table in rowid
# order. Through ix_*_end the planner visits rows in end order (a MULTI-INDEX OR for
# 'active'): random pages, each row growing from NULL, ~10x slower at 1M rows.
FULL_UPDATE = {
    (table, status): Sql(
        f"lifecycle.full.{table}.{status}",
        sqlite=f"UPDATE {table} NOT INDEXED SET lifecycle_status = '{status}',"
               f" status_changed_at = :now WHERE {where}"
               f" AND lifecycle_status IS NOT '{status}'",
        postgresql=f"UPDATE {table} SET lifecycle_status = '{status}',"
                   f" status_changed_at = :now WHERE {where}"
                   f" AND lifecycle_status IS DISTINCT FROM '{status}'")
    for table, _ in TABLES.values() for status, where in FULL_RANGES.items()
}
RECOMPUTE = {
    table: Sql(
        f"lifecycle.recompute.{table}",
        sqlite=f"UPDATE {table} SET lifecycle_status = {STATUS_CASE}, status_changed_at = :now"
               " WHERE id IN (SELECT entity_id FROM lifecycle_dirty"
               f" WHERE entity_kind = '{kind}') AND lifecycle_status IS NOT {STATUS_CASE}",
        postgresql=f"UPDATE {table} SET lifecycle_status = {STATUS_CASE},"
                   " status_changed_at = :now WHERE id = ANY(CAST(:taken AS bigint[]))"
                   f" AND lifecycle_status IS DISTINCT FROM {STATUS_CASE}")
    for kind, (table, _) in TABLES.items()
}
_CROSSED = {
    "archived": "subscription_end > :last AND subscription_end <= :now",
    "expiring": f"subscription_end > :last + {WEEK} AND subscription_end <= :now + {WEEK}"
                " AND subscription_end > :now",
}
CROSSED = {
    (table, status): Sql(
        f"lifecycle.crossed.{table}.{status}",
        sqlite=f"UPDATE {table} SET lifecycle_status = '{status}', status_changed_at = :now"
               f" WHERE {where} AND lifecycle_status IS NOT '{status}'",
        postgresql=f"UPDATE {table} SET lifecycle_status = '{status}',"
                   f" status_changed_at = :now WHERE {where}"
                   f" AND lifecycle_status IS DISTINCT FROM '{status}'")
    for table, _ in TABLES.values() for status, where in _CROSSED.items()
}


def _notice_select(table: str, kind: str, scope: str, message_id: str) -> str:
    return (
        "INSERT INTO lifecycle_notifications"
        " (entity_kind, entity_id, kind, period_end, status, message_id, created_at)"
        f" SELECT '{kind}', id, {NOTICE_CASE}, subscription_end, {NOTICE_STATUS_CASE},"
        f" CASE WHEN {NOTICE_STATUS_CASE} = 'sent' THEN {message_id} END, :now"
        f" FROM {table} WHERE {scope} subscription_end IS NOT NULL"
        f" AND subscription_end <= :now + {WEEK}"
        # In id order, not end order (ix_*_end): the unique key grows at its end and the
        # email insert reads the entities in page order (-25% CPU at 100k notices).
        " ORDER BY id ON CONFLICT DO NOTHING"
    )


def _message_id(kind: str, fmt: str, period: str, domain: str = ":domain") -> str:
    """`<lifecycle.KIND.ID.NOTICE.PERIOD@domain>`; `fmt` is the dialect's printf, `period`
    the period's exact text (two periods may share their whole second)."""
    return f"{fmt}('<lifecycle.{kind}.%s.%s.%s@%s>', id, {NOTICE_CASE}, {period}, {domain})"


_MAIL_COLUMNS = ("INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject,"
                 " body, html, headers, status, attempts, max_attempts, created_at, updated_at,"
                 " next_attempt_at)")


def _mail_select(label: str, table: str, source: str, *, fmt: str, chr_fn: str,
                 recipients: str, when: str) -> str:
    subject = "CASE n.kind " + " ".join(
        f"WHEN '{k}' THEN {fmt}(:subject_{k}, {_one_line('e.' + label, chr_fn)})"
        for k in SUBJECTS) + " END"
    body = "CASE n.kind " + " ".join(
        f"WHEN '{k}' THEN {fmt}(:body_{k}, e.{label}, {when})" for k in BODIES) + " END"
    return (f" SELECT n.message_id, :sender, {recipients}, e.owner_email, {subject},"
            f" {body}, NULL, :headers, 'pending', 0, :max_attempts, :now, :now, :now"
            f" FROM {source} n JOIN {table} e ON e.id = n.entity_id WHERE n.status = 'sent'")


def _sqlite_mail(label: str, table: str, when: str) -> str:
    return _MAIL_COLUMNS + _mail_select(
        label, table, "lifecycle_notifications", fmt="printf", chr_fn="char",
        recipients="json_array(e.owner_email)", when=when) + " AND n.id > :before"


def _pg_mail(label: str, table: str, source: str) -> str:
    return _MAIL_COLUMNS + _mail_select(
        label, table, source, fmt="format", chr_fn="chr",
        recipients="CAST(json_build_array(e.owner_email) AS text)",
        when="to_char(to_timestamp(n.period_end) AT TIME ZONE 'UTC',"
             " 'YYYY-MM-DD HH24:MI \"UTC\"')")


MARKED = "SELECT entity_id FROM lifecycle_dirty WHERE entity_kind = '{kind}'"
TAKEN = "SELECT unnest(CAST(:taken AS bigint[]))"


def _scope(table: str, kind: str, dirty: str, full: bool) -> str:
    return "" if full else f"id IN ({_candidates(table, kind, dirty)}) AND"


NOTICES = {
    (table, full): Sql(
        f"lifecycle.notices.{table}.{'full' if full else 'incremental'}",
        sqlite=_notice_select(
            table, kind, _scope(table, kind, MARKED.format(kind=kind), full),
            _message_id(kind, "printf", "CASE WHEN subscription_end ="
                        " CAST(subscription_end AS INTEGER) THEN"
                        " CAST(CAST(subscription_end AS INTEGER) AS TEXT)"
                        " ELSE printf('%!.17g', subscription_end) END")),
        # One statement: the notices inserted here (RETURNING) are the ones mailed. CAST
        # rounds on PostgreSQL (and int4 ends in 2038): trunc and bigint; float8's text is
        # the shortest exact one.
        postgresql="WITH n AS (" + _notice_select(
            table, kind, _scope(table, kind, TAKEN, full),
            _message_id(kind, "format", "CASE WHEN subscription_end = trunc(subscription_end)"
                        " THEN CAST(CAST(subscription_end AS bigint) AS text)"
                        " ELSE CAST(subscription_end AS text) END",
                        "CAST(:domain AS text)"))
        + " RETURNING id, entity_id, kind, status, message_id, period_end),"
        f" m AS ({_pg_mail(label, table, 'n')} RETURNING 1)"
        " SELECT kind, status, count(*) FROM n GROUP BY kind, status")
    for kind, (table, label) in TABLES.items() for full in (True, False)
}
MAILS = {
    table: Sql(f"lifecycle.mails.{table}",
               sqlite=_sqlite_mail(label, table,
                                   "strftime('%Y-%m-%d %H:%M UTC', n.period_end, 'unixepoch')"),
               postgresql=_pg_mail(label, table, "lifecycle_notifications")
               + " AND n.id > :before")
    for table, label in TABLES.values()
}
# PostgreSQL: take the marks at the start of the pass (see above).
TAKE_DIRTY = "DELETE FROM lifecycle_dirty RETURNING entity_kind, entity_id"


async def _update_statuses(conn: Connection, table: str, kind: str,
                           params: dict[str, Any], full: bool) -> dict[str, int]:
    changes: dict[str, int] = {}
    if full:
        for status in FULL_RANGES:
            cur = await conn.execute(FULL_UPDATE[table, status], params)
            changes[status] = cur.rowcount
        return changes
    cur = await conn.execute(RECOMPUTE[table], params)
    changes["recomputed"] = cur.rowcount
    for status in _CROSSED:
        cur = await conn.execute(CROSSED[table, status], params)
        changes[status] = cur.rowcount
    return changes


async def _queue_notices(conn: Connection, table: str, kind: str, label: str,
                         params: dict[str, Any], full: bool, *, dialect: str = "sqlite"
                         ) -> tuple[dict[str, int], int]:
    if dialect == "postgresql":
        rows = await conn.execute_fetchall(NOTICES[table, full], params)
    else:
        # Only the notices this statement inserts are this pass's: ids grow monotonically,
        # and SQLite's single writer lets no one else insert in between.
        before = next(iter(await conn.execute_fetchall(
            "SELECT coalesce(max(id), 0) FROM lifecycle_notifications")))[0]
        params = {**params, "before": before}
        await conn.execute(NOTICES[table, full], params)
        rows = await conn.execute_fetchall(
            "SELECT kind, status, count(*) FROM lifecycle_notifications"
            " WHERE id > :before GROUP BY kind, status", params)
        if any(r[1] == "sent" for r in rows):
            await conn.execute(MAILS[table], params)
    sent = {r[0]: r[2] for r in rows if r[1] == "sent"}
    skipped = sum(r[2] for r in rows if r[1] == "skipped")
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
    pg = db.dialect == "postgresql"
    async with db.transaction() as conn:
        rows = await conn.execute_fetchall(
            "SELECT value FROM engine_flags WHERE name = ?", (LAST_PASS_FLAG,))
        last = float(next(iter(rows))[0]) if rows else None
        full = last is None
        params["last"] = last if last is not None else 0.0
        taken: dict[str, list[int]] = {kind: [] for kind in TABLES}
        if pg:
            for kind, entity_id in await conn.execute_fetchall(TAKE_DIRTY):
                taken[str(kind)].append(int(entity_id))
        for kind, (table, label) in TABLES.items():
            params["taken"] = taken[kind]
            changes[kind] = await _update_statuses(conn, table, kind, params, full)
            if notify:
                # (dialect only when not the default: tests wrap this with SQLite's arguments)
                kind_sent, kind_skipped = await _queue_notices(
                    conn, table, kind, label, params, full,
                    **({"dialect": db.dialect} if pg else {}))
                for k, n in kind_sent.items():
                    sent[k] = sent.get(k, 0) + n
                skipped += kind_skipped
        if not pg:
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
        "   ORDER BY subscription_end LIMIT :n) AS p"
        " UNION ALL SELECT * FROM (SELECT 'portrait', id, title, owner_email, subscription_end"
        "   FROM portraits WHERE subscription_end > :now ORDER BY subscription_end LIMIT :n)"
        " AS q"
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
