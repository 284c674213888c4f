"""PostgreSQL administration the store needs besides its own database: create a database
(from a template), drop one, read the server's version. Sync psycopg, autocommit (CREATE
DATABASE cannot run in a transaction). Used by the test server helper
(`vertex_tui.testing.pgserver`) and by backup drills (restore into a temporary database).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from vertex_tui.engine.errors import StoreError
from vertex_tui.engine.store.pgurl import display_url, with_database


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {display_url(url)}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def create_database(url: str, name: str, *, template: str | None = None) -> str:
    """Create database `name` on the server of `url` (as a copy of `template` if given);
    returns the URL of the new database."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with _admin(url) as conn:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            raise StoreError(f"cannot create database {name}: {_first_line(exc)}") from None
    return with_database(url, name)


def drop_database(url: str, name: str) -> None:
    """Drop database `name` (if it exists), closing its sessions first."""
    with _admin(url) as conn:
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise StoreError(f"cannot drop database {name}: {_first_line(exc)}") from None


def server_version(url: str) -> int:
    """The server's version number, e.g. 150010 for 15.10."""
    with _admin(url) as conn:
        return int(conn.info.server_version)
