"""Helpers shared by the benchmarks: a sink in its own process, settings, messages, output.

Every benchmark measures a baseline in the same run and reports ratios, because absolute
times on a shared machine are not stable from one run to the next.
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vertex_tui.engine import Settings  # noqa: E402

SENDER = "Bench <bench@example.com>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sink_process(port: int | None = None) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`python -m vertex_tui.sink` in a separate process; yields (port, process)."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vertex_tui.sink", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if "listening" not in line:
            raise RuntimeError(f"sink did not start: {line!r}")
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def smtp_sink_server(port: int | None = None) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Postfix's `smtp-sink` (C, one process, discards every message) as the server; yields
    (port, process). As root it needs `-u` to drop to an unprivileged user."""
    binary = shutil.which("smtp-sink") or shutil.which("smtp-sink", path="/usr/sbin:/usr/bin")
    if binary is None:
        raise SystemExit("--server smtp-sink: smtp-sink not found (Debian package postfix)")
    port = port or free_port()
    user = ["-u", pwd.getpwuid(65534).pw_name] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [binary, *user, f"127.0.0.1:{port}", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise RuntimeError(f"smtp-sink exited: {proc.stderr.read().decode().strip()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("smtp-sink did not start listening") from None
                time.sleep(0.05)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SERVERS = {"aiosmtpd": sink_process, "smtp-sink": smtp_sink_server}


def settings(db_path: Path, *, smtp_port: int = 25, workers: int = 3) -> Settings:
    return Settings(
        db_path=db_path,
        storage_dir=db_path.parent / "storage",
        backup_dir=db_path.parent / "backups",
        email_workers=workers,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_starttls="false",
        email_from=SENDER,
    )


def message(i: int) -> dict[str, Any]:
    """A small, realistic transactional message (the same shape on every side)."""
    return {
        "to": f"user{i}@example.com",
        "subject": f"Your order #{i} has shipped",
        "body": f"Hello user {i},\n\nyour order #{i} is on its way.\n\n-- Vertex AR\n",
    }


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MiB (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds() -> float:
    """User + system CPU of this process so far, every thread included."""
    times = os.times()
    return times.user + times.system


def context_switches() -> int:
    """Voluntary + involuntary context switches of this process so far, every thread (ended
    ones too): a thread hand-over, a wake-up or a preemption is one."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of `fn()` over `repeat` calls, in milliseconds (synchronous fn)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def emit(doc: dict[str, Any], as_json: bool, goals: dict[str, tuple[str, float]]) -> None:
    """One JSON line (`--json`), or a human table with each goal marked met or missed."""
    if as_json:
        print(json.dumps(doc, sort_keys=False), flush=True)
        return
    width = max(len(k) for k in doc)
    for key, value in doc.items():
        if isinstance(value, float):
            shown = f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"
        else:
            shown = str(value)
        note = ""
        if key in goals:
            op, target = goals[key]
            met = value >= target if op == ">=" else value <= target
            note = f"   goal {op} {target:,g}: {'met' if met else 'MISSED'}"
        print(f"{key:<{width}}  {shown:>14}{note}")


def round_floats(doc: dict[str, Any], digits: int = 2) -> dict[str, Any]:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in doc.items()}


def load_1m() -> float:
    """The 1-minute load average: context for how busy the machine was during a run."""
    return float(Path("/proc/loadavg").read_text().split()[0])
