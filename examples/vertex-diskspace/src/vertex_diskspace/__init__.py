"""Example vertex-tui service: free space of the storage disk, checked on an interval.

Registered through the `vertex_tui.services` entry point (see pyproject.toml); the engine
calls `make_service(engine)` and treats the result like its own services: the job is put on
the engine's scheduler, every run goes through the engine's lease-and-run helper (one engine
at a time checks, each run lands in `service_runs`), and `status`, `jobs` and the metrics
list it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vertex_tui.engine.errors import ConfigError
from vertex_tui.engine.runs import LeasedRun
from vertex_tui.engine.service import Interval, Job, ServiceState

NAME = "diskspace"


@dataclass(frozen=True, kw_only=True)
class DiskSettings:
    min_free_percent: float = 10.0
    check_interval: float = 300.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DiskSettings:
        """Read and validate the settings; a bad value is a `ConfigError` naming it."""
        env = dict(os.environ if env is None else env)
        return cls(min_free_percent=_number(env, "DISKSPACE_MIN_FREE_PERCENT", 10.0, 0, 100,
                                            "a percentage from 0 to 100"),
                   check_interval=_number(env, "DISKSPACE_CHECK_INTERVAL", 300.0, 1, None,
                                          "a number of seconds >= 1"))


def _number(env: dict[str, str], name: str, default: float, low: float, high: float | None,
            expected: str) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(name, text, expected) from None
    if value < low or (high is not None and value > high):
        raise ConfigError(name, text, expected)
    return value


def free_percent(path: Path) -> float:
    """Free space of the disk holding `path` (its nearest existing parent), in percent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    return 100.0 * usage.free / usage.total


class DiskSpaceService:
    """The service: one job, no background task of its own."""

    name = NAME

    def __init__(self, engine: Any, settings: DiskSettings) -> None:
        self._engine = engine
        self._settings = settings
        self._started = False

    def settings(self) -> dict[str, Any]:
        return {"min_free_percent": self._settings.min_free_percent,
                "check_interval": self._settings.check_interval}

    def jobs(self) -> list[Job]:
        return [Job(name=f"{NAME}.check",
                    trigger=Interval(seconds=self._settings.check_interval),
                    run=self._check, lease=f"{NAME}:check", lease_ttl=60.0)]

    async def _check(self, run: LeasedRun) -> dict[str, Any]:
        folder = Path(self._engine.settings.storage_dir).absolute()
        free = await asyncio.to_thread(free_percent, folder)
        run.counts = {"free_percent": round(free, 2)}
        if free < self._settings.min_free_percent:
            run.fail(f"only {free:.1f}% free on the disk of {folder}"
                     f" (DISKSPACE_MIN_FREE_PERCENT={self._settings.min_free_percent:g})")
        return {"status": "ok" if run.error is None else "failed", **run.counts,
                "error": run.error}

    async def start(self) -> None:
        self._started = True

    async def stop(self, grace: float) -> None:
        self._started = False

    def state(self) -> ServiceState:
        return ServiceState.IDLE if self._started else ServiceState.STOPPED

    async def status(self) -> dict[str, Any]:
        # last_run / next_run are left out: the engine fills them from the job's runs. The
        # key figure comes from the last run too (by any process), not from memory.
        runs = [r for r in await self._engine.jobs.history(f"{NAME}.check", limit=5)
                if r["outcome"] != "skipped"]
        return {"state": str(self.state()),
                "free_percent": runs[0]["counts"].get("free_percent") if runs else None,
                "min_free_percent": self._settings.min_free_percent}

    def actions(self) -> dict[str, Any]:
        return {}


def make_service(engine: Any) -> DiskSpaceService:
    """The entry point: build the service for `engine` (settings read and checked here)."""
    return DiskSpaceService(engine, DiskSettings.from_env())
