"""kill -9 a real `vertex-tui backup run` mid-copy: nothing appears at a final backup name,
the next run succeeds, and the engine's recovery (on service start) removes the temp file and
fails the record the dead process left `running`. On both backends.

The database is made big (a ballast table) so the copy takes long enough to be caught: the
process is killed as soon as its temp file `.KIND-*.tmp-<pid>` appears. On SQLite the
process copies the file itself; on PostgreSQL its `pg_dump` child writes the temp file. That
child is frozen (SIGSTOP) before the kill, so it cannot finish on its own: it must die with
the process that started it, not dump on for nobody (holding its snapshot open all along).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.ballast import add_ballast
from support.processes import child_running, children, gone

from vertex_tui.engine.backup import pgdump

pytestmark = pytest.mark.slow

BALLAST_MIB = 240  # zero-filled 1 MiB blobs on SQLite
PG_BALLAST_MIB = 32  # 1 MiB rows of random hex on PostgreSQL (pg_dump compresses zeros away)
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
    add_ballast(ws.database_url or ws.db_path,
                PG_BALLAST_MIB if ws.database_url else BALLAST_MIB)
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
    tools: list[int] = []
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
        if ws.database_url is not None:  # the temp file is there before pg_dump starts
            ws.wait_for(lambda: child_running(proc.pid, "--format=custom", "pg_dump"), timeout=30,
                        what="pg_dump", interval=0.002)
            tools = children(proc.pid)
        assert len(tools) == (ws.database_url is not None), tools  # pg_dump, or none
        for tool in tools:
            os.kill(tool, signal.SIGSTOP)
        assert isinstance(seen, Path) and seen.exists(), "the tool finished before the freeze"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        for tool in tools:
            ws.wait_for(lambda t=tool: gone(t), timeout=30,
                        what=f"the killed backup's pg_dump ({tool}) to die with it")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for tool in tools:
            with contextlib.suppress(ProcessLookupError):
                os.kill(tool, signal.SIGKILL)
        err.close()
    assert isinstance(seen, Path)
    return seen, proc.pid


@pytest.mark.parametrize("kind", ["database", "full"])
def test_sigkill_mid_backup_leaves_no_final_file_and_is_recovered(ws: Any, kind: str,
                                                                  backend: str) -> None:
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
    if kind == "database" and backend == "postgresql":
        listed_toc = pgdump.toc(new)
        assert "TABLE DATA public ballast" in listed_toc
        assert "TABLE DATA public email_jobs" in listed_toc
    elif kind == "database":
        with contextlib.closing(sqlite3.connect(f"file:{new}?mode=ro", uri=True)) as conn:
            assert conn.execute("SELECT count(*) FROM ballast").fetchone()[0] == BALLAST_MIB
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    else:
        manifest = json.loads((new / "manifest.json").read_text())
        assert manifest["storage"]["files"] == 1
