"""`vertex-tui backup restore` refusing what it must not restore, and the settings a restore
depends on, as scripts run them: exit codes, one stderr line, the database as it was."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def restore(cli: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vertex_tui", "backup", "restore", *args], env=cli.env(),
        cwd=cli.path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        check=False)


def subjects(cli: Any) -> list[str]:
    return [r[0] for r in cli.query("SELECT subject FROM email_jobs ORDER BY id")]


def asides(cli: Any) -> list[Path]:
    return sorted(cli.path.glob("vertex.db.before-restore-*"))


def test_restore_of_a_sqlite_file_that_is_not_vertex_tui_exits_2_and_changes_nothing(
    cli: Any,
) -> None:
    cli.enqueue(subject="one")
    other = cli.path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.commit()
    for extra in ((), ("--force",)):
        result = restore(cli, str(other), "--yes", *extra)
        assert result.returncode == 2, result.stdout + result.stderr
        cli.assert_one_line(result.stderr)
        assert "not a vertex-tui database" in result.stderr
    assert asides(cli) == []
    # The next command runs on the database as it was: nothing migrated on top of other.db.
    assert cli.stats()["pending"] == 1
    assert subjects(cli) == ["one"]
    with contextlib.closing(sqlite3.connect(other)) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]


def test_restore_of_an_unrecorded_vertex_tui_file_needs_force(cli: Any) -> None:
    cli.enqueue(subject="one")
    made = cli.json("backup", "run", "database")
    cli.enqueue(subject="two")
    stray = cli.path / "from-elsewhere.db"
    stray.write_bytes(Path(made["path"]).read_bytes())
    result = restore(cli, str(stray), "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    cli.assert_one_line(result.stderr)
    assert "not a recorded, verified backup" in result.stderr and "--force" in result.stderr
    assert subjects(cli) == ["one", "two"] and asides(cli) == []
    forced = restore(cli, str(stray), "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert subjects(cli) == ["one"]
    # The recorded backup itself needs no --force.
    again = restore(cli, made["path"], "--yes")
    assert again.returncode == 0, again.stderr


def test_restore_of_the_live_database_onto_itself_exits_2_and_locks_nothing(cli: Any) -> None:
    cli.enqueue(subject="one")
    for path in (str(cli.db_path), "vertex.db", "./vertex.db"):
        result = restore(cli, path, "--yes", "--force")
        assert result.returncode == 2, result.stdout + result.stderr
        cli.assert_one_line(result.stderr)
        assert "is the live database" in result.stderr
    # Used to leave "being restored by <dead pid>" for an hour.
    assert cli.stats()["pending"] == 1
    assert cli.query("SELECT count(*) FROM leases") == [(0,)]
    assert asides(cli) == []


@pytest.mark.parametrize(("storage", "backups"), [("media", "media/backups"), ("media", "media")])
def test_backup_dir_inside_storage_dir_exits_2_naming_both(
    cli: Any, storage: str, backups: str
) -> None:
    line = cli.error("config", VERTEX_STORAGE_DIR=storage, VERTEX_BACKUP_DIR=backups)
    assert "VERTEX_BACKUP_DIR" in line and "VERTEX_STORAGE_DIR" in line
    line = cli.error("backup", "run", "storage", VERTEX_STORAGE_DIR=storage,
                     VERTEX_BACKUP_DIR=backups)
    assert "VERTEX_BACKUP_DIR" in line
    assert not (cli.path / backups / "storage").exists()


def test_a_cron_schedule_that_never_fires_exits_2_naming_the_variable(cli: Any) -> None:
    line = cli.error("backup", "schedule", BACKUP_DATABASE_SCHEDULE="0 2 30 2 *")
    assert line.startswith("vertex-tui: BACKUP_DATABASE_SCHEDULE='0 2 30 2 *' is invalid")
