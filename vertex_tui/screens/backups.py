"""Backups: each job's schedule and next run, history, trigger, verify, restore command."""

from __future__ import annotations

import shlex
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, Label

from vertex_tui.engine.store.backups import BackupRecord
from vertex_tui.screens.base import VertexScreen
from vertex_tui.timefmt import ago, clock_time, duration, size, until
from vertex_tui.widgets.backup_panel import BackupPanel
from vertex_tui.widgets.dialogs import ConfirmDialog, TextDialog
from vertex_tui.widgets.keybar import KeyBar
from vertex_tui.widgets.table_search import TableSearch, TableSearchMixin, search_binding
from vertex_tui.widgets.tables import StableTable


class BackupsScreen(TableSearchMixin, VertexScreen):
    """Jobs on top, history below; Tab moves between them."""

    AUTO_FOCUS = "#backup-jobs"  # see VertexScreen.AUTO_FOCUS
    REFRESH_ON = frozenset({"BackupStarted", "BackupFinished", "RotationFinished",
                            "RestoreDrillFinished", "RequestHandled"})
    BINDINGS = [
        Binding("t", "trigger", "Run job now"),
        Binding("V", "verify", "Verify backup"),
        Binding("R", "restore", "Restore…"),
        search_binding("filter the history: text, status:, id:"),
        Binding("escape", "clear_search", "Clear search", show=False),
        # In ? help, not the footer: at 120 columns it would push the screen keys out.
        Binding("P", "rotation_preview", "Rotation preview", show=False,
                tooltip="what rotation would delete now (deletes nothing)"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._jobs: list[dict[str, object]] = []
        self._history: list[BackupRecord] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Jobs", classes="section-title")
        jobs = StableTable(id="backup-jobs", cursor_type="row")
        jobs.add_columns("Job", "Schedule", "Enabled", "Next run", "", "Last run", "Outcome",
                         "Took")
        yield jobs
        yield BackupPanel()
        yield Label("History", classes="section-title")
        yield TableSearch("#backup-history", "the backup history")
        history = StableTable(id="backup-history", cursor_type="row", zebra_stripes=True)
        history.status_column, history.id_keys = 3, True
        history.add_columns("ID", "Kind", "Started", "Status", "Size", "Took", "Verified",
                            "Path / error")
        yield history
        yield KeyBar()

    async def refresh_snapshot(self) -> None:
        status = await self.engine.backup.status()
        history = await self.engine.backup.history(limit=100)
        now = self.now()
        last_by_kind: dict[str, BackupRecord] = {}
        for record in history:
            last_by_kind.setdefault(record.kind, record)
        self._jobs = status["jobs"]
        rows = []
        for job in self._jobs:
            name = str(job["job"])
            last = last_by_kind.get(name)
            # Rotation and drill write no backup row: their last run comes from the job's
            # runs (service_runs, by any engine), as for every job in `vertex-tui jobs`.
            ran = job.get("last_run")
            outcome = last.status if last else ("failed" if job.get("last_outcome") == "error"
                                                else job.get("last_outcome"))
            rows.append((name, (
                name, str(job["schedule"]), "yes" if job["enabled"] else "disabled",
                clock_time(job["next_run"]) if job["enabled"] else "-",  # type: ignore[arg-type]
                until(job["next_run"], now) if job["enabled"] else "",  # type: ignore[arg-type]
                ago(last.started_at, now) if last else (ago(ran, now) if ran else "-"),  # type: ignore[arg-type]
                ("RUNNING" if job.get("running") else str(outcome or "-")),
                duration(last.duration) if last else "-")))
        self.query_one("#backup-jobs", StableTable).show_rows(rows)
        self.query_one(BackupPanel).show(await self.engine.backup.panel(), now,
                                         self._shown_path)
        self._history = history
        self.query_one("#backup-history", StableTable).show_rows([
            (str(r.id), (str(r.id), r.kind, clock_time(r.started_at), r.status, size(r.size),
                         duration(r.duration), "yes" if r.verified else "no",
                         (self._shown_path(r.path) or r.error or "")[-70:]
                         + (f"  ⚠ {r.warnings}" if r.warnings else "")))
            for r in history])

    def _shown_path(self, path: str | None) -> str | None:
        """A backup's path inside the backup folder (the whole path is in the restore
        dialog); other paths as they are."""
        if not path:
            return path
        try:
            return str(Path(path).relative_to(self.engine.settings.backup_dir.absolute()))
        except ValueError:
            return path

    def _selected_job(self) -> str | None:
        key = self.query_one("#backup-jobs", StableTable).cursor_key
        return next((str(j["job"]) for j in self._jobs if str(j["job"]) == key), None)

    def _selected_backup(self) -> BackupRecord | None:
        key = self.query_one("#backup-history", StableTable).cursor_key
        return next((r for r in self._history if str(r.id) == key), None)

    @work(exit_on_error=False)
    async def action_trigger(self, job: str | None = None) -> None:
        job = job or self._selected_job()
        if job is None:
            return
        if await self.app.push_screen_wait(ConfirmDialog(f"Run the {job} job now?", yes="Run")):
            self.act_on_engine("backup.run", {"job": job}, label=f"{job} backup"
                            if job not in ("rotation", "drill") else job)

    @work(exit_on_error=False)
    async def action_verify(self) -> None:
        record = self._selected_backup()
        if record is None or not record.path:
            self.notify("select a backup with a file in the history", severity="warning")
            return
        verdict = await self.engine.backup.verify(Path(record.path))
        self.notify(f"backup {record.id}: {'verified' if verdict.ok else 'BAD'} — "
                    f"{verdict.reason}", severity="information" if verdict.ok else "error")
        self.reload()

    @work(exit_on_error=False)
    async def action_rotation_preview(self) -> None:
        preview = await self.engine.backup.rotation_preview()
        lines = [f"{kind:8} #{item['id']:<5} {clock_time(item['started_at'])}  "
                 f"{size(item['size']):>10}  {self._shown_path(item['path']) or ''}"
                 for kind, items in preview.items() for item in items]
        total = len(lines)
        self.app.push_screen(TextDialog(
            f"Rotation now would delete {total} backup(s); this preview deleted nothing.",
            "\n".join(lines) or "nothing: every backup is kept by the retention rules "
            "(BACKUP_KEEP_LAST/_DAILY/_WEEKLY/_MONTHLY)"))

    def action_restore(self) -> None:
        record = self._selected_backup()
        if record is None or not record.path or record.kind == "storage":
            self.notify("select a database or full backup in the history", severity="warning")
            return
        from vertex_tui.app import database_title

        settings = self.engine.settings
        if settings.database_url is None:
            where = f"VERTEX_DB_PATH={shlex.quote(str(settings.db_path))}"
            kept = (f"The current database is kept aside as {settings.db_path.name}"
                    ".before-restore-<time>; the backup is verified first.")
        else:  # the URL may hold a password: named, never shown
            where = "VERTEX_DATABASE_URL=…"
            kept = ("VERTEX_DATABASE_URL: the engine's own (its password is not shown here). "
                    "The backup is verified first.")
        command = (f"sudo systemctl stop vertex-tui   # stop every engine on "
                   f"{database_title(settings)}\n"
                   f"{where} vertex-tui backup restore {shlex.quote(record.path)}\n"
                   "sudo systemctl start vertex-tui")
        self.app.push_screen(TextDialog(
            "Restore is not a one-key action. Run this in a shell:", f"{command}\n\n{kept}"))
