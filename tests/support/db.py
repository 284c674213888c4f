"""The one way tests read or change a database behind the engine's back, on either backend.

`query(target, sql, params)`: the rows of one statement as tuples, over a short-lived
connection of its own, committed. `target` is a `Settings` (its PostgreSQL URL if it has one,
else its SQLite file), a SQLite file's `Path`, or a `postgresql://` URL. SQL is written as the
store writes it (`?` and `:name` placeholders) and runs unchanged on both.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from vertex_tui.engine.settings import Settings

Target = Settings | Path | str


def database_of(target: Target) -> Path | str:
    """A SQLite file's path, or a PostgreSQL URL (password included: tests only)."""
    if isinstance(target, Settings):
        url = target.database_url
        return target.db_path if url is None else url.reveal()
    if isinstance(target, str) and not target.startswith(("postgresql://", "postgres://")):
        return Path(target)
    return target


def query(target: Target, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    database = database_of(target)
    if isinstance(database, Path):
        with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn, conn:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    import psycopg

    from vertex_tui.engine.store.pg import translate

    with psycopg.connect(database, autocommit=True) as pg:
        cursor = pg.execute(translate(sql) if params else sql, params or None)
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []


def backend_url(request: pytest.FixtureRequest) -> str | None:
    """For fixtures that start processes (CLI runs, engines): the URL of a fresh PostgreSQL
    database (`pg_url`) when the requesting test runs on PostgreSQL: it names `backend` and
    this is its PostgreSQL run, or it names `pg_url` itself. Else None (SQLite)."""
    names = request.fixturenames
    if "backend" in names:
        on_pg = request.getfixturevalue("backend") == "postgresql"
    else:
        on_pg = "pg_url" in names
    return str(request.getfixturevalue("pg_url")) if on_pg else None
