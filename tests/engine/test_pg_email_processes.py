"""Several engine processes on one PostgreSQL database, two of them killed with SIGKILL in the
middle of delivery: the survivor reaps their leases and every message goes out (none lost);
a message is sent twice only if its engine died between the SMTP reply and the commit. The
survivor runs under another host name (`unshare --uts`, when it can be had): it cannot see the
dead engines' processes, only their expired leases."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.db import query

from vertex_tui.engine.email.queue import CLAIM_BATCH_MAX
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import DatabaseUrl, Settings

if TYPE_CHECKING:
    from conftest import TestSink, WaitFor

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
OTHER_HOST = "vt-other-host"

ENGINE = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from vertex_tui.engine.engine import Engine
    from vertex_tui.engine.settings import DatabaseUrl, Settings

    async def main(url, port, folder, workers):
        settings = Settings(
            db_path=Path(folder) / "unused.db", storage_dir=Path(folder) / "storage",
            backup_dir=Path(folder) / "backups", database_url=DatabaseUrl(url),
            smtp_host="127.0.0.1", smtp_port=int(port), smtp_starttls="false",
            smtp_timeout=5.0, email_workers=int(workers), email_lease_seconds=2,
            email_poll_interval=0.2, email_from="Vertex <noreply@vertex.test>")
        async with Engine(settings, run=["email"]):
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main(*sys.argv[1:5]))
    """
)


def other_host() -> list[str]:
    """A command prefix running its command under the host name OTHER_HOST (a UTS namespace of
    its own; root only), or [] where that cannot be had."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return []
    return ["unshare", "--uts", "sh", "-c", f'hostname {OTHER_HOST} && exec "$0" "$@"']


def start_engines(count: int, url: str, port: int, folder: Path
                  ) -> list[subprocess.Popen[bytes]]:
    """`count` engine processes; the last one under another host name when possible."""
    argv = [sys.executable, "-c", ENGINE, url, str(port), str(folder), str(WORKERS)]
    prefixes = [[]] * (count - 1) + [other_host()]
    procs = [subprocess.Popen([*prefix, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              cwd=ROOT) for prefix in prefixes]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return procs


def stop_engines(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the live ones (stdin closed: a clean stop), reap all, close their pipes."""
    for proc in procs:
        if proc.poll() is None and proc.stdin is not None:
            proc.stdin.close()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


@pytest.mark.slow
async def test_two_of_three_engines_killed_mid_delivery_lose_nothing(
    settings_factory: Callable[..., Settings], make_sink: Callable[..., TestSink], pg_url: str,
    tmp_path: Path, wait_for: WaitFor,
) -> None:
    sink = make_sink(delay=0.01)
    total = 600
    settings = settings_factory(sink=sink, database_url=DatabaseUrl(pg_url))
    async with Engine(settings, run=[]) as admin:
        await admin.email.enqueue_many([
            {"to": f"u{i}@example.com", "subject": f"s{i}", "body": "b"} for i in range(total)])
    procs = start_engines(3, pg_url, sink.port, tmp_path)
    try:
        await wait_for(lambda: len(sink.received) >= total // 4, timeout=60,
                       message="a quarter of the mail delivered")
        for proc in procs[:2]:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

        def all_sent() -> bool:
            return query(pg_url, "SELECT count(*) FROM email_jobs WHERE status = 'sent'"
                         ) == [(total,)]

        await wait_for(all_sent, timeout=90, message=f"all {total} sent by the survivor")
    finally:
        stop_engines(procs)
    expected = {str(r[0]) for r in query(pg_url, "SELECT message_id FROM email_jobs")}
    got = Counter(sink.message_ids())
    assert set(got) == expected  # none lost
    twice = [m for m, n in got.items() if n > 1]
    # At most the outcomes each killed engine had sent but not yet committed.
    assert len(twice) <= 2 * WORKERS * CLAIM_BATCH_MAX, len(twice)
    lost = query(pg_url, "SELECT count(DISTINCT job_id) FROM email_attempts"
                 " WHERE outcome = 'lost'")[0][0]
    # The kills landed mid-delivery (claimed jobs were reaped), and each resend followed one.
    assert isinstance(lost, int) and lost > 0 and lost >= len(twice)
    engines = {str(o) for (o,) in query(pg_url, "SELECT DISTINCT split_part(owner, '/', 1)"
                                        " FROM email_attempts WHERE outcome = 'sent'")}
    assert len(engines) == 3  # all three delivered before the kills
    if other_host():
        assert sum(e.startswith(f"{OTHER_HOST}:") for e in engines) == 1
