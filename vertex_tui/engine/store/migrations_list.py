"""Migration file names and numbering, shared by the SQLite and PostgreSQL runners."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from importlib.abc import Traversable

MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def parse_migrations(entries: Iterable[tuple[str, Traversable]]) -> list[tuple[int, str, str]]:
    """(version, name, sql) of the migration files among `entries` (name, file), in order."""
    found = []
    for name, entry in entries:
        match = MIGRATION_NAME.match(name)
        if match:
            found.append((int(match.group(1)), name, entry.read_text(encoding="utf-8")))
    found.sort()
    check_numbering([(number, name) for number, name, _ in found])
    return found


def check_numbering(migrations: Sequence[tuple[int, str]]) -> None:
    """Versions must run 1, 2, 3, ... with no gap and no number used twice: two branches that
    each added a migration 0007 would otherwise apply one and silently skip the other."""
    for expected, (number, name) in enumerate(sorted(migrations), 1):
        if number != expected:
            raise RuntimeError(f"migration {name}: expected version {expected}, found {number}"
                               " (two migrations share a number, or one is missing)")
