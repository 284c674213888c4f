"""The example service package (examples/vertex-diskspace), installed into a fresh virtual
environment that sees vertex-tui: listed by `jobs`, run by `jobs run` (here, and by a running
engine), reported in `status --json` with its last run and in `/metrics`; a bad setting of it
is reported as the service's error and stops nothing.

Every test runs twice, on SQLite and on PostgreSQL: the `cli` fixture sees `backend` and hands
VERTEX_DATABASE_URL to each process of the fresh venv as to its own."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# On SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
pytestmark = pytest.mark.usefixtures("backend")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vertex-diskspace"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv's interpreter: vertex-tui and its dependencies come from the test's
    environment (a .pth adds its site folder); the example is installed into the venv only."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    host = sysconfig.get_paths()["purelib"]
    (Path(site.stdout.strip()) / "_vertex_host.pth").write_text(
        f"import site; site.addsitedir({host!r})\n", encoding="utf-8")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps",
         str(EXAMPLE)], capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stderr
    return py


def run(python: Path, cli: Any, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "vertex_tui", *args], env=cli.env(**settings),
                          cwd=cli.path, capture_output=True, text=True, timeout=120,
                          check=False)


def doc(python: Path, cli: Any, *args: str, **settings: str) -> Any:
    result = run(python, cli, *args, "--json", **settings)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_example_service_plugs_in_without_a_change_to_vertex_tui(
    python: Path, cli: Any
) -> None:
    # Not installed where the tests run: only the fresh venv has it.
    assert "diskspace.check" not in {j["job"] for j in cli.json("jobs")}
    jobs = {j["job"]: j for j in doc(python, cli, "jobs")}
    assert jobs["diskspace.check"]["service"] == "diskspace"
    assert jobs["diskspace.check"]["schedule"] == "every 300 s"
    assert jobs["diskspace.check"]["last_run"] is None
    result = doc(python, cli, "jobs", "run", "diskspace.check")
    assert result["status"] == "ok" and 0 <= result["free_percent"] <= 100
    status = doc(python, cli, "status")["services"]
    assert status["diskspace"]["last_run"] is not None
    assert status["diskspace"]["last_outcome"] == "ok"
    assert status["diskspace"]["free_percent"] == result["free_percent"]  # its key figure
    assert cli.query("SELECT service, job, outcome FROM service_runs") == [
        ("diskspace", "check", "ok")]
    # Its setting is read from the environment and checked: a failing check is exit 1 and
    # recorded; a bad value is the service's error, and the other services carry on.
    failed = run(python, cli, "jobs", "run", "diskspace.check",
                 DISKSPACE_MIN_FREE_PERCENT="100")
    assert failed.returncode == 1 and "status=failed" in failed.stdout
    history = doc(python, cli, "jobs", "history", "diskspace.check")
    assert [h["outcome"] for h in history] == ["error", "ok"]
    assert "only" in history[0]["error"] and "% free" in history[0]["error"]
    broken = doc(python, cli, "status", DISKSPACE_MIN_FREE_PERCENT="lots")["services"]
    assert broken["diskspace"]["state"] == "error"
    assert "DISKSPACE_MIN_FREE_PERCENT='lots' is invalid" in broken["diskspace"]["error"]
    assert broken["lifecycle"]["state"] != "error" and broken["email"]["state"] != "error"
    # The fresh venv's processes used this test's backend: on PostgreSQL no SQLite file.
    assert cli.db_path.exists() == (cli.database_url is None)


@pytest.fixture
def engine(python: Path, cli: Any) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    log = (cli.path / "engine.log").open("wb")
    proc = subprocess.Popen(
        [str(python), "-m", "vertex_tui", "--no-ui"], cwd=cli.path, stdin=subprocess.DEVNULL,
        stdout=log, stderr=log,
        env=cli.env(METRICS_PORT=str(port), SMTP_PORT=str(cli.closed_port())))
    try:
        deadline = time.monotonic() + 30
        while not any(e["pid"] == proc.pid for e in doc(python, cli, "status")["engines"]):
            assert proc.poll() is None, (cli.path / "engine.log").read_text()
            assert time.monotonic() < deadline, "the engine did not start"
            time.sleep(0.2)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_a_running_engine_runs_the_example_and_exports_it(
    python: Path, cli: Any, engine: tuple[subprocess.Popen[bytes], int]
) -> None:
    proc, port = engine
    # The engine's scheduler ran the interval job at start (first run at once).
    deadline = time.monotonic() + 30
    while doc(python, cli, "status")["services"]["diskspace"]["last_run"] is None:
        assert time.monotonic() < deadline, "the first scheduled check did not run"
        time.sleep(0.2)
    result = doc(python, cli, "jobs", "run", "diskspace.check")
    assert result["status"] == "ok" and result["via"].startswith("request #")
    owners = {r[0] for r in cli.query("SELECT owner FROM service_runs"
                                      " WHERE service = 'diskspace'")}
    assert len(owners) == 1 and f":{proc.pid}:" in owners.pop()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'vertex_service_state{service="diskspace",state="idle"} 1.0' in metrics
    assert 'vertex_service_last_run_timestamp_seconds{service="diskspace"}' in metrics
    assert 'vertex_service_last_run_success{service="diskspace"} 1.0' in metrics
    assert cli.db_path.exists() == (cli.database_url is None)
