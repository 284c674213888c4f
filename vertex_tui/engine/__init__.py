"""The vertex-tui engine: services, storage, SMTP and clock. Never imports the console."""

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
