"""Helpers for the CLI tests: run `vertex-tui` as a user does, in a folder of its own.

Tests reach everything through the `cli` fixture (a `CliRunner`); they import nothing from
here, since `tests/reliability/conftest.py` is also a module named `conftest`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support.db import backend_url, query

# Settings come from the environment: every command starts from a clean slate.
SETTING_PREFIXES = (
    "VERTEX_",
    "SMTP_",
    "EMAIL_",
    "BACKUP_",
    "VIDEO_SCHEDULER_",
    "LIFECYCLE_",
    "NOTIFY_",
)
TIME_KEYS = ("at", "last_run", "next_run")


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SinkProcess:
    """`python -m vertex_tui.sink` on a free port, recording each accepted message."""

    def __init__(self, record: Path, cwd: Path, *options: str) -> None:
        self.record = record
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vertex_tui.sink", "--port", "0", "--record", str(record),
             *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "listening on 127.0.0.1:PORT", or EOF
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"sink did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def received(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text(encoding="utf-8").splitlines(keepends=True)
        return [json.loads(line) for line in lines if line.endswith("\n")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class CliRunner:
    """`python -m vertex_tui ...` with VERTEX_DB_PATH in the test's folder, cwd there too;
    and VERTEX_DATABASE_URL when the test runs on PostgreSQL (`database_url`)."""

    def __init__(self, path: Path, database_url: str | None = None) -> None:
        self.path = path
        self.db_path = path / "vertex.db"
        self.database_url = database_url
        self.sinks: list[SinkProcess] = []

    def env(self, **settings: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
        env["VERTEX_DB_PATH"] = str(self.db_path)
        if self.database_url is not None:
            env["VERTEX_DATABASE_URL"] = self.database_url
        env.update(settings)
        return env

    def run(
        self, *args: str, timeout: float = 120, **settings: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vertex_tui", *args],
            env=self.env(**settings),
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, logs: bool = False, **settings: str) -> str:
        """stdout of a command that must succeed; quietly unless `logs` (e.g. a drain
        logs failed attempts as warnings)."""
        result = self.run(*args, **settings)
        assert result.returncode == 0, f"{args}: exit {result.returncode}: {result.stderr}"
        if not logs:
            assert result.stderr == "", result.stderr
        return result.stdout

    def json(self, *args: str, logs: bool = False, **settings: str) -> Any:
        """The one JSON document a `--json` command prints."""
        return json.loads(self.ok(*args, "--json", logs=logs, **settings))

    def error(self, *args: str, code: int | tuple[int, ...] = 2, **settings: str) -> str:
        """Run a command that must fail with `code` and one stderr line; returns that line."""
        result = self.run(*args, **settings)
        codes = (code,) if isinstance(code, int) else code
        assert result.returncode in codes, (
            f"{args}: expected exit {code}, got {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        assert_one_line(result.stderr)
        return result.stderr.strip()

    def stats(self, **settings: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.json("email", "stats", **settings)
        return doc

    def enqueue(
        self, to: str = "a@example.com", subject: str = "s", body: str = "b", **settings: str
    ) -> int:
        out = self.ok(
            "email", "enqueue", "--to", to, "--subject", subject, "--body", body, **settings
        )
        return int(out.strip())

    def write_jsonl(self, name: str, lines: list[str]) -> Path:
        path = self.path / name
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    def sink(self, *options: str) -> SinkProcess:
        """A sink process; `options` as for `python -m vertex_tui.sink` (`--fail-451`, 1)."""
        sink = SinkProcess(self.path / f"sink{len(self.sinks)}.jsonl", self.path, *options)
        self.sinks.append(sink)
        return sink

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement on the test's database, whichever backend."""
        return query(self.database_url or self.db_path, sql, params)

    @staticmethod
    def closed_port() -> int:
        return closed_port()

    def refused_early(self) -> dict[str, str]:
        """Settings for a check that a command refuses bad input before it connects: on
        PostgreSQL a server that is not there (a command that connected first would wait 2 s
        for it and exit 1, not 2); on SQLite nothing (its tests check that no file appears)."""
        if self.database_url is None:
            return {}
        return {"VERTEX_DATABASE_URL": f"postgresql://vertex@127.0.0.1:{closed_port()}/vertex",
                "VERTEX_DATABASE_CONNECT_TIMEOUT": "2"}

    @staticmethod
    def assert_one_line(stderr: str) -> None:
        assert_one_line(stderr)

    @staticmethod
    def assert_times_have_offsets(doc: Any) -> int:
        return assert_times_have_offsets(doc)


def assert_one_line(stderr: str) -> None:
    assert stderr.strip(), "an error says what is wrong on stderr"
    assert "\n" not in stderr.strip(), f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr


def assert_times_have_offsets(doc: Any) -> int:
    """Every time field (`*_at`, last_run, next_run, at) that is set is ISO 8601 with an
    offset; returns how many were checked."""
    checked = 0
    if isinstance(doc, dict):
        for key, value in doc.items():
            if (key.endswith("_at") or key in TIME_KEYS) and value is not None:
                parsed = datetime.fromisoformat(value)
                assert parsed.utcoffset() is not None, f"{key}={value!r} has no offset"
                checked += 1
            else:
                checked += assert_times_have_offsets(value)
    elif isinstance(doc, list):
        checked += sum(assert_times_have_offsets(item) for item in doc)
    return checked


@pytest.fixture
def cli(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[CliRunner]:
    """A runner in tmp_path. A test that also names the `backend` fixture runs twice, the
    second time with VERTEX_DATABASE_URL set to a fresh PostgreSQL database (`pg_url`)."""
    runner = CliRunner(tmp_path, backend_url(request))
    try:
        yield runner
    finally:
        for sink in runner.sinks:
            sink.stop()
