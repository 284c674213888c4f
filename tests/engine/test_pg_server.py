"""The test PostgreSQL server helper: a real cluster, a migrated template, a database per test."""

from __future__ import annotations

import psycopg

from vertex_tui.engine.store.pgmigrate import load_migrations
from vertex_tui.testing.pgserver import PgServer


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_each_test_gets_a_migrated_database_of_its_own(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        conn.execute("INSERT INTO engine_flags (name, value, updated_at) VALUES ('x', '1', 0)")
    assert versions == [n for n, _, _ in load_migrations()] == list(range(1, 11))
    other = pg_server.database()
    try:
        with psycopg.connect(other) as conn:  # the insert above is not in the other copy
            assert conn.execute("SELECT count(*) FROM engine_flags").fetchone() == (0,)
    finally:
        pg_server.drop(other)
    with psycopg.connect(pg_server.admin_url) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert other.rsplit("/", 1)[1] not in names and pg_url.rsplit("/", 1)[1] in names


def test_an_empty_database_has_no_tables(pg_server: PgServer) -> None:
    url = pg_server.database(migrated=False)
    try:
        assert _tables(url) == set()
    finally:
        pg_server.drop(url)
    assert "email_jobs" in _tables(pg_server.database())
