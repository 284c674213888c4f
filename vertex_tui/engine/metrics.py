"""Prometheus metrics of a running engine (`METRICS_PORT`), for alerting next to the console.

prometheus_client serves them from its own HTTP thread. A scrape asks the engine's event loop
for the same snapshot the dashboard shows (`Engine.status()` plus each backup kind's last
success and its size), so the figures are the console's and no query is duplicated here. If
the loop does not answer within `SCRAPE_TIMEOUT`, the scrape says so (`vertex_up 0`) instead
of hanging.

What this process did (sends, failures, retries, delivery latency, failed runs) is counted
from the engine's events by `ProcessMetrics`: counters that start at 0 with the process, every
labelled series present from the start, so "absent" never stands for "zero".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Iterator
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from vertex_tui.engine import events as ev
from vertex_tui.engine.backup.service import KINDS as BACKUP_KINDS
from vertex_tui.engine.service import ServiceState

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT = 5.0
EMAIL_STATUSES = ("pending", "sending", "sent", "failed", "cancelled")
# Outcomes of a last run that count as success: passes say 'ok', backups 'ok' too.
OK_OUTCOMES = frozenset({"ok"})
BACKUP_SERVICE = "backup"
# Enqueue-to-sent latency: from an idle queue's fraction of a second to a day of retries.
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                    600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)


def _ts(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value).timestamp()


def _up(value: int) -> Metric:
    up = GaugeMetricFamily("vertex_up", "1 when the engine answered this scrape")
    up.add_metric([], value)
    return up


def families(snapshot: dict[str, Any]) -> Iterator[Metric]:
    """The metrics of one snapshot: `{"status": Engine.status(), "backup_last_success":
    {kind: epoch seconds}}`. Pure, so the mapping is tested without a server."""
    status = snapshot["status"]
    services: dict[str, dict[str, Any]] = status["services"]
    yield _up(1)
    engines = GaugeMetricFamily("vertex_engines_alive",
                                "Engine processes with a live heartbeat on this database")
    engines.add_metric([], len(status["engines"]))
    yield engines

    state = GaugeMetricFamily("vertex_service_state", "1 for the state each service is in",
                              labels=["service", "state"])
    last_run = GaugeMetricFamily("vertex_service_last_run_timestamp_seconds",
                                 "When the service's last run finished", labels=["service"])
    last_ok = GaugeMetricFamily("vertex_service_last_run_success",
                                "1 if the service's last run succeeded", labels=["service"])
    next_run = GaugeMetricFamily("vertex_service_next_run_timestamp_seconds",
                                 "When the service runs next", labels=["service"])
    for name, doc in services.items():
        for value in ServiceState:
            state.add_metric([name, str(value)], 1 if doc["state"] == value else 0)
        if (finished := _ts(doc.get("last_run"))) is not None:
            last_run.add_metric([name], finished)
        if doc.get("last_outcome") is not None:
            last_ok.add_metric([name], 1 if doc["last_outcome"] in OK_OUTCOMES else 0)
        if (upcoming := _ts(doc.get("next_run"))) is not None:
            next_run.add_metric([name], upcoming)
    yield from (state, last_run, last_ok, next_run)

    email = services["email"]
    jobs = GaugeMetricFamily("vertex_email_jobs", "Email jobs by status", labels=["status"])
    for name in EMAIL_STATUSES:
        jobs.add_metric([name], email.get(name, 0))
    yield jobs
    oldest = GaugeMetricFamily("vertex_email_oldest_pending_age_seconds",
                               "Age of the oldest pending email (0 when none waits)")
    oldest.add_metric([], email.get("oldest_pending_age_seconds") or 0)
    yield oldest
    per_minute = GaugeMetricFamily("vertex_email_sent_last_minute",
                                   "Emails sent in the last 60 seconds")
    per_minute.add_metric([], email["sent_last_minute"])
    yield per_minute
    paused = GaugeMetricFamily("vertex_email_paused", "1 while delivery is paused")
    paused.add_metric([], 1 if email["state"] == ServiceState.PAUSED else 0)
    yield paused
    smtp = (email.get("smtp") or {}).get("state")
    if smtp in ("ok", "unreachable"):  # before the first contact ("unknown") nothing is known
        up = GaugeMetricFamily("vertex_smtp_up",
                               "1 while the SMTP relay answers, 0 while it is unreachable")
        up.add_metric([], 1 if smtp == "ok" else 0)
        yield up

    success = GaugeMetricFamily("vertex_backup_last_success_timestamp_seconds",
                                "When the latest successful backup of each kind finished",
                                labels=["kind"])
    for kind, at in sorted(snapshot["backup_last_success"].items()):
        success.add_metric([kind], at)
    yield success
    size = GaugeMetricFamily("vertex_backup_size_bytes",
                             "Size of the latest successful backup of each kind (0: none yet)",
                             labels=["kind"])
    sizes: dict[str, int] = snapshot.get("backup_last_size", {})
    for kind in sorted({*BACKUP_KINDS, *sizes}):
        size.add_metric([kind], sizes.get(kind, 0))
    yield size
    drill = services["backup"].get("last_verified_restore")
    if drill:
        restore = GaugeMetricFamily("vertex_backup_last_verified_restore_timestamp_seconds",
                                    "When a backup was last restored and checked (drill)")
        restore.add_metric([], _ts(drill["at"]) or 0)
        yield restore


class ProcessMetrics:
    """What this process did, counted from the engine's events: subscribe `observe` to the
    bus. prometheus_client's counters are thread-safe, so the HTTP thread reads them while
    the loop counts."""

    def __init__(self, registry: CollectorRegistry, *, services: Iterable[str]) -> None:
        self.sent = Counter("vertex_email_sent", "Emails this process delivered",
                            registry=registry)
        self.failed = Counter("vertex_email_failed",
                              "Emails this process gave up on (permanent failure, or the last "
                              "attempt)", registry=registry)
        self.retried = Counter("vertex_email_retried",
                               "Failed attempts of this process that will be tried again",
                               registry=registry)
        self.delivery = Histogram("vertex_email_delivery_seconds",
                                  "From enqueue to delivery, for emails this process sent",
                                  buckets=DELIVERY_BUCKETS, registry=registry)
        self.run_failures = Counter("vertex_service_run_failures",
                                    "Failed passes and backup jobs (backups, rotation, "
                                    "restore drills) run by this process", labelnames=["service"],
                                    registry=registry)
        for name in services:
            self.run_failures.labels(name)  # present, at 0, before the first failure

    def observe(self, event: ev.Event) -> None:
        if isinstance(event, ev.EmailSent):
            self.sent.inc()
            if event.created_at is not None:
                self.delivery.observe(max(0.0, event.at - event.created_at))
        elif isinstance(event, ev.EmailFailed):
            (self.failed if event.retry_at is None else self.retried).inc()
        elif isinstance(event, ev.PassCompleted):
            # The backup service's runs are counted from its own events below, once, whether
            # or not a run also publishes PassCompleted.
            if not event.ok and event.service != BACKUP_SERVICE:
                self.run_failures.labels(event.service).inc()
        elif isinstance(event, (ev.BackupFinished, ev.RestoreDrillFinished)):
            if not event.ok:
                self.run_failures.labels(BACKUP_SERVICE).inc()
        elif isinstance(event, ev.RotationFinished) and event.error is not None:
            self.run_failures.labels(BACKUP_SERVICE).inc()


class EngineCollector(Collector):
    """Collects on the HTTP thread by running `snapshot()` on the engine's loop."""

    def __init__(self, snapshot: Callable[[], Coroutine[Any, Any, dict[str, Any]]],
                 loop: asyncio.AbstractEventLoop, timeout: float = SCRAPE_TIMEOUT) -> None:
        self._snapshot = snapshot
        self._loop = loop
        self._timeout = timeout

    def collect(self) -> Iterator[Metric]:
        future = asyncio.run_coroutine_threadsafe(self._snapshot(), self._loop)
        try:
            snapshot = future.result(self._timeout)
        except Exception as exc:
            future.cancel()
            log.warning("metrics scrape failed: %r", exc)
            yield _up(0)
            return
        yield from families(snapshot)


class MetricsServer:
    """The HTTP endpoint; `start()` raises OSError if the address cannot be listened on."""

    def __init__(self, collector: Collector, *, address: str, port: int) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(collector)
        self._address = address
        self._port = port
        self._server: WSGIServer | None = None

    @property
    def registry(self) -> CollectorRegistry:
        """Where more collectors (`ProcessMetrics`) register to be served here too."""
        return self._registry

    @property
    def port(self) -> int:
        """The port listened on (the real one when started with port 0)."""
        return self._server.server_port if self._server is not None else self._port

    def start(self) -> None:
        self._server, _ = start_http_server(self._port, self._address, self._registry)
        log.info("metrics on http://%s:%d/metrics", self._address, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
