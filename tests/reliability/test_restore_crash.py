"""kill -9 a real `vertex-tui backup restore` mid-copy: the platform is not locked out.

The restorer holds the `maintenance` lease in the live database while it verifies and copies;
killed, it can release nothing. Every command and engine start used to fail for an hour with
"being restored by <dead pid>". Now a holder of this host whose pid is gone frees the lease at
once, the live database is as it was, and `vertex-tui doctor` finds and clears the temp copy
the dead restorer left beside the database.

The database is made big (a ballast table of zero-filled 1 MiB blobs) so the copy takes long
enough to be caught: the process is killed as soon as its temp file `.vertex.db.tmp-<pid>`
appears.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

BALLAST_MIB = 200
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
    with contextlib.closing(sqlite3.connect(ws.db_path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE ballast (b BLOB)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO ballast VALUES (zeroblob(?))", [(1 << 20,)] * BALLAST_MIB)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def kill_mid_restore(ws: Any, backup: str, env: dict[str, str]) -> tuple[Path, int]:
    """Start `backup restore BACKUP --yes`, SIGKILL it once its temp copy exists."""
    err = (ws.path / "killed-restore.err").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vertex_tui", "backup", "restore", backup, "--yes"],
        env=env, cwd=ws.path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
    )
    try:

        def temp_or_exit() -> Path | str | None:
            if proc.poll() is not None:
                return "exited"
            temp = ws.path / f".vertex.db.tmp-{proc.pid}"
            return temp if temp.exists() else None

        seen = ws.wait_for(temp_or_exit, timeout=180, what="the restore's temp copy",
                           interval=0.002)
        assert seen != "exited", (
            f"backup restore finished (exit {proc.returncode}) before it could be killed;"
            " raise BALLAST_MIB"
        )
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
    assert isinstance(seen, Path)
    return seen, proc.pid


def test_sigkill_mid_restore_does_not_lock_the_platform_out(ws: Any) -> None:
    build_big_database(ws)
    env = ws.env(**QUIET)
    made = ws.cli("backup", "run", "database", "--json", **QUIET)
    assert made.returncode == 0, made.stderr
    backup = __import__("json").loads(made.stdout)["path"]
    enqueued = ws.cli("email", "enqueue", "--to", "b@example.com", "--subject", "after",
                      "--body", "b")
    assert enqueued.returncode == 0, enqueued.stderr

    temp, pid = kill_mid_restore(ws, backup, env)

    # The dead restorer's lease is really there, in the live database, for a while yet...
    rows = ws.query("SELECT owner FROM leases WHERE name = 'maintenance'")
    assert len(rows) == 1 and f":{pid}:" in rows[0][0]
    assert temp.exists()
    # ...yet the next command runs at once, on the database as it was before the restore.
    status = ws.cli("status", **QUIET)
    assert status.returncode == 0, status.stderr
    assert "being restored" not in status.stderr
    assert ws.query("SELECT count(*) FROM leases WHERE name = 'maintenance'") == [(0,)]
    assert [r[0] for r in ws.query("SELECT subject FROM email_jobs ORDER BY id")] == [
        "kept", "after"]
    assert ws.query("SELECT count(*) FROM ballast") == [(BALLAST_MIB,)]
    assert not list(ws.path.glob("vertex.db.before-restore-*"))

    # doctor names the dead restorer's temp copy; --yes removes it.
    report = ws.cli("doctor", **QUIET)
    assert report.returncode == 1, report.stdout + report.stderr
    assert f"leftover temp file of a killed restore: {temp}" in report.stdout
    cleared = ws.cli("doctor", "--yes", **QUIET)
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert not temp.exists() and not Path(f"{temp}-wal").exists()
    assert "nothing to clear" in ws.cli("doctor", **QUIET).stdout

    # An engine starts, and the same restore, run again, goes through.
    engine = ws.start_engine(env)
    engine.wait_running()
    engine.proc.send_signal(signal.SIGTERM)
    assert engine.proc.wait(30) == 0
    again = ws.cli("backup", "restore", backup, "--yes", **QUIET)
    assert again.returncode == 0, again.stderr
    assert [r[0] for r in ws.query("SELECT subject FROM email_jobs ORDER BY id")] == ["kept"]
