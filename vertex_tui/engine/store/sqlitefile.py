"""Blocking operations on a whole SQLite file, for backups, drills and restores (run in a
worker thread): an online copy, its checks, a schema look, folding the WAL in.

Each opens its own short-lived connection; the live engine's connections are in db.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

SQLITE_VERSION = sqlite3.sqlite_version
DatabaseError = sqlite3.DatabaseError


def _read_only(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    # immutable: a read-only look that leaves no -wal/-shm beside the file
    flags = "mode=ro&immutable=1" if immutable else "mode=ro"
    return sqlite3.connect(f"file:{path}?{flags}", uri=True)


def online_copy(src: Path, dest: Path, *, pages: int,
                progress: Callable[[int, int, int], object]) -> None:
    """Copy `src` into the new file `dest` while writers go on, `pages` at a time
    (`progress(status, remaining, total)` after each step may raise to abort).

    The source connection holds one read transaction across all steps, so the copy is a
    consistent snapshot that finishes however busy the writers are (in WAL mode they are
    never blocked; without it, another connection's write would restart the copy).
    """
    source = sqlite3.connect(src, isolation_level=None, timeout=30)
    target = sqlite3.connect(dest, isolation_level=None)
    try:
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()
        source.backup(target, pages=pages, progress=progress, sleep=0.05)
        source.execute("COMMIT")
        # A self-contained file: no -wal beside it when it is opened later.
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()


def copy_into(source: Path, target: Path, *, journal_mode: str | None = None) -> None:
    """Copy the database `source` (read-only) into `target`, then set its journal mode."""
    dest = sqlite3.connect(target)
    try:
        src = _read_only(source)
        try:
            src.backup(dest)
        finally:
            src.close()
        if journal_mode is not None:
            dest.execute(f"PRAGMA journal_mode={journal_mode}")
    finally:
        dest.close()


def integrity_problems(path: Path) -> list[str]:
    """`PRAGMA integrity_check` of `path`: [] if it is sound, else (the first) findings.
    Raises `DatabaseError` for a file SQLite cannot read."""
    conn = _read_only(path, immutable=True)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return [] if [tuple(r) for r in rows] == [("ok",)] else [str(r[0]) for r in rows]


def smoke(path: Path, tables: Sequence[str]) -> tuple[int | None, dict[str, int]]:
    """Schema version and row counts of `tables` (raises if the file is unusable)."""
    conn = _read_only(path)
    try:
        version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        counts = {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                  for t in tables}
    finally:
        conn.close()
    return version, counts


def schema_history(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """The tables of `path` and its applied migrations (version, name), read-only."""
    conn = _read_only(path, immutable=True)
    try:
        tables = {str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        applied = [] if "schema_migrations" not in tables else [
            (int(r[0]), str(r[1])) for r in conn.execute(
                "SELECT version, name FROM schema_migrations ORDER BY version")]
    finally:
        conn.close()
    return tables, applied


def fold_wal(path: Path) -> None:
    """Fold the WAL into the main file, which is then complete by itself."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
