"""PostgreSQL migrations: `migrations/postgresql/NNNN_*.sql`, the same versions as SQLite's.

Applied under a session-level advisory lock (`pg_advisory_lock`), so engines starting at the
same time on several hosts apply each migration once: the second waits for the first and then
finds nothing left to do. Each migration runs in its own transaction (PostgreSQL DDL is
transactional: a failed migration leaves no half-made schema). A database whose schema is
newer than this release is refused, as on SQLite.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import Any

import psycopg

from vertex_tui.engine.errors import ForeignDatabase, StoreError
from vertex_tui.engine.store.migrations_list import parse_migrations

log = logging.getLogger(__name__)

# pg_advisory_lock key of vertex-tui's migrations (any constant; ASCII "vtx" "mig").
MIGRATION_LOCK = 0x767478_6D6967


def load_migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every PostgreSQL migration shipped with the package."""
    folder = resources.files("vertex_tui.engine.store") / "migrations" / "postgresql"
    return parse_migrations((entry.name, entry) for entry in folder.iterdir())


def migrate_connection(conn: psycopg.Connection[Any], label: str) -> int:
    """Apply pending migrations on `conn` (autocommit), under the advisory lock; returns the
    schema version."""
    migrations = load_migrations()
    newest = migrations[-1][0] if migrations else 0
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        foreign = foreign_tables(conn)
        if foreign:
            raise ForeignDatabase(f"database {label}", foreign, "VERTEX_DATABASE_URL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at double precision NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        version = int(row[0] or 0) if row else 0
        if version > newest:
            raise StoreError(
                f"database {label} has schema version {version}, newer than this vertex-tui"
                f" knows ({newest}): it was used by a newer release; run that release")
        for number, name, script in migrations:
            if number <= version:
                continue
            log.info("applying migration %s", name)
            with conn.transaction():
                conn.execute(script.encode())  # no parameters: several statements at once
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at)"
                    " VALUES (%s, %s, %s)", (number, name, time.time()))
            version = number
        return version
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def foreign_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """The tables of the connection's schema if they are another program's (tables, and no
    `schema_migrations`, which vertex-tui creates before anything else); [] otherwise."""
    names = [str(r[0]) for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
        " ORDER BY c.relname").fetchall()]
    return [] if not names or "schema_migrations" in names else names


def migrate_url(url: str, label: str | None = None) -> int:
    """Connect to `url`, migrate, disconnect (blocking); returns the schema version."""
    from vertex_tui.engine.store.pgurl import display_url

    shown = label or display_url(url)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            return migrate_connection(conn, shown)
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreError(f"cannot migrate database {shown}: {first}") from None
