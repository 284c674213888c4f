"""Statements whose text differs between SQLite and PostgreSQL.

Store SQL is written once, in the common subset, with `?` and `:name` placeholders; the
PostgreSQL backend translates the placeholders (`pg.py`). Where the two dialects need
different text (an upsert that SQLite spells `INSERT OR IGNORE`, `FOR UPDATE SKIP LOCKED`,
`strftime` against `to_char`, ...) the statement is a named `Sql` with both texts:

    CLAIM = Sql("email.claim", sqlite="UPDATE ... LIMIT ?",
                postgresql="UPDATE ... FOR UPDATE SKIP LOCKED ...")
    await db.read(CLAIM, (...))          # every Database and Connection call takes str | Sql

Each `Sql` is registered by name when created (a module-level constant); a name used twice
for different texts is an error at import. `tests/engine/test_pg_dialect.py` checks that
every registered statement has both texts and that each parses on its own database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgresql")

REGISTRY: dict[str, Sql] = {}


@dataclass(frozen=True, slots=True)
class Sql:
    """One named statement, in each dialect's own text."""

    name: str
    sqlite: str
    postgresql: str

    def __post_init__(self) -> None:
        for dialect in DIALECTS:
            if not getattr(self, dialect).strip():
                raise ValueError(f"statement {self.name}: the {dialect} text is empty")
        known = REGISTRY.get(self.name)
        if known is not None and known != self:
            raise ValueError(f"statement name {self.name} is used twice for different SQL")
        REGISTRY[self.name] = self

    def text(self, dialect: Dialect) -> str:
        return self.sqlite if dialect == "sqlite" else self.postgresql


Statement = str | Sql


def text_of(statement: Statement, dialect: Dialect) -> str:
    """The text to run on `dialect`: a plain string as it is, an `Sql` its own variant."""
    return statement if isinstance(statement, str) else statement.text(dialect)
