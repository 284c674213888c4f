"""Helpers for process-level reliability tests: a sink process, headless engines, the CLI.

Tests reach everything through the `ws` fixture (a `Workspace`); they import nothing from
here, since `tests/cli/conftest.py` is also a module named `conftest`.

Everything here runs real processes: `python -m vertex_tui.sink` (an aiosmtpd server that
appends one JSON line per accepted message to a record file) and `python -m vertex_tui --no-ui`
(the engine, logging JSON lines to a file). Fixtures stop whatever they started, by process id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from support.db import backend_url, query
from support.processes import process_state

T = TypeVar("T")

# Settings of the engine come from the environment: start every process from a clean slate.
SETTING_PREFIXES = (
    "VERTEX_",
    "SMTP_",
    "EMAIL_",
    "BACKUP_",
    "VIDEO_SCHEDULER_",
    "LIFECYCLE_",
    "NOTIFY_",
)


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 10) -> None:
    """Signal `proc` (if still running) and reap it; SIGKILL if it ignores the signal."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# ---- the sink ----------------------------------------------------------------------------


@dataclass
class SinkProcess:
    proc: subprocess.Popen[str]
    port: int
    record: Path

    def received(self) -> list[dict[str, Any]]:
        """Every complete line of the record file (a line being written is skipped)."""
        if not self.record.exists():
            return []
        text = self.record.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def count(self) -> int:
        if not self.record.exists():
            return 0
        return self.record.read_bytes().count(b"\n")

    def message_ids(self) -> list[str]:
        return [r["message_id"] for r in self.received()]

    def stop(self) -> None:
        stop_process(self.proc)


def start_sink(record: Path, *options: str, cwd: Path) -> SinkProcess:
    """`python -m vertex_tui.sink` on a free port, recording to `record`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vertex_tui.sink", "--port", "0", "--record", str(record), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=clean_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "listening on 127.0.0.1:PORT", or EOF if it died
    if not line.startswith("listening on "):
        rest = line + proc.stdout.read() if proc.poll() is not None else line
        stop_process(proc, signal.SIGKILL)
        raise RuntimeError(f"sink did not start: {rest.strip()!r}")
    return SinkProcess(proc=proc, port=int(line.rsplit(":", 1)[1]), record=record)


# ---- headless engines ------------------------------------------------------------------------


@dataclass
class EngineProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    name: str
    _log: Any = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(encoding="utf-8").splitlines()

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_lines()]

    def assert_json_log(self) -> list[dict[str, Any]]:
        """Every line the engine wrote is one JSON object with ts, level, logger, message;
        none is an error. Returns the records."""
        records = []
        for line in self.log_lines():
            try:
                record = json.loads(line)
            except ValueError:
                raise AssertionError(f"not a JSON log line: {line!r}") from None
            assert isinstance(record, dict), line
            assert {"ts", "level", "logger", "message"} <= set(record), line
            assert record["level"] not in ("error", "critical"), line
            records.append(record)
        assert records, "the engine logs to stderr"
        return records

    def owner(self) -> str | None:
        """The engine's owner name, from its 'engine OWNER running: ...' log line."""
        for line in self.log_lines():
            with contextlib.suppress(ValueError):
                message = json.loads(line).get("message", "")
                if message.startswith("engine ") and " running: " in message:
                    return str(message.split()[1])
        return None

    def wait_running(self, timeout: float = 30) -> str:
        def ready() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"engine exited with {self.proc.returncode} before running:\n"
                    + self.log_path.read_text(encoding="utf-8")
                )
            return self.owner()

        return wait_for(ready, timeout=timeout, what="the engine to report it is running")

    def freeze(self) -> None:
        """SIGSTOP the engine and wait until the kernel reports it stopped (state T)."""
        self.proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: process_state(self.pid) == "T", timeout=10, what="the engine stopped",
                 interval=0.005)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()


