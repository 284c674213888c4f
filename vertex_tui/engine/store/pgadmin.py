"""PostgreSQL administration the store needs besides its own database: create a database
(from a template), drop one, find the scratch databases of restores and drills, read the
server's version. Sync psycopg, autocommit (CREATE
DATABASE cannot run in a transaction). Used by the test server helper
(`vertex_tui.testing.pgserver`) and by backup drills (restore into a temporary database).
"""

from __future__ import annotations

import os
import re
import socket

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


# A scratch database (a restore's or a drill's) says whose it is in its comment: the database
# it copies and the process making it, so `doctor` can tell a killed process's leftover.
_SCRATCH_NOTE = "vertex-tui scratch copy of {live} by {holder}"
_SCRATCH = re.compile(r"vertex-tui scratch copy of (?P<live>.+) by (?P<holder>[^ ]+)")


def scratch_note(live: str) -> str:
    """The comment of a scratch copy of database `live` made by this process."""
    return _SCRATCH_NOTE.format(live=live, holder=f"{socket.gethostname()}:{os.getpid()}")


def create_database(url: str, name: str, *, template: str | None = None,
                    note: str | None = None) -> str:
    """Create database `name` on the server of `url` (as a copy of `template` if given,
    commented with `note`); returns the URL of the new database."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with _admin(url) as conn:
        try:
            conn.execute(statement)
            if note is not None:
                conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}")
                             .format(sql.Identifier(name), sql.Literal(note)))
        except psycopg.Error as exc:
            raise StoreError(f"cannot create database {name}: {_first_line(exc)}") from None
    return with_database(url, name)


def scratch_databases(url: str, live: str) -> list[tuple[str, str]]:
    """(name, holder "host:pid") of each scratch database made from database `live`."""
    with _admin(url) as conn:
        rows = conn.execute("SELECT datname, shobj_description(oid, 'pg_database')"
                            " FROM pg_database WHERE shobj_description(oid, 'pg_database')"
                            " LIKE 'vertex-tui scratch copy of %' ORDER BY datname").fetchall()
    found = []
    for name, note in rows:
        match = _SCRATCH.fullmatch(str(note))
        if match and match["live"] == live:
            found.append((str(name), match["holder"]))
    return found


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
