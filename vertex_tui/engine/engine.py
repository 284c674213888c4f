"""The engine: an async context manager that owns the database, the services and their tasks.

    async with Engine(settings) as engine:
        await engine.email.enqueue(to=..., subject=..., body=...)

`run` names the services whose background work starts (default: every registered one that is
enabled); the others are still usable for queries and operator actions, which is how the CLI
works against a database that an engine elsewhere is serving.

The engine knows no service by name: it builds each from the registry (the four built-in
ones, then those of other packages' `vertex_tui.services` entry points), starts them, puts
their jobs on its scheduler (`JobBoard`), and reports them in `status()`. A service that fails
to build or start is reported with state `error` and the reason; the others run regardless.
`email`, `backup`, `lifecycle` and `video` are typed accessors for the CLI and the console.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from vertex_tui.engine.backup.restore import MAINTENANCE_LEASE
from vertex_tui.engine.builtin import BUILTIN, default_registry
from vertex_tui.engine.clock import Clock, FakeClock, ServerClock, SystemClock, isoformat
from vertex_tui.engine.errors import ConfigError, StoreError
from vertex_tui.engine.eventlog import Cursor
from vertex_tui.engine.events import BackupFinished, Event, EventBus, JobSkipped, PassCompleted
from vertex_tui.engine.jobs import JobBoard
from vertex_tui.engine.leases import Leases, dead_here, live_holders
from vertex_tui.engine.logwriter import EventLogWriter
from vertex_tui.engine.scheduling import Scheduler
from vertex_tui.engine.service import Service, ServiceRegistry, ServiceState
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import backups as backup_store
from vertex_tui.engine.store import engines as engines_store
from vertex_tui.engine.store import log as log_store
from vertex_tui.engine.store import requests as requests_store
from vertex_tui.engine.store import schedules
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.server_time import clock_offset

if TYPE_CHECKING:
    from vertex_tui.engine.backup.service import BackupService
    from vertex_tui.engine.email.queue import EmailQueue, TransportFactory
    from vertex_tui.engine.lifecycle import LifecycleService
    from vertex_tui.engine.metrics import MetricsServer
    from vertex_tui.engine.search import Query
    from vertex_tui.engine.videos import VideoService

log = logging.getLogger(__name__)

HEARTBEAT_TTL = 30.0
HEARTBEAT_EVERY = 10.0
# How long a stop waits for in-flight work (every service at once), leaving room for the
# rest of the shutdown under the 10 s a headless engine has to exit after SIGTERM.
STOP_GRACE = 6.0
SERVICES = BUILTIN  # the built-in services' names
# Besides every service's own actions (`Service.actions()`), what an attached console or a
# CLI command may ask a running engine to do (see `submit_request`).
JOB_RUN = "job.run"
REQUEST_POLL = 1.0


T = TypeVar("T")


def _opened(part: T | None) -> T:
    if part is None:
        raise RuntimeError("the engine is not open; use 'async with Engine(...)'")
    return part


def new_owner() -> str:
    """A name for this engine process, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Engine:
    """Hosts every service of one process on the running asyncio loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        run: Iterable[str] | None = None,
        transport_factory: TransportFactory | None = None,
        registry: ServiceRegistry | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.events = EventBus()
        self.owner = owner or new_owner()
        self.registry = registry or default_registry()
        self._run = None if run is None else list(run)
        self._transport_factory = transport_factory
        self._db: Database | None = None
        self._services: dict[str, Service] = {}
        self._broken: dict[str, str] = dict(self.registry.broken)  # name -> why
        self._scheduler: Scheduler | None = None
        self.jobs = JobBoard(self)
        self._leases: Leases | None = None
        self._started: list[Service] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._requests: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._metrics: MetricsServer | None = None
        self._republish = asyncio.Event()  # a job ran: publish the schedule before the beat
        self._unsubscribe: Callable[[], None] | None = None
        self._event_log: EventLogWriter | None = None
        self._unsubscribe_log: Callable[[], None] | None = None

    @property
    def db(self) -> Database:
        return _opened(self._db)

    def service(self, name: str) -> Service:
        """A built service by name (KeyError if there is none, or it failed to build)."""
        if self._db is None:
            raise RuntimeError("the engine is not open; use 'async with Engine(...)'")
        return self._services[name]

    @property
    def services(self) -> dict[str, Service]:
        """Every built service, in registry order."""
        return dict(self._services)

    @property
    def email(self) -> EmailQueue:
        return cast("EmailQueue", self.service("email"))

    @property
    def backup(self) -> BackupService:
        return cast("BackupService", self.service("backup"))

    @property
    def lifecycle(self) -> LifecycleService:
        return cast("LifecycleService", self.service("lifecycle"))

    @property
    def video(self) -> VideoService:
        return cast("VideoService", self.service("video"))

    @property
    def scheduler(self) -> Scheduler:
        return _opened(self._scheduler)

    @property
    def transport_factory(self) -> TransportFactory | None:
        return self._transport_factory

    def service_parts(self) -> dict[str, Any]:
        """The keyword arguments the built-in services (and plug-ins, if they like) take."""
        return {"db": self.db, "settings": self.settings, "clock": self.clock,
                "events": self.events, "leases": self.leases, "owner": self.owner,
                "scheduler": self.scheduler}

    @property
    def leases(self) -> Leases:
        return _opened(self._leases)

    @property
    def heartbeat_name(self) -> str:
        return f"engine:{self.owner}"

    async def __aenter__(self) -> Engine:
        # An engine that will write (heartbeat, services) checks the file first: a damaged one
        # is refused untouched.
        self._db = await open_database(self.settings, check=self._run != [])
        try:
            await self._follow_server_clock()
            self._leases = Leases(self._db, self.owner)
            holder = await self._leases.live_holder(MAINTENANCE_LEASE, self.clock.time())
            if holder is not None:
                raise StoreError(f"database {self._db.path} is being restored by {holder}")
            self._scheduler = Scheduler(self.settings.timezone)
            self._open_event_log()
            self._build()
            if self._run is None and self.settings.metrics_port:
                self._serve_metrics()  # before any work: a taken port fails the start cleanly
            names = self.registry.names() if self._run is None else self._run
            if names:
                await self._beat()
                self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
            if self._run is None:  # a full engine serves attached consoles' requests
                self._requests = asyncio.create_task(self._request_loop(), name="requests")
            for name in names:
                await self._start(name)
            if names:
                self.jobs.schedule(self.event_log.prune_job())
            await self.jobs.follow_pauses()
            self._scheduler.start()
            if names:
                await self._publish_schedule()
                self._unsubscribe = self.events.subscribe(self._on_event)
        except BaseException:
            await self._shutdown()
            raise
        return self

    def _open_event_log(self) -> None:
        """Subscribed before any service is built: every event of this process is logged."""
        self._event_log = EventLogWriter(self.db, self.clock, self.owner, self.events)
        self._event_log.count_enqueues = self._run is None or "email" in self._run
        self._unsubscribe_log = self.events.subscribe(self._event_log.observe)
        self._event_log.start()
        self.jobs.add([self._event_log.prune_job()])

    @property
    def event_log(self) -> EventLogWriter:
        return _opened(self._event_log)

    async def read_log(self, *, since: float | None = None, service: str | None = None,
                       level: int = 0, search: str | Query | None = None,
                       after: Cursor | None = None,
                       limit: int = 1000) -> tuple[list[dict[str, Any]], Cursor]:
        """The event log of every engine on this database (and the operator actions), oldest
        first: at most `limit` entries, the latest; `since` is seconds back from now;
        `search` a text, or a parsed search (`search.parse(..., keys=LOG_KEYS)`: its terms
        and the other filters must all hold). Returns the entries (`at` ISO 8601, `service`,
        `level` name, `event`, `message`) and the cursor to pass as `after` for what comes
        next (follow)."""
        from vertex_tui.engine.eventlog import LEVEL_NAMES

        now = self.clock.time()
        services: str | list[str] | None = service
        texts: str | tuple[str, ...] | None = search if isinstance(search, str) else None
        until = None
        if search is not None and not isinstance(search, str):
            texts = search.text
            if search.services is not None:
                services = sorted(search.services & {service} if service else search.services)
            level = max(level, search.level or 0)
            if search.newer is not None:
                since = search.newer if since is None else min(since, search.newer)
            until = None if search.older is None else now - search.older
        start = 0.0 if since is None else now - since
        rows, cursor = await log_store.read(self.db, since=start, service=services, level=level,
                                            search=texts, after=after, limit=limit, until=until)
        return [{**r, "at": isoformat(r["at"]),
                 "level": LEVEL_NAMES.get(r["level"], str(r["level"]))} for r in rows], cursor

    def _build(self) -> None:
        for name in self.registry.names():
            try:
                service = self.registry.factory(name)(self)
                if not isinstance(service, Service):
                    missing = [m for m in ("name", "settings", "jobs", "start", "stop", "state",
                                           "status", "actions") if not hasattr(service, m)]
                    raise TypeError(f"not a service: lacks {', '.join(missing)}")
                self.jobs.add(service.jobs())
            except Exception as exc:
                if name in SERVICES:
                    raise  # a bug of ours, not a plug-in's
                log.exception("service %s could not be built", name, extra={"service": name})
                self._broken[name] = f"{type(exc).__name__}: {exc}"
                continue
            self._services[name] = service

    async def _start(self, name: str) -> None:
        service = self._services.get(name)
        if service is None:
            if name not in self._broken:
                raise ValueError(f"unknown service {name!r}")
            return
        try:
            await service.start()
        except Exception as exc:
            if name in SERVICES:
                raise
            log.exception("service %s failed to start", name, extra={"service": name})
            self._broken[name] = f"start failed: {type(exc).__name__}: {exc}"
            return
        self._started.append(service)
        for job in service.jobs():
            self.jobs.schedule(job)
        log.info("service %s started", name, extra={"service": name})

    def _serve_metrics(self) -> None:
        """The Prometheus endpoint of a full engine (headless, or hosted by the console);
        never of a CLI command or an attached console, which run no services."""
        # Imported here: prometheus_client costs every other command (and the console's cold
        # start) import time for nothing.
        from vertex_tui.engine.metrics import EngineCollector, MetricsServer, ProcessMetrics

        address, port = self.settings.metrics_address, self.settings.metrics_port
        server = MetricsServer(EngineCollector(self.metrics_snapshot, asyncio.get_running_loop()),
                               address=address, port=port)
        # Subscribed before any service starts: every event of this process is counted.
        counted = ProcessMetrics(server.registry, services=self.registry.names())
        self.events.subscribe(counted.observe)
        try:
            server.start()
        except OSError as exc:
            # An address that does not resolve, or is no address of this machine, is
            # METRICS_ADDRESS's fault; a port in use or reserved is METRICS_PORT's.
            if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError("METRICS_ADDRESS", address,
                                  f"an IP address or host name of this machine to listen on"
                                  f" ({exc.strerror})") from None
            raise ConfigError("METRICS_PORT", str(port),
                              f"a port free to listen on at {address} ({exc.strerror})") from None
        self._metrics = server

    @property
    def metrics_port(self) -> int | None:
        """The metrics endpoint's port while it serves (the real one if configured as 0)."""
        return self._metrics.port if self._metrics is not None else None

    async def metrics_snapshot(self) -> dict[str, Any]:
        return {"status": await self.status(),
                "backup_last_success": await backup_store.last_success(self.db),
                "backup_last_size": await backup_store.last_success_size(self.db)}

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.stop)  # waits for a scrape in progress
            self._metrics = None
        # No new passes; the services then wait for the ones in flight. Shutting APScheduler
        # down first would cancel those mid-pass (logged as errors, runs left 'running').
        if self._scheduler is not None:
            self._scheduler.pause()
        async def stop(service: Service) -> None:
            try:
                await service.stop(STOP_GRACE)
                log.info("service %s stopped", service.name, extra={"service": service.name})
            except Exception:
                log.exception("stopping service %s failed", service.name)

        # Concurrently: one grace for all, not one per service in turn.
        await asyncio.gather(*(stop(service) for service in reversed(self._started)),
                             self.jobs.wait_idle(STOP_GRACE))
        self._started = []
        if self._scheduler is not None:
            self._scheduler.shutdown()
        if self._requests is not None:
            self._requests.cancel()
            await asyncio.gather(self._requests, return_exceptions=True)
            self._requests = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._event_log is not None:
            if self._unsubscribe_log is not None:
                self._unsubscribe_log()
                self._unsubscribe_log = None
            try:
                await self._event_log.close()  # after the services stopped: their last words
            except Exception:
                log.exception("closing the event log failed")
            self._event_log = None
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
            if self._db is not None:
                try:
                    await schedules.withdraw(self._db, self.owner)
                except Exception:
                    log.exception("withdrawing the published schedule failed")
        if self._db is not None:
            try:
                if self._leases is not None:
                    await self._leases.release_all()
            finally:
                await self._db.close()
                self._db = None

    async def _follow_server_clock(self) -> None:
        """On PostgreSQL (engines on several hosts) a system clock becomes the server's
        timeline (`ServerClock`), its offset measured now and again at every heartbeat.
        A test's FakeClock stands in for the server's clock there instead (the statements
        read their "now" from it: store.server_time), so tests move leases and retries on
        PostgreSQL as on SQLite. SQLite (one host) keeps the clock as it is."""
        if self.db.dialect != "postgresql":
            return
        if isinstance(self.clock, FakeClock):
            self.db.use_test_clock(self.clock.time)
            return
        if not isinstance(self.clock, SystemClock):
            return
        if not isinstance(self.clock, ServerClock):
            self.clock = ServerClock(self.clock)
        self.clock.offset = await clock_offset(self.db, self.clock.base.time)

    async def _beat(self) -> None:
        await self._follow_server_clock()
        await self.leases.acquire(self.heartbeat_name, self.clock.time(), HEARTBEAT_TTL)

    async def _publish_schedule(self) -> None:
        """This engine's jobs and next runs, for consoles and commands that schedule nothing
        (see store.schedules)."""
        if self._scheduler is None:
            return
        await schedules.publish(self.db, self.owner, self._scheduler.jobs(),
                                at=self.clock.time())

    async def _follow(self) -> None:
        """Pause flags set by any process, applied here within a poll (and published)."""
        try:
            if await self.jobs.follow_pauses():
                self._republish.set()
        except Exception:
            log.exception("following job pauses failed")

    def _on_event(self, event: Event) -> None:
        if isinstance(event, (PassCompleted, BackupFinished, JobSkipped)):
            self._republish.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.clock.wait(self._republish, HEARTBEAT_EVERY)
            self._republish.clear()
            try:
                await self._beat()  # always: events every few seconds must not starve it
                await self._follow()
                await self._publish_schedule()
            except Exception:
                log.exception("engine heartbeat failed")

    def actions(self) -> dict[str, Any]:
        """Every operator action of every service (`Service.actions()`), by name."""
        found: dict[str, Any] = {}
        for service in self._services.values():
            found.update(service.actions())
        return found

    async def perform(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run an operator action in this process (the console hosting the engine)."""
        args = args or {}
        if action == JOB_RUN:
            return await self.jobs.run(str(args["job"]))
        func = self.actions().get(action)
        if func is None:
            raise ValueError(f"unknown action {action!r}")
        result: dict[str, Any] = await func(**args)
        return result

    async def submit_request(self, action: str, args: dict[str, Any] | None = None) -> int:
        """Ask whichever engine runs on this database to perform `action` (attach mode)."""
        from vertex_tui.engine.store.audit import current_actor

        if action != JOB_RUN and action not in self.actions():
            raise ValueError(f"unknown action {action!r}")
        return await requests_store.submit(self.db, action=action, args=args or {},
                                           actor=current_actor(), at=self.clock.time())

    async def request(self, request_id: int) -> requests_store.Request | None:
        return await requests_store.get(self.db, request_id)

    async def _request_loop(self) -> None:
        stop = asyncio.Event()
        while True:
            try:
                for req in await requests_store.pick(self.db, owner=self.owner,
                                                     at=self.clock.time()):
                    task = asyncio.create_task(self._handle(req), name=f"request-{req.id}")
                    self._handlers.add(task)
                    task.add_done_callback(self._handlers.discard)
            except Exception:
                log.exception("picking requests failed")
            await self._follow()
            await self.clock.wait(stop, REQUEST_POLL)

    async def _handle(self, req: requests_store.Request) -> None:
        log.info("request %d from %s: %s %s", req.id, req.requested_by, req.action, req.args)
        try:
            result: Any = await self.perform(req.action, req.args)
            ok = result.get("status", "ok") not in ("failed", "error", "skipped")
        except Exception as exc:
            result, ok = {"error": str(exc)}, False
        try:
            await requests_store.finish(self.db, req.id, at=self.clock.time(), ok=ok,
                                        result=result)
        except Exception:
            log.exception("recording request %d failed", req.id)
        from vertex_tui.engine.events import RequestHandled

        self.events.publish(RequestHandled(at=self.clock.time(), request_id=req.id,
                                           action=req.action, ok=ok, result=result))

    async def recent_errors(self, limit: int = 10) -> list[dict[str, Any]]:
        from vertex_tui.engine.store.runs import recent_errors

        return await recent_errors(self.db, limit)

    def running(self) -> list[str]:
        """Names of the services this engine runs."""
        return [s.name for s in self._started]

    async def engines(self) -> list[dict[str, Any]]:
        """The live engines: owner, host, pid, since, heartbeat_at, leases they hold. An
        engine of this host whose process is gone is not one, though its heartbeat has not
        expired yet (`dead_here`)."""
        found = await engines_store.alive(self.db, self.clock.time(),
                                          heartbeat_ttl=HEARTBEAT_TTL)
        return [e for e in found if not dead_here(e["owner"])]

    async def status(self) -> dict[str, Any]:
        """State, last and next run and holder of every service, as seen from this process;
        the live engines."""
        now = self.clock.time()
        engines = await self.engines()
        others = any(e["owner"] != self.owner for e in engines)
        running = self.running()
        leases = {lease for name in self.jobs.names() if (lease := self.jobs.get(name).lease)}
        holders = await live_holders(self.db, sorted(leases), now)
        services: dict[str, Any] = {}
        snapshot = await self.jobs.snapshot()
        names = self.registry.names()
        for name in [*names, *(n for n in self._broken if n not in names)]:
            if name in self._broken:
                services[name] = {"state": str(ServiceState.ERROR), "error": self._broken[name],
                                  "last_run": None, "next_run": None, "holder": None}
                continue
            service = self._services[name]
            try:
                doc = await service.status()
            except Exception as exc:
                log.exception("status of service %s failed", name, extra={"service": name})
                doc = {"state": str(ServiceState.ERROR), "error": f"status failed: {exc}",
                       "last_run": None, "next_run": None}
            if "last_run" not in doc or "next_run" not in doc:
                # A service that leaves them out (a plug-in): from its jobs.
                mine = [j for j in snapshot if j["service"] == name]
                runs = sorted(j["last_run"] for j in mine if j["last_run"])
                nexts = sorted(j["next_run"] for j in mine if j["next_run"])
                latest = max((j for j in mine if j["last_run"]), default=None,
                             key=lambda j: j["last_run"])
                doc.setdefault("last_run", runs[-1] if runs else None)
                doc.setdefault("last_outcome", latest["last_outcome"] if latest else None)
                doc.setdefault("next_run", nexts[0] if nexts else None)
            holder = self._holder(name, holders)
            if name not in running and doc.get("state") == ServiceState.STOPPED and (
                    holder is not None or others):
                # Not run here, but an engine elsewhere runs it.
                doc["state"] = str(getattr(service, "state_elsewhere", ServiceState.IDLE))
            doc["holder"] = holder
            services[name] = doc
        return {"at": isoformat(now), "engines": engines, "services": services}

    def _holder(self, service: str, holders: dict[str, str]) -> str | None:
        """The owner holding the lease of one of `service`'s jobs (a pass held between
        runs, or a run in progress), if any."""
        for name in self.jobs.names():
            job = self.jobs.get(name)
            if job.service == service and job.lease and job.lease in holders:
                return holders[job.lease]
        return None
