"""SQL of the video animation scheduler: set-wise activation, deactivation, archiving.

A full pass (the first) looks at every portrait with videos; later passes only at portraits
marked dirty by triggers, videos whose start or end crossed since the previous pass, and
portraits whose subscription ended since then. Rotation decisions are made by the pure
`next_video()` for the few portraits whose rotation is due.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.errors import NotFound
from vertex_tui.engine.store.db import Connection, Database
from vertex_tui.engine.store.dialect import Dialect, Sql

LAST_PASS_FLAG = "video.last_pass"
ELIGIBLE = ("v.status IN ('scheduled', 'inactive') AND (v.start_at IS NULL OR v.start_at <= :now)"
            " AND (v.end_at IS NULL OR v.end_at > :now)")
DIGEST_LINES = 200


@dataclass
class VideoPass:
    """What one pass changed; `lines` feed the admin digest (at most DIGEST_LINES)."""

    full: bool = False
    activated: int = 0
    deactivated: int = 0
    rotated: int = 0
    archived: int = 0
    lines: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        if len(self.lines) < DIGEST_LINES:
            self.lines.append(line)

    def to_json(self) -> dict[str, Any]:
        return {"full": self.full, "activated": self.activated, "deactivated": self.deactivated,
                "rotated": self.rotated, "archived": self.archived}


@dataclass(frozen=True, kw_only=True)
class RotationCandidate:
    video_id: int
    portrait_id: int
    mode: str
    position: int
    eligible: tuple[tuple[int, int], ...]  # (position, id), in order


# PostgreSQL (READ COMMITTED): other transactions commit while a pass runs, so the pass takes
# the dirty marks at its start (`take_marks`: DELETE ... RETURNING, the ids then the array
# :taken of the pass's parameters) and a mark committed meanwhile stays for the next pass.
# On SQLite the one writer makes the end-of-pass DELETE exact; `taken` stays unset there.
TAKEN = "SELECT unnest(CAST(:taken AS bigint[]))"
_ENDED_SINCE = ("SELECT id FROM portraits WHERE subscription_end > :last"
                " AND subscription_end <= :now")
ENDED_PORTRAITS = Sql(
    "videos.ended_portraits",
    sqlite=_ENDED_SINCE +
    # An end moved to before the previous pass (a backdated cancellation) marks it dirty.
    " UNION SELECT p.id FROM video_dirty d JOIN portraits p ON p.id = d.portrait_id"
    "  WHERE p.subscription_end <= :now",
    postgresql=_ENDED_SINCE + " UNION SELECT p.id FROM portraits p"
    f"  WHERE p.id IN ({TAKEN}) AND p.subscription_end <= :now")
_ACTIVATE_HEAD = (
    "UPDATE videos SET status = 'active', activated_at = :now WHERE id IN ("
    " SELECT (SELECT v.id FROM videos v WHERE v.portrait_id = c.portrait_id"
    f"         AND {ELIGIBLE} ORDER BY v.position, v.id LIMIT 1)")
_ACTIVATE_TAIL = (
    " WHERE (p.subscription_end IS NULL OR p.subscription_end > :now)"
    "  AND NOT EXISTS (SELECT 1 FROM videos a WHERE a.portrait_id = c.portrait_id"
    "                  AND a.status = 'active'))")
_SCHEDULED_NOW = ("SELECT portrait_id FROM videos WHERE status = 'scheduled'"
                  "  AND start_at > :last AND start_at <= :now")
# One statement on PostgreSQL: the candidates as a subquery (no temp table), RETURNING.
ACTIVATE_PG = {
    full: Sql(f"videos.activate.{'full' if full else 'incremental'}",
              sqlite="SELECT 1",  # SQLite goes through temp.video_candidates (activate)
              postgresql=_ACTIVATE_HEAD + " FROM (" + (
                  "SELECT DISTINCT portrait_id FROM videos"
                  " WHERE status IN ('scheduled', 'inactive')" if full else
                  f"SELECT portrait_id FROM ({TAKEN}) AS t (portrait_id)"
                  f" UNION {_SCHEDULED_NOW}")
              + ") AS c JOIN portraits p ON p.id = c.portrait_id" + _ACTIVATE_TAIL
              + " RETURNING id, portrait_id, title")
    for full in (True, False)
}
ROTATE_OFF = Sql(
    "videos.rotate.off",
    sqlite="UPDATE videos SET status = 'inactive', deactivated_at = ?"
    " WHERE id IN (SELECT value FROM json_each(?)) AND status = 'active'",
    postgresql="UPDATE videos SET status = 'inactive', deactivated_at = ? WHERE id IN"
    " (SELECT CAST(value AS bigint) FROM json_array_elements_text(CAST(? AS json)))"
    " AND status = 'active'")
ROTATE_ON = Sql(
    "videos.rotate.on",
    sqlite="UPDATE videos SET status = 'active', activated_at = ?"
    " WHERE id IN (SELECT value FROM json_each(?))",
    postgresql="UPDATE videos SET status = 'active', activated_at = ? WHERE id IN"
    " (SELECT CAST(value AS bigint) FROM json_array_elements_text(CAST(? AS json)))")
MARK_DIRTY = Sql("videos.mark_dirty", sqlite="INSERT OR IGNORE INTO video_dirty VALUES (?)",
                 postgresql="INSERT INTO video_dirty VALUES (?) ON CONFLICT DO NOTHING")
# add_video: the portrait row is locked (PostgreSQL) so concurrent adds get distinct
# positions; SQLite's one writer serializes them anyway.
LOCK_PORTRAIT = Sql("videos.lock_portrait", sqlite="SELECT id FROM portraits WHERE id = ?",
                    postgresql="SELECT id FROM portraits WHERE id = ? FOR UPDATE")


async def take_marks(conn: Connection, p: dict[str, Any], dialect: Dialect) -> None:
    """At the start of a pass on PostgreSQL: take (delete) the dirty marks into p["taken"]."""
    if dialect == "postgresql":
        rows = await conn.execute_fetchall(
            "DELETE FROM video_dirty RETURNING portrait_id")
        p["taken"] = sorted(int(r[0]) for r in rows)


async def last_pass(conn: Connection) -> float | None:
    rows = await conn.execute_fetchall("SELECT value FROM engine_flags WHERE name = ?",
                                       (LAST_PASS_FLAG,))
    return float(next(iter(rows))[0]) if rows else None


async def deactivate(conn: Connection, p: dict[str, Any], full: bool,
                     result: VideoPass) -> None:
    """Active videos whose end passed, or whose portrait's subscription ended."""
    pg = "taken" in p
    ended = ENDED_PORTRAITS.text("postgresql" if pg else "sqlite")
    ended_portraits = "SELECT id FROM portraits WHERE subscription_end <= :now" if full else ended
    # Two index ranges (ix_videos_active_end; ended portraits -> ux_videos_one_active), not
    # "status = 'active' AND (end_at <= :now OR ...)", which visits every active video.
    rows = list(await conn.execute_fetchall(
        "UPDATE videos SET status = 'inactive', deactivated_at = :now"
        " WHERE status = 'active' AND id IN ("
        "  SELECT id FROM videos WHERE status = 'active' AND end_at <= :now"
        "  UNION ALL SELECT a.id FROM videos a"
        f"  WHERE a.status = 'active' AND a.portrait_id IN ({ended_portraits}))"
        " RETURNING id, portrait_id, title", p))
    result.deactivated += len(rows)
    for r in rows:
        result.note(f"deactivated video {r[0]} '{r[2]}' of portrait {r[1]}")
    if pg:  # their next video is activated below, from the taken set
        p["taken"] = sorted({*p["taken"], *(int(r[1]) for r in rows)})
    else:
        await conn.executemany(MARK_DIRTY, [(r[1],) for r in rows])


