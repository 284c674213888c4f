"""kill -9 a real `vertex-tui backup restore` mid-copy: the platform is not locked out.

The restorer holds the `maintenance` lease in the live database while it verifies and copies;
killed, it can release nothing. Every command and engine start used to fail for an hour with
"being restored by <dead pid>". Now a holder of this host whose pid is gone frees the lease at
once, the live database is as it was, and `vertex-tui doctor` finds and clears what the dead
restorer left: on SQLite its temp copy beside the database, on PostgreSQL the scratch
database it was restoring the dump into. On both backends.

The database is made big (a ballast table of 1 MiB rows) so the copy takes long enough to be
caught. On SQLite the process is killed as soon as its temp file `.vertex.db.tmp-<pid>`
appears. On PostgreSQL, once its `pg_restore` child is restoring into the scratch database:
that child is frozen (SIGSTOP) first, so it cannot finish on its own, and must die with the
process that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.ballast import add_ballast
from support.processes import child_running, children, gone

pytestmark = pytest.mark.slow

BALLAST_MIB = 200  # SQLite
PG_BALLAST_MIB = 32
QUIET = {
    "BACKUP_DATABASE_ENABLED": "false",
    "BACKUP_FULL_ENABLED": "false",
    "BACKUP_ROTATION_ENABLED": "false",
    "BACKUP_STORAGE_ENABLED": "false",
    "BACKUP_DRILL_ENABLED": "false",
}


def build_big_database(ws: Any) -> None:
    created = ws.cli("email", "enqueue", "--to", "a@example.com", "--subject", "kept",
                     "--body", "b")
    assert created.returncode == 0, created.stderr
    add_ballast(ws.database_url or ws.db_path,
                PG_BALLAST_MIB if ws.database_url else BALLAST_MIB)


def scratch_databases(ws: Any, pid: int) -> list[str]:
    """Databases on the server that a restore by process `pid` made to restore into."""
    rows = ws.query("SELECT datname FROM pg_database WHERE datname LIKE ?",
                    (f"vt_restore_{pid}_%",))
    return [r[0] for r in rows]


def kill_mid_restore(ws: Any, backup: str, env: dict[str, str]) -> tuple[str, int]:
    """Start `backup restore BACKUP --yes`, SIGKILL it mid-copy; (what it left, its pid):
    the temp copy's path on SQLite, the scratch database's name on PostgreSQL."""
    err = (ws.path / "killed-restore.err").open("w")
    tools: list[int] = []
    proc = subprocess.Popen(
        [sys.executable, "-m", "vertex_tui", "backup", "restore", backup, "--yes"],
        env=env, cwd=ws.path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
    )
    try:

        def copying() -> str | None:
            if proc.poll() is not None:
                return "exited"
            if ws.database_url is not None:
                running = child_running(proc.pid, "--single-transaction", "pg_restore")
                return "pg_restore" if running else None
            temp = ws.path / f".vertex.db.tmp-{proc.pid}"
            return str(temp) if temp.exists() else None

        seen = ws.wait_for(copying, timeout=180, what="the restore's copy", interval=0.002)
        assert seen != "exited", (
            f"backup restore finished (exit {proc.returncode}) before it could be killed;"
            " raise BALLAST_MIB"
        )
        tools = children(proc.pid)
        for tool in tools:
            os.kill(tool, signal.SIGSTOP)
        assert len(tools) == (ws.database_url is not None), tools  # pg_restore, or none
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        for tool in tools:
            ws.wait_for(lambda t=tool: gone(t), timeout=30,
                        what=f"the killed restore's pg_restore ({tool}) to die with it")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for tool in tools:
            with contextlib.suppress(ProcessLookupError):
                os.kill(tool, signal.SIGKILL)
        err.close()
    if ws.database_url is not None:
        [seen] = scratch_databases(ws, proc.pid)
    return seen, proc.pid


def test_sigkill_mid_restore_does_not_lock_the_platform_out(ws: Any, backend: str) -> None:
    build_big_database(ws)
    env = ws.env(**QUIET)
    made = ws.cli("backup", "run", "database", "--json", **QUIET)
    assert made.returncode == 0, made.stderr
    backup = json.loads(made.stdout)["path"]
    enqueued = ws.cli("email", "enqueue", "--to", "b@example.com", "--subject", "after",
                      "--body", "b")
    assert enqueued.returncode == 0, enqueued.stderr

    left, pid = kill_mid_restore(ws, backup, env)

    # The dead restorer's lease is really there, in the live database, for a while yet...
    rows = ws.query("SELECT owner FROM leases WHERE name = 'maintenance'")
    assert len(rows) == 1 and f":{pid}:" in rows[0][0]
    # ...yet the next command runs at once, on the database as it was before the restore.
    status = ws.cli("status", **QUIET)
    assert status.returncode == 0, status.stderr
    assert "being restored" not in status.stderr
    assert ws.query("SELECT count(*) FROM leases WHERE name = 'maintenance'") == [(0,)]
    assert [r[0] for r in ws.query("SELECT subject FROM email_jobs ORDER BY id")] == [
        "kept", "after"]
    assert ws.query("SELECT count(*) FROM ballast") == [(PG_BALLAST_MIB if ws.database_url
                                                         else BALLAST_MIB,)]
    if ws.database_url is None:
        assert not list(ws.path.glob("vertex.db.before-restore-*"))
        assert Path(left).exists()
        what = f"leftover temp file of a killed restore: {left}"
    else:
        # This test's database only: the cluster is shared with every other test's.
        own = ws.database_url.rsplit("/", 1)[1].replace("_", "\\_")
        assert ws.query("SELECT count(*) FROM pg_database WHERE datname LIKE ?",
                        (own + "\\_before\\_restore\\_%",)) == [(0,)]
        what = f"leftover scratch database of a killed restore or drill: {left}"

    # doctor names what the dead restorer left; --yes removes it.
    report = ws.cli("doctor", **QUIET)
    assert report.returncode == 1, report.stdout + report.stderr
    assert what in report.stdout
    cleared = ws.cli("doctor", "--yes", **QUIET)
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    if ws.database_url is None:
        assert not Path(left).exists() and not Path(f"{left}-wal").exists()
    else:
        assert scratch_databases(ws, pid) == []
    assert "nothing to clear" in ws.cli("doctor", **QUIET).stdout

    # An engine starts, and the same restore, run again, goes through.
    engine = ws.start_engine(env)
    engine.wait_running()
    engine.proc.send_signal(signal.SIGTERM)
    assert engine.proc.wait(30) == 0
    again = ws.cli("backup", "restore", backup, "--yes", **QUIET)
    assert again.returncode == 0, again.stderr
    assert [r[0] for r in ws.query("SELECT subject FROM email_jobs ORDER BY id")] == ["kept"]
