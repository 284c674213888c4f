"""`vertex-tui doctor`: is the database sound, and what did dead processes leave behind?

`examine` runs `PRAGMA quick_check` on a read-only connection first. A damaged file is never
opened for writing: the report names the newest backup that verifies now (from the backup
records if they can still be read, else from the backup folder) and the command that
restores it. A sound file is then searched for leases held by processes that are gone
(their pid no longer exists on this host) or that expired, runs and backups left 'running'
by processes that no longer hold anything, and temp files of killed restores (PostgreSQL:
the scratch databases of killed restores and drills of this host). `repair`
clears exactly what a report found, once the operator confirmed it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vertex_tui.engine.backup import manager
from vertex_tui.engine.backup.files import TMP_MARK, remove
from vertex_tui.engine.clock import Clock, SystemClock, isoformat
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.leases import dead_here, process_alive
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import doctor as store
from vertex_tui.engine.store import sqlitefile
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.db import check_sqlite_file, quick_check

BACKUP_KINDS = ("database", "full")


@dataclass(frozen=True, kw_only=True)
class Report:
    """What `examine` found; `clearable` is what `repair` would clear."""

    db_path: Path
    problems: list[str]  # quick_check's findings; empty when the file is sound
    stale_leases: list[store.LeaseRow] = field(default_factory=list)
    interrupted: list[store.RunningRow] = field(default_factory=list)
    temp_files: list[Path] = field(default_factory=list)
    scratch_databases: list[str] = field(default_factory=list)  # PostgreSQL
    backup: dict[str, Any] | None = None  # the newest verified backup (damaged file only)
    server: str | None = None  # PostgreSQL: the URL (password masked); no file to check

    @property
    def damaged(self) -> bool:
        return bool(self.problems)

    @property
    def clearable(self) -> int:
        return (len(self.stale_leases) + len(self.interrupted) + len(self.temp_files)
                + len(self.scratch_databases))

    def advice(self) -> str | None:
        if not self.damaged:
            return None
        if self.backup is None:
            return ("no backup that verifies was found: copy the damaged file somewhere safe "
                    "before anything else, then try `sqlite3 FILE .recover`")
        # Restore reads the records as `newest_verified_backup` does: one found there with
        # its sha256 restores as the recorded backup it is; any other needs --force.
        force, why = "", ""
        if self.backup["force"]:
            force = " --force"
            why = ("; --force: its backup records cannot be read, so restore cannot check "
                   "the file against them" if self.backup["source"] == "folder"
                   else "; --force: its record has no sha256 to check the file against")
        return (f"restore it from the newest verified backup, {self.backup['path']} "
                f"({self.backup['kind']} backup made {self.backup['finished_at'] or '?'}): "
                f"vertex-tui backup restore {self.backup['path']} --yes{force}"
                f" (the damaged file is kept aside{why})")

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.server or str(self.db_path),
            "integrity": ("not checked (PostgreSQL)" if self.server
                          else "ok" if not self.damaged else "damaged"),
            "problems": self.problems[:20],
            "stale_leases": [{"name": lease.name, "owner": lease.owner,
                              "expires_at": isoformat(lease.expires_at)}
                             for lease in self.stale_leases],
            "interrupted": [{"table": r.table, "id": r.id, "what": r.what, "owner": r.owner,
                             "started_at": isoformat(r.started_at)} for r in self.interrupted],
            "temp_files": [str(p) for p in self.temp_files],
            "scratch_databases": self.scratch_databases,
            "newest_verified_backup": self.backup,
            "advice": self.advice(),
        }


async def examine(settings: Settings, clock: Clock | None = None) -> Report:
    clock = clock or SystemClock()
    db_path = settings.db_path
    if settings.database_url is not None:
        report = await _examine_leases(settings, db_path, clock.time())
        return replace(report, server=settings.database_label,
                       scratch_databases=await asyncio.to_thread(scratch_leftovers, settings))
    if not db_path.exists():
        raise UsageError(f"no database at {db_path} (VERTEX_DB_PATH); nothing to check")
    check_sqlite_file(db_path)
    problems = await asyncio.to_thread(quick_check, db_path)
    if problems:
        backup = await asyncio.to_thread(newest_verified_backup, db_path, settings.backup_dir)
        return Report(db_path=db_path, problems=problems, backup=backup)
    report = await _examine_leases(settings, db_path, clock.time())
    return replace(report, temp_files=restore_leftovers(db_path))


async def _examine_leases(settings: Settings, db_path: Path, now: float) -> Report:
    """Stale leases and interrupted runs (PostgreSQL: this is all there is to examine; no
    file to check, no restore temp files next to it)."""
    db = await open_database(settings)
    try:
        if db.dialect == "postgresql":  # leases expire on the server's clock there
            now = await store.server_now(db)
        rows = await store.leases(db)
        # A holder is dead when its engine heartbeat is stale, on any host: its other leases
        # (a backup's, hours long) outlive it.
        beats = {r.owner: r.expires_at for r in rows if r.name == f"engine:{r.owner}"}
        stale = [r for r in rows if dead_here(r.owner) or r.expires_at <= now
                 or beats.get(r.owner, now + 1) <= now]
        alive = {r.owner for r in rows if r not in stale}
        interrupted = [r for r in await store.running(db) if r.owner not in alive]
    finally:
        await db.close()
    return Report(db_path=db_path, problems=[], stale_leases=stale, interrupted=interrupted)


async def repair(settings: Settings, report: Report, clock: Clock | None = None
                 ) -> dict[str, int]:
    """Clear what `report` found (and nothing else); returns the counts cleared."""
    clock = clock or SystemClock()
    if report.damaged:
        raise UsageError(f"{report.db_path} is damaged; doctor does not write to it: "
                         f"{report.advice()}")
    db = await open_database(settings)
    try:
        counts = await store.clear(db, leases=report.stale_leases, runs=report.interrupted,
                                   at=clock.time())
    finally:
        await db.close()
    counts["temp_files"] = 0
    if report.scratch_databases:
        from vertex_tui.engine.store import pgadmin

        assert settings.database_url is not None
        for name in report.scratch_databases:
            await asyncio.to_thread(pgadmin.drop_database, settings.database_url.reveal(), name)
        counts["scratch_databases"] = len(report.scratch_databases)
    for leftover in report.temp_files:
        if leftover.exists():
            for extra in ("", "-journal", "-wal", "-shm"):
                remove(Path(f"{leftover}{extra}"))
            counts["temp_files"] += 1
    return counts


def scratch_leftovers(settings: Settings) -> list[str]:
    """Scratch databases of the PostgreSQL database that restores or drills of this host
    made and never dropped: their process is gone (killed mid-restore). Blocking."""
    from vertex_tui.engine.store import pgadmin
    from vertex_tui.engine.store.pgurl import database_name

    assert settings.database_url is not None
    url = settings.database_url.reveal()
    return [name for name, holder in pgadmin.scratch_databases(url, database_name(url))
            if dead_here(holder)]


def restore_leftovers(db_path: Path) -> list[Path]:
    """Temp copies beside the database of restores whose process is gone (killed mid-copy)."""
    prefix = f".{db_path.name}{TMP_MARK}"
    found = []
    for entry in sorted(db_path.parent.glob(f"{prefix}*")):
        pid = entry.name[len(prefix):]
        if pid.isdigit() and not process_alive(int(pid)):
            found.append(entry)
    return found


def newest_verified_backup(db_path: Path, backup_dir: Path) -> dict[str, Any] | None:
    """The newest database or full backup that verifies now. Candidates come from the backup
    records when the damaged file still yields them (store.doctor.restorable, which restore
    reads too), else from the backup folder (newest file first); `force`: whether restore
    will want --force for it. Blocking."""
    source = "records"
    try:
        candidates = store.restorable(db_path)
    except sqlitefile.DatabaseError:  # the pages holding them are damaged too
        source, candidates = "folder", _from_folder(backup_dir)
    for c in candidates:
        path = Path(c.path)
        if path.exists() and manager.verify(path, c.sha256).ok:
            return {"path": str(path), "kind": c.kind, "finished_at": isoformat(c.finished_at),
                    "source": source, "force": source == "folder" or not c.sha256}
    return None


def _from_folder(backup_dir: Path) -> list[store.Candidate]:
    found: list[store.Candidate] = []
    for kind in BACKUP_KINDS:
        folder = backup_dir.absolute() / kind
        if folder.is_dir():
            found += [store.Candidate(kind=kind, path=str(p), sha256=None,
                                      finished_at=p.stat().st_mtime)
                      for p in folder.iterdir() if not p.name.startswith(".")]
    return sorted(found, key=lambda c: c.finished_at or 0.0, reverse=True)
