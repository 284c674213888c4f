"""`/` on a table: the search language of `engine/search.py`, matched in memory against the
rows a screen already holds (no SQL; the Email screen searches through the engine instead).

A screen mixes in `TableSearchMixin`, yields a `TableSearch` naming its table, and binds
`slash` to `search` and `escape` to `clear_search`. Terms the table cannot answer (`to:` on
the backups table) and bad terms are one line under the box; the filter shown stays. A table
with terms of its own names them (`keys`, e.g. the Jobs screen's `service:` and `paused:`)
and gives each row's values in `StableTable.named`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Static

from vertex_tui.engine.search import SearchError, parse
from vertex_tui.widgets.tables import StableTable


def search_binding(tooltip: str) -> Binding:
    """`/` opens the screen's search box. A priority binding: it runs as the key arrives, so
    the box has the focus before the keys typed right after it are routed (type-ahead: with
    an ordinary binding they went to the table, and the `b` of "backup" switched screens)."""
    return Binding("slash", "search", "Search", tooltip=tooltip, priority=True)


def open_box(box: Input, shown: Widget) -> None:
    """Show `shown` (the box or its container) and focus `box` at once (not with focus(): a
    callback queued behind the keys already typed). `/` typed in the box is text: the binding
    steps aside (SkipAction) and the key reaches the box after those before it."""
    if box.screen.focused is box:  # (not has_focus: set when the Focus event is handled)
        raise SkipAction  # the key goes on to the box, in its turn

    shown.add_class("-shown")
    box.screen.set_focus(box)


class TableSearch(Vertical):
    """A hidden search box and its error line for the table `target` (a CSS selector)."""

    DEFAULT_CSS = """
    TableSearch { height: auto; display: none; }
    TableSearch.-shown { display: block; }
    TableSearch Input { margin: 0 1; }
    TableSearch .search-error { height: auto; max-height: 3; margin: 0 2; color: $error;
                                display: none; }
    TableSearch .search-error.-shown { display: block; }
    """

    class Changed(Message):
        """The table's filter was applied or cleared (a screen may redraw a count)."""

    def __init__(self, target: str, where: str, *, keys: Sequence[str] | None = None,
                 services: Callable[[], Iterable[str]] | None = None,
                 placeholder: str = "text status:…") -> None:
        super().__init__(classes="table-search")
        self.target = target
        self.where = where  # "the backups table": named in "to: does not apply to ..."
        self.keys = keys  # the table's own terms (None: status: and id: where they apply)
        self.services = services  # the names `service:` accepts, when asked
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        yield Input(placeholder=f"{self.placeholder} · Enter applies, Esc clears")
        yield Static("", classes="search-error")

    @property
    def table(self) -> StableTable:
        return self.screen.query_one(self.target, StableTable)

    def open(self) -> None:
        open_box(self.query_one(Input), self)

    @on(Input.Submitted)
    def apply(self, event: Input.Submitted) -> None:
        event.stop()
        error = self.query_one(".search-error", Static)
        table = self.table
        try:
            if self.keys is not None:
                query = parse(event.value, statuses=None, keys=self.keys,
                              services=self.services() if self.services else None)
            else:
                query = parse(event.value, statuses=None)
                keys = (("status",) if table.status_column is not None else ()) + (
                    ("id",) if table.id_keys else ())
                query.check_applies(keys, self.where)
        except SearchError as exc:
            error.update(str(exc))
            error.add_class("-shown")
            return
        error.remove_class("-shown")
        table.set_query(query)
        self.set_class(not query.empty, "-shown")
        table.focus()
        self.post_message(self.Changed())

    def clear(self) -> None:
        self.query_one(Input).value = ""
        self.query_one(".search-error", Static).remove_class("-shown")
        self.remove_class("-shown")
        self.table.set_query(None)
        self.table.focus()
        self.post_message(self.Changed())


class TableSearchMixin:
    """`/` and Esc for the screen's `TableSearch` (the one whose table has the focus, else
    the first)."""

    def _table_search(self) -> TableSearch | None:
        boxes: list[TableSearch] = list(self.query(TableSearch))  # type: ignore[attr-defined]
        focused = getattr(self, "focused", None)
        for box in boxes:
            if focused is not None and focused is box.table:
                return box
        return boxes[0] if boxes else None

    def action_search(self) -> None:
        box = self._table_search()
        if box is not None:
            box.open()

    def action_clear_search(self) -> None:
        for box in self.query(TableSearch):  # type: ignore[attr-defined]
            if box.has_class("-shown") or box.table.filter_query is not None:
                box.clear()
