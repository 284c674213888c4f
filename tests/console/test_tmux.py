"""Smoke test in a real terminal: `vertex-tui demo` in a detached tmux session (100x30),
driven with send-keys and read with capture-pane, as an operator over SSH would see it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

SETTING_PREFIXES = ("VERTEX_", "SMTP_", "EMAIL_", "BACKUP_", "VIDEO_SCHEDULER_", "LIFECYCLE_",
                    "NOTIFY_")
SESSION = "demo"
EXITED = "vertex-tui exited with status"


class Tmux:
    """One tmux server on a socket of its own (`tmux -L`), killed at teardown."""

    def __init__(self, socket: str, env: dict[str, str]) -> None:
        self.socket = socket
        self.env = env

    def run(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], env=self.env,
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", SESSION)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", SESSION, *keys)

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 60) -> str:
        """The pane's text once `check(text)` holds (a deadline, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if check(text):
                return text
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; the pane shows:\n{text}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.pop("TMUX", None)
    env["TERM"] = "xterm-256color"
    server = Tmux(f"vertex-test-{uuid.uuid4().hex[:12]}", env)
    yield server
    subprocess.run(["tmux", "-L", server.socket, "kill-server"], env=env,
                   capture_output=True, timeout=30)


def test_demo_in_tmux(tmux: Tmux, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("vertex-tui")
    command = (f"cd {tmp_path} && {exe} demo; "
               f"echo \"{EXITED} $?\"; sleep 600")
    tmux.run("new-session", "-d", "-s", SESSION, "-x", "100", "-y", "30", command)

    home = tmux.wait_for(lambda t: "Email queue" in t and "Backups" in t
                         and ("RUNNING" in t or "IDLE" in t), "the dashboard")
    assert "Lifecycle" in home and "Videos" in home and "Latest errors" in home

    screens = {
        "e": ("ID", "Status", "Tries", "Retry all failed", "pending"),
        "b": ("Jobs", "History", "database", "Run job now"),
        "l": ("Upcoming expirations", "active", "expiring", "Check now"),
        "v": ("Upcoming changes", "Current rotation", "scheduled", "Check now"),
        "o": ("all services", "Service filter", "Level filter"),
        "d": ("Email queue", "Backups", "Mail sent per minute"),
    }
    for key, texts in screens.items():
        tmux.keys(key)
        tmux.wait_for(lambda t, texts=texts: all(x in t for x in texts),
                      f"screen {key} to show {texts}")

    tmux.keys("?")
    tmux.wait_for(lambda t: "Focus Previous" in t and "Quit the app" in t, "the help panel")
    tmux.keys("?")
    tmux.wait_for(lambda t: "Focus Previous" not in t, "the help panel to close")

    tmux.keys("q")
    after = tmux.wait_for(lambda t: EXITED in t, "vertex-tui to exit")
    assert f"{EXITED} 0" in after
    assert "Traceback" not in after
