"""The CLI on PostgreSQL: VERTEX_DATABASE_URL selects it, `config` masks its password, a bad
URL is exit 2 and an unreachable server exit 1 (one line each, no password anywhere)."""

from __future__ import annotations

import json
import socket
from typing import Any

import psycopg

PASSWORD = "pw-Zq81-secret"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_config_shows_the_url_with_its_password_masked(cli: Any) -> None:
    url = f"postgresql://vertex:{PASSWORD}@db.internal:5432/vertex?sslmode=require"
    text = cli.run("config", VERTEX_DATABASE_URL=url, VERTEX_DATABASE_CONNECT_TIMEOUT="5")
    doc = cli.run("config", "--json", VERTEX_DATABASE_URL=url)
    for result in (text, doc):
        assert result.returncode == 0, result.stderr
        assert PASSWORD not in result.stdout + result.stderr
    lines = dict(line.split("=", 1) for line in text.stdout.splitlines())
    masked = "postgresql://vertex:********@db.internal:5432/vertex?sslmode=require"
    assert lines["VERTEX_DATABASE_URL"] == masked
    assert lines["VERTEX_DATABASE_CONNECT_TIMEOUT"] == "5.0"
    values = json.loads(doc.stdout)
    assert values["VERTEX_DATABASE_URL"] == masked
    assert values["VERTEX_DATABASE_CONNECT_TIMEOUT"] == 30.0
    unset = dict(line.split("=", 1) for line in cli.ok("config").splitlines())
    assert unset["VERTEX_DATABASE_URL"].startswith("(not set: SQLite at VERTEX_DB_PATH=")
    assert json.loads(cli.ok("config", "--json"))["VERTEX_DATABASE_URL"] is None


def test_a_bad_url_is_exit_2_in_one_line_without_the_password(cli: Any) -> None:
    for bad in (f"postgresql://vertex:{PASSWORD}@db:notaport/vertex",
                f"mysql://vertex:{PASSWORD}@db/vertex", "postgresql://db:5432/"):
        message = cli.error("status", VERTEX_DATABASE_URL=bad)
        assert message.startswith("vertex-tui: VERTEX_DATABASE_URL=")
        assert "PostgreSQL URL" in message
        assert PASSWORD not in message
    assert not cli.db_path.exists()
    message = cli.error("status", VERTEX_DATABASE_URL="postgresql://u@h/db",
                        VERTEX_DATABASE_CONNECT_TIMEOUT="0")
    assert "VERTEX_DATABASE_CONNECT_TIMEOUT" in message


def test_an_unreachable_server_is_exit_1_after_the_wait(cli: Any) -> None:
    url = f"postgresql://vertex:{PASSWORD}@127.0.0.1:{_closed_port()}/vertex"
    for args in (["status"], ["jobs"], ["doctor"]):
        message = cli.error(*args, code=1, VERTEX_DATABASE_URL=url,
                            VERTEX_DATABASE_CONNECT_TIMEOUT="0.5")
        assert "cannot connect to database postgresql://vertex:********@127.0.0.1:" in message
        assert "waited 0.5 s" in message and PASSWORD not in message
    assert not cli.db_path.exists()  # nothing fell back to SQLite


def test_commands_run_on_postgresql_and_leave_no_sqlite_file(cli: Any, pg_url: str) -> None:
    log = cli.run("log", VERTEX_DATABASE_URL=pg_url)
    assert log.returncode == 0 and log.stderr.strip() == "no entries", log.stderr
    jobs = cli.ok("jobs", VERTEX_DATABASE_URL=pg_url)
    assert "backup.database" in jobs
    assert cli.ok("jobs", "pause", "video.check", VERTEX_DATABASE_URL=pg_url) != ""
    with psycopg.connect(pg_url) as conn:
        flags = conn.execute("SELECT name FROM engine_flags").fetchall()
    assert flags == [("job_paused:video.check",)]
    doctor = cli.ok("doctor", VERTEX_DATABASE_URL=pg_url)
    assert doctor.startswith(f"database {pg_url}: reachable (PostgreSQL")
    assert not cli.db_path.exists()
    cli.ok("jobs")  # unset: SQLite at VERTEX_DB_PATH, as before
    assert cli.db_path.exists()
