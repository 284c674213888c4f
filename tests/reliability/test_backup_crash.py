"""kill -9 a real `vertex-tui backup run` mid-copy: nothing appears at a final backup name,
the next run succeeds, and the engine's recovery (on service start) removes the temp file and
fails the record the dead process left `running`.

The database is made big (a ballast table of zero-filled 1 MiB blobs) so the copy takes long
enough to be caught: the process is killed as soon as its temp file `.KIND-*.tmp-<pid>`
appears.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

BALLAST_MIB = 240
# No cron job may fire in the headless engine these tests start.
QUIET = {
    "BACKUP_DATABASE_ENABLED": "false",
    "BACKUP_FULL_ENABLED": "false",
    "BACKUP_ROTATION_ENABLED": "false",
    "BACKUP_STORAGE_ENABLED": "false",
    "BACKUP_DRILL_ENABLED": "false",
}


def build_big_database(ws: Any) -> None:
    created = ws.cli(
        "email", "enqueue", "--to", "a@example.com", "--subject", "kept", "--body", "b"
    )
    assert created.returncode == 0, created.stderr
    with contextlib.closing(sqlite3.connect(ws.db_path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE ballast (b BLOB)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO ballast VALUES (zeroblob(?))", [(1 << 20,)] * BALLAST_MIB)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    storage = ws.path / "storage"
    storage.mkdir(exist_ok=True)
    (storage / "photo.jpg").write_bytes(b"\xff\xd8" + b"x" * 10_000)


def finals(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def kill_mid_backup(ws: Any, kind: str, env: dict[str, str]) -> tuple[Path, int]:
    """Start `backup run KIND`, SIGKILL it once its temp file exists; (temp path, pid)."""
    folder = ws.path / "backups" / kind
    err = (ws.path / f"killed-{kind}.err").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vertex_tui", "backup", "run", kind],
        env=env,
        cwd=ws.path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    try:

        def temp_or_exit() -> Path | str | None:
            if proc.poll() is not None:
                return "exited"
            found = sorted(folder.glob(f".{kind}-*.tmp-{proc.pid}")) if folder.is_dir() else []
            return found[0] if found else None

        seen = ws.wait_for(temp_or_exit, timeout=120, what=f"the {kind} temp file", interval=0.002)
        assert seen != "exited", (
            f"backup run {kind} finished (exit {proc.returncode}) before it could be killed;"
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


@pytest.mark.parametrize("kind", ["database", "full"])
def test_sigkill_mid_backup_leaves_no_final_file_and_is_recovered(ws: Any, kind: str) -> None:
    build_big_database(ws)
    env = ws.env(**QUIET)
    folder = ws.path / "backups" / kind
    temp, pid = kill_mid_backup(ws, kind, env)

    # Nothing at a final name; the record says 'running' (its process could not finish it).
    assert finals(folder) == []
    rows = ws.query("SELECT id, status, path, started_at FROM backups")
    assert len(rows) == 1
    killed_id, status, path, started_at = rows[0]
    assert status == "running" and path is None
    stamp = datetime.fromtimestamp(started_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    assert not any(p.name.startswith(f"{kind}-{stamp}") for p in folder.iterdir())

    # The next run (another CLI process) takes over the dead process's lease and succeeds.
    done = ws.cli("backup", "run", kind, "--json", **QUIET)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "ok", doc
    new = Path(doc["path"])
    assert finals(folder) == [new]
    verified = ws.cli("backup", "verify", str(new))
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # An engine's start runs the recovery: the temp leftover goes, the record is failed.
    engine = ws.start_engine(env)
    engine.wait_running()
    assert not temp.exists()
    assert not [p for p in folder.iterdir() if f".tmp-{pid}" in p.name]
    status, error = ws.query("SELECT status, error FROM backups WHERE id = ?", (killed_id,))[0]
    assert status == "failed" and "interrupted" in error
    outcomes = [
        r[0]
        for r in ws.query(
            "SELECT outcome FROM service_runs WHERE service = 'backup' AND job = ? ORDER BY id",
            (kind,),
        )
    ]
    assert outcomes == ["error", "ok"]
    engine.proc.send_signal(signal.SIGTERM)
    assert engine.proc.wait(30) == 0

    listed = ws.cli_json("backup", "list")
    assert [(r["status"], r["verified"]) for r in listed] == [("ok", True), ("failed", False)]
    assert finals(folder) == [new]
    if kind == "database":
        with contextlib.closing(sqlite3.connect(f"file:{new}?mode=ro", uri=True)) as conn:
            assert conn.execute("SELECT count(*) FROM ballast").fetchone()[0] == BALLAST_MIB
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    else:
        manifest = json.loads((new / "manifest.json").read_text())
        assert manifest["storage"]["files"] == 1
