"""Lifecycle notices under real processes: SIGKILL mid-pass and rerun, and two passes at once
from two processes (through the lease, and straight to the pass, bypassing it). Whatever
happens, every notice exists exactly once per (entity, kind, period) and its email job with
it, one to one. On both backends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vertex_tui.engine.lifecycle import notice_for

if TYPE_CHECKING:
    from conftest import Workspace

DAY = 86_400.0

PASS_SCRIPT = """
import asyncio, json, sys, time
from pathlib import Path
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store import lifecycle as store

now, ready, go, flag = float(sys.argv[1]), *sys.argv[2:5]

async def main():
    if flag:
        store.LAST_PASS_FLAG = flag  # this process's own view of "the previous pass"
    db = await open_database(Settings.from_env())  # the database of VERTEX_DB_PATH/_URL
    try:
        Path(ready).touch()
        while not Path(go).exists():
            time.sleep(0.001)  # spin: both processes leave this loop at nearly one moment
        counts = await store.run_pass(db, now=now, notify=True,
                                      sender="Vertex AR <noreply@vertex.test>",
                                      domain="vertex.test", max_attempts=5)
    finally:
        await db.close()
    print(json.dumps(counts.to_json()))

asyncio.run(main())
"""

# Runs `lifecycle check` but stops dead inside the pass's transaction, after the portraits'
# notices and their mail were written and before the commit: then waits to be killed.
HOOKED_CHECK = """
import sys, time
from pathlib import Path
from vertex_tui.engine.store import lifecycle as store

marker = Path(sys.argv[1])
original = store._queue_notices

async def queue_then_hang(conn, table, kind, label, params, full, **dialect):
    result = await original(conn, table, kind, label, params, full, **dialect)
    if kind == "portrait":
        rows = await conn.execute_fetchall("SELECT count(*) FROM lifecycle_notifications")
        marker.write_text(str(next(iter(rows))[0]))
        while True:
            time.sleep(1)
    return result

