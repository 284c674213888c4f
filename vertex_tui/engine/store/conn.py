"""The connection protocol the store's query modules are written against.

Store functions take a `Database` (one statement: `read`, `read_one`, `write`, `write_many`)
or, inside `Database.transaction()`, a `Connection`: the three calls below and nothing of the
driver behind them (`Database.run_transaction` hands a hot path a `SyncConnection`). `db.py`
is the one module that knows aiosqlite (`SqliteConnection`); a PostgreSQL backend implements
the same calls over its own driver (`pg.py`). Every call takes a statement as a plain string
or as a `dialect.Sql` (one text per dialect; each backend runs its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vertex_tui.engine.store.dialect import Statement

# Positional (`?`) or named (`:name`) parameters of one statement.
Params = Sequence[Any] | Mapping[str, Any]


class Row(Protocol):
    """A result row: by position (`row[0]`) or by column name (`row["id"]`)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def keys(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Result:
    """What a statement changed: `rowcount` rows; `lastrowid` of an INSERT (None if none)."""

    rowcount: int
    lastrowid: int | None = None


class Connection(Protocol):
    """A connection inside one open write transaction (`Database.transaction()`)."""

    async def execute(self, sql: Statement, params: Params = ()) -> Result:
        """Run one statement; what it changed."""

    async def execute_fetchall(self, sql: Statement, params: Params = ()) -> list[Row]:
        """Run one statement; all its rows (a query, or `RETURNING`)."""

    async def executemany(self, sql: Statement, rows: Iterable[Sequence[Any]]) -> Result:
        """Run one statement once per parameter row; `rowcount` is the total changed."""


class Cursor(Protocol):
    """What a statement run by `SyncConnection.execute` gives back."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...


class SyncConnection(Protocol):
    """The writer connection as `Database.run_transaction` hands it to a function that runs
    on the driver's own thread: a hot path's statements in one hop, no await between them."""

    def execute(self, sql: Statement, parameters: Params = (), /) -> Cursor: ...
