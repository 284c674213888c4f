"""A damaged database and `vertex-tui doctor`, as an operator meets them: real processes, a
real SQLite file whose pages were overwritten on disk (page 1 intact), exit codes and the one
line on stderr.

Damage is SQLite's alone (a file's pages, `PRAGMA quick_check`, a restore from a file): those
tests stay SQLite-only. Stale leases and interrupted runs are what doctor examines on both
backends, and those tests run on both (`backend`); on PostgreSQL there is no file to check, and
a lease's holder on another host is judged by its engine heartbeat.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

QUIET = {
    "BACKUP_DATABASE_ENABLED": "false",
    "BACKUP_FULL_ENABLED": "false",
    "BACKUP_ROTATION_ENABLED": "false",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damage(db: Path, *, spare: tuple[str, ...] = ("schema_migrations", "leases")) -> None:
    """Overwrite with junk every page of every table and index except page 1 (the header and
    the schema) and the tables in `spare`, as a failing disk would; SQLite must then call
    the file malformed. With the schema history and the leases spared, the file opens: the
    damage shows at the first query of a command, as it did in the field."""
    keep = ("sqlite_schema", *spare, *(f"sqlite_autoindex_{t}_1" for t in spare))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        marks = ",".join("?" * len(keep))
        pages = [p for (p,) in conn.execute(
            f"SELECT pageno FROM dbstat WHERE name NOT IN ({marks})", keep)]
    assert pages, "nothing to damage"
    with db.open("r+b") as fh:
        assert fh.read(16) == b"SQLite format 3\x00"
        for page in pages:
            fh.seek((page - 1) * page_size)
            fh.write(b"\xa5" * page_size)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="malformed"):
            conn.execute("PRAGMA quick_check").fetchall()


def enqueue_many(cli: Any, count: int) -> None:
    lines = [json.dumps({"to": f"u{i}@example.com", "subject": f"mail {i}", "body": "b"})
             for i in range(count)]
    cli.ok("email", "enqueue", "--jsonl", str(cli.write_jsonl("mail.jsonl", lines)))


def backed_up(cli: Any) -> dict[str, Any]:
    enqueue_many(cli, 20)
    made: dict[str, Any] = cli.json("backup", "run", "database")
    assert made["status"] == "ok"
    return made


def dead_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:deadbeef"


# ---- F3: one line, exit 1, the file untouched ------------------------------------------------
# SQLite only, to the end of this section: the damage is to the SQLite file's pages.


@pytest.mark.parametrize(
    "args", [("status",), ("status", "--json"), ("email", "stats"), ("email", "list"),
             ("--no-ui",)], ids=" ".join)
def test_a_damaged_database_gives_one_line_naming_the_file_and_leaves_it_untouched(
    cli: Any, args: tuple[str, ...]
) -> None:
    backed_up(cli)
    damage(cli.db_path)
    before = sha256(cli.db_path)
    result = cli.run(*args, timeout=60, SMTP_PORT=str(cli.closed_port()), **QUIET)
    assert result.returncode == 1, result.stdout + result.stderr
    cli.assert_one_line(result.stderr)
    assert str(cli.db_path) in result.stderr
    assert "database disk image is malformed" in result.stderr
    assert sha256(cli.db_path) == before


def test_doctor_on_a_damaged_database_names_the_newest_verified_backup(cli: Any) -> None:
    older = backed_up(cli)
    newest = cli.json("backup", "run", "database")
    # A newer backup file that no longer verifies is passed over.
    cli.enqueue(subject="later")
    broken = cli.json("backup", "run", "database")
    Path(broken["path"]).write_bytes(b"SQLite format 3\x00" + b"\x00" * 4000)
    damage(cli.db_path)
    before = sha256(cli.db_path)

    result = cli.run("doctor")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DAMAGED" in result.stdout and "malformed" in result.stdout
    assert newest["path"] in result.stdout and older["path"] not in result.stdout
    assert f"vertex-tui backup restore {newest['path']} --yes --force" in result.stdout
    assert "--force: its backup records cannot be read" in result.stdout  # and why
    doc = json.loads(cli.run("doctor", "--json").stdout)
    assert doc["integrity"] == "damaged"
    assert doc["newest_verified_backup"]["path"] == newest["path"]
    assert doc["newest_verified_backup"]["finished_at"]  # when it was made
    assert sha256(cli.db_path) == before
    # --yes does not write to a damaged file either.
    assert cli.run("doctor", "--yes").returncode == 1
    assert sha256(cli.db_path) == before

    # Following the advice brings the platform back.
    command = doc["advice"].split(": ", 1)[1].split(" (")[0].split()
    assert command[:3] == ["vertex-tui", "backup", "restore"]
    restored = cli.run(*command[1:])
    assert restored.returncode == 0, restored.stderr
    assert cli.stats()["pending"] == 20
    assert cli.run("doctor").returncode in (0, 1)  # sound again (leftovers may be listed)
    assert "integrity ok" in cli.run("doctor").stdout


def advised_command(cli: Any) -> str:
    """The `vertex-tui backup restore ...` command doctor's text output tells the operator
    to run, as printed."""
    result = cli.run("doctor")
    assert result.returncode == 1, result.stdout + result.stderr
    [advice] = [line for line in result.stdout.splitlines() if line.startswith("what to do:")]
    command = advice.split("): ", 1)[1].split(" (the damaged file")[0]
    assert command.startswith("vertex-tui backup restore "), advice
    return command


def run_as_printed(cli: Any, command: str) -> subprocess.CompletedProcess[str]:
    """`command` through a shell, with the `vertex-tui` of this interpreter first on PATH."""
    env = cli.env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(command, shell=True, env=env, cwd=cli.path, capture_output=True,
                          text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)


def test_doctor_reads_the_backup_records_when_they_survived(cli: Any) -> None:
    """Doctor found the backup in the records, so its advice has no --force; restore reads the
    records the same way and restores it as the recorded, verified backup it is (it asked
    for --force: "its backup records cannot be read")."""
    made = backed_up(cli)
    damage(cli.db_path, spare=("schema_migrations", "leases", "backups", "ix_backups_kind",
                               "ix_backups_path", "sqlite_sequence"))
    doc = json.loads(cli.run("doctor", "--json").stdout)
    assert doc["newest_verified_backup"]["path"] == made["path"]
    assert doc["newest_verified_backup"]["source"] == "records"
    assert "--force" not in doc["advice"]
    # A copy of it that the records do not name still needs the operator's word.
    stray = cli.path / "stray.db"
    stray.write_bytes(Path(made["path"]).read_bytes())
    refused = cli.run("backup", "restore", str(stray), "--yes")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    cli.assert_one_line(refused.stderr)
    assert "not a recorded, verified backup" in refused.stderr
    assert not list(cli.path.glob("vertex.db.before-restore-*"))

    command = advised_command(cli)
    assert command == f"vertex-tui backup restore {made['path']} --yes"
    restored = run_as_printed(cli, command)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"restored {cli.db_path} from {made['path']}" in restored.stdout
    assert cli.stats()["pending"] == 20
    assert "integrity ok" in cli.run("doctor").stdout
    assert doc["newest_verified_backup"]["force"] is False


def test_doctor_and_restore_agree_when_the_backup_records_fail_their_check(cli: Any) -> None:
    """The backups table reads but its path index is damaged: its records are not trusted by
    either (both read them through store.doctor.restorable, which checks the table first).
    Doctor says --force and why; the command works as printed, and not without --force."""
    made = backed_up(cli)
    damage(cli.db_path, spare=("schema_migrations", "leases", "backups", "ix_backups_kind",
                               "sqlite_sequence"))
    doc = json.loads(cli.run("doctor", "--json").stdout)
    assert doc["newest_verified_backup"]["path"] == made["path"]
    assert doc["newest_verified_backup"]["source"] == "folder"
    command = advised_command(cli)
    assert command == f"vertex-tui backup restore {made['path']} --yes --force"
    assert "--force: its backup records cannot be read" in doc["advice"]
    unforced = run_as_printed(cli, command.removesuffix(" --force"))
    assert unforced.returncode == 2, unforced.stdout + unforced.stderr
    assert "its backup records cannot be read" in unforced.stderr
    restored = run_as_printed(cli, command)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert cli.stats()["pending"] == 20


def test_doctor_with_no_backup_says_so(cli: Any) -> None:
    enqueue_many(cli, 5)
    damage(cli.db_path)
    result = cli.run("doctor")
    assert result.returncode == 1
    assert "no backup that verifies was found" in result.stdout


# ---- doctor: stale leases and interrupted runs ---------------------------------------------


# On SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
both = pytest.mark.usefixtures("backend")


def lease(cli: Any, name: str, owner: str, expires_at: float = 4e9) -> None:
    cli.query("INSERT INTO leases (name, owner, acquired_at, expires_at) VALUES (?, ?, 1, ?)",
              (name, owner, expires_at))


def running_run(cli: Any, owner: str) -> None:
    cli.query("INSERT INTO service_runs (service, job, owner, started_at)"
              " VALUES ('backup', 'database', ?, 1000)", (owner,))


def plant_leftovers(cli: Any) -> str:
    """What a SIGKILLed restore and a SIGKILLed backup run leave: a maintenance lease and a
    job lease of a dead pid, a run and a backup still 'running'."""
    cli.enqueue(subject="kept")
    dead = dead_owner()
    lease(cli, "maintenance", dead)
    lease(cli, "backup:database", dead)
    running_run(cli, dead)
    cli.query("INSERT INTO backups (kind, status, started_at, owner)"
              " VALUES ('database', 'running', 1000, ?)", (dead,))
    return dead


@both
def test_doctor_on_a_sound_database_with_nothing_to_clear_exits_0(cli: Any) -> None:
    cli.enqueue(subject="kept")
    out = cli.ok("doctor")
    assert "nothing to clear" in out
    doc = cli.json("doctor")
    assert doc["stale_leases"] == doc["interrupted"] == []
    if cli.database_url is None:
        assert "integrity ok" in out and doc["integrity"] == "ok"
    else:  # no file to check: the server answered, which is what there is to say
        assert out.startswith(f"database {cli.database_url}: reachable (PostgreSQL")
        assert doc["integrity"] == "not checked (PostgreSQL)"
        assert doc["database"] == cli.database_url


@both
def test_doctor_without_a_tty_and_without_yes_only_reports(cli: Any) -> None:
    dead = plant_leftovers(cli)
    before = cli.query("SELECT * FROM leases ORDER BY name")
    result = subprocess.run(
        [sys.executable, "-m", "vertex_tui", "doctor"], env=cli.env(), cwd=cli.path,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"stale lease maintenance held by {dead}" in result.stdout
    assert "stale lease backup:database" in result.stdout
    assert "interrupted run backup.database" in result.stdout
    assert "interrupted backup database" in result.stdout
    assert "vertex-tui doctor --yes" in result.stdout
    assert cli.query("SELECT * FROM leases ORDER BY name") == before
    assert cli.query("SELECT outcome FROM service_runs") == [("running",)]


@both
def test_doctor_yes_clears_stale_leases_and_interrupted_runs(cli: Any) -> None:
    plant_leftovers(cli)
    out = cli.ok("doctor", "--yes")
    assert "cleared: 2 leases, 1 runs, 1 backups, 0 temp files" in out
    assert cli.query("SELECT count(*) FROM leases") == [(0,)]
    assert cli.query("SELECT outcome, error FROM service_runs")[0][0] == "error"
    assert cli.query("SELECT status FROM backups") == [("failed",)]
    assert "nothing to clear" in cli.ok("doctor")
    assert cli.stats()["pending"] == 1


@both
def test_doctor_leaves_what_live_processes_hold(cli: Any) -> None:
    """A lease of a live process (this test's own pid) and its running run are not stale."""
    cli.enqueue(subject="kept")
    alive = f"{socket.gethostname()}:{os.getpid()}:cafe"
    lease(cli, "backup:database", alive)
    running_run(cli, alive)
    assert "nothing to clear" in cli.ok("doctor", "--yes")
    assert cli.query("SELECT owner FROM leases") == [(alive,)]
    assert cli.query("SELECT outcome FROM service_runs") == [("running",)]


@both
def test_doctor_asks_on_a_tty_and_clears_only_on_yes(cli: Any) -> None:
    import pty

    plant_leftovers(cli)

    def answer(text: str) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "vertex_tui", "doctor"], env=cli.env(), cwd=cli.path,
            stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
        out = b""
        try:
            while b"[y/N]" not in out:
                out += os.read(leader, 4096)
            os.write(leader, text.encode() + b"\n")
            with contextlib.suppress(OSError):
                while chunk := os.read(leader, 4096):
                    out += chunk
            assert proc.wait(60) in (0, 1)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            os.close(leader)
        return out.decode()

    assert "nothing cleared" in answer("n")
    assert cli.query("SELECT count(*) FROM leases") == [(2,)]
    assert "cleared: 2 leases" in answer("y")
    assert cli.query("SELECT count(*) FROM leases") == [(0,)]


