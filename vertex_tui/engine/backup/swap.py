"""The blocking steps of a restore, run in a worker thread: copy a backup to a private temp
file beside the live database, check that the copy is sound and a vertex-tui database this
release can open (schema.py), and swap that copy in, keeping the replaced file aside."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vertex_tui.engine.backup.files import publish, remove, temp_path
from vertex_tui.engine.backup.manager import (
    BackupFailed,
    NotRestorable,
    check_database,
    database_file_of,
    smoke_query,
)
from vertex_tui.engine.backup.schema import schema_problem
from vertex_tui.engine.store import sqlitefile
from vertex_tui.engine.store.db import create_private


def prepare_restore(backup: Path, db_path: Path) -> Path:
    """Copy the database in `backup` to a private temp file beside `db_path` and check the
    copy (integrity, and that it is a vertex-tui database this release can open); returns
    the temp file. The live database is not touched; on any failure nothing is left."""
    source = database_file_of(backup)
    tmp = temp_path(db_path)
    try:
        create_private(tmp)
        sqlitefile.copy_into(source, tmp, journal_mode="WAL")
        problem = check_database(tmp)
        if problem:
            raise BackupFailed(f"restored copy failed its check: {problem}")
        problem = schema_problem(tmp)
        if problem:
            raise NotRestorable(f"{backup} is {problem}")
    except BaseException:
        discard_temp(tmp)
        raise
    return tmp


def discard_temp(tmp: Path) -> None:
    remove(tmp)
    for suffix in ("-journal", "-wal", "-shm"):
        remove(Path(f"{tmp}{suffix}"))


def free_aside(db_path: Path, stamp: str) -> Path:
    """`<file>.before-restore-<stamp>`, or `-<stamp>-2`, `-3`... when a restore of the same
    second kept one already: a restore takes well under a second, and replacing that file
    would lose the only copy of the data it replaced."""
    aside = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
    n = 1
    while aside.exists() or Path(f"{aside}-wal").exists():
        n += 1
        aside = db_path.with_name(f"{db_path.name}.before-restore-{stamp}-{n}")
    return aside


def swap_in(tmp: Path, db_path: Path, stamp: str,
            as_found: bool = False) -> tuple[Path, dict[str, Any]]:
    """Put the checked copy `tmp` in place of `db_path`; the current file is kept aside
    (private, like the backups), self-contained, or with `as_found` (a damaged file, kept
    for forensics) byte for byte with its WAL beside it. Returns where it went and the
    smoke query of the result."""
    aside = free_aside(db_path, stamp)
    try:
        if db_path.exists():
            folded = False
            if not as_found:
                try:
                    sqlitefile.fold_wal(db_path)
                    folded = True
                except sqlitefile.DatabaseError:
                    pass  # damaged after all: keep its WAL with it
            os.replace(db_path, aside)
            os.chmod(aside, 0o600)
            for suffix in ("-wal", "-shm"):
                extra = Path(f"{db_path}{suffix}")
                if not folded and suffix == "-wal" and extra.exists():
                    os.replace(extra, Path(f"{aside}{suffix}"))
                extra.unlink(missing_ok=True)
        publish(tmp, db_path)
    except BaseException:
        discard_temp(tmp)
        raise
    discard_temp(tmp)  # only the copy's -wal/-shm, if any: the copy itself is in place
    return aside, smoke_query(db_path)