async def archive(conn: Connection, p: dict[str, Any], result: VideoPass) -> None:
    # "status <> 'archived'" is ix_videos_end's own WHERE, so the planner may use that partial
    # index (a range of the few newly old videos) instead of scanning the whole table.
    cur = await conn.execute(
        "UPDATE videos SET status = 'archived', archived_at = :now"
        " WHERE status <> 'archived' AND status IN ('scheduled', 'inactive')"
        " AND end_at <= :now - :archive_after", p)
    result.archived += cur.rowcount


async def activate(conn: Connection, p: dict[str, Any], full: bool,
                   result: VideoPass) -> None:
    """For each candidate portrait with no active video and a live subscription, activate
    its first eligible video (lowest position)."""
    if "taken" in p:
        activated = await conn.execute_fetchall(ACTIVATE_PG[full], p)
        result.activated += len(activated)
        for r in activated:
            result.note(f"activated video {r[0]} '{r[2]}' of portrait {r[1]}")
        return
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS video_candidates"
                       " (portrait_id INTEGER PRIMARY KEY)")
    await conn.execute("DELETE FROM temp.video_candidates")
    if full:
        await conn.execute("INSERT OR IGNORE INTO temp.video_candidates SELECT portrait_id"
                           " FROM videos WHERE status IN ('scheduled', 'inactive')")
    else:
        await conn.execute(
            "INSERT OR IGNORE INTO temp.video_candidates"
            " SELECT portrait_id FROM video_dirty"
            " UNION SELECT portrait_id FROM videos WHERE status = 'scheduled'"
            "  AND start_at > :last AND start_at <= :now", p)
    cur = await conn.execute(
        "UPDATE videos SET status = 'active', activated_at = :now WHERE id IN ("
        " SELECT (SELECT v.id FROM videos v WHERE v.portrait_id = c.portrait_id"
        f"         AND {ELIGIBLE} ORDER BY v.position, v.id LIMIT 1)"
        # CROSS JOIN keeps candidates (portrait id order) outermost: through ix_portraits_end
        # the rows would come in end order, random pages of every index touched.
        " FROM temp.video_candidates c CROSS JOIN portraits p ON p.id = c.portrait_id"
        " WHERE (p.subscription_end IS NULL OR p.subscription_end > :now)"
        "  AND NOT EXISTS (SELECT 1 FROM videos a WHERE a.portrait_id = c.portrait_id"
        "                  AND a.status = 'active'))", p)
    result.activated += cur.rowcount
    if cur.rowcount:
        for r in await conn.execute_fetchall(
                "SELECT id, portrait_id, title FROM videos WHERE status = 'active'"
                " AND activated_at = :now LIMIT :lines", {**p, "lines": DIGEST_LINES}):
            result.note(f"activated video {r[0]} '{r[2]}' of portrait {r[1]}")


