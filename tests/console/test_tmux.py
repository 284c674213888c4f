"""Smoke test in a real terminal: `vertex-tui demo` in a detached tmux session (80x24, the
smallest terminal it serves, and 100x30), driven with send-keys and read with capture-pane, as
an operator over SSH would see it."""

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


@pytest.mark.parametrize(("width", "height"), [(80, 24), (100, 30)])
def test_demo_in_tmux(tmux: Tmux, tmp_path: Path, width: int, height: int) -> None:
    exe = Path(sys.executable).with_name("vertex-tui")
    command = (f"cd {tmp_path} && {exe} demo; "
               f"echo \"{EXITED} $?\"; sleep 600")
    tmux.run("new-session", "-d", "-s", SESSION, "-x", str(width), "-y", str(height), command)

    home = tmux.wait_for(lambda t: "Email queue ·" in t and "Backups ·" in t
                         and ("RUNNING" in t or "IDLE" in t), "the dashboard")
    assert "Lifecycle" in home and "Videos" in home and "Latest errors" in home

    # The footer (the last line) always names the screen's own keys and `? help`.
    screens = {
        "e": (("ID", "Status", "Tries", "pending"),
              ("1-6 filter", "/ search", "r retry", "R retry all", "p pause", "D drain",
               "C cleanup", "? help")),
        "b": (("Jobs", "History", "database"),
              ("t run job now", "V verify backup", "R restore", "? help", "q quit")),
        "l": (("Upcoming expirations", "active", "expiring"), ("c check now", "? help")),
        "v": (("Upcoming changes", "Current rotation", "scheduled"), ("c check now", "? help")),
        "j": (("NEXT", "JOB", "backup.database"),
              ("r run now", "p pause/resume", "/ search", "? help")),
        "o": (("all services",), ("s service filter", "L level filter", "/ search",
                                  "? help")),
        "d": (("Email queue", "Backups", "Mail sent per minute"), ("? help", "q quit")),
    }
    for key, (texts, footer) in screens.items():
        tmux.keys(key)
        tmux.wait_for(lambda t, texts=texts, footer=footer: all(x in t for x in texts)
                      and all(k in t.rstrip().splitlines()[-1] for k in footer),
                      f"screen {key} to show {texts} and the keys {footer}")

    # `/` on the Jobs and Log screens: the search language; a bad term is a line under the box.
    tmux.keys("j")
    tmux.wait_for(lambda t: "backup.database" in t, "the Jobs screen")
    tmux.keys("/")
    tmux.keys("-l", "service:backup")
    tmux.keys("Enter")
    jobs = tmux.wait_for(lambda t: "matching 'service:backup'" in t, "the Jobs search")
    assert "lifecycle.check" not in jobs and "backup.full" in jobs
    tmux.keys("Escape")
    tmux.wait_for(lambda t: "lifecycle.check" in t and "matching" not in t, "all jobs again")
    tmux.keys("o")
    tmux.wait_for(lambda t: "all services" in t, "the Log screen")
    tmux.keys("/")
    tmux.keys("-l", "level:loud")
    tmux.keys("Enter")
    tmux.wait_for(lambda t: "level:loud: unknown level 'loud'" in t, "the bad term's line")
    tmux.keys("Escape")
    tmux.wait_for(lambda t: "unknown level" not in t, "the error line cleared")

    # Type-ahead: two screen keys in one burst, the second lands before the first screen is
    # done; neither is lost.
    tmux.keys("l", "b")
    tmux.wait_for(lambda t: "History" in t and "run job now" in t, "the Backups screen")
    tmux.keys("d")
    tmux.wait_for(lambda t: "Mail sent per minute" in t, "the dashboard again")

    tmux.keys("?")
    tmux.wait_for(lambda t: "Dashboard keys" in t and "Screens" in t and "close this help" in t,
                  "the help panel")
    tmux.keys("?")
    tmux.wait_for(lambda t: "Dashboard keys" not in t, "the help panel to close")

    tmux.keys("q")
    after = tmux.wait_for(lambda t: EXITED in t, "vertex-tui to exit")
    assert f"{EXITED} 0" in after
    assert "Traceback" not in after


def test_attach_to_a_postgresql_engine_in_tmux_80x24(tmux: Tmux, tmp_path: Path,
                                                     pg_url: str) -> None:
    """`vertex-tui --attach` at 80x24 over a headless engine on PostgreSQL (another process):
    the header names the server's database, the screens show its jobs and its log."""
    exe = Path(sys.executable).with_name("vertex-tui")
    env = {**tmux.env, "VERTEX_DATABASE_URL": pg_url, "VERTEX_BACKUP_DIR": str(tmp_path / "b"),
           "VERTEX_STORAGE_DIR": str(tmp_path / "s"), "SMTP_PORT": "1"}
    (tmp_path / "b").mkdir()
    (tmp_path / "s").mkdir()
    with (tmp_path / "engine.log").open("w") as log:
        engine = subprocess.Popen([str(exe), "--no-ui"], env=env, cwd=tmp_path,
                                  stdout=log, stderr=log)
    try:
        console = " ".join(f"{k}={v}" for k, v in env.items() if k.startswith("VERTEX_"))
        tmux.run("new-session", "-d", "-s", SESSION, "-x", "80", "-y", "24",
                 f"cd {tmp_path} && env {console} {exe} --attach; "
                 f"echo \"{EXITED} $?\"; sleep 600")
        database = pg_url.rpartition("/")[2]
        home = tmux.wait_for(lambda t: "engine alive (1)" in t and "Email queue ·" in t,
                             "the dashboard attached to the running engine")
        header = home.splitlines()[0]
        assert "ATTACHED · engine alive (1) ·" in header and database[-6:] in header, header
        assert "postgres@" not in header  # the header names no user (nor a password)
        tmux.keys("j")
        tmux.wait_for(lambda t: "backup.database" in t and "email.reap" in t
                      and "r run now" in t.rstrip().splitlines()[-1], "the Jobs screen")
        tmux.keys("o")
        tmux.wait_for(lambda t: "service email started" in t, "the engine's log, from the DB")
        tmux.keys("e")
        tmux.wait_for(lambda t: "pending 0" in t and "? help" in t.rstrip().splitlines()[-1],
                      "the Email screen")
        tmux.keys("q")
        after = tmux.wait_for(lambda t: EXITED in t, "vertex-tui to exit")
        assert f"{EXITED} 0" in after and "Traceback" not in after
    finally:
        engine.terminate()
        engine.wait(30)
    assert engine.returncode == 0, (tmp_path / "engine.log").read_text()[-2000:]
