"""The systemd unit in deploy/: it runs the headless engine, gives its shutdown the time the
engine needs, keeps secrets in its environment file, and systemd itself accepts it
(`systemd-analyze verify`, when systemd is installed)."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vertex_tui.cli import EXIT_USAGE
from vertex_tui.engine.email.queue import EmailQueue
from vertex_tui.engine.engine import STOP_GRACE
from vertex_tui.engine.metrics import SCRAPE_TIMEOUT

if TYPE_CHECKING:
    from conftest import CliRunner

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "vertex-tui.service"
ENV_FILE = ROOT / "deploy" / "vertex-tui.env"
README = ROOT / "README.md"
# After the services' grace, the email queue waits up to 1 s for queued outcomes to be
# committed (EmailQueue.stop); then leases are released and the database closed.
COMPLETER_FLUSH = 1.0

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Sections → key → every value given (systemd keys may repeat), in order."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"line {number} is outside any section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"line {number} is not Key=value: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section].get(key, [])
    assert len(values) == 1, f"[{section}] {key}: expected one value, got {values}"
    return values[0]


def seconds(value: str) -> float:
    """A systemd time span: `30`, `30s`, `1min 30s`, `2m`."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts and "".join(n + u for n, u in parts) == value.replace(" ", ""), value
    return sum(float(n) * units[u] for n, u in parts)


def env_file(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and key.isidentifier(), line
            values[key] = value
    return values


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def test_the_unit_runs_the_headless_engine_and_restarts_it_on_failure(unit: Unit) -> None:
    service = unit["Service"]
    argv = one(unit, "Service", "ExecStart").split()
    assert Path(argv[0]).name == "vertex-tui" and Path(argv[0]).is_absolute()
    assert "--no-ui" in argv[1:]
    assert one(unit, "Service", "Restart") == "on-failure"
    # Bad configuration exits 2 and restarting cannot mend it.
    assert str(EXIT_USAGE) in one(unit, "Service", "RestartPreventExitStatus").split()
    assert one(unit, "Service", "KillSignal") == "SIGTERM"  # the graceful stop
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    # Secrets come from the environment file, never from the world-readable unit.
    assert service["EnvironmentFile"]
    assert "PASSWORD" not in " ".join(service.get("Environment", []))


def test_the_stop_timeout_outlasts_the_engines_graceful_shutdown(unit: Unit) -> None:
    timeout = seconds(one(unit, "Service", "TimeoutStopSec"))
    # The worst graceful path: a scrape in progress finishes (SCRAPE_TIMEOUT), every service
    # finishes its in-flight work at once (STOP_GRACE), the last outcomes are committed.
    assert timeout > SCRAPE_TIMEOUT + STOP_GRACE + COMPLETER_FLUSH
    # And the queue's own default grace, should a caller use it.
    default_grace = inspect.signature(EmailQueue.stop).parameters["grace"].default
    assert timeout > default_grace + COMPLETER_FLUSH


def test_the_hardening_leaves_the_data_folders_writable(unit: Unit) -> None:
    service = unit["Service"]
    assert one(unit, "Service", "NoNewPrivileges") == "true"
    assert one(unit, "Service", "PrivateTmp") == "true"
    assert one(unit, "Service", "UMask") == "0077"
    assert one(unit, "Service", "ProtectSystem") == "strict"  # everything else read-only
    writable = [Path(p.lstrip("-")) for value in service["ReadWritePaths"] for p in value.split()]
    settings = env_file(ENV_FILE.read_text(encoding="utf-8"))
    folders = {
        "WorkingDirectory": Path(one(unit, "Service", "WorkingDirectory")),
        # The database and its -wal/-shm files and before-restore copies sit beside it.
        "VERTEX_DB_PATH": Path(settings["VERTEX_DB_PATH"]).parent,
        "VERTEX_STORAGE_DIR": Path(settings["VERTEX_STORAGE_DIR"]),
        "VERTEX_BACKUP_DIR": Path(settings["VERTEX_BACKUP_DIR"]),
    }
    for name, folder in folders.items():
        assert any(folder.is_relative_to(w) for w in writable), f"{name} {folder} is read-only"


def test_the_example_environment_file_is_a_valid_configuration(cli: CliRunner) -> None:
    settings = env_file(ENV_FILE.read_text(encoding="utf-8"))
    assert one(parse_unit(UNIT.read_text(encoding="utf-8")), "Service", "EnvironmentFile")
    out = cli.ok("config", **settings)
    shown = dict(line.split("=", 1) for line in out.splitlines())
    for name, value in settings.items():
        expected = "********" if name == "SMTP_PASSWORD" else value
        assert shown[name] == expected, name
    assert settings["SMTP_PASSWORD"] not in out


def test_the_readme_points_at_the_unit_and_quotes_it_truly(unit: Unit) -> None:
    text = README.read_text(encoding="utf-8")
    assert "deploy/vertex-tui.service" in text and "deploy/vertex-tui.env" in text
    excerpts = re.findall(r"```ini\n(.*?)```", text, flags=re.S)
    for excerpt in excerpts:  # a short excerpt may stay; each of its settings is the file's
        for section, keys in parse_unit(excerpt).items():
            for key, values in keys.items():
                assert unit[section][key] == values, f"README [{section}] {key}={values}"


def test_systemd_accepts_the_unit(tmp_path: Path, unit: Unit) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("VERTEX_REQUIRE_PEERS"):
            pytest.fail("systemd-analyze is required (VERTEX_REQUIRE_PEERS) but not installed")
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart is executable: point it at this environment's entry point.
    installed = Path(sys.executable).parent / "vertex-tui"
    assert installed.is_file(), "the package is installed with its console script"
    text = UNIT.read_text(encoding="utf-8")
    original = one(unit, "Service", "ExecStart").split()[0]
    copy = tmp_path / "vertex-tui.service"
    copy.write_text(text.replace(f"ExecStart={original}", f"ExecStart={installed}"),
                    encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                            timeout=60, check=False)
    # Unknown keys and unparsable values are only warnings (exit 0): refuse those as well.
    about_ours = [line for line in (result.stdout + result.stderr).splitlines()
                  if "vertex-tui" in line]
    assert result.returncode == 0 and not about_ours, result.stdout + result.stderr
