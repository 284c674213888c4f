"""The engine: an async context manager that owns the database, the services and their tasks.

    async with Engine(settings) as engine:
        await engine.email.enqueue(to=..., subject=..., body=...)

`run` names the services whose background work starts (default: every registered one that is
enabled); the others are still usable for queries and operator actions, which is how the CLI
works against a database that an engine elsewhere is serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from vertex_tui.engine.backup.restore import MAINTENANCE_LEASE
from vertex_tui.engine.backup.service import BackupService
from vertex_tui.engine.clock import Clock, SystemClock, isoformat
from vertex_tui.engine.email.queue import EmailQueue, TransportFactory
from vertex_tui.engine.errors import ConfigError, StoreError
from vertex_tui.engine.events import BackupFinished, Event, EventBus, JobSkipped, PassCompleted
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.lifecycle import LifecycleService
from vertex_tui.engine.scheduling import Scheduler
from vertex_tui.engine.service import Service, ServiceRegistry, ServiceState
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import backups as backup_store
from vertex_tui.engine.store import requests as requests_store
from vertex_tui.engine.store import schedules
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.videos import VideoService

if TYPE_CHECKING:
    from vertex_tui.engine.metrics import MetricsServer

log = logging.getLogger(__name__)

HEARTBEAT_TTL = 30.0
HEARTBEAT_EVERY = 10.0
# How long a stop waits for in-flight work (every service at once), leaving room for the
# rest of the shutdown under the 10 s a headless engine has to exit after SIGTERM.
STOP_GRACE = 6.0
SERVICES = ("email", "backup", "lifecycle", "video")
# What an attached console may ask a running engine to do (see `submit_request`).
ACTIONS = ("backup.run", "lifecycle.check", "video.check", "email.drain")
REQUEST_POLL = 1.0


def default_registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.register("email", lambda engine: engine.email)
    registry.register("backup", lambda engine: engine.backup)
    registry.register("lifecycle", lambda engine: engine.lifecycle)
    registry.register("video", lambda engine: engine.video)
    return registry


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
        self._email: EmailQueue | None = None
        self._backup: BackupService | None = None
        self._lifecycle: LifecycleService | None = None
        self._video: VideoService | None = None
        self._scheduler: Scheduler | None = None
        self._leases: Leases | None = None
        self._started: list[Service] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._requests: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._metrics: MetricsServer | None = None
        self._republish = asyncio.Event()  # a job ran: publish the schedule before the beat
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def db(self) -> Database:
        return _opened(self._db)

    @property
    def email(self) -> EmailQueue:
        return _opened(self._email)

    @property
    def backup(self) -> BackupService:
        return _opened(self._backup)

    @property
    def lifecycle(self) -> LifecycleService:
        return _opened(self._lifecycle)

    @property
    def video(self) -> VideoService:
        return _opened(self._video)

    @property
    def leases(self) -> Leases:
        return _opened(self._leases)

    @property
    def heartbeat_name(self) -> str:
        return f"engine:{self.owner}"

    async def __aenter__(self) -> Engine:
        # An engine that will write (heartbeat, services) checks the file first: a damaged one
        # is refused untouched.
        self._db = await Database.open(self.settings.db_path, check=self._run != [])
        try:
            self._leases = Leases(self._db, self.owner)
            holder = await self._leases.live_holder(MAINTENANCE_LEASE, self.clock.time())
            if holder is not None:
                raise StoreError(f"database {self.settings.db_path} is being restored by {holder}")
            self._email = EmailQueue(
                db=self._db,
                settings=self.settings,
                clock=self.clock,
                events=self.events,
                owner=self.owner,
                transport_factory=self._transport_factory,
            )
            self._scheduler = Scheduler(self.settings.timezone)
            common: dict[str, Any] = {"db": self._db, "settings": self.settings,
                                      "clock": self.clock, "events": self.events,
                                      "leases": self._leases, "owner": self.owner,
                                      "scheduler": self._scheduler}
            self._backup = BackupService(**common)
            self._lifecycle = LifecycleService(**common, email=self._email)
            self._video = VideoService(**common, email=self._email)
            if self._run is None and self.settings.metrics_port:
                self._serve_metrics()  # before any work: a taken port fails the start cleanly
            names = self.registry.names() if self._run is None else self._run
            if names:
                await self._beat()
                self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
            if self._run is None:  # a full engine serves attached consoles' requests
                self._requests = asyncio.create_task(self._request_loop(), name="requests")
            for name in names:
                service = self.registry.factory(name)(self)
                await service.start()
                self._started.append(service)
                log.info("service %s started", name, extra={"service": name})
            self._scheduler.start()
            if names:
                await self._publish_schedule()
                self._unsubscribe = self.events.subscribe(self._on_event)
        except BaseException:
            await self._shutdown()
            raise
        return self

    def _serve_metrics(self) -> None:
        """The Prometheus endpoint of a full engine (headless, or hosted by the console);
        never of a CLI command or an attached console, which run no services."""
        # Imported here: prometheus_client costs every other command (and the console's cold
        # start) import time for nothing.
        from vertex_tui.engine.metrics import EngineCollector, MetricsServer

        address, port = self.settings.metrics_address, self.settings.metrics_port
        server = MetricsServer(EngineCollector(self.metrics_snapshot, asyncio.get_running_loop()),
                               address=address, port=port)
        try:
            server.start()
        except OSError as exc:
            raise ConfigError("METRICS_PORT", str(port),
                              f"a port free to listen on at {address} ({exc.strerror})") from None
        self._metrics = server

    @property
    def metrics_port(self) -> int | None:
        """The metrics endpoint's port while it serves (the real one if configured as 0)."""
        return self._metrics.port if self._metrics is not None else None

    async def metrics_snapshot(self) -> dict[str, Any]:
        return {"status": await self.status(),
                "backup_last_success": await backup_store.last_success(self.db)}

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
        await asyncio.gather(*(stop(service) for service in reversed(self._started)))
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

    async def _beat(self) -> None:
        await self.leases.acquire(self.heartbeat_name, self.clock.time(), HEARTBEAT_TTL)

    async def _publish_schedule(self) -> None:
        """This engine's jobs and next runs, for consoles and commands that schedule nothing
        (see store.schedules)."""
        if self._scheduler is None:
            return
        await schedules.publish(self.db, self.owner, self._scheduler.jobs(),
                                at=self.clock.time())

    def _on_event(self, event: Event) -> None:
        if isinstance(event, (PassCompleted, BackupFinished, JobSkipped)):
            self._republish.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.clock.wait(self._republish, HEARTBEAT_EVERY)
            self._republish.clear()
            try:
                await self._beat()  # always: events every few seconds must not starve it
                await self._publish_schedule()
            except Exception:
                log.exception("engine heartbeat failed")

    async def perform(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run an operator action in this process (the console hosting the engine)."""
        args = args or {}
        if action == "backup.run":
            return await self.backup.run(str(args["job"]))
        if action == "lifecycle.check":
            return await self.lifecycle.check()
        if action == "video.check":
            return await self.video.check()
        if action == "email.drain":
            return await self.email.drain(timeout=float(args.get("timeout", 300)))
        raise ValueError(f"unknown action {action!r}")

    async def submit_request(self, action: str, args: dict[str, Any] | None = None) -> int:
        """Ask whichever engine runs on this database to perform `action` (attach mode)."""
        from vertex_tui.engine.audit import current_actor

        if action not in ACTIONS:
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

    async def status(self) -> dict[str, Any]:
        """State, last and next run of every service of SPEC, as seen from this process."""
        now = self.clock.time()
        engines = await self.leases.alive_engines(now)
        others = [e for e in engines if e != self.owner]
        services: dict[str, Any] = {}
        email = await self.email.status()
        if "email" not in self.running():
            paused = email["state"] == ServiceState.PAUSED
            email["state"] = str(
                ServiceState.PAUSED
                if paused
                else (ServiceState.RUNNING if others else ServiceState.STOPPED)
            )
        services["email"] = email
        backup = await self.backup.status()
        if "backup" not in self.running() and backup["state"] == ServiceState.STOPPED:
            backup["state"] = str(ServiceState.IDLE if others else ServiceState.STOPPED)
        services["backup"] = backup
        for name, periodic in (("lifecycle", self.lifecycle), ("video", self.video)):
            doc = await periodic.status()
            if name not in self.running() and doc["state"] == ServiceState.STOPPED:
                holder = await self.leases.holder(periodic.lease_name, now)
                doc["state"] = str(
                    ServiceState.IDLE if holder or others else ServiceState.STOPPED
                )
                if doc["state"] == ServiceState.STOPPED:
                    doc["next_run"] = None  # no engine runs the passes: none is coming
            services[name] = doc
        return {"at": isoformat(now), "engines": engines, "services": services}
