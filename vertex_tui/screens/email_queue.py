"""Email queue: live counts, a paged jobs table by status and search, job detail, actions.

Search (`/`) is the one language of `engine/search.py`; a bad term is one line under the box
and the search shown is kept. Space marks jobs (by id, across refreshes and pages); `r`/`x`
act on the marked jobs (else the one under the cursor), `R`/`X` on all jobs matching the
current filter. Each confirmation names the count and the filter, and the action takes
exactly the ids read for it (the engine then touches only those still eligible).
"""

from __future__ import annotations

import json
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import DataTable, Header, Input, Static

from vertex_tui.engine.email.bulk import BULK_CAP, CANCELLABLE, RETRYABLE
from vertex_tui.engine.email.models import EmailJob
from vertex_tui.engine.search import SearchError, parse
from vertex_tui.screens.base import VertexScreen
from vertex_tui.timefmt import ago, precise_time, short_time, until
from vertex_tui.widgets.dialogs import ConfirmDialog, PromptDialog, TextDialog
from vertex_tui.widgets.keybar import Key, KeyBar
from vertex_tui.widgets.shorten import clip
from vertex_tui.widgets.table_search import open_box, search_binding
from vertex_tui.widgets.tables import StableTable

PAGE = 50
FILTERS = {"1": None, "2": "pending", "3": "sending", "4": "sent", "5": "failed",
           "6": "cancelled"}
TOTAL_CAP = 10_000  # the page line counts matches up to this ("10,000+ jobs")


