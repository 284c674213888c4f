"""SQLite storage: connection handling, pragmas, migrations, and one query module per service."""

from vertex_tui.engine.store.db import Database

__all__ = ["Database"]
