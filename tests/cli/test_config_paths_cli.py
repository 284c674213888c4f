"""What is wrong with a configured path or address is said of that setting, in one line:
VERTEX_DB_PATH a folder, not SQLite or read-only (exit 2); METRICS_ADDRESS that does not
resolve (exit 2); VERTEX_STORAGE_DIR a regular file (the backup fails saying so)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

COMMANDS = [["status"], ["email", "stats"], ["--no-ui"], ["doctor"]]


@pytest.mark.parametrize("args", COMMANDS)
def test_a_folder_at_vertex_db_path_is_bad_configuration(cli: Any, args: list[str]) -> None:
    folder = cli.path / "a-folder"
    folder.mkdir()
    message = cli.error(*args, code=2, VERTEX_DB_PATH=str(folder))
    assert "VERTEX_DB_PATH" in message and str(folder) in message
    assert "is a folder" in message
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("args", COMMANDS)
def test_a_file_that_is_not_sqlite_is_bad_configuration_and_untouched(
        cli: Any, args: list[str]) -> None:
    target = cli.path / "notes.db"
    target.write_bytes(b"shopping list\n")
    message = cli.error(*args, code=2, VERTEX_DB_PATH=str(target))
    assert "VERTEX_DB_PATH" in message and "not a SQLite database" in message
    assert target.read_bytes() == b"shopping list\n"
    assert sorted(p.name for p in cli.path.iterdir()) == ["notes.db"]


def test_a_metrics_address_that_does_not_resolve_is_named(cli: Any) -> None:
    result = cli.run("--no-ui", timeout=60, METRICS_ADDRESS="not.an.ip", METRICS_PORT="26251",
                     SMTP_PORT=str(cli.closed_port()))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "METRICS_ADDRESS='not.an.ip'" in last, last
    assert "METRICS_PORT" not in last


def test_a_storage_dir_that_is_a_file_is_said_to_be_no_folder(cli: Any) -> None:
    storage = cli.path / "storage"
    storage.write_text("not a folder\n")
    result = cli.run("backup", "run", "storage", "--json", VERTEX_STORAGE_DIR=str(storage))
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout)["error"]
    assert f"storage folder {storage} (VERTEX_STORAGE_DIR) is not a folder" in error
    assert "does not exist" not in error


# root writes a 0444 file in a 0555 folder anyway (CAP_DAC_OVERRIDE): run without that
# capability so the modes count, as they do for the service user.
def _without_dac_override(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root ignores file modes, and setpriv is missing to drop that")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd]


def _run_restricted(cli: Any, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _without_dac_override([sys.executable, "-m", "vertex_tui", *args]),
        env=cli.env(VERTEX_DB_PATH=str(db), SMTP_PORT=str(cli.closed_port())), cwd=cli.path,
        capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def read_only_db(cli: Any) -> Any:
    folder = cli.path / "ro"
    folder.mkdir()
    db = folder / "vertex.db"
    cli.ok("status", VERTEX_DB_PATH=str(db))
    yield folder, db
    folder.chmod(0o755)
    db.chmod(0o644)


@pytest.mark.parametrize("args", [["status"], ["email", "stats"], ["--no-ui"], ["jobs"]])
def test_a_read_only_database_file_is_named_read_only(
        cli: Any, read_only_db: Any, args: list[str]) -> None:
    folder, db = read_only_db
    db.chmod(0o444)
    folder.chmod(0o555)
    result = _run_restricted(cli, db, *args)
    assert result.returncode == 2, result.stderr
    cli.assert_one_line(result.stderr)
    assert "VERTEX_DB_PATH" in result.stderr
    assert f"the file {db} is read-only for" in result.stderr


def test_a_read_only_folder_is_named_when_sqlite_must_create_in_it(
        cli: Any, read_only_db: Any) -> None:
    folder, db = read_only_db
    folder.chmod(0o555)
    result = _run_restricted(cli, db, "status")
    assert result.returncode == 2, result.stderr
    cli.assert_one_line(result.stderr)
    assert f"its folder {folder} is read-only for" in result.stderr
    # A new database in a read-only folder: the same, for the database file itself.
    result = _run_restricted(cli, folder / "new.db", "status")
    assert result.returncode == 2, result.stderr
    assert "must create new.db" in result.stderr
