"""`vertex-tui backup restore` refusing what it must not restore, and the settings a restore
depends on, as scripts run them: exit codes, one stderr line, the database as it was.

On both backends (`backend`) except the live SQLite file restored onto itself (a dump is never
the live database). What a restore keeps aside is a file beside the SQLite database, or on
PostgreSQL a database `<name>_before_restore_<stamp>` (dropped when the test ends). The
restore of a pg_dump itself is covered in tests/engine/test_pg_backup.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.db import query

# On SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
both = pytest.mark.usefixtures("backend")


def restore(cli: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vertex_tui", "backup", "restore", *args], env=cli.env(),
        cwd=cli.path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        check=False)


def subjects(cli: Any) -> list[str]:
    return [r[0] for r in cli.query("SELECT subject FROM email_jobs ORDER BY id")]


@pytest.fixture
def asides(cli: Any) -> Iterator[Callable[[], list[str]]]:
    """`asides()`: what restores kept aside, by name (SQLite: files beside the database;
    PostgreSQL: databases, dropped at the end)."""

    def found() -> list[str]:
        if cli.database_url is None:
            return sorted(p.name for p in cli.path.glob("vertex.db.before-restore-*"))
        prefix = cli.database_url.rsplit("/", 1)[1] + "_before_restore_"
        return sorted(n for (n,) in cli.query("SELECT datname FROM pg_database")
                      if n.startswith(prefix))

    yield found
    if cli.database_url is not None:
        for name in found():
            query(cli.database_url.rsplit("/", 1)[0] + "/postgres", f'DROP DATABASE "{name}"')


@both
def test_restore_of_a_file_that_is_not_a_backup_of_this_backend_exits_2_and_changes_nothing(
    cli: Any, asides: Callable[[], list[str]]
) -> None:
    cli.enqueue(subject="one")
    other = cli.path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.commit()
    # A SQLite file that is not vertex-tui's; on PostgreSQL no SQLite file is a dump.
    refusal = ("not a vertex-tui database" if cli.database_url is None
               else "is not a pg_dump archive")
    for extra in ((), ("--force",)):
        result = restore(cli, str(other), "--yes", *extra)
        assert result.returncode == 2, result.stdout + result.stderr
        cli.assert_one_line(result.stderr)
        assert refusal in result.stderr
    assert asides() == []
    # The next command runs on the database as it was: nothing migrated on top of other.db.
    assert cli.stats()["pending"] == 1
    assert subjects(cli) == ["one"]
    with contextlib.closing(sqlite3.connect(other)) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]


def foreign_database(cli: Any) -> Path:
    """An intact database that is not vertex-tui's, in this backend's backup format: a SQLite
    file, or on PostgreSQL a pg_dump of a scratch database holding one table of notes."""
    if cli.database_url is None:
        path = cli.path / "other.db"
        query(path, "CREATE TABLE notes (text TEXT)")
        return path
    from vertex_tui.engine.backup import pgdump

    server = cli.database_url.rsplit("/", 1)[0]
    name = f"vt_foreign_{os.getpid()}"
    query(f"{server}/postgres", f'CREATE DATABASE "{name}"')
    try:
        query(f"{server}/{name}", "CREATE TABLE notes (text TEXT)")
        path = cli.path / "other.dump"
        pgdump.dump(pgdump.PgSource(url=f"{server}/{name}"), path)
    finally:
        query(f"{server}/postgres", f'DROP DATABASE "{name}"')
    return path


@both
def test_verify_says_what_restore_says_of_a_database_that_is_not_vertex_tui(
    cli: Any, asides: Callable[[], list[str]]
) -> None:
    """verify called such a file "ok (database: ok)" (SQLite) or blamed missing tables (a
    dump) while restore refused it as not a vertex-tui database: both now give restore's
    reason, verify as a bad backup (exit 1), restore as input it refuses (exit 2)."""
    cli.enqueue(subject="one")
    other = foreign_database(cli)
    reason = "not a vertex-tui database (it has no vertex-tui schema history)"
    verified = cli.run("backup", "verify", str(other))
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert verified.stdout.strip() == f"{other}: BAD (database: {reason})"
    doc = json.loads(cli.run("backup", "verify", str(other), "--json").stdout)
    assert doc["ok"] is False and doc["reason"] == reason
    for extra in ((), ("--force",)):
        result = restore(cli, str(other), "--yes", *extra)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.strip() == f"vertex-tui: {other} is {reason}"
    assert asides() == [] and subjects(cli) == ["one"]


@both
def test_restore_of_what_is_no_backup_of_this_database_exits_2_with_or_without_force(
    cli: Any, asides: Callable[[], list[str]]
) -> None:
    """Missing, not a database, a storage archive, a folder that is no full backup, the other
    backend's format: bad input (exit 2), as README lists, never "the operation failed" (a
    missing path and a non-SQLite file were exit 1 on SQLite, a storage archive on both). A
    backup that fails its checks stays exit 1 (test_backup_cli)."""
    cli.enqueue(subject="one")
    (cli.path / "storage").mkdir()
    (cli.path / "storage" / "a.jpg").write_bytes(b"jpeg")
    archive = cli.json("backup", "run", "storage")["path"]
    garbage = cli.path / "garbage.db"
    garbage.write_bytes(bytes(range(256)) * 20)
    folder = cli.path / "just-a-folder"
    folder.mkdir()
    wrong_format = "is not a pg_dump archive"  # PostgreSQL: only a dump will do
    cases = {
        str(cli.path / "nothing.db"): "nothing.db does not exist",
        archive: "is a storage archive; extract it with: tar -xzf",
        str(garbage): wrong_format,
        str(folder): wrong_format,
    }
    if cli.database_url is None:
        fake_dump = cli.path / "database.dump"
        fake_dump.write_bytes(b"PGDMP" + bytes(200))
        cases.update({
            str(garbage): "is not a vertex-tui database (neither a SQLite database nor a "
                          "pg_dump archive)",
            str(folder): "is not a backup (a folder without manifest.json)",
            str(fake_dump): "is a pg_dump archive: a SQLite database is restored from",
        })
    for path, refusal in cases.items():
        for extra in ((), ("--force",)):
            result = restore(cli, path, "--yes", *extra)
            assert result.returncode == 2, f"{path} {extra}: {result.stdout}{result.stderr}"
            cli.assert_one_line(result.stderr)
            assert refusal in result.stderr, result.stderr
    assert asides() == [] and subjects(cli) == ["one"]
    assert cli.query("SELECT count(*) FROM leases") == [(0,)]


@both
def test_restore_of_an_unrecorded_vertex_tui_file_needs_force(
    cli: Any, asides: Callable[[], list[str]]
) -> None:
    cli.enqueue(subject="one")
    made = cli.json("backup", "run", "database")
    cli.enqueue(subject="two")
    stray = cli.path / f"from-elsewhere{Path(made['path']).suffix}"
    stray.write_bytes(Path(made["path"]).read_bytes())
    result = restore(cli, str(stray), "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    cli.assert_one_line(result.stderr)
    assert "not a recorded, verified backup" in result.stderr and "--force" in result.stderr
    assert subjects(cli) == ["one", "two"] and asides() == []
    forced = restore(cli, str(stray), "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert subjects(cli) == ["one"]
    assert len(asides()) == 1  # the database as it was, with "two"
    # The recorded backup itself needs no --force.
    again = restore(cli, made["path"], "--yes")
    assert again.returncode == 0, again.stderr
    assert subjects(cli) == ["one"] and len(asides()) == 2


@both
def test_a_restore_never_takes_the_name_an_earlier_one_kept_aside(
    cli: Any, asides: Callable[[], list[str]]
) -> None:
    """Names carry the second (a restore takes well under one): two restores in one second
    shared a name. On SQLite the second replaced the first one's file, the only copy of what
    that restore replaced; on PostgreSQL its rename failed, leaving the restored copy behind.
    Here what restores kept aside in the seconds around this one is planted under their
    names: the restore must keep the database elsewhere and touch none of them."""
    cli.enqueue(subject="one")
    made = cli.json("backup", "run", "database")
    cli.enqueue(subject="two")
    server, live = (cli.database_url or "/").rsplit("/", 1)

    def plant(at: float) -> None:
        stamp = datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%SZ")
        if cli.database_url is None:
            (cli.path / f"vertex.db.before-restore-{stamp}").write_bytes(b"planted")
        else:
            query(f"{server}/postgres",
                  f'CREATE DATABASE "{live}_before_restore_{stamp.lower()}"')

    # Every second from the last one until 5 s ahead of the clock (a slow CREATE DATABASE
    # pushes the end on): the restore's own second must be among them.
    start = at = time.time() - 1
    while at < time.time() + 5:
        assert at - start < 60, "planting names cannot keep ahead of the clock"
        plant(at)
        at += 1
    planted = asides()
    assert len(planted) == round(at - start)

    result = restore(cli, made["path"], "--yes")
    assert result.returncode == 0, result.stderr
    assert time.time() < at - 1, "the restore took longer than the planted names cover"
    assert subjects(cli) == ["one"]
    new = set(asides()) - set(planted)
    assert len(new) == 1, f"kept aside under a new name: {new} (none: it replaced one)"
    kept = new.pop()
    assert kept.rsplit("_" if cli.database_url else "-", 1)[1] == "2", kept
    if cli.database_url is None:
        assert all((cli.path / name).read_bytes() == b"planted" for name in planted)
        with contextlib.closing(sqlite3.connect(cli.path / kept)) as conn:
            rows = conn.execute("SELECT subject FROM email_jobs ORDER BY id").fetchall()
    else:
        assert set(planted) <= set(asides())
        assert not [n for (n,) in cli.query("SELECT datname FROM pg_database")
                    if n.startswith("vt_restore_")], "the restored copy was left behind"
        rows = query(f"{server}/{kept}", "SELECT subject FROM email_jobs ORDER BY id")
    assert rows == [("one",), ("two",)]  # what the restore replaced, kept


# SQLite only: the live database is a file there; a PostgreSQL one is never a dump.
def test_restore_of_the_live_database_onto_itself_exits_2_and_locks_nothing(
    cli: Any, asides: Callable[[], list[str]]
) -> None:
    cli.enqueue(subject="one")
    for path in (str(cli.db_path), "vertex.db", "./vertex.db"):
        result = restore(cli, path, "--yes", "--force")
        assert result.returncode == 2, result.stdout + result.stderr
        cli.assert_one_line(result.stderr)
        assert "is the live database" in result.stderr
    # Used to leave "being restored by <dead pid>" for an hour.
    assert cli.stats()["pending"] == 1
    assert cli.query("SELECT count(*) FROM leases") == [(0,)]
    assert asides() == []


@both
@pytest.mark.parametrize(("storage", "backups"), [("media", "media/backups"), ("media", "media")])
def test_backup_dir_inside_storage_dir_exits_2_naming_both(
    cli: Any, storage: str, backups: str
) -> None:
    line = cli.error("config", VERTEX_STORAGE_DIR=storage, VERTEX_BACKUP_DIR=backups)
    assert "VERTEX_BACKUP_DIR" in line and "VERTEX_STORAGE_DIR" in line
    line = cli.error("backup", "run", "storage", VERTEX_STORAGE_DIR=storage,
                     VERTEX_BACKUP_DIR=backups, **cli.refused_early())
    assert "VERTEX_BACKUP_DIR" in line
    assert not (cli.path / backups / "storage").exists()


@both
def test_a_cron_schedule_that_never_fires_exits_2_naming_the_variable(cli: Any) -> None:
    line = cli.error("backup", "schedule", BACKUP_DATABASE_SCHEDULE="0 2 30 2 *",
                     **cli.refused_early())
    assert line.startswith("vertex-tui: BACKUP_DATABASE_SCHEDULE='0 2 30 2 *' is invalid")
