"""The service interface: what a background service is to the engine, and how it plugs in.

A service is an object with

- `name` — its short name (`backup`, `lifecycle`, ...), the prefix of its jobs' names;
- `settings()` — its effective settings, name → value (secrets masked), for `config`/docs;
- `jobs()` — its periodic jobs (`Job`): a dotted name (`backup.database`), a trigger (`Cron`
  or `Interval`), a coroutine function doing one run, and an enabled flag. The engine
  schedules every job whose `driver` is "scheduler" on its one APScheduler, and runs each
  run through `vertex_tui.engine.runs.LeasedRun` (singleton lease, `service_runs` record,
  events, pause flag); "run now", pause and resume act on the same `Job`;
- `start()` / `stop(grace)` — start its background work / finish in-flight work within
  `grace` seconds and release what it holds;
- `state()` and `status()` — a `ServiceState` and a JSON snapshot with at least `state`,
  `last_run`, `next_run` (ISO 8601 or None) and its key figures; the engine adds `holder`;
- `actions()` — its operator actions, name → coroutine function taking keyword arguments
  (`video.check`, `email.drain`...), which the console and attached processes may ask a
  running engine to perform (see `Engine.perform`).

Services are built by factories taking the `Engine` (which gives `db`, `settings`, `clock`,
`events`, `leases`, `owner`, `scheduler` and the other services), registered in a
`ServiceRegistry`: the four built-in ones by `Engine`, and any other package's through the
`vertex_tui.services` entry point group, whose entries name a factory:

    [project.entry-points."vertex_tui.services"]
    diskspace = "vertex_diskspace:make_service"     # def make_service(engine) -> Service
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from vertex_tui.engine.engine import Engine

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "vertex_tui.services"


class ServiceState(StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"  # working right now
    IDLE = "idle"  # started, nothing to do
    PAUSED = "paused"
    STANDBY = "standby"  # another process holds this service's lease
    ERROR = "error"
    DISABLED = "disabled"


@dataclass(frozen=True, kw_only=True)
class Cron:
    """A 5-field crontab expression, evaluated in VERTEX_TIMEZONE."""

    expr: str
    misfire_grace: int = 3600

    def describe(self) -> str:
        return f"cron {self.expr}"


@dataclass(frozen=True, kw_only=True)
class Interval:
    """Every `seconds`, the first run `first_after` seconds after the start (0: at once)."""

    seconds: float
    first_after: float = 0.0

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


Trigger = Cron | Interval
RunFunc = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, kw_only=True)
class Job:
    """One periodic job of a service.

    `run(run)` does the work of one run; it gets the `runs.LeasedRun` it runs in (to add
    `counts`, or `fail()` without raising) and returns a JSON-able result dict. `lease` is
    the singleton lease that keeps one process at a time on it (None: any process may run
    it, e.g. an idempotent reclaim), held `lease_ttl` seconds (renewed between passes if
    `hold_between` — others then show standby). `record` "always" writes every run to
    `service_runs`; "changes" only runs that changed something or failed (a job every
    second would otherwise write 86,400 rows a day). `driver` "scheduler" puts it on the
    engine's APScheduler; "service" means the service's own loop runs it (it still goes
    through LeasedRun and is listed, run now, paused and resumed like the others).
    `params` are published with the schedule (e.g. the video rotation interval), so a
    process that schedules nothing uses the running engine's values, not its own.
    `invoke(trigger)`, if set, is how the engine triggers a run ("schedule" or "manual"):
    the service's own entry point, which must go through LeasedRun with this job (the
    built-in services use it for their locks, state and audit); by default the engine runs
    `runs.run_job(engine, job, trigger=...)` itself.
    """

    name: str
    trigger: Trigger
    run: RunFunc
    enabled: bool = True
    lease: str | None = None
    lease_ttl: float = 6 * 3600.0
    hold_between: bool = False
    record: Literal["always", "changes"] = "always"
    record_as: str = ""  # the `job` column of service_runs; default: the part after the dot
    driver: Literal["scheduler", "service"] = "scheduler"
    params: Mapping[str, Any] = field(default_factory=dict)
    invoke: Callable[[str], Awaitable[dict[str, Any]]] | None = None

    @property
    def service(self) -> str:
        return self.name.partition(".")[0]

    @property
    def run_key(self) -> str:
        return self.record_as or self.name.partition(".")[2]

    @property
    def schedule(self) -> str:
        return self.trigger.describe()


@runtime_checkable
class Service(Protocol):
    """A background service hosted by the engine (see the module docstring)."""

    name: str

    def settings(self) -> dict[str, Any]: ...

    def jobs(self) -> list[Job]: ...

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None:
        """Finish in-flight work within `grace` seconds, then release everything."""
        ...

    def state(self) -> ServiceState: ...

    async def status(self) -> dict[str, Any]:
        """`state`, `last_run`, `next_run` (ISO 8601 or None) and service-specific figures."""
        ...

    def actions(self) -> dict[str, RunFunc]: ...


ServiceFactory = Callable[["Engine"], Service]


class ServiceRegistry:
    """Ordered name → factory. The engine builds every registered service in this order
    (a factory may use the services registered before it, e.g. `engine.email`)."""

    def __init__(self) -> None:
        self._factories: dict[str, ServiceFactory] = {}
        self.broken: dict[str, str] = {}  # name -> why its entry point could not be loaded

    def register(self, name: str, factory: ServiceFactory) -> None:
        if name in self._factories or name in self.broken:
            raise ValueError(f"service {name!r} is already registered")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return list(self._factories)

    def factory(self, name: str) -> ServiceFactory:
        return self._factories[name]

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register the services other packages declare. One that fails to import is kept
        in `broken` with the reason (reported as status `error`), never raised."""
        for ep in entry_points(group=group):
            if ep.name in self._factories or ep.name in self.broken:
                log.warning("service %s from %s ignored: the name is taken", ep.name, ep.value)
                continue
            try:
                factory = ep.load()
            except Exception as exc:
                log.exception("service %s (%s) failed to import", ep.name, ep.value)
                self.broken[ep.name] = f"import failed: {type(exc).__name__}: {exc}"
                continue
            if not callable(factory):
                self.broken[ep.name] = f"{ep.value} is not a factory (callable)"
                continue
            self._factories[ep.name] = factory