class Engines:
    """Starts headless engines; at teardown, kills (by pid) any still running."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[EngineProcess] = []

    def start(self, env: dict[str, str], name: str | None = None,
              host: str | None = None) -> EngineProcess:
        """An engine process; under `host` as its host name if given (its own UTS
        namespace, `unshare --uts`, exec'd in place so `pid` is the engine's)."""
        name = name or f"engine{len(self.started) + 1}"
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("ab")
        prefix = [] if host is None else [
            "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host]
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "vertex_tui", "--no-ui", "--log-format", "json"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=self.workdir,
            env=env,
        )
        engine = EngineProcess(proc=proc, log_path=log_path, name=name, _log=log)
        self.started.append(engine)
        return engine

    def close(self) -> None:
        for engine in self.started:
            engine.close()


# ---- the CLI and the database -------------------------------------------------------------


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vertex_tui", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_json(*args: str, env: dict[str, str], cwd: Path) -> Any:
    result = run_cli(*args, "--json", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write_jsonl(path: Path, count: int, *, prefix: str = "m") -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(count):
            doc = {"to": f"{prefix}{i}@example.com", "subject": f"{prefix} {i}", "body": "hello"}
            fh.write(json.dumps(doc) + "\n")
    return path


# ---- fixtures ---------------------------------------------------------------------------------


@dataclass
class Workspace:
    """One test's folder, database and settings, with its sink and engines."""

    path: Path
    db_path: Path
    database_url: str | None = None  # PostgreSQL (tests naming `backend`); else db_path
    sinks: list[SinkProcess] = field(default_factory=list)
    engines: Engines | None = None

    def env(self, sink: SinkProcess | None = None, **settings: str) -> dict[str, str]:
        base = {"VERTEX_DB_PATH": str(self.db_path)}
        if self.database_url is not None:
            base["VERTEX_DATABASE_URL"] = self.database_url
        if sink is not None:
            base |= {
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(sink.port),
                "SMTP_STARTTLS": "false",
            }
        return clean_env(**(base | settings))

    def named(self, env: dict[str, str], name: str) -> dict[str, str]:
        """`env` whose PostgreSQL connections carry `name` as their application_name, so
        `sessions(name)` can tell them from the others'. Unchanged on SQLite."""
        url = env.get("VERTEX_DATABASE_URL")
        if url is None:
            return env
        return env | {"VERTEX_DATABASE_URL": f"{url}{'&' if '?' in url else '?'}"
                                              f"application_name={name}"}

    def sessions(self, name: str, *states: str) -> int:
        """How many server sessions named `name` (see `named`) there are, in any of `states`
        if given ('active', 'idle in transaction', ...). Always 0 on SQLite, whose
        transactions die with their process."""
        if self.database_url is None:
            return 0
        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = ?"
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
        return int(self.query(sql, (name, *states))[0][0])

    def sink(self, *options: str, name: str = "received") -> SinkProcess:
        sink = start_sink(self.path / f"{name}.jsonl", *options, cwd=self.path)
        self.sinks.append(sink)
        return sink

    def start_engine(self, env: dict[str, str], name: str | None = None,
                     host: str | None = None) -> EngineProcess:
        """An engine (`Engines.start`) whose database sessions are named after it (`named`)."""
        assert self.engines is not None
        name = name or f"engine{len(self.engines.started) + 1}"
        return self.engines.start(self.named(env, name), name, host)

    def jsonl(self, count: int, *, prefix: str = "m") -> Path:
        return write_jsonl(self.path / f"{prefix}-{count}.jsonl", count, prefix=prefix)

    wait_for = staticmethod(wait_for)

    def cli(self, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env(**settings), cwd=self.path)

    def cli_json(self, *args: str) -> Any:
        return cli_json(*args, env=self.env(), cwd=self.path)

    def stats(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.cli_json("email", "stats")
        return doc

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return query(self.database_url or self.db_path, sql, params)


@pytest.fixture
def ws(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Workspace]:
    """One test's workspace. A test that also names the `backend` fixture runs twice, the
    second time on a fresh PostgreSQL database (`pg_url`) instead of the SQLite file."""
    workspace = Workspace(path=tmp_path, db_path=tmp_path / "vertex.db",
                          database_url=backend_url(request))
    workspace.engines = Engines(tmp_path)
    try:
        yield workspace
    finally:
        workspace.engines.close()
        for sink in workspace.sinks:
            sink.stop()