async def rotation_candidates(conn: Connection,
                              p: dict[str, Any]) -> list[RotationCandidate]:
    due = await conn.execute_fetchall(
        "SELECT id, portrait_id, rotation, position FROM videos WHERE status = 'active'"
        " AND activated_at <= :now - :rotation_interval AND rotation <> 'none'", p)
    if not due:
        return []
    eligible: dict[int, list[tuple[int, int]]] = {}
    portraits = [r[1] for r in due]
    for chunk in range(0, len(portraits), 500):
        part = portraits[chunk:chunk + 500]
        marks = ",".join("?" * len(part))
        rows = await conn.execute_fetchall(
            "SELECT v.portrait_id, v.position, v.id FROM videos v"
            f" WHERE v.portrait_id IN ({marks}) AND "
            + ELIGIBLE.replace(":now", "?") + " ORDER BY v.portrait_id, v.position, v.id",
            [*part, p["now"], p["now"]])
        for portrait_id, position, video_id in rows:
            eligible.setdefault(portrait_id, []).append((position, video_id))
    return [RotationCandidate(video_id=r[0], portrait_id=r[1], mode=r[2], position=r[3],
                              eligible=tuple(eligible.get(r[1], ()))) for r in due]


async def _eligible(db: Database, portraits: Sequence[int],
                    now: float) -> dict[int, list[tuple[int, int]]]:
    """Portrait -> its (position, id) videos eligible for activation at `now`, in order."""
    found: dict[int, list[tuple[int, int]]] = {}
    for chunk in range(0, len(portraits), 500):
        part = list(portraits[chunk:chunk + 500])
        marks = ",".join("?" * len(part))
        rows = await db.read(
            "SELECT v.portrait_id, v.position, v.id FROM videos v"
            f" WHERE v.portrait_id IN ({marks}) AND "
            + ELIGIBLE.replace(":now", "?") + " ORDER BY v.portrait_id, v.position, v.id",
            [*part, now, now])
        for portrait_id, position, video_id in rows:
            found.setdefault(portrait_id, []).append((position, video_id))
    return found


async def rotate(conn: Connection, moves: Sequence[tuple[int, int, int]],
                 now: float, result: VideoPass) -> None:
    """(portrait, from video, to video): one active video per portrait at every moment."""
    # Two statements over id lists (json_each), not one statement run per move: -35% CPU
    # for 90k moves (each run of a statement has its own setup).
    await conn.execute(ROTATE_OFF, (now, json.dumps([old for _, old, _ in moves])))
    await conn.execute(ROTATE_ON, (now, json.dumps([new for _, _, new in moves])))
    result.rotated += len(moves)
    for portrait_id, old, new in moves:
        result.note(f"rotated portrait {portrait_id}: video {old} -> {new}")


