"""A brand-new SQLite database opened by two processes at the same instant: an engine starting
(`vertex-tui --no-ui`, as systemd starts it) and a `vertex-tui status --json` (an operator on a
fresh install). Both must answer: the status prints its document, the engine is listed alive
by a later status. Neither may wait on the other: a process that does is stuck for the
database's lock wait (300 s), far past the limit here.

The race is narrow (the second process must read the file before the first one's switch to
WAL is committed), so it is run on many fresh files, one pair at a time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.processes import stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROUNDS = 40
HANG = 30.0  # seconds; a pair answers in about one when nothing waits
SETTING_PREFIXES = ("VERTEX_", "SMTP_", "EMAIL_", "BACKUP_", "VIDEO_SCHEDULER_", "LIFECYCLE_",
                    "NOTIFY_")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.update(VERTEX_DB_PATH=str(folder / "vertex.db"), SMTP_PORT=str(closed_port()))
    return env


def status(folder: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vertex_tui", "status", "--json"],
                            cwd=folder, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answer(proc: subprocess.Popen[str], limit: float) -> dict[str, Any] | str:
    """The status document `proc` printed within `limit` s, or what went wrong."""
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return f"status hung > {limit:g} s"
    if proc.returncode != 0:
        return f"status exit {proc.returncode}: {err.strip()}"
    doc: dict[str, Any] = json.loads(out)
    assert {"engines", "services"} <= set(doc), doc
    return doc


def one_round(folder: Path) -> str | None:
    """An engine and a status started together on a fresh file; None if both answered."""
    folder.mkdir()
    env = env_for(folder)
    log_path = folder / "engine.log"
    with log_path.open("wb") as log:
        engine = subprocess.Popen([sys.executable, "-m", "vertex_tui", "--no-ui"], cwd=folder,
                                  env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            first = answer(status(folder, env), HANG)
            if isinstance(first, str):
                return first
            deadline = time.monotonic() + HANG
            while engine.poll() is None and time.monotonic() < deadline:
                doc = answer(status(folder, env), HANG)
                if isinstance(doc, str):
                    return f"a later {doc}"
                if any(e["pid"] == engine.pid for e in doc["engines"]):
                    return None
                time.sleep(0.2)
            return ("engine exited " + str(engine.returncode) if engine.poll() is not None
                    else f"engine not listed alive after {HANG:g} s")
        finally:
            stop(engine)


def test_an_engine_and_a_status_opening_a_new_database_together_both_answer(
    tmp_path: Path,
) -> None:
    for n in range(ROUNDS):
        folder = tmp_path / f"round{n}"
        problem = one_round(folder)
        if problem is not None:
            log = (folder / "engine.log").read_text(errors="replace").strip().splitlines()
            pytest.fail(f"round {n + 1} of {ROUNDS}: {problem}; engine log: {log[-3:]}")
