"""The registry of the four built-in services, and the default one (plus entry points).

Each factory takes the `Engine` and builds its service from the engine's parts; the order
is the build order (lifecycle and video use the email queue's outbox).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vertex_tui.engine.service import Service, ServiceRegistry

if TYPE_CHECKING:
    from vertex_tui.engine.engine import Engine

BUILTIN = ("email", "backup", "lifecycle", "video")


def _email(engine: Engine) -> Service:
    from vertex_tui.engine.email.queue import EmailQueue

    return EmailQueue(db=engine.db, settings=engine.settings, clock=engine.clock,
                      events=engine.events, owner=engine.owner,
                      transport_factory=engine.transport_factory)


def _backup(engine: Engine) -> Service:
    from vertex_tui.engine.backup.service import BackupService

    return BackupService(**engine.service_parts())


def _lifecycle(engine: Engine) -> Service:
    from vertex_tui.engine.lifecycle import LifecycleService

    return LifecycleService(**engine.service_parts(), email=engine.email)


def _video(engine: Engine) -> Service:
    from vertex_tui.engine.videos import VideoService

    return VideoService(**engine.service_parts(), email=engine.email)


def builtin_registry() -> ServiceRegistry:
    """The four services of SPEC, in the order they are built."""
    registry = ServiceRegistry()
    for name, factory in zip(BUILTIN, (_email, _backup, _lifecycle, _video), strict=True):
        registry.register(name, factory)
    return registry


def default_registry() -> ServiceRegistry:
    """The built-in services, then those other packages declare (entry points)."""
    registry = builtin_registry()
    registry.load_entry_points()
    return registry