async def finish(conn: Connection, now: float, p: dict[str, Any] | None = None) -> None:
    if p is None or "taken" not in p:  # PostgreSQL took its marks at the start
        await conn.execute("DELETE FROM video_dirty")
    await conn.execute(
        "INSERT INTO engine_flags (name, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
        " updated_at = excluded.updated_at", (LAST_PASS_FLAG, repr(now), now))


# ---- entities and summary -------------------------------------------------------------------


async def add_video(db: Database, *, portrait_id: int, title: str, start: float | None,
                    end: float | None, rotation: str, now: float) -> int:
    async with db.transaction() as conn:
        if not await conn.execute_fetchall(LOCK_PORTRAIT, (portrait_id,)):
            raise NotFound(f"no portrait with id {portrait_id}")
        rows = await conn.execute_fetchall(
            "SELECT coalesce(max(position), -1) + 1 FROM videos WHERE portrait_id = ?",
            (portrait_id,))
        position = next(iter(rows))[0]
        rows = await conn.execute_fetchall(
            "INSERT INTO videos (portrait_id, title, start_at, end_at, rotation, position,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (portrait_id, title, start, end, rotation, position, now))
        return int(next(iter(rows))[0])


async def summary(db: Database, *, now: float, rotation_interval: float,
                  upcoming: int = 20,
                  rotatable: Callable[[RotationCandidate], bool] | None = None
                  ) -> dict[str, Any]:
    """Counts by status, the next changes, and the current rotations. `rotatable` (the
    rotation policy) says whether an active video's rotation can happen at all; those that
    cannot are not listed as upcoming."""
    counts = {"scheduled": 0, "active": 0, "inactive": 0, "archived": 0}
    for r in await db.read("SELECT status, count(*) FROM videos GROUP BY status"):
        counts[r[0]] = r[1]
    changes: list[dict[str, Any]] = []
    for r in await db.read(
            "SELECT id, portrait_id, title, start_at FROM videos WHERE status = 'scheduled'"
            " AND start_at > ? ORDER BY start_at LIMIT ?", (now, upcoming)):
        changes.append({"what": "activate", "video": r[0], "portrait": r[1], "title": r[2],
                        "at": r[3]})
    for r in await db.read(
            "SELECT id, portrait_id, title, end_at FROM videos WHERE status <> 'archived'"
            " AND end_at > ? ORDER BY end_at LIMIT ?",
            (now, upcoming)):
        changes.append({"what": "deactivate", "video": r[0], "portrait": r[1], "title": r[2],
                        "at": r[3]})
    active = await db.read(
        "SELECT id, portrait_id, title, activated_at, rotation, position FROM videos"
        " WHERE status = 'active' AND rotation <> 'none' ORDER BY activated_at LIMIT ?",
        (upcoming if rotatable is None else upcoming * 5,))
    eligible = {} if rotatable is None else await _eligible(db, [r[1] for r in active], now)
    listed = 0
    for r in active:
        if rotatable is not None and not rotatable(RotationCandidate(
                video_id=r[0], portrait_id=r[1], mode=r[4], position=r[5],
                eligible=tuple(eligible.get(r[1], ())))):
            continue
        changes.append({"what": "rotate", "video": r[0], "portrait": r[1], "title": r[2],
                        "at": max(now, r[3] + rotation_interval)})
        listed += 1
        if listed == upcoming:
            break
    changes.sort(key=lambda c: c["at"])
    rotating = [
        {"portrait": r[0], "portrait_title": r[1], "video": r[2], "title": r[3],
         "rotation": r[4], "since": isoformat(r[5])}
        for r in await db.read(
            "SELECT v.portrait_id, p.title, v.id, v.title, v.rotation, v.activated_at"
            " FROM videos v JOIN portraits p ON p.id = v.portrait_id"
            " WHERE v.status = 'active' AND v.rotation <> 'none'"
            " ORDER BY v.portrait_id LIMIT 50")
    ]
    return {**counts,
            "upcoming": [{**c, "at": isoformat(c["at"]), "seconds_from_now": c["at"] - now}
                         for c in changes[:upcoming]],
            "rotating": rotating}