class EmailQueueScreen(VertexScreen):
    """Every job, newest first, one page at a time."""

    AUTO_FOCUS = "#email-jobs"  # see VertexScreen.AUTO_FOCUS
    REFRESH_ON = frozenset({"EmailSent", "EmailFailed", "EmailEnqueued", "JobsRetried",
                            "JobsCancelled", "JobsCleanedUp", "QueuePaused", "QueueResumed"})
    BINDINGS = [
        Binding("1", "filter('1')", "All", tooltip="show all jobs"),
        Binding("2", "filter('2')", "Pending", tooltip="show pending jobs"),
        Binding("3", "filter('3')", "Sending", tooltip="show jobs claimed by a worker"),
        Binding("4", "filter('4')", "Sent", tooltip="show sent jobs"),
        Binding("5", "filter('5')", "Failed", tooltip="show failed jobs"),
        Binding("6", "filter('6')", "Cancelled", tooltip="show cancelled jobs"),
        search_binding("search: text, status:, to:, subject:, error:, id:, older:, newer:"),
        Binding("space", "toggle_mark", "Mark", tooltip="mark or unmark the job (r/x act on "
                "the marked ones)"),
        Binding("r", "retry_selected", "Retry",
                tooltip="retry the marked jobs, else the selected one (asks for several)"),
        Binding("R", "retry_all", "Retry all",
                tooltip="retry all failed jobs matching the filter (asks)"),
        Binding("x", "cancel_selected", "Cancel job",
                tooltip="cancel the marked jobs, else the selected one (asks)"),
        Binding("X", "cancel_all", "Cancel all",
                tooltip="cancel all pending or failed jobs matching the filter (asks)"),
        Binding("p", "toggle_pause", "Pause/resume",
                tooltip="pause or resume all delivery"),
        Binding("D", "drain", "Drain", tooltip="deliver all mail due now (asks)"),
        Binding("C", "cleanup", "Cleanup", tooltip="delete old finished mail (asks)"),
        Binding("enter", "detail", "Detail", show=False,
                tooltip="the job: headers, attempts, body"),
        Binding("right_square_bracket", "page(1)", "Next page", show=False),
        Binding("left_square_bracket", "page(-1)", "Prev page", show=False),
        Binding("escape", "clear_search", "Clear marks/search", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.status_filter: str | None = None
        self.search: str = ""
        self._pages: list[int | None] = [None]  # before_id of each page shown so far
        self._jobs: list[EmailJob] = []
        self.paused = False
        self._page_shown: tuple[str | None, str] | None = None
        self.total: int | None = None  # jobs matching the filter (at most TOTAL_CAP)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="email-counts")
        yield Input(placeholder="text status:failed to: subject: error: id: older:2h newer:15m"
                                " · Enter applies, Esc clears", id="email-search")
        yield Static("", id="email-search-error")
        table = StableTable(id="email-jobs", cursor_type="row", zebra_stripes=True)
        table.add_columns("ID", "Status", "Tries", "Updated", "To", "Subject", "Last error")
        yield table
        yield Static("", id="email-page")
        yield KeyBar()

    def footer_keys(self) -> list[Key]:
        # Most used first: at 80 columns the footer keeps what fits (then "? help", "q quit");
        # marking and cancel join from 100 columns (always in `?` help).
        wide = self.app.size.width >= 100
        return [Key("1-6", "filter"), Key("/", "search", "screen.search"),
                Key("r", "retry", "screen.retry_selected"),
                Key("R", "retry all", "screen.retry_all"),
                Key("p", "resume" if self.paused else "pause", "screen.toggle_pause"),
                Key("D", "drain", "screen.drain"), Key("C", "cleanup", "screen.cleanup"),
                *([Key("␣", "mark", "screen.toggle_mark"),
                   Key("x", "cancel", "screen.cancel_selected")] if wide else [])]

    def on_mount(self) -> None:
        # Textual then calls VertexScreen.on_mount itself (handlers run along the MRO): calling
        # it here too loaded every snapshot twice and set two refresh timers.
        self.query_one("#email-jobs", DataTable).focus()

    def on_resize(self) -> None:
        self.reload()  # the Subject and Last error columns take the width there is

    async def refresh_snapshot(self) -> None:
        stats = await self.engine.email.status()
        jobs = await self.engine.email.list_jobs(status=self.status_filter,
                                                 search=self.search or None, limit=PAGE,
                                                 before_id=self._pages[-1])
        self.total = await self.engine.email.count_matching(
            self.search, status=self.status_filter, cap=TOTAL_CAP)
        now = self.now()
        paused = stats["state"] == "paused"
        if paused != self.paused:
            self.paused = paused
            self.refresh_footer()  # "p pause" / "p resume"
        self.set_class(paused, "-paused")
        _update(self.query_one("#email-counts", Static), counts_line(stats, now))
        self._jobs = jobs
        to_w, subject_w, error_w = column_widths(
            self.size.width, len(str(jobs[0].id)) if jobs else 1)
        self.query_one("#email-jobs", StableTable).show_rows([
            (str(j.id), (str(j.id), j.status, str(j.attempts), short_time(j.updated_at, now),
                         clip(j.to, to_w), clip(j.subject, subject_w),
                         clip(j.last_error or "", error_w)))
            for j in jobs])
        page = page_line(len(self._pages), self.total, self.search,
                         len(self.query_one("#email-jobs", StableTable).marks))
        if (self.status_filter, page) != self._page_shown:  # an update re-lays the screen
            self._page_shown = (self.status_filter, page)
            # The count first: a narrow terminal cuts the end of the line (tabs, hints).
            self.query_one("#email-page", Static).update(
                Content.assemble(page, "  ", *filter_tabs(self.status_filter),
                                 "  [ ] pages · ⏎ detail"))

    def selected_job(self) -> EmailJob | None:
        """The job under the cursor, by the row's key (never by a stale index)."""
        key = self.query_one("#email-jobs", StableTable).cursor_key
        return next((j for j in self._jobs if str(j.id) == key), None)

    # ---- filtering and paging ---------------------------------------------------------------

    def action_filter(self, key: str) -> None:
        self.status_filter = FILTERS[key]
        self._pages = [None]
        self.reload()

    def action_page(self, step: int) -> None:
        if step > 0 and len(self._jobs) == PAGE:
            self._pages.append(self._jobs[-1].id)
        elif step < 0 and len(self._pages) > 1:
            self._pages.pop()
        else:
            return
        self.reload()

    def action_search(self) -> None:
        box = self.query_one("#email-search", Input)
        open_box(box, box)

    @on(Input.Submitted, "#email-search")
    def apply_search(self, event: Input.Submitted) -> None:
        error = self.query_one("#email-search-error", Static)
        try:
            parse(event.value)
        except SearchError as exc:  # one line under the box; the search shown stays
            error.update(str(exc))
            error.add_class("-shown")
            return
        error.update("")
        error.remove_class("-shown")
        self.search = event.value.strip()
        self._pages = [None]
        self.query_one("#email-jobs", DataTable).focus()
        self.query_one("#email-search", Input).set_class(bool(self.search), "-shown")
        self.reload()

    def action_clear_search(self) -> None:
        table = self.query_one("#email-jobs", StableTable)
        if table.marks and self.focused is table:  # Esc first unmarks, then clears the search
            table.clear_marks()
            self.reload()
            return
        self.query_one("#email-search-error", Static).remove_class("-shown")
        box = self.query_one("#email-search", Input)
        box.value = ""
        box.remove_class("-shown")
        if self.search:
            self.search = ""
            self._pages = [None]
            self.reload()
        self.query_one("#email-jobs", DataTable).focus()

    # ---- actions ------------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#email-jobs")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        # The row Enter was pressed on, even if a refresh lands before the detail opens.
        self.action_detail(None if event.row_key.value is None else str(event.row_key.value))

    @work(exit_on_error=False)
    async def action_detail(self, key: str | None = None) -> None:
        job = (next((j for j in self._jobs if str(j.id) == key), None) if key
               else self.selected_job())
        if job is None:
            return
        detail = await self.engine.email.get_job(job.id)
        lines = [f"Message-ID: {job.message_id}", f"From: {detail.sender}", f"To: {job.to}",
                 f"Subject: {job.subject}", f"Status: {job.status}  attempts {job.attempts}/"
                 f"{job.max_attempts}  round {job.round}",
                 f"Created: {precise_time(job.created_at)}"]
        now = self.now()
        if job.status == "pending":
            lines.append(f"Next attempt: {precise_time(job.next_attempt_at)} "
                         f"({until(job.next_attempt_at, now)})")
        elif job.finished_at is not None:
            lines.append(f"Finished: {precise_time(job.finished_at)} ({ago(job.finished_at, now)})")
        if detail.headers:
            lines.append("Headers: " + json.dumps(detail.headers, ensure_ascii=False))
        lines.append("")
        lines.append("Attempts:")
        for a in detail.history or ():
            error = a.error or ""
            # Server replies already start with their code ("451 4.3.0 try again later").
            code = f"{a.code} " if a.code and not error.startswith(str(a.code)) else ""
            lines.append(f"  round {a.round} #{a.attempt}  {precise_time(a.at)}  {a.outcome:9} "
                         f"{a.session:10} {code}{error}".rstrip())
        if not detail.history:
            lines.append("  none yet")
        lines += ["", "Body:", detail.body[:2000]]
        self.app.push_screen(TextDialog(f"Email job {job.id}", "\n".join(lines)))

    # ---- marking and bulk actions --------------------------------------------------------------

    def action_toggle_mark(self) -> None:
        table = self.query_one("#email-jobs", StableTable)
        if table.toggle_mark() is not None:
            self.reload()  # the page line shows the count
            if table.cursor_row < table.row_count - 1:
                table.move_cursor(row=table.cursor_row + 1, animate=False)

    def marked_ids(self) -> list[int]:
        return sorted(int(k) for k in self.query_one("#email-jobs", StableTable).marks)

    def filter_words(self) -> str:
        return describe_filter(self.status_filter, self.search)

    async def _confirm(self, message: str, yes: str, danger: bool = False) -> bool:
        answer = await self.app.push_screen_wait(ConfirmDialog(message, yes=yes, danger=danger))
        return bool(answer)

    def _done(self, verb: str, done: list[int], asked: int) -> None:
        skipped = asked - len(done)
        self.notify(f"{len(done):,} job(s) {verb}" + (
            f"; {skipped:,} left as they were (not in a state for it)" if skipped else ""))

    @work(exit_on_error=False)
    async def action_retry_selected(self) -> None:
        marked = self.marked_ids()
        if marked:
            if not await self._confirm(
                    f"Retry {len(marked):,} marked job(s)? Failed and cancelled ones get a "
                    "fresh set of attempts (history kept); the others are left as they are.",
                    "Retry"):
                return
            done = await self.engine.email.retry(ids=marked)
            self.query_one("#email-jobs", StableTable).clear_marks()
            self._done("queued again", done, len(marked))
            self.reload()
            return
        job = self.selected_job()
        if job is None:
            return
        if job.status not in RETRYABLE:
            self.notify(f"job {job.id} is {job.status}, not failed or cancelled",
                        severity="warning")
            return
        ids = await self.engine.email.retry(ids=[job.id])
        self.notify(f"job {job.id} queued again" if ids else
                    f"job {job.id} was no longer failed or cancelled")
        self.reload()

    def _eligible(self, states: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
        """The states a bulk action over the filter takes: those the filter names, if any
        of them qualifies, else `default` (R retries failed jobs, not cancelled ones)."""
        named: set[str] = set(parse(self.search).statuses or ())
        if self.status_filter:
            named = {self.status_filter} if not named else named & {self.status_filter}
        chosen = tuple(s for s in states if s in named)
        return chosen or default

    @work(exit_on_error=False)
    async def action_retry_all(self) -> None:
        # The dialog names the count of exactly the jobs it will retry: the ids read now.
        eligible = self._eligible(RETRYABLE, ("failed",))
        ids = sorted(await self.engine.email.matching_ids(
            self.search, eligible=eligible, status=self.status_filter))
        what = " or ".join(eligible)
        if not ids:
            scope = f" {self.filter_words()}" if self.search or self.status_filter else ""
            self.notify(f"no {what} mail{scope} to retry")
            return
        if not await self._confirm(
                f"Retry all {_count(ids)} {what} job(s) {self.filter_words()}? Each gets a "
                "fresh set of attempts; their history is kept.", "Retry"):
            return
        done = await self.engine.email.retry(ids=ids)
        self._done("queued again", done, len(ids))
        self.reload()

    @work(exit_on_error=False)
    async def action_cancel_selected(self) -> None:
        marked = self.marked_ids()
        if marked:
            if not await self._confirm(
                    f"Cancel {len(marked):,} marked job(s)? Pending and failed ones are kept "
                    "but never sent (retry brings them back); the others are left as they are.",
                    "Cancel jobs", danger=True):
                return
            done = await self.engine.email.cancel(ids=marked)
            self.query_one("#email-jobs", StableTable).clear_marks()
            self._done("cancelled", done, len(marked))
            self.reload()
            return
        job = self.selected_job()
        if job is None:
            return
        if job.status not in CANCELLABLE:
            self.notify(f"job {job.id} is {job.status}; only pending or failed jobs can be "
                        "cancelled", severity="warning")
            return
        if not await self._confirm(f"Cancel job {job.id} to {job.to}? It is kept but never "
                                   "sent (retry brings it back).", "Cancel job", danger=True):
            return
        done = await self.engine.email.cancel(ids=[job.id])
        self._done("cancelled", done, 1)
        self.reload()

    @work(exit_on_error=False)
    async def action_cancel_all(self) -> None:
        eligible = self._eligible(CANCELLABLE, CANCELLABLE)
        ids = sorted(await self.engine.email.matching_ids(
            self.search, eligible=eligible, status=self.status_filter))
        what = " or ".join(eligible)
        if not ids:
            scope = f" {self.filter_words()}" if self.search or self.status_filter else ""
            self.notify(f"no {what} mail{scope} to cancel")
            return
        if not await self._confirm(
                f"Cancel all {_count(ids)} {what} job(s) {self.filter_words()}? They are kept "
                "but never sent (retry brings them back).", "Cancel jobs", danger=True):
            return
        done = await self.engine.email.cancel(ids=ids, search=self.search or None)
        self._done("cancelled", done, len(ids))
        self.reload()

    async def _paused_now(self) -> bool:
        return bool((await self.engine.email.status())["state"] == "paused")

    @work(exit_on_error=False)
    async def action_toggle_pause(self) -> None:
        # The state now, not the last snapshot's: the palette runs this on a screen it may
        # have just opened (no snapshot yet), and another engine may have changed it.
        if await self._paused_now():
            await self.engine.email.resume()
            self.notify("delivery resumed")
        else:
            await self.engine.email.pause()
            self.notify("delivery paused (every engine on this database follows)")
        self.reload()

    @work(exit_on_error=False)
    async def action_drain(self) -> None:
        if await self._paused_now():
            self.notify("Drain refused: delivery is paused. Resume it (p) first, then drain.",
                        severity="warning")
            return
        if await self.app.push_screen_wait(
                ConfirmDialog("Deliver everything due now, then report?", yes="Drain")):
            self.act_on_engine("email.drain", label="drain")

    @work(exit_on_error=False)
    async def action_cleanup(self) -> None:
        answer = await self.app.push_screen_wait(
            PromptDialog("Delete sent, failed and cancelled mail older than how many days?",
                         "30"))
        if answer is None:
            return
        try:
            days = float(answer)
            if days < 0:
                raise ValueError
        except ValueError:
            self.notify(f"not a number of days: {answer!r}", severity="error")
            return
        due = await self.engine.email.cleanup_count(days)
        if not due:
            self.notify(f"no sent, failed or cancelled mail older than {days:g} days to delete")
            return
        if await self.app.push_screen_wait(
                ConfirmDialog(f"Delete {due:,} sent, failed or cancelled job(s) finished more "
                              f"than {days:g} days ago?", yes="Delete", danger=True)):
            count = await self.engine.email.cleanup(days)
            self.notify(f"deleted {count:,} job(s)")
            self.reload()


def _count(ids: list[int]) -> str:
    return f"{len(ids):,}" + (" (the newest; at most that many at once)"
                              if len(ids) >= BULK_CAP else "")


def describe_filter(status: str | None, search: str) -> str:
    """The filter in words, for confirmations: "matching status failed and 'mailbox'"."""
    parts = ([f"status {status}"] if status else []) + ([repr(search)] if search else [])
    return f"matching {' and '.join(parts)}" if parts else "in the whole queue (no filter)"


def page_line(page: int, total: int | None, search: str, marked: int) -> str:
    """ "page 2 of 41 · 2,033 jobs", with the search and the marked count."""
    if total is None:
        count = ""
    elif total >= TOTAL_CAP:
        count = f"page {page} · {TOTAL_CAP:,}+ jobs"
    else:
        pages = max(1, -(-total // PAGE))
        count = f"page {page} of {pages} · {total:,} job{'' if total == 1 else 's'}"
    return " · ".join(part for part in (
        f"matching {search!r}" if search else "", count,
        f"{marked:,} marked (Esc unmarks)" if marked else "") if part)


def column_widths(width: int, id_digits: int = 2) -> tuple[int, int, int]:
    """Widths of the To, Subject and Last error columns in a `width`-column terminal. ID,
    status, tries and time take 28 columns and the id's digits, with the cells' padding and
    the scrollbar; a wide terminal gives the rest to the subject and the error (the error
    more: it is the longest and the one read when things fail)."""
    room = max(0, width - 28 - id_digits - 6 - 2)
    # The floors sum to what 80 columns leave (42), so an 80-column terminal shows every
    # column without scrolling sideways; below that the table scrolls.
    to = max(12, min(26, room * 3 // 10))
    subject = max(12, (room - to) * 2 // 5)
    error = max(18, room - to - subject)
    return to, subject, error


def filter_tabs(current: str | None) -> list[str | tuple[str, str]]:
    """The status filters as tabs, the one shown highlighted: '1 all  2 pending …'."""
    parts: list[str | tuple[str, str]] = []
    for key, status in FILTERS.items():
        label = f" {key} {FILTER_LABEL[status].split()[0]} "
        parts.append((label, "reverse bold") if status == current else label)
    return parts


def counts_line(stats: dict[str, Any], now: float) -> str:
    """The queue's counts, its state first (a narrow terminal cuts the end of a line). The
    database's "sending" is what workers have claimed, in batches; what is really in an SMTP
    transaction is known only where the workers run (this console's own engine)."""
    oldest = stats.get("oldest_pending_at")
    sending = f"claimed {stats['sending']:,}"
    if stats.get("in_smtp") is not None:
        sending += f" ({stats['in_smtp']} in SMTP)"
    return ("⏸ PAUSED  " if stats["state"] == "paused" else "") + (
        f"pending {stats['pending']:,}  {sending}  sent {stats['sent']:,} "
        f"({stats['sent_last_minute']:,} last min)  failed {stats['failed']:,}  "
        + (f"cancelled {stats['cancelled']:,}  " if stats.get("cancelled") else "") +
        f"oldest {'-' if oldest is None else ago(oldest, now)}")


def _update(static: Static, text: str) -> None:
    """Static.update, unless it already shows `text` (an update always re-lays the screen)."""
    if static.content != text:
        static.update(text)


FILTER_LABEL = {None: "all jobs", "pending": "pending", "sending": "sending", "sent": "sent",
                "failed": "failed", "cancelled": "cancelled"}
