"""Ctrl-C while vertex-tui is still starting (imports, settings, opening the database) exits
130 without a traceback, wherever the signal lands."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from support.db import query

# Before the interpreter has its SIGINT handler the process just dies of the signal (the
# shell says 130 for that too), quietly; a run that was already over exits 0.
QUIET = (130, -signal.SIGINT, 0)
DELAYS = (0.0, 0.05, 0.1, 0.2, 0.4)


def _interpreter_start() -> float:
    """How long this machine takes to start Python and import `re` (site and the launcher's
    prelude): a SIGINT before that lands in CPython's own start, before any vertex-tui code."""
    took = []
    for _ in range(3):
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", "import re"], check=True)
        took.append(time.monotonic() - start)
    return max(took)


@pytest.mark.parametrize("args", [("status",), ("--no-ui",)])
def test_sigint_while_starting_exits_130_quietly(cli, args) -> None:
    start = _interpreter_start()
    for delay in DELAYS:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vertex_tui", *args], env=cli.env(), cwd=cli.path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(start * 1.5 + delay)
            proc.send_signal(signal.SIGINT)
            # Past the import window `--no-ui` has its own SIGINT handler: a full start, then
            # the graceful stop (test_headless), which on a loaded machine takes a while.
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:  # never leave it to a later test's warnings
                proc.kill()
                proc.communicate()
        assert proc.returncode in QUIET, (delay, proc.returncode, stderr)
        assert "Traceback" not in stderr, (delay, stderr)
        assert "KeyboardInterrupt" not in stderr, (delay, stderr)


async def test_a_stop_signal_before_the_loop_handlers_still_stops_the_engine(
    settings: Any,
) -> None:
    """A SIGINT that `headless` caught before `run_headless` had its loop handlers (once, in
    the full suite, such a Ctrl-C was lost and the engine ran on for 35 minutes): the engine
    starts, then stops at once, gracefully."""
    from vertex_tui.cli import run_headless

    code = await asyncio.wait_for(run_headless(settings, [signal.SIGINT]), 60)
    assert code == 0
    # It did start (and stopped): its heartbeat lease was taken and given back.
    assert query(settings, "SELECT count(*) FROM leases WHERE name LIKE 'engine:%'") == [(0,)]
    assert query(settings, "SELECT count(*) FROM service_runs") != [(0,)]
