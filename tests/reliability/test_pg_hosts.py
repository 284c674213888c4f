"""Three engines on one PostgreSQL database, one of them under another host name (its own UTS
namespace: `unshare --uts`): the engine holding the lifecycle and video singletons is killed
with SIGKILL, and the others take both over within a minute. No pid check can see another
host's process: the takeover comes from its heartbeat going stale on the server's clock."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

ENGINE = """
import asyncio
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import Settings

async def main():
    async with Engine(Settings.from_env(), run=["lifecycle", "video"]) as engine:
        print(engine.owner, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""
OTHER_HOST = "vt-other-host"


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


def wait_for(predicate: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def holders(url: str) -> dict[str, str]:
    return dict(query(url, "SELECT name, owner FROM leases WHERE name IN ('lifecycle', 'video')"
                      " AND expires_at > extract(epoch FROM clock_timestamp())"))


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def start(engines: list[subprocess.Popen[str]], url: str, tmp_path: Path,
          other_host: bool = False) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VERTEX_", "LIFECYCLE_", "VIDEO_", "BACKUP_", "SMTP_"))}
    env |= {"VERTEX_DATABASE_URL": url, "VERTEX_BACKUP_DIR": str(tmp_path / "backups"),
            "VERTEX_STORAGE_DIR": str(tmp_path / "storage"),
            "LIFECYCLE_CHECK_INTERVAL_SECONDS": "2", "VIDEO_SCHEDULER_CHECK_INTERVAL": "2"}
    command = [sys.executable, "-c", ENGINE]
    if other_host:
        command = ["unshare", "--uts", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "sh",
                   *command]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    engines.append(proc)
    assert proc.stdout is not None
    owner = proc.stdout.readline().strip()
    assert owner, f"engine exited with {proc.poll()} before running"
    return proc, owner


def test_a_killed_hosts_singletons_are_taken_over_within_a_minute(
        pg_url: str, tmp_path: Path, engines: list[subprocess.Popen[str]]) -> None:
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--uts", "true"], check=False).returncode != 0:
        pytest.skip("unshare --uts is not available here")
    doomed, doomed_owner = start(engines, pg_url, tmp_path, other_host=True)
    assert doomed_owner.startswith(f"{OTHER_HOST}:")
    wait_for(lambda: holders(pg_url) == {"lifecycle": doomed_owner, "video": doomed_owner},
             timeout=30, what="the first engine to hold both singletons")
    survivors = {start(engines, pg_url, tmp_path)[1] for _ in range(2)}
    assert all(not o.startswith(f"{OTHER_HOST}:") for o in survivors)
    time.sleep(3)  # a pass interval or more: they are standby, the holder keeps both
    assert holders(pg_url) == {"lifecycle": doomed_owner, "video": doomed_owner}

    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    killed_at = time.monotonic()
    taken = wait_for(lambda: (h := holders(pg_url)) and set(h) == {"lifecycle", "video"}
                     and set(h.values()) <= survivors and h,
                     timeout=60, what="the survivors to take both singletons over")
    print(f"taken over after {time.monotonic() - killed_at:.1f} s: {taken}")
    # The new holders run passes (recorded as theirs), and no one runs them twice at once.
    wait_for(lambda: query(pg_url, "SELECT count(*) FROM service_runs WHERE outcome = 'ok'"
                           " AND service = 'lifecycle' AND owner = %s",
                           (taken["lifecycle"],))[0][0] > 0,
             timeout=30, what="a lifecycle pass by the new holder")
    running = query(pg_url, "SELECT service, count(*) FROM service_runs WHERE outcome = "
                    "'running' AND owner <> %s GROUP BY service HAVING count(*) > 1",
                    (doomed_owner,))
    assert running == []
