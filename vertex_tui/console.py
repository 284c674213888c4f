"""Running the console: hosting an engine, attached to one elsewhere, or on demo data."""

from __future__ import annotations

import logging
from pathlib import Path

from vertex_tui.bridge import ConsoleLogHandler
from vertex_tui.engine import Engine, Settings
from vertex_tui.engine.email.queue import TransportFactory
from vertex_tui.logsetup import TextFormatter


def console_logging(settings: Settings) -> ConsoleLogHandler:
    """The console owns the terminal: logs go to a file beside the database and the Log
    screen, never to stderr."""
    root = logging.getLogger()
    root.handlers[:] = []
    root.setLevel(logging.INFO)
    log_file = settings.db_path.parent / "vertex-tui.log"
    try:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(TextFormatter())
        root.addHandler(file_handler)
    except OSError:
        pass
    handler = ConsoleLogHandler()
    root.addHandler(handler)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return handler


async def run_console(settings: Settings, *, attached: bool = False, read_only: bool = False,
                      transport_factory: TransportFactory | None = None,
                      run: list[str] | None = None) -> int:
    from vertex_tui.app import VertexApp

    handler = console_logging(settings)
    services: list[str] | None = [] if attached else run
    async with Engine(settings, run=services, transport_factory=transport_factory) as engine:
        app = VertexApp(engine, attached=attached, read_only=read_only, log_handler=handler)
        await app.run_async()
    return 0


def default_log_path(settings: Settings) -> Path:
    return settings.db_path.parent / "vertex-tui.log"
