"""The vertex-tui engine: services, storage, SMTP and clock. Never imports the console.

The public surface below is loaded on first use (`from vertex_tui.engine import Engine`), so
importing one submodule (`vertex_tui.engine.clock`) loads that module and what it imports,
not the whole engine; submodules import each other directly, never through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vertex_tui.engine.clock import Clock, FakeClock, SystemClock
    from vertex_tui.engine.engine import Engine
    from vertex_tui.engine.errors import (
        ConfigError,
        InvalidMessage,
        LeaseLost,
        NotFound,
        StoreError,
        UsageError,
        VertexError,
    )
    from vertex_tui.engine.events import Event, EventBus
    from vertex_tui.engine.settings import Secret, Settings

# public name -> the submodule defining it
_PUBLIC = {
    "Clock": "clock",
    "ConfigError": "errors",
    "Engine": "engine",
    "Event": "events",
    "EventBus": "events",
    "FakeClock": "clock",
    "InvalidMessage": "errors",
    "LeaseLost": "errors",
    "NotFound": "errors",
    "Secret": "settings",
    "Settings": "settings",
    "StoreError": "errors",
    "SystemClock": "clock",
    "UsageError": "errors",
    "VertexError": "errors",
}

__all__ = [
    "Clock",
    "ConfigError",
    "Engine",
    "Event",
    "EventBus",
    "FakeClock",
    "InvalidMessage",
    "LeaseLost",
    "NotFound",
    "Secret",
    "Settings",
    "StoreError",
    "SystemClock",
    "UsageError",
    "VertexError",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        # Also how `from vertex_tui.engine import events` finds a submodule not yet loaded.
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
