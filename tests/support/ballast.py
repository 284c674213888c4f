"""Make a test database big, so that copying it (a backup, a restore) takes long enough to be
caught in the middle: a table `ballast` of `mib` rows of 1 MiB each."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from support.db import Target, database_of, query


def add_ballast(target: Target, mib: int) -> None:
    """On SQLite, zero-filled blobs (the file is checkpointed: all of it in the main file);
    on PostgreSQL, random hex text (pg_dump would compress zeros away to nothing)."""
    database = database_of(target)
    if isinstance(database, Path):
        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as conn:
            conn.execute("CREATE TABLE ballast (b BLOB)")
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO ballast VALUES (zeroblob(?))", [(1 << 20,)] * mib)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    query(database, "CREATE TABLE ballast (b text)")
    query(database, "INSERT INTO ballast SELECT (SELECT string_agg(md5(random()::text || i || j),"
                    " '') FROM generate_series(1, 32768) AS j) FROM generate_series(1, ?) AS i",
          (mib,))
