"""The engine's exceptions: one root, a few meaningful kinds.

The CLI maps `UsageError` subclasses to exit status 2 and every other `VertexError` to 1.
"""

from __future__ import annotations


class VertexError(Exception):
    """Root of every error the engine raises on purpose."""


class UsageError(VertexError):
    """Bad configuration or input: the caller must change something (exit 2)."""


class ConfigError(UsageError):
    """A setting has a value the engine cannot use."""

    def __init__(self, variable: str, value: str, expected: str) -> None:
        self.variable = variable
        self.value = value
        self.expected = expected
        super().__init__(f"{variable}={value!r} is invalid: expected {expected}")


class InvalidMessage(UsageError):
    """An email refused at enqueue time (bad address, CR/LF in a header, ...)."""


class NotFound(UsageError):
    """The record the caller named does not exist."""


class StoreError(VertexError):
    """The database cannot be used (not SQLite, corrupt, locked for too long)."""


class ForeignDatabase(StoreError, UsageError):
    """The database named by the configuration holds another program's tables and no
    vertex-tui schema history: opening it would migrate vertex-tui's schema into it. Refused
    untouched (exit 2: the setting must change)."""

    def __init__(self, label: str, tables: list[str], variable: str) -> None:
        self.tables = tables
        shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5
                                         else "")
        super().__init__(
            f"{label} is not a vertex-tui database (it holds other tables: {shown}, and no"
            f" vertex-tui schema history); refusing to add vertex-tui's schema to it: set"
            f" {variable} to vertex-tui's database, or to a new one")


class LeaseLost(VertexError):
    """A write was refused because this process no longer holds the lease it relied on."""
