"""A database of another program named by the configuration is refused untouched.

An operator's mistyped VERTEX_DB_PATH (a shop's SQLite file) or VERTEX_DATABASE_URL (an
application's PostgreSQL database) used to be taken as vertex-tui's: `status`, `doctor`,
`email stats` answered "ok" and had added vertex-tui's 67 schema objects to it (and switched
the SQLite file to WAL mode), while `backup restore` refused the same file as "not a vertex-tui
database". Every command, and the engine, now stops at once: exit 2, one line naming the file
and its tables, the file byte for byte as it was. A new file or an empty database is still
created and migrated, as on a first start.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import psycopg

# What an operator runs first against a new setting; `--no-ui` is the engine itself.
COMMANDS = [
    ("status",),
    ("status", "--json"),
    ("doctor",),
    ("email", "stats"),
    ("jobs",),
    ("email", "enqueue", "--to", "a@example.com", "--subject", "s", "--body", "b"),
    ("--no-ui",),
]


def assert_refused(result: Any, args: tuple[str, ...], label: str, variable: str) -> None:
    assert result.returncode == 2, f"{args}: exit {result.returncode}: {result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"{args}: {result.stderr}"
    assert label in lines[0] and "not a vertex-tui database" in lines[0], lines[0]
    assert "customers, orders" in lines[0] and variable in lines[0], lines[0]
    assert result.stdout == ""


def shop_file(path: Path) -> Path:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
        conn.commit()
    return path


def test_an_sqlite_file_of_another_program_is_refused_untouched(cli: Any) -> None:
    shop = shop_file(cli.path / "shop.db")
    before = shop.read_bytes()
    for args in COMMANDS:
        result = cli.run(*args, timeout=60, VERTEX_DB_PATH=str(shop))
        assert_refused(result, args, str(shop), "VERTEX_DB_PATH")
    assert shop.read_bytes() == before
    assert sorted(p.name for p in cli.path.iterdir()) == ["shop.db"]  # no -wal, no -shm
    # vertex-tui's own database, new or existing, still opens.
    cli.ok("email", "enqueue", "--to", "a@example.com", "--subject", "s", "--body", "b")
    assert cli.json("email", "stats")["pending"] == 1


def test_a_postgresql_database_of_another_program_is_refused_untouched(
    cli: Any, pg_server: Any,
) -> None:
    url = pg_server.database(migrated=False)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE customers (id serial PRIMARY KEY, name text)")
            conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, customer integer)")
            conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
        for args in COMMANDS:
            result = cli.run(*args, timeout=60, VERTEX_DATABASE_URL=url)
            assert_refused(result, args, "database ", "VERTEX_DATABASE_URL")
        with psycopg.connect(url, autocommit=True) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " ORDER BY tablename").fetchall()]
            names = conn.execute("SELECT name FROM customers").fetchall()
        assert tables == ["customers", "orders"] and names == [("Ada",)]
        assert not cli.db_path.exists()  # nothing fell back to SQLite either
    finally:
        pg_server.drop(url)


def test_an_empty_postgresql_database_is_still_migrated(cli: Any, pg_server: Any) -> None:
    url = pg_server.database(migrated=False)
    try:
        result = cli.run("email", "stats", "--json", VERTEX_DATABASE_URL=url)
        assert result.returncode == 0, result.stderr
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert row is not None and row[0] > 0
    finally:
        pg_server.drop(url)
