"""Backups of a PostgreSQL database against a real server: pg_dump archives verified with
pg_restore, drills into a temporary database, restore with the old database kept aside,
tools older than the server refused naming both versions, the password kept off command
lines, and each backup's host (verify, rotation and drills where the file is)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg
import pytest
from support.db import query
from support.processes import children, gone

from vertex_tui.engine.backup import folder, manager, pgdump
from vertex_tui.engine.backup.restore import restore
from vertex_tui.engine.clock import SystemClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.settings import DatabaseUrl, Settings
from vertex_tui.engine.store.pgurl import database_name, with_database

NO_SCHEDULES = {f"backup_{k}_enabled": False
                for k in ("database", "full", "rotation", "storage", "drill")}


def databases(url: str) -> set[str]:
    return {r[0] for r in query(url, "SELECT datname FROM pg_database")}


def add_mail(url: str, n: int, subject: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(n):
            conn.execute(
                "INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject,"
                " body, max_attempts, created_at, updated_at, next_attempt_at)"
                " VALUES (gen_random_uuid()::text, 's@x.test', '[\"u@x.test\"]', 'u@x.test',"
                " %s, 'b', 5, 0, 0, 0)", (subject,))


@pytest.fixture
def pg_settings(settings_factory: Callable[..., Settings], pg_url: str) -> Settings:
    return settings_factory(database_url=DatabaseUrl(pg_url), **NO_SCHEDULES)


@pytest.fixture
async def engine(pg_settings: Settings) -> AsyncIterator[Engine]:
    async with Engine(pg_settings, run=[], clock=SystemClock()) as e:
        yield e


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "major", "ok"), [
    ((15, 4), 15, True), ((16, 0), 15, True), ((14, 9), 15, False), ((9, 6), 10, False)])
def test_too_old_names_both_versions(version: tuple[int, int], major: int, ok: bool) -> None:
    problem = pgdump.too_old("pg_dump", version, major, f"the server (PostgreSQL {major}.1)")
    assert (problem is None) is ok
    if problem:
        assert f"pg_dump {version[0]}.{version[1]}" in problem
        assert f"PostgreSQL {major}.1" in problem


@pytest.mark.parametrize(("url", "clean", "password"), [
    ("postgresql://u:s%40cret@h:5/db", "postgresql://u@h:5/db", "s@cret"),
    ("postgresql://u@h/db?password=pw&sslmode=require", "postgresql://u@h/db?sslmode=require",
     "pw"),
    ("postgresql://u@h/db", "postgresql://u@h/db", None),
])
def test_the_password_leaves_the_url_for_the_environment(url: str, clean: str,
                                                        password: str | None) -> None:
    without, env = pgdump.split_password(url)
    assert without == clean
    assert env.get("PGPASSWORD") == password


def test_a_tool_is_started_through_setpriv_with_no_python_in_the_child() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv (util-linux) here: the preexec_fn fallback is used")
    command, preexec = pgdump._killed_with_parent(["pg_dump", "--version"])
    assert command[1:] == ["--pdeathsig", "KILL", "--", "pg_dump", "--version"]
    assert Path(command[0]).name == "setpriv" and preexec is None


def test_a_tool_dies_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    """A real parent runs a tool through `_run` from a worker thread (as backups do) and is
    SIGKILLed: the tool (here `sleep`) dies with it instead of running on for nobody."""
    script = (
        "import sys, threading; from vertex_tui.engine.backup import pgdump\n"
        "t = threading.Thread(target=pgdump._run, args=(['sleep', '300'], {}, 'sleep'))\n"
        "t.start(); t.join()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not (tools := [c for c in children(parent.pid) if _comm(c) == "sleep"]):
            assert parent.poll() is None and time.monotonic() < deadline, "no sleep started"
            time.sleep(0.01)
        parent.kill()
        assert parent.wait(30) == -signal.SIGKILL
        deadline = time.monotonic() + 30
        while not gone(tools[0]):
            assert time.monotonic() < deadline, "the tool outlived the process that started it"
            time.sleep(0.01)
    finally:
        parent.kill()
        parent.wait(30)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# ---- backup, verify, drill ------------------------------------------------------------------


async def test_database_backup_is_a_verified_pg_dump_with_host_and_sha(
        engine: Engine, pg_settings: Settings, pg_url: str) -> None:
    add_mail(pg_url, 25, "before")
    result = await engine.backup.run("database")
    assert result["status"] == "ok", result
    path = Path(result["path"])
    assert path.suffix == ".dump" and path.parent == pg_settings.backup_dir.absolute() / "database"
    assert path.read_bytes()[:5] == b"PGDMP"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert result["sha256"] == sha256(path)
    [record] = await engine.backup.history()
    assert record.host == socket.gethostname() and record.verified and record.sha256
    assert record.detail["schema_version"] >= 11 and record.detail["format"] == "pg_dump custom"
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]
    listing = pgdump.toc(path)
    assert "TABLE DATA public email_jobs" in listing


async def test_verify_catches_a_truncated_or_changed_dump(engine: Engine) -> None:
    result = await engine.backup.run("database")
    path = Path(result["path"])
    assert (await engine.backup.verify(path)).ok
    data = path.read_bytes()
    path.write_bytes(data[:-7] + bytes(b ^ 0xFF for b in data[-7:]))
    verdict = await engine.backup.verify(path)
    assert not verdict.ok and "sha256" in verdict.reason
    path.write_bytes(data[: len(data) // 3])
    verdict = await engine.backup.verify(path)
    assert not verdict.ok and "pg_restore" in verdict.reason
    other = path.with_name("not-a-dump.dump")
    other.write_bytes(b"hello")
    assert not (await engine.backup.verify(other)).ok


async def test_drill_restores_into_a_temporary_database_and_drops_it(
        engine: Engine, pg_url: str) -> None:
    add_mail(pg_url, 40, "drilled")
    assert (await engine.backup.run("database"))["status"] == "ok"
    add_mail(pg_url, 5, "after the backup")
    before = databases(pg_url)
    result = await engine.backup.run("drill")
    assert result["status"] == "ok", result
    assert result["rows"]["email_jobs"] == 40  # the dump's rows, not the live database's
    assert "vt_drill_" in result["restored_into"]
    assert databases(pg_url) == before
    assert (await engine.backup.last_drill())["ok"]


async def test_full_backup_holds_the_dump_and_verifies(engine: Engine,
                                                      pg_settings: Settings) -> None:
    pg_settings.storage_dir.mkdir()
    (pg_settings.storage_dir / "a.txt").write_text("x")
    result = await engine.backup.run("full")
    assert result["status"] == "ok", result
    path = Path(result["path"])
    assert (path / "database.dump").read_bytes()[:5] == b"PGDMP"
    assert (await engine.backup.verify(path)).ok
    drill = await engine.backup.run("drill")
    assert drill["status"] == "ok", drill


# ---- tools ------------------------------------------------------------------------------------


def fake_bin(folder: Path, body: str) -> Path:
    folder.mkdir()
    for name in ("pg_dump", "pg_restore"):
        script = folder / name
        script.write_text(f"#!/bin/sh\n{body.replace('TOOL', name)}\n")
        script.chmod(0o755)
    return folder


async def test_pg_dump_older_than_the_server_is_refused_naming_both(
        settings_factory: Callable[..., Settings], pg_url: str, tmp_path: Path) -> None:
    old = fake_bin(tmp_path / "old", 'echo "TOOL (PostgreSQL) 11.22"; exit 0')
    settings = settings_factory(database_url=DatabaseUrl(pg_url), pg_bin=old, **NO_SCHEDULES)
    async with Engine(settings, run=[], clock=SystemClock()) as engine:
        result = await engine.backup.run("database")
    assert result["status"] == "failed"
    server = query(pg_url, "SHOW server_version")[0][0].split()[0]
    assert "pg_dump 11.22 is older than the server" in result["error"]
    assert f"PostgreSQL {server.split('.')[0]}" in result["error"]
    assert not list((settings.backup_dir / "database").iterdir())


async def test_the_password_reaches_pg_dump_in_its_environment_only(
        settings_factory: Callable[..., Settings], pg_url: str, tmp_path: Path) -> None:
    query(pg_url, "CREATE ROLE dumper LOGIN SUPERUSER PASSWORD 'pa55word'")
    url = pg_url.replace("postgres@", "dumper:pa55word@")
    real = Path(pgdump.find_tool("pg_dump")[0]).parent
    log = tmp_path / "argv.log"
    spy = fake_bin(tmp_path / "spy",
                   f'echo "TOOL $* PGPASSWORD=$PGPASSWORD" >> {log}; exec {real}/TOOL "$@"')
    settings = settings_factory(database_url=DatabaseUrl(url), pg_bin=spy, **NO_SCHEDULES)
    async with Engine(settings, run=[], clock=SystemClock()) as engine:
        result = await engine.backup.run("database")
    assert result["status"] == "ok", result
    calls = [ln for ln in log.read_text().splitlines() if " --file=" in ln]
    assert calls and all(ln.endswith("PGPASSWORD=pa55word") for ln in calls)
    assert all("pa55word" not in ln.rsplit(" PGPASSWORD=", 1)[0] for ln in calls)


# ---- restore ----------------------------------------------------------------------------------


async def test_restore_replaces_the_database_and_keeps_the_old_one_aside(
        pg_settings: Settings, pg_url: str) -> None:
    add_mail(pg_url, 12, "kept")
    async with Engine(pg_settings, run=[], clock=SystemClock()) as engine:
        first = await engine.backup.run("database")
        add_mail(pg_url, 3, "lost by the restore")
        second = await engine.backup.run("database")
    assert first["status"] == second["status"] == "ok"
    result = await restore(pg_settings, Path(first["path"]), owner="h:1:restorer")
    aside = result["previous_saved_as"]
    assert aside.startswith(database_name(pg_url) + "_before_restore_")
    subjects = dict(query(pg_url, "SELECT subject, count(*) FROM email_jobs GROUP BY subject"))
    assert subjects == {"kept": 12}
    old = with_database(pg_url, aside)
    assert dict(query(old, "SELECT subject, count(*) FROM email_jobs GROUP BY subject")) == {
        "kept": 12, "lost by the restore": 3}
    # Both backups stay listed (carried over from the replaced database), ids move on.
    ids = [r[0] for r in query(pg_url, "SELECT id FROM backups ORDER BY id")]
    assert ids == [first["id"], second["id"]]
    assert query(pg_url, "SELECT status FROM backups WHERE id = ?", (first["id"],)) == [("ok",)]
    [(detail,)] = query(pg_url, "SELECT detail FROM audit_log WHERE action = 'backup.restore'")
    assert json.loads(detail)["path"] == first["path"]
    assert not query(pg_url, "SELECT name FROM leases WHERE name = 'maintenance'")
    assert not [d for d in databases(pg_url) if d.startswith("vt_restore_")]
    async with Engine(pg_settings, run=[], clock=SystemClock()) as engine:
        third = await engine.backup.run("database")
        assert third["status"] == "ok" and third["id"] > second["id"]
    query(pg_url.rsplit("/", 1)[0] + "/postgres", f'DROP DATABASE "{aside}"')


async def test_restore_carries_over_backup_records_drills_and_the_newer_audit_trail(
        pg_settings: Settings, pg_url: str) -> None:
    """The dump was taken while its own backup ran and knows no later one: the records of
    backups and drills, and what operators did since, come from the replaced database."""
    async with Engine(pg_settings, run=[], clock=SystemClock()) as engine:
        made = await engine.backup.run("database")
        later = await engine.backup.run("database")
        drill = await engine.backup.drill()
        await engine.email.pause()  # an audited operator action after the backup
    assert made["status"] == later["status"] == drill["status"] == "ok"
    before = query(pg_url, "SELECT id, kind, status, path, sha256 FROM backups ORDER BY id")
    drills = query(pg_url, "SELECT id, backup_id, ok FROM restore_drills")
    actions = [a for (a,) in query(pg_url, "SELECT action FROM audit_log ORDER BY id")]
    assert "email.pause" in actions

    result = await restore(pg_settings, Path(made["path"]), owner="h:1:r")
    assert result["carried_over"]["backups"] == len(before) == 2
    assert query(pg_url, "SELECT id, kind, status, path, sha256 FROM backups"
                 " ORDER BY id") == before
    assert query(pg_url, "SELECT id, backup_id, ok FROM restore_drills") == drills
    trail = [a for (a,) in query(pg_url, "SELECT action FROM audit_log ORDER BY id")]
    assert trail == [*actions, "backup.restore"]
    async with Engine(pg_settings, run=[], clock=SystemClock()) as engine:
        listed = await engine.backup.history()
    assert {(r.path, r.status) for r in listed} == {(made["path"], "ok"), (later["path"], "ok")}
    query(pg_url.rsplit("/", 1)[0] + "/postgres", f'DROP DATABASE "{result["previous_saved_as"]}"')


async def test_restore_is_refused_while_an_engine_runs_or_untrusted(
        pg_settings: Settings, pg_url: str, tmp_path: Path) -> None:
    async with Engine(pg_settings, run=["backup"], clock=SystemClock()) as engine:
        result = await engine.backup.run("database")
        with pytest.raises(UsageError, match="an engine is running"):
            await restore(pg_settings, Path(result["path"]), owner="h:1:r")
    copy = tmp_path / "copy.dump"
    copy.write_bytes(Path(result["path"]).read_bytes())
    with pytest.raises(UsageError, match="--force"):
        await restore(pg_settings, copy, owner="h:1:r")
    sqlite_file = tmp_path / "x.db"
    sqlite_file.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    with pytest.raises(UsageError, match="not a pg_dump archive"):
        await restore(pg_settings, sqlite_file, owner="h:1:r", force=True)
    before = databases(pg_url)
    forced = await restore(pg_settings, copy, owner="h:1:r", force=True)
    assert forced["forced"]
    assert databases(pg_url) - before == {forced["previous_saved_as"]}


# ---- hosts ------------------------------------------------------------------------------------


async def test_rotation_and_verify_leave_other_hosts_files_alone(
        settings_factory: Callable[..., Settings], pg_url: str) -> None:
    settings = settings_factory(database_url=DatabaseUrl(pg_url), backup_keep_last=1,
                                **NO_SCHEDULES)
    elsewhere = "/srv/other-host/backups/database/database-x.dump"
    for i in range(3):
        query(pg_url, "INSERT INTO backups (kind, status, path, started_at, owner, host, sha256,"
              " verified) VALUES ('database', 'ok', ?, ?, 'o', 'other-host', 'x', 1)",
              (f"{elsewhere}.{i}", i))
    async with Engine(settings, run=[], clock=SystemClock()) as engine:
        assert engine.backup.job("rotation").lease == f"backup:rotation@{socket.gethostname()}"
        for _ in range(2):
            assert (await engine.backup.run("database"))["status"] == "ok"
        rotated = await engine.backup.run("rotation")
        assert rotated["deleted"]["database"] == 1  # of this host's two; none of the others'
        with pytest.raises(UsageError, match="written on host other-host"):
            await engine.backup.verify(Path(f"{elsewhere}.0"))
        drill = await engine.backup.run("drill")
    assert drill["status"] == "ok" and drill["path"].startswith(str(settings.backup_dir.absolute()))
    assert query(pg_url, "SELECT count(*) FROM backups WHERE host = 'other-host'"
                 " AND status = 'ok'") == [(3,)]


async def test_a_shared_backup_folder_is_checked(settings_factory: Callable[..., Settings],
                                                 pg_url: str, tmp_path: Path) -> None:
    shared = settings_factory(database_url=DatabaseUrl(pg_url), backup_dir_shared=True,
                              backup_dir=tmp_path / "shared", **NO_SCHEDULES)
    async with Engine(shared, run=[], clock=SystemClock()) as engine:
        assert engine.backup.job("rotation").lease == "backup:rotation"
        assert folder.scope(shared) is None
        assert (await engine.backup.run("database"))["status"] == "ok"
    token = (tmp_path / "shared" / folder.TOKEN_FILE).read_text().strip()
    assert query(pg_url, "SELECT token FROM backup_folder") == [(token,)]
    # Another host whose VERTEX_BACKUP_DIR is a local folder, not the shared one.
    local = settings_factory(database_url=DatabaseUrl(pg_url), backup_dir_shared=True,
                             backup_dir=tmp_path / "local", **NO_SCHEDULES)
    async with Engine(local, run=[], clock=SystemClock()) as engine:
        for job in ("database", "rotation"):
            result = await engine.backup.run(job)
            assert result["status"] == "failed", result
            assert "not the folder the other hosts share" in result["error"]
            assert "has no token file" in result["error"]
        assert not (tmp_path / "local" / folder.TOKEN_FILE).exists()


# ---- the CLI ----------------------------------------------------------------------------------


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VERTEX_", "BACKUP_", "SMTP_", "LIFECYCLE_", "VIDEO_"))}
    assert settings.database_url is not None
    env |= {"VERTEX_DATABASE_URL": settings.database_url.reveal(),
            "VERTEX_BACKUP_DIR": str(settings.backup_dir),
            "VERTEX_STORAGE_DIR": str(settings.storage_dir)}
    return subprocess.run([sys.executable, "-m", "vertex_tui", *args], env=env,
                          cwd=settings.backup_dir.parent, capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL)


async def test_backup_run_verify_drill_and_restore_from_the_cli(pg_settings: Settings,
                                                               pg_url: str) -> None:
    add_mail(pg_url, 7, "cli")
    made = await asyncio.to_thread(cli, pg_settings, "backup", "run", "database", "--json")
    assert made.returncode == 0, made.stderr
    path = json.loads(made.stdout)["path"]
    verified = await asyncio.to_thread(cli, pg_settings, "backup", "verify", path, "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    drill = await asyncio.to_thread(cli, pg_settings, "backup", "drill", "--json")
    assert drill.returncode == 0, drill.stderr
    assert json.loads(drill.stdout)["rows"]["email_jobs"] == 7
    add_mail(pg_url, 2, "after")
    restored = await asyncio.to_thread(cli, pg_settings, "backup", "restore", path, "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "previous database saved as" in restored.stdout and "_before_restore_" in \
        restored.stdout
    assert query(pg_url, "SELECT count(*) FROM email_jobs") == [(7,)]
    garbage = Path(path).with_name("bad.dump")
    garbage.write_bytes(b"PGDMP" + b"\x00" * 50)
    bad = await asyncio.to_thread(cli, pg_settings, "backup", "verify", str(garbage))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr + bad.stdout
    refused = await asyncio.to_thread(cli, pg_settings, "backup", "restore", str(garbage),
                                      "--yes")
    assert refused.returncode in (1, 2) and len(refused.stderr.strip().splitlines()) == 1
    assert "Traceback" not in refused.stderr


async def test_pg_restore_older_than_the_dump_is_refused_naming_both(
        engine: Engine, settings_factory: Callable[..., Settings], pg_url: str,
        tmp_path: Path) -> None:
    path = Path((await engine.backup.run("database"))["path"])
    header = pgdump.read_header(path)
    assert header is not None and header.pg_dump_major >= 14
    old = fake_bin(tmp_path / "old", 'echo "TOOL (PostgreSQL) 11.22"; exit 0')
    verdict = await asyncio.to_thread(manager.verify, path, None, old)
    assert not verdict.ok
    assert verdict.reason == (f"pg_restore 11.22 is older than the pg_dump "
                              f"{header.pg_dump_version} that wrote {path.name}: install the "
                              f"PostgreSQL {header.pg_dump_major} client tools (or newer) or "
                              "point VERTEX_PG_BIN at them")


async def test_the_dump_is_a_snapshot_that_waits_for_no_writer(engine: Engine,
                                                              pg_url: str) -> None:
    add_mail(pg_url, 3, "committed")
    writer = await psycopg.AsyncConnection.connect(pg_url)
    try:
        # A writer in the middle of its transaction, rows inserted and not committed.
        await writer.execute(
            "INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject, body,"
            " max_attempts, created_at, updated_at, next_attempt_at) VALUES"
            " ('<open@x.test>', 's@x.test', '[]', 'u@x.test', 'uncommitted', 'b', 5, 0, 0, 0)")
        result = await asyncio.wait_for(engine.backup.run("database"),
                                        timeout=120)
        assert result["status"] == "ok", result
        drill = await engine.backup.run("drill")
        assert drill["rows"]["email_jobs"] == 3  # the snapshot: committed rows only
        await writer.commit()  # the writer was never blocked by the dump
    finally:
        await writer.close()
    assert query(pg_url, "SELECT count(*) FROM email_jobs") == [(4,)]


async def test_recovery_leaves_another_hosts_temp_files_alone(engine: Engine,
                                                            pg_settings: Settings) -> None:
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()
    folder_ = pg_settings.backup_dir / "database"
    folder_.mkdir(parents=True)
    mine = folder_ / f".database-x.dump@{socket.gethostname()}.tmp-{gone.pid}"
    theirs = folder_ / f".database-y.dump@another-host.tmp-{gone.pid}"
    for leftover in (mine, theirs):
        leftover.write_bytes(b"half a dump")
    await engine.backup.recover()
    assert not mine.exists()  # this host's process is gone
    assert theirs.exists()  # that pid may be alive on its own host


async def test_stopping_the_engine_cancels_a_running_pg_dump(
        settings_factory: Callable[..., Settings], pg_url: str, tmp_path: Path) -> None:
    real = Path(pgdump.find_tool("pg_dump")[0]).parent
    hang = fake_bin(tmp_path / "hang",
                    f'case "$1" in --version) exec {real}/TOOL "$@";; esac; exec sleep 613')
    settings = settings_factory(database_url=DatabaseUrl(pg_url), pg_bin=hang, **NO_SCHEDULES)

    def sleepers() -> list[str]:
        return [p for p in os.listdir("/proc") if p.isdigit()
                and _cmdline(p) == "sleep\x00613\x00"]

    async with Engine(settings, run=[], clock=SystemClock()) as engine:
        task = asyncio.create_task(engine.backup.run("database"))
        for _ in range(300):
            if sleepers():
                break
            await asyncio.sleep(0.05)
        assert sleepers(), "pg_dump never started"
        await engine.backup.stop(grace=20)
        result = await task
    assert result["status"] == "failed" and "cancelled" in result["error"]
    assert sleepers() == []
    folder_ = settings.backup_dir / "database"
    assert list(folder_.iterdir()) == []  # no temp file, nothing at a final name


def _cmdline(pid: str) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_text()
    return ""


async def test_a_full_backup_restores_its_dump(pg_settings: Settings, pg_url: str) -> None:
    pg_settings.storage_dir.mkdir()
    add_mail(pg_url, 4, "full")
    async with Engine(pg_settings, run=[], clock=SystemClock()) as engine:
        full = await engine.backup.run("full")
    assert full["status"] == "ok", full
    add_mail(pg_url, 1, "later")
    result = await restore(pg_settings, Path(full["path"]), owner="h:1:r")
    assert result["rows"]["email_jobs"] == 4
    query(pg_url.rsplit("/", 1)[0] + "/postgres", f'DROP DATABASE "{result["previous_saved_as"]}"')


async def test_doctor_drops_only_the_scratch_databases_of_dead_processes_of_this_host(
        pg_settings: Settings, pg_url: str) -> None:
    from vertex_tui.engine import doctor
    from vertex_tui.engine.store import pgadmin

    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()
    live, host = database_name(pg_url), socket.gethostname()
    note = "vertex-tui scratch copy of {} by {}"
    made = {f"{live}_dead": note.format(live, f"{host}:{gone.pid}"),
            f"{live}_far": note.format(live, f"another-host:{gone.pid}"),  # may be alive there
            f"{live}_alive": note.format(live, f"{host}:{os.getpid()}"),  # still at work
            f"{live}_other": note.format("another_database", f"{host}:{gone.pid}")}
    for name, comment in made.items():
        pgadmin.create_database(pg_url, name, note=comment)
    try:
        report = await doctor.examine(pg_settings)
        assert report.scratch_databases == [f"{live}_dead"]
        assert report.clearable == 1
        cleared = await doctor.repair(pg_settings, report)
        assert cleared["scratch_databases"] == 1
        assert databases(pg_url) & set(made) == set(made) - {f"{live}_dead"}
        assert (await doctor.examine(pg_settings)).clearable == 0
    finally:
        for name in made:
            pgadmin.drop_database(pg_url, name)
