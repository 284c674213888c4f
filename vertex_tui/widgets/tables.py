"""A DataTable whose cursor stays on the same row (by key) when its rows are replaced.

Every console table is redrawn from a fresh snapshot (a refresh, a filter, an action). A
cursor kept by row *number* then points at whatever row now sits there: new mail arriving
above moves every job down one row, and `r` or Enter would act on a job the operator never
chose. `StableTable.show_rows` keeps the cursor on the row with the same key; when that row
has left the view, on its neighbour (`follow`).

Marks (Space on the Email screen) are kept by row key too: a marked job stays marked when it
moves, when a refresh or a page leaves it out of view, and comes back marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from textual.widgets import DataTable

from vertex_tui.engine.search import Query

Row = tuple[str, Sequence[object]]  # (key, cells)


def follow(old_keys: Sequence[str], old_index: int, new_keys: Sequence[str]) -> int | None:
    """Where the cursor goes when rows `old_keys` (cursor at `old_index`) become `new_keys`.

    The row with the same key, wherever it moved; if it left, the first row after it that
    is still shown (the one that took its place), else the nearest one before it (it was at
    the end); if none of the old rows is left, the same row number, within the table. None
    for an empty table.
    """
    if not new_keys:
        return None
    position = {key: index for index, key in enumerate(new_keys)}
    if 0 <= old_index < len(old_keys):
        for key in old_keys[old_index:]:
            if key in position:
                return position[key]
        for key in reversed(old_keys[:old_index]):
            if key in position:
                return position[key]
    return min(max(old_index, 0), len(new_keys) - 1)


MARK = "● "


class StableTable(DataTable[str]):
    """A DataTable redrawn with `show_rows`; the cursor follows its row's key. `marks`: the
    keys of marked rows (their first cell starts with a dot)."""

    _shown: list[Row] | None = None
    _marks_shown: frozenset[str] = frozenset()
    # An in-memory filter (`/` on tables other than email): rows whose cells match `filter_query`
    # are shown; `status_column` is the cell `status:` reads (None: the table has none).
    filter_query: Query | None = None
    status_column: int | None = None
    id_keys = False  # row keys are ids: `id:` applies
    # The cells free text looks in (None: all of them), and each row's values of the
    # table's own terms by row key (the Jobs screen's {"service": "email", "paused": "no"}).
    text_columns: tuple[int, ...] | None = None
    named: dict[str, Mapping[str, str]] | None = None
    _given: list[Row] | None = None

    _marks: set[str] | None = None

    @property
    def marks(self) -> set[str]:
        if self._marks is None:
            self._marks = set()
        return self._marks

    def _cells(self, key: str, cells: Sequence[object]) -> tuple[Any, ...]:
        if key in self.marks and cells:
            return (f"{MARK}{cells[0]}", *cells[1:])
        return tuple(cells)

    def toggle_mark(self) -> bool | None:
        """Mark or unmark the row under the cursor; its new state (None: no row)."""
        key = self.cursor_key
        if key is None:
            return None
        if key in self.marks:
            self.marks.discard(key)
        else:
            self.marks.add(key)
        self._redraw_marks()
        return key in self.marks

    def clear_marks(self) -> None:
        self.marks.clear()
        self._redraw_marks()

    def _redraw_marks(self) -> None:
        if self._shown is not None:
            self._marks_shown = frozenset()
            shown, self._shown = self._shown, None
            self.show_rows(shown)

    def set_query(self, query: Query | None) -> None:
        """Filter the rows given to `show_rows` (now and on every later refresh)."""
        self.filter_query = None if query is None or query.empty else query
        if self._given is not None:
            self.show_rows(self._given)

    def _matches(self, key: str, cells: Sequence[object]) -> bool:
        if self.filter_query is None:
            return True
        column = self.status_column
        texts = [str(c) for n, c in enumerate(cells)
                 if self.text_columns is None or n in self.text_columns]
        return self.filter_query.matches(
            texts,
            status=str(cells[column]) if column is not None and column < len(cells) else None,
            named=(self.named or {}).get(key, {}),
            row_id=int(key) if self.id_keys and key.isdigit() else None)

    def show_rows(self, rows: Sequence[Row]) -> None:
        """Replace every row (unless they are exactly those shown) keeping the cursor's row."""
        self._given = list(rows)
        if self.filter_query is not None:
            rows = [row for row in rows if self._matches(*row)]
        fresh: list[Row] = []
        seen: set[str] = set()
        for key, cells in rows:
            while key in seen:  # a key must be unique in a DataTable: never crash on a twin
                key += "'"
            seen.add(key)
            fresh.append((key, tuple(cells)))
        # The same rows as shown (an idle queue, every 2 s): keep the table. Rebuilding it
        # re-measures and re-renders every cell.
        marks = frozenset(self.marks)
        if fresh == self._shown and self.row_count == len(fresh) and marks == self._marks_shown:
            return
        old_keys = [str(row.key.value) for row in self.ordered_rows]
        old_index = self.cursor_row
        scroll_y = self.scroll_y
        self.clear()
        for key, cells in fresh:
            self.add_row(*self._cells(key, cells), key=key)
        self._shown = fresh
        self._marks_shown = marks
        target = follow(old_keys, old_index, [key for key, _ in fresh])
        if target is not None:
            # Keep the view where the operator left it, then make the cursor's row visible.
            self.scroll_to(y=scroll_y, animate=False, immediate=True)
            self.move_cursor(row=target, animate=False)

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor (None for an empty table)."""
        if self.row_count == 0:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return None if row_key.value is None else str(row_key.value)
