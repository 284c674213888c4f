"""What a service is to the engine, and the registry later services plug into."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vertex_tui.engine.engine import Engine


class ServiceState(StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"  # working right now
    IDLE = "idle"  # started, nothing to do
    PAUSED = "paused"
    STANDBY = "standby"  # another process holds this service's lease
    ERROR = "error"
    DISABLED = "disabled"


class Service(Protocol):
    """A background service hosted by the engine."""

    name: str

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None:
        """Finish in-flight work within `grace` seconds, then release everything."""
        ...

    def state(self) -> ServiceState: ...

    async def status(self) -> dict[str, Any]:
        """`state`, `last_run`, `next_run` (ISO 8601 or None) and service-specific figures."""
        ...


ServiceFactory = Callable[["Engine"], Service]


class ServiceRegistry:
    """Ordered name → factory. The engine builds every registered service it is asked to run."""

    def __init__(self) -> None:
        self._factories: dict[str, ServiceFactory] = {}

    def register(self, name: str, factory: ServiceFactory) -> None:
        if name in self._factories:
            raise ValueError(f"service {name!r} is already registered")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return list(self._factories)

    def factory(self, name: str) -> ServiceFactory:
        return self._factories[name]
