"""Whose database is in a backup: a vertex-tui database of a schema this release can open, or
not. Read-only and blocking (a worker thread runs it).

`verify` asks this of every database file and dump (of a dump before its checks, of a SQLite
file once it passed them, so a damaged file is told as damaged), so `backup verify` and
`backup restore` give a file that is not a vertex-tui database the same answer; restore asks
it again of the copy it would swap in.
"""

from __future__ import annotations

from pathlib import Path

from vertex_tui.engine.backup import pgdump
from vertex_tui.engine.store import sqlitefile
from vertex_tui.engine.store.db import load_migrations

SQLITE_MAGIC = b"SQLite format 3\x00"
NEITHER = "not a vertex-tui database (neither a SQLite database nor a pg_dump archive)"


def is_sqlite(path: Path) -> bool:
    """The file at `path` starts as a SQLite database does (whether it is sound is another
    question)."""
    try:
        with path.open("rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def schema_problem(path: Path, bin_dir: Path | None = None) -> str | None:
    """Why the SQLite file or pg_dump archive at `path` is not a vertex-tui database this
    release can open (the same migrations, none newer); None if it is one, and also when it
    cannot be read far enough to tell (damaged, truncated): its integrity check says why."""
    if pgdump.is_dump(path):
        from vertex_tui.engine.store import pgmigrate

        try:
            applied = pgdump.schema_history(path, bin_dir)
        except pgdump.DumpFailed:
            return None
        return history_problem(None, applied, pgmigrate.load_migrations())
    if not is_sqlite(path):
        return NEITHER
    try:
        tables, applied = sqlitefile.schema_history(path)
    except sqlitefile.DatabaseError:
        return None
    except (ValueError, TypeError) as exc:
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
    missing = sorted(set(pgdump.TABLES_NEEDED) - tables)
    if missing:
        return f"not a usable vertex-tui database (missing tables: {', '.join(missing)})"
    return None
