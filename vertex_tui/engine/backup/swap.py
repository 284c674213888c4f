"""The blocking steps of a restore, run in a worker thread: check that a file is a vertex-tui
database this release can open, copy it to a private, checked temp file beside the live
database, and swap that copy in, keeping the replaced file aside."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vertex_tui.engine.backup.files import publish, remove, temp_path
from vertex_tui.engine.backup.manager import (
    SMOKE_TABLES,
    BackupFailed,
    check_database,
    database_file_of,
    smoke_query,
)
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.store import sqlitefile
from vertex_tui.engine.store.db import create_private, load_migrations


def schema_problem(path: Path) -> str | None:
    """None if `path` is a vertex-tui database of a schema this release can open (the same
    migrations, none newer), else why not. Read-only."""
    try:
        tables, applied = sqlitefile.schema_history(path)
    except (sqlitefile.DatabaseError, ValueError, TypeError) as exc:
        return f"not a vertex-tui database (its schema cannot be read: {exc})"
    return history_problem(tables, applied, load_migrations())


def history_problem(tables: set[str] | None, applied: list[tuple[int, str]],
                    migrations: list[tuple[int, str, str]]) -> str | None:
    """`schema_problem` of a database with `tables` (None: not known yet) and the `applied`
    migrations, against this release's `migrations` (of its dialect)."""
    if not applied:
        return "not a vertex-tui database (it has no vertex-tui schema history)"
    known = {number: name for number, name, _ in migrations}
    newest, top = max(known), applied[-1][0]
    if top > newest:
        return (f"its schema version {top} is newer than this release knows ({newest}); "
                "restore it with the release that made it")
    if [number for number, _ in applied] != list(range(1, top + 1)):
        return "not a vertex-tui database (its schema history has gaps)"
    for number, name in applied:
        if known[number] != name:
            return (f"not a vertex-tui database of this release's schema (migration {number}"
                    f" is {name!r}, expected {known[number]!r})")
    if tables is None:
        return None
    missing = sorted({*SMOKE_TABLES, "leases", "audit_log"} - tables)
    if missing:
        return f"not a usable vertex-tui database (missing tables: {', '.join(missing)})"
    return None


class NotRestorable(UsageError):
    """A sound file that this release must not put in place of its database (exit 2)."""


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

