"""Real processes as /proc shows them: state, children, whether one has gone (Linux); and
stopping one a test started."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path
from typing import Any


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: state, ppid, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (R, S, T = stopped, Z = zombie, ...)."""
    return _stat_fields(pid)[0]


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (whichever of its threads started them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


def child_running(pid: int, argument: str, program: str) -> bool:
    """Whether a child of `pid` runs `program` (its name, as in /proc/<pid>/comm) with
    `argument` on its command line: the program itself, not a launcher still on its way to
    exec it (setpriv's command line holds the tool's arguments too)."""
    for child in children(pid):
        with contextlib.suppress(OSError):
            if (Path(f"/proc/{child}/comm").read_text().strip() == program
                    and argument.encode() in Path(f"/proc/{child}/cmdline").read_bytes()
                    .split(b"\0")):
                return True
    return False


def gone(pid: int) -> bool:
    """`pid` has exited (a zombie not yet reaped counts as gone)."""
    try:
        return process_state(pid) in ("Z", "X")
    except OSError:
        return True


def stop(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if `proc` is still running after `grace` s; reaped either way
    (as an operator, or systemd, stops a process)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