@both
def test_a_holder_on_another_host_is_judged_by_its_engine_heartbeat(cli: Any) -> None:
    """No pid check can see another host: its engine's heartbeat says whether it lives. A
    stale heartbeat makes its hours-long backup lease and its run leftovers; a live one keeps
    them (engines of several hosts share one PostgreSQL; on SQLite the same rule holds)."""
    cli.enqueue(subject="kept")
    now = time.time()
    lease(cli, "engine:far:1:dead", "far:1:dead", now - 5)  # its heartbeat went stale
    lease(cli, "backup:database", "far:1:dead", now + 6 * 3600)
    lease(cli, "engine:near:2:live", "near:2:live", now + 600)
    lease(cli, "lifecycle", "near:2:live", now + 600)
    running_run(cli, "far:1:dead")
    running_run(cli, "near:2:live")
    found = cli.run("doctor", "--json")
    assert found.returncode == 1, found.stderr  # something to clear
    doc = json.loads(found.stdout)
    assert sorted(x["name"] for x in doc["stale_leases"]) == ["backup:database",
                                                              "engine:far:1:dead"]
    assert [x["owner"] for x in doc["interrupted"]] == ["far:1:dead"]
    assert "cleared: 2 leases, 1 runs, 0 backups" in cli.ok("doctor", "--yes")
    assert cli.query("SELECT name FROM leases ORDER BY name") == [("engine:near:2:live",),
                                                                  ("lifecycle",)]
    assert cli.query("SELECT owner, outcome FROM service_runs ORDER BY owner") == [
        ("far:1:dead", "error"), ("near:2:live", "running")]


# SQLite only: the file; on PostgreSQL an unreachable server is exit 1 (test_pg_cli).
def test_doctor_on_a_missing_database_exits_2_and_creates_nothing(cli: Any) -> None:
    line = cli.error("doctor", code=2)
    assert "VERTEX_DB_PATH" in line and str(cli.db_path) in line
    assert not cli.db_path.exists()
