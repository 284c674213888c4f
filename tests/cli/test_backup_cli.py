"""`vertex-tui backup schedule|list|run|verify|restore|drill` as scripts run them: real
processes, exit codes (0 done, 1 failed, 2 bad usage) and `--json` documents."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from vertex_tui.engine.scheduling import next_cron_time

pytestmark = pytest.mark.slow

SCHEDULE_KEYS = {"job", "schedule", "enabled", "next_run"}
LIST_KEYS = {"kind", "path", "size", "sha256", "verified", "status", "started_at", "finished_at"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_no_tty(cli: Any, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Like `cli.run`, with stdin that is certainly not a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "vertex_tui", *args],
        env=cli.env(**settings),
        cwd=cli.path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def backup_database(cli: Any) -> dict[str, Any]:
    doc: dict[str, Any] = cli.json("backup", "run", "database")
    assert doc["status"] == "ok", doc
    return doc


def subjects(cli: Any) -> list[str]:
    return [r[0] for r in cli.query("SELECT subject FROM email_jobs ORDER BY id")]


# ---- schedule ---------------------------------------------------------------------------------


def test_schedule_json_lists_every_job(backend: str, cli: Any) -> None:
    tz = "Europe/Berlin"
    before = datetime.now(UTC)
    jobs = cli.json("backup", "schedule", VERTEX_TIMEZONE=tz, BACKUP_DRILL_ENABLED="false")
    after = datetime.now(UTC)
    assert isinstance(jobs, list)
    assert all(set(j) == SCHEDULE_KEYS for j in jobs)
    by_name = {j["job"]: j for j in jobs}
    assert {"database", "storage", "full", "rotation"} <= set(by_name)
    assert by_name["database"]["schedule"] == "0 2 * * *"
    assert by_name["rotation"]["schedule"] == "0 4 * * *"
    # SPEC defaults: storage disabled, the others enabled.
    assert by_name["storage"] == {
        "job": "storage",
        "schedule": "0 3 * * 0",
        "enabled": False,
        "next_run": None,
    }
    for name in ("database", "full", "rotation"):
        job = by_name[name]
        assert job["enabled"] is True
        when = datetime.fromisoformat(job["next_run"])
        assert when.utcoffset() is not None
        allowed = {
            next_cron_time(job["schedule"], tz, before),
            next_cron_time(job["schedule"], tz, after),
        }
        assert when in allowed, (name, job["next_run"], allowed)
    # The weekly full backup runs on Sundays ("0 3 * * 0"), at 03:00 Berlin time.
    full = datetime.fromisoformat(by_name["full"]["next_run"]).astimezone(ZoneInfo(tz))
    assert full.strftime("%A") == "Sunday"
    assert cli.assert_times_have_offsets(jobs) == 3


def test_schedule_follows_the_environment(backend: str, cli: Any) -> None:
    jobs = cli.json(
        "backup",
        "schedule",
        BACKUP_STORAGE_ENABLED="true",
        BACKUP_DATABASE_ENABLED="false",
        BACKUP_STORAGE_SCHEDULE="15 1 * * *",
    )
    by_name = {j["job"]: j for j in jobs}
    assert by_name["storage"]["enabled"] is True
    assert by_name["storage"]["schedule"] == "15 1 * * *"
    assert (
        datetime.fromisoformat(by_name["storage"]["next_run"]).astimezone(UTC).strftime("%H:%M")
        == "01:15"
    )
    assert by_name["database"]["enabled"] is False and by_name["database"]["next_run"] is None
    text = cli.ok("backup", "schedule", BACKUP_DATABASE_ENABLED="false")
    assert "disabled" in next(line for line in text.splitlines() if line.startswith("database"))


def test_bad_schedule_variable_exits_2(cli: Any) -> None:
    line = cli.error("backup", "schedule", "--json", BACKUP_ROTATION_SCHEDULE="0 4 * * * *")
    assert "BACKUP_ROTATION_SCHEDULE" in line


# ---- run and list -------------------------------------------------------------------------------


def test_run_database_then_list_json(backend: str, cli: Any) -> None:
    cli.enqueue(subject="before the backup")
    result = cli.run("backup", "run", "database")
    assert result.returncode == 0, result.stderr
    assert "status=ok" in result.stdout
    records = cli.json("backup", "list")
    assert len(records) == 1
    rec = records[0]
    assert LIST_KEYS <= set(rec)
    assert rec["kind"] == "database" and rec["status"] == "ok" and rec["verified"] is True
    path = Path(rec["path"])
    assert path.is_file() and path.parent == cli.path / "backups" / "database"
    assert rec["size"] == path.stat().st_size
    assert rec["sha256"] == sha256(path)
    assert cli.assert_times_have_offsets(records) >= 2
    assert datetime.fromisoformat(rec["finished_at"]) >= datetime.fromisoformat(rec["started_at"])
    assert cli.query("SELECT action FROM audit_log WHERE action = 'backup.run.database'")
    assert cli.query(
        "SELECT outcome FROM service_runs WHERE service = 'backup' AND job = 'database'"
    ) == [("ok",)]


def test_list_filters_by_kind_and_shows_failures(backend: str, cli: Any) -> None:
    backup_database(cli)
    failed = cli.run("backup", "run", "storage", "--json")  # no storage folder
    assert failed.returncode == 1
    doc = json.loads(failed.stdout)
    assert doc["status"] == "failed" and "does not exist" in doc["error"]
    everything = cli.json("backup", "list")
    assert [(r["kind"], r["status"], r["verified"]) for r in everything] == [
        ("storage", "failed", False),
        ("database", "ok", True),
    ]
    assert everything[0]["path"] is None
    only_db = cli.json("backup", "list", "--kind", "database")
    assert [r["kind"] for r in only_db] == ["database"]
    assert "no backups" in cli.ok("backup", "list", "--kind", "full")


def test_run_bogus_kind_exits_2(cli: Any) -> None:
    line = cli.error("backup", "run", "bogus")
    assert "bogus" in line
    assert not cli.db_path.exists() or cli.query("SELECT count(*) FROM backups") == [(0,)]


def test_two_runs_in_a_row_both_survive(backend: str, cli: Any) -> None:
    first = backup_database(cli)
    second = backup_database(cli)
    assert first["path"] != second["path"]
    assert sha256(Path(first["path"])) == first["sha256"]
    assert sha256(Path(second["path"])) == second["sha256"]


def test_rotation_and_drill_from_the_command_line(backend: str, cli: Any) -> None:
    made = [backup_database(cli) for _ in range(3)]
    rotated = cli.json("backup", "run", "rotation", BACKUP_KEEP_LAST="1")
    assert rotated["status"] == "ok" and rotated["deleted"]["database"] == 2
    assert [Path(m["path"]).exists() for m in made] == [False, False, True]
    drilled = cli.json("backup", "drill")
    assert drilled["status"] == "ok" and drilled["path"] == made[-1]["path"]
    status = cli.json("status")
    shown = status["services"]["backup"]["last_verified_restore"]
    assert shown["path"] == made[-1]["path"] and shown["ok"] is True
    assert cli.query("SELECT count(*) FROM audit_log WHERE action = 'backup.run.drill'") == [(1,)]


# ---- verify -----------------------------------------------------------------------------------


def test_verify_good_and_corrupted(backend: str, cli: Any) -> None:
    for i in range(50):
        cli.enqueue(subject=f"m{i}")
    path = Path(backup_database(cli)["path"])
    good = cli.run("backup", "verify", str(path))
    assert good.returncode == 0, good.stderr
    assert "ok" in good.stdout
    doc = cli.json("backup", "verify", str(path))
    assert doc["ok"] is True and doc["kind"] == "database"

    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 32] = bytes(b ^ 0xFF for b in data[mid : mid + 32])
    path.write_bytes(bytes(data))
    bad = cli.run("backup", "verify", str(path))
    assert bad.returncode == 1
    assert "BAD" in bad.stdout
    bad_json = cli.run("backup", "verify", str(path), "--json")
    assert bad_json.returncode == 1
    verdict = json.loads(bad_json.stdout)
    assert verdict["ok"] is False and verdict["reason"] and verdict["reason"] != "ok"
    listed = cli.json("backup", "list")[0]
    assert listed["verified"] is False


def test_verify_missing_path_exits_1(backend: str, cli: Any) -> None:
    result = cli.run("backup", "verify", str(cli.path / "nothing.db"))
    assert result.returncode == 1
    assert "does not exist" in result.stdout


# ---- restore ---------------------------------------------------------------------------------


def test_restore_without_yes_and_without_a_tty_exits_2(backend: str, cli: Any) -> None:
    cli.enqueue(subject="one")
    path = backup_database(cli)["path"]
    cli.enqueue(subject="two")
    result = run_no_tty(cli, "backup", "restore", path)
    assert result.returncode == 2, result.stdout + result.stderr
    cli.assert_one_line(result.stderr)
    assert "--yes" in result.stderr
    assert subjects(cli) == ["one", "two"]
    assert not list(cli.path.glob("vertex.db.before-restore-*"))


def test_restore_with_yes_replaces_the_database(cli: Any) -> None:
    cli.enqueue(subject="one")
    path = backup_database(cli)["path"]
    cli.enqueue(subject="two")
    result = run_no_tty(cli, "backup", "restore", path, "--yes", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["restored_from"] == path
    aside = Path(doc["previous_saved_as"])
    assert aside.exists() and aside.name.startswith("vertex.db.before-restore-")
    assert subjects(cli) == ["one"]
    assert cli.query("SELECT count(*) FROM audit_log WHERE action = 'backup.restore'") == [(1,)]
    # The restored database takes new backups at once.
    assert backup_database(cli)["status"] == "ok"
    text = run_no_tty(cli, "backup", "restore", path, "--yes")
    assert text.returncode == 0 and "previous database saved as" in text.stdout


def test_restore_of_a_corrupted_backup_exits_1_and_changes_nothing(backend: str, cli: Any) -> None:
    cli.enqueue(subject="one")
    path = Path(backup_database(cli)["path"])
    cli.enqueue(subject="two")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result = run_no_tty(cli, "backup", "restore", str(path), "--yes")
    assert result.returncode == 1
    cli.assert_one_line(result.stderr)
    assert "does not verify" in result.stderr
    assert subjects(cli) == ["one", "two"]


def test_restore_is_refused_while_a_headless_engine_runs(backend: str, cli: Any) -> None:
    cli.enqueue(subject="one")
    path = backup_database(cli)["path"]
    env = cli.env(
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(cli.closed_port()),
        BACKUP_DATABASE_ENABLED="false",
        BACKUP_FULL_ENABLED="false",
        BACKUP_ROTATION_ENABLED="false",
    )
    log = (cli.path / "engine.log").open("w")
    engine = subprocess.Popen(
        [sys.executable, "-m", "vertex_tui", "--no-ui"],
        env=env,
        cwd=cli.path,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = datetime.now(UTC).timestamp() + 30
        while "running" not in (cli.path / "engine.log").read_text():
            assert engine.poll() is None, (cli.path / "engine.log").read_text()
            assert datetime.now(UTC).timestamp() < deadline, "the engine did not start"
            time.sleep(0.1)
        result = run_no_tty(cli, "backup", "restore", path, "--yes")
        assert result.returncode == 2, result.stdout + result.stderr
        cli.assert_one_line(result.stderr)
        assert "engine is running" in result.stderr
    finally:
        engine.terminate()
        engine.wait(30)
        log.close()
    assert engine.returncode == 0
    assert not list(cli.path.glob("vertex.db.before-restore-*"))
    # With the engine gone, the restore goes through.
    assert run_no_tty(cli, "backup", "restore", path, "--yes").returncode == 0