store._queue_notices = queue_then_hang
from vertex_tui.cli import main
sys.exit(main(["lifecycle", "check", "--json"]))
"""


def create_schema(ws: Workspace) -> None:
    result = ws.cli("lifecycle", "summary", "--json")
    assert result.returncode == 0, result.stderr


def populate(ws: Workspace, *, portraits: int, projects: int, around: float) -> None:
    """Ends spread over `around` +/- 20 days (fractions of a second included)."""
    for table, label, count in (("portraits", "title", portraits), ("projects", "name", projects)):
        ws.query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
            f" WHERE i < {count})"
            f" INSERT INTO {table} ({label}, owner_email, subscription_end, created_at)"
            " SELECT 'e' || i, 'o' || i || '@example.com',"
            " :t + ((i * 7919) % 3456000) - 1728000 + (i % 8) * 0.125, :t FROM n",
            {"t": around},
        )


def expected_notices(ws: Workspace, passes: list[float]) -> set[tuple[str, int, str, float, str]]:
    """What the pure policy says the database must hold after passes at `passes`."""
    expected: dict[tuple[str, int, str, float], str] = {}
    for table, kind in (("portraits", "portrait"), ("projects", "project")):
        for entity_id, end in ws.query(f"SELECT id, subscription_end FROM {table}"):
            for now in passes:
                notice = notice_for(end, now)
                if notice is not None:
                    key = (kind, entity_id, notice[0], end)
                    expected.setdefault(key, "sent" if notice[1] else "skipped")
    return {(*k, v) for k, v in expected.items()}


def actual_notices(ws: Workspace) -> list[tuple[str, int, str, float, str]]:
    return [
        tuple(r)
        for r in ws.query(  # type: ignore[misc]
            "SELECT entity_kind, entity_id, kind, period_end, status FROM lifecycle_notifications"
        )
    ]


def assert_exactly_once(ws: Workspace, expected: set[tuple[str, int, str, float, str]]) -> int:
    if ws.database_url is not None:
        # Statistics for the rows just written, or the planner may nest loops over 100,000s
        # of them (seen: the join below ran for over 10 minutes before autovacuum analyzed).
        ws.query("ANALYZE")
    got = actual_notices(ws)
    assert len(got) == len(set(got)), "a notice was duplicated"
    missing = expected - set(got)
    extra = set(got) - expected
    assert not missing, f"{len(missing)} notices lost, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} unexpected notices, e.g. {sorted(extra)[:3]}"
    # Emails: one job per sent notice, same Message-ID, the owner as recipient; no others.
    unmatched = ws.query(
        "SELECT count(*) FROM lifecycle_notifications n WHERE n.status = 'sent' AND"
        " (SELECT count(*) FROM email_jobs e WHERE e.message_id = n.message_id) <> 1"
    )
    assert unmatched == [(0,)]
    recipients = ws.query(
        "SELECT e.recipients, coalesce(q.owner_email, p.owner_email)"
        " FROM lifecycle_notifications n JOIN email_jobs e ON e.message_id = n.message_id"
        " LEFT JOIN portraits q ON n.entity_kind = 'portrait' AND q.id = n.entity_id"
        " LEFT JOIN projects p ON n.entity_kind = 'project' AND p.id = n.entity_id"
    )
    assert [(to, owner) for to, owner in recipients if json.loads(to) != [owner]] == []
    sent = sum(1 for n in got if n[4] == "sent")
    jobs = ws.query("SELECT count(*), count(DISTINCT message_id) FROM email_jobs")
    assert jobs == [(sent, sent)]
    return sent


def pass_times(ws: Workspace) -> list[float]:
    rows = ws.query(
        "SELECT started_at FROM service_runs WHERE service = 'lifecycle'"
        " AND outcome = 'ok' ORDER BY id"
    )
    return [r[0] for r in rows]


def spawn(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


# ---- SIGKILL mid-pass ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_mid_pass_over_200k_portraits_then_rerun_gives_each_notice_once(
    ws: Workspace, backend: str,
) -> None:
    create_schema(ws)
    populate(ws, portraits=200_000, projects=2_000, around=time.time())
    wal = Path(f"{ws.db_path}-wal")
    proc = spawn(["-m", "vertex_tui", "lifecycle", "check", "--json"], ws.path,
                 ws.named(ws.env(), "check"))
    try:
        ws.wait_for(
            lambda: (
                proc.poll() is not None
                or ws.query(
                    "SELECT 1 FROM service_runs WHERE service = 'lifecycle' AND outcome = 'running'"
                )
            ),
            timeout=120,
            what="the pass to start",
        )
        assert proc.poll() is None, "the pass ended before it could be killed"
        base = wal.stat().st_size if wal.exists() else 0

        def writing() -> bool:
            """The pass's transaction is writing: on SQLite its pages spill into the WAL; on
            PostgreSQL it has written (it has a transaction id) and runs a statement of the
            pass (over portraits: not a lease renewal)."""
            if ws.database_url is not None:
                return ws.query("SELECT count(*) FROM pg_stat_activity WHERE application_name"
                                " = 'check' AND state = 'active' AND backend_xid IS NOT NULL"
                                " AND query LIKE '%portraits%'") == [(1,)]
            return wal.exists() and wal.stat().st_size > base + 2_000_000

        ws.wait_for(lambda: proc.poll() is not None or writing(), timeout=120,
                    what="the pass to be writing")
        assert proc.poll() is None, "the pass ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    # (PostgreSQL: its session ends, rolling back, before anything is read.)
    ws.wait_for(lambda: ws.sessions("check") == 0, timeout=60, what="the pass's session to end")
    # Killed mid-pass: its run never finished, and nothing of it was committed.
    assert ws.query("SELECT outcome FROM service_runs WHERE service = 'lifecycle'") == [
        ("running",)
    ]
    assert ws.query("SELECT count(*) FROM lifecycle_notifications") == [(0,)]
    assert ws.query("SELECT count(*) FROM email_jobs") == [(0,)]
    assert ws.query("SELECT count(*) FROM portraits WHERE lifecycle_status IS NOT NULL") == [(0,)]

    # Rerun: the dead process's lease does not hold the pass back for hours.
    result = ws.cli("lifecycle", "check", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "ok"
    outcomes = ws.query("SELECT outcome FROM service_runs WHERE service = 'lifecycle' ORDER BY id")
    assert outcomes == [("error",), ("ok",)], "the killed pass is recorded as interrupted"
    sent = assert_exactly_once(ws, expected_notices(ws, pass_times(ws)))
    assert sent > 10_000
    # And once more: nothing new, nothing twice.
    result = ws.cli("lifecycle", "check", "--json")
    assert result.returncode == 0, result.stderr
    assert_exactly_once(ws, expected_notices(ws, pass_times(ws)))
    statuses = ws.query("SELECT count(*) FROM portraits WHERE lifecycle_status IS NULL")
    assert statuses == [(0,)]


@pytest.mark.slow
def test_kill_after_notices_and_mail_are_written_but_before_commit(ws: Workspace,
                                                                   backend: str) -> None:
    """Stopped dead between writing the outbox rows and committing them: neither the notices
    nor their mail survive, and the rerun writes each exactly once."""
    create_schema(ws)
    populate(ws, portraits=3_000, projects=300, around=time.time())
    marker = ws.path / "inside-the-transaction"
    script = ws.path / "hooked_check.py"
    script.write_text(HOOKED_CHECK, encoding="utf-8")
    proc = spawn([str(script), str(marker)], ws.path, ws.named(ws.env(), "check"))
    try:
        ws.wait_for(
            lambda: proc.poll() is not None or marker.exists(),
            timeout=120,
            what="the pass to write its notices",
        )
        assert proc.poll() is None, proc.communicate()
        written = int(
            ws.wait_for(lambda: marker.read_text() or None, timeout=10, what="the marker")
        )
        assert written > 100, "the pass had written notices when it was killed"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    ws.wait_for(lambda: ws.sessions("check") == 0, timeout=60, what="the pass's session to end")
    assert ws.query("SELECT count(*) FROM lifecycle_notifications") == [(0,)]
    assert ws.query("SELECT count(*) FROM email_jobs") == [(0,)]
    for _ in range(2):
        result = ws.cli("lifecycle", "check", "--json")
        assert result.returncode == 0, result.stderr
    sent = assert_exactly_once(ws, expected_notices(ws, pass_times(ws)))
    assert sent >= written // 2


# ---- two processes at once ----------------------------------------------------------------------


@pytest.mark.slow
def test_two_cli_checks_at_once_give_each_notice_once(ws: Workspace, backend: str) -> None:
    create_schema(ws)
    populate(ws, portraits=20_000, projects=500, around=time.time())
    procs = [
        spawn(["-m", "vertex_tui", "lifecycle", "check", "--json"], ws.path, ws.env())
        for _ in range(2)
    ]
    results = [finish(p) for p in procs]
    docs = []
    for code, out, err in results:
        assert code in (0, 1), err
        doc = json.loads(out)
        assert doc["status"] in ("ok", "skipped")
        assert code == (0 if doc["status"] == "ok" else 1)
        docs.append(doc)
    ok = [d for d in docs if d["status"] == "ok"]
    assert ok, "at least one of them ran the pass"
    sent = assert_exactly_once(ws, expected_notices(ws, pass_times(ws)))
    assert sum(d["emails"] for d in ok) == sent
    runs = ws.query("SELECT outcome FROM service_runs WHERE service = 'lifecycle'")
    assert sorted(r[0] for r in runs) == sorted(d["status"] for d in docs)


@pytest.mark.slow
@pytest.mark.parametrize("own_view", [False, True], ids=["shared-bookkeeping", "each-a-full-pass"])
def test_two_processes_running_the_pass_itself_at_once_give_each_notice_once(
    ws: Workspace, own_view: bool, backend: str
) -> None:
    """No lease: two processes call `store.run_pass` at the same moment. With `own_view`
    each believes no pass ever ran, so both are full passes over every row and only the
    unique key stands between them and a duplicate."""
    create_schema(ws)
    now = time.time()
    populate(ws, portraits=20_000, projects=1_000, around=now)
    script = ws.path / "pass.py"
    script.write_text(PASS_SCRIPT, encoding="utf-8")
    go = ws.path / "go"
    procs = []
    for name in ("a", "b"):
        flag = f"lifecycle.last_pass.{name}" if own_view else ""
        procs.append(
            spawn(
                [str(script), repr(now), str(ws.path / name), str(go), flag],
                ws.path,
                ws.env(),
            )
        )
    try:
        ws.wait_for(
            lambda: all(
                (ws.path / n).exists() or p.poll() is not None
                for n, p in zip("ab", procs, strict=True)
            ),
            timeout=60,
            what="both processes to be ready",
        )
        go.touch()
        results = [finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    counts: list[dict[str, Any]] = []
    for code, out, err in results:
        assert code == 0, err
        counts.append(json.loads(out))
    if own_view:
        assert [c["full"] for c in counts] == [True, True]
    sent = assert_exactly_once(ws, expected_notices(ws, [now]))
    assert sent > 1_000
    # Each process reports only what it inserted: together, every email exactly once.
    assert sum(c["emails"] for c in counts) == sent
    assert sorted(c["emails"] for c in counts)[0] == 0
