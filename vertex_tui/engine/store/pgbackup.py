"""The SQL of backups and restores on PostgreSQL besides the live engine's: the smoke query and
schema look of a restored database, sessions and renames for a restore's swap, and carrying
the backup records over from the replaced database. Sync psycopg (a worker thread), each
call on its own short-lived connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg
from psycopg import sql

from vertex_tui.engine.errors import StoreError
from vertex_tui.engine.store.pgadmin import _admin
from vertex_tui.engine.store.pgadmin import _first_line as _line

DbConnection = psycopg.Connection[tuple[Any, ...]]


def _connect(url: str) -> DbConnection:
    return cast(DbConnection, _admin(url))


DatabaseError = psycopg.Error


def smoke(url: str, tables: Sequence[str]) -> tuple[int | None, dict[str, int]]:
    """Schema version and row counts of `tables` in the database at `url`."""
    with _connect(url) as conn:
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        counts = {}
        for table in tables:
            found = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(table))).fetchone()
            counts[table] = int(found[0]) if found else 0
    return (None if row is None or row[0] is None else int(row[0])), counts


def schema_history(url: str) -> tuple[set[str], list[tuple[int, str]]]:
    """The tables of the database at `url` (schema `public`) and its applied migrations."""
    with _connect(url) as conn:
        tables = {str(r[0]) for r in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")}
        applied = [] if "schema_migrations" not in tables else [
            (int(r[0]), str(r[1])) for r in conn.execute(
                "SELECT version, name FROM schema_migrations ORDER BY version")]
    return tables, applied


def other_sessions(url: str) -> int:
    """Close every other session on the database of `url` (consoles, idle pooled connections
    of stopped engines); returns how many there were."""
    with _connect(url) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
    return len(rows)


def rename_database(admin_url: str, old: str, new: str) -> None:
    """`ALTER DATABASE old RENAME TO new`, from the maintenance database of `admin_url`,
    closing the sessions still on `old` first (they would make the rename fail)."""
    with _connect(admin_url) as conn:
        try:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = %s AND pid <> pg_backend_pid()", (old,))
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(old), sql.Identifier(new)))
        except psycopg.Error as exc:
            raise StoreError(f"cannot rename database {old} to {new}: {_line(exc)}") from None


def exists(admin_url: str, name: str) -> bool:
    with _connect(admin_url) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (name,)).fetchone() is not None


def _columns(conn: DbConnection, table: str) -> list[str]:
    return [str(r[0]) for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name = %s ORDER BY ordinal_position", (table,))]


def carry_over(restored_url: str, previous_url: str, tables: Sequence[str],
               newer_only: str) -> dict[str, int]:
    """In the restored database, replace `tables` (children first) by the rows of the
    replaced one, and add the rows of `newer_only` whose id is above the restored copy's
    highest; identities are moved past the ids brought in. Returns rows per table."""
    counts: dict[str, int] = {}
    with _connect(previous_url) as old, _connect(restored_url) as new, new.transaction():
        for table in tables:
            new.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        for table in (*reversed(tables), newer_only):
            theirs = set(_columns(old, table))
            columns = [c for c in _columns(new, table) if c in theirs]
            names = sql.SQL(", ").join(map(sql.Identifier, columns))
            query = sql.SQL("SELECT {} FROM {}").format(names, sql.Identifier(table))
            params: tuple[Any, ...] = ()
            if table == newer_only:
                top = new.execute(sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(
                    sql.Identifier(table))).fetchone()
                query = sql.SQL("{} WHERE id > %s").format(query)
                params = (top[0] if top else 0,)
            rows = old.execute(query, params).fetchall()
            if rows:
                with new.cursor() as cur:
                    cur.executemany(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        sql.Identifier(table), names,
                        sql.SQL(", ").join(sql.Placeholder() * len(columns))), rows)
            new.execute(sql.SQL(
                "SELECT setval(pg_get_serial_sequence({t}, 'id'),"
                " greatest((SELECT max(id) FROM {i}), 1))").format(
                    t=sql.Literal(table), i=sql.Identifier(table)))
            counts[table] = len(rows)
    return counts
