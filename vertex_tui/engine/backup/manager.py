"""Making, verifying and restoring backups. Blocking code, run in a worker thread.

Each function writes under a temp name, checks the result, fsyncs and renames, so a crash
or a full disk never leaves a file at a final backup name that is not a complete, checked
backup. `cancel` (a threading.Event) aborts a copy between steps.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vertex_tui import __version__
from vertex_tui.engine.backup import pgdump
from vertex_tui.engine.backup.files import (
    private_dir,
    publish,
    remove,
    sha256_file,
    temp_path,
    tree_size,
)
from vertex_tui.engine.backup.pgdump import PgSource
from vertex_tui.engine.backup.schema import NEITHER, is_sqlite, schema_problem
from vertex_tui.engine.errors import UsageError, VertexError
from vertex_tui.engine.store import sqlitefile

STEP_PAGES = 4096  # 16 MiB with 4 KiB pages: few steps, yet writers interleave
MANIFEST = "manifest.json"
FULL_DB = "database.db"
FULL_DUMP = "database.dump"  # a full backup of a PostgreSQL database: its pg_dump
FULL_STORAGE = "storage.tar.gz"
SMOKE_TABLES = ("email_jobs", "backups")


class BackupFailed(VertexError):
    """A backup, verification or restore that did not succeed; the message says why."""


class Cancelled(BackupFailed):
    pass


class NotRestorable(UsageError):
    """A path this release must not put in place of its database: not a backup of a
    vertex-tui database it can open (missing, another format, another schema), or a storage
    archive. Bad input, refused before anything is replaced (exit 2)."""


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """A finished, verified backup at its final path."""

    path: Path
    size: int
    sha256: str
    copy_seconds: float
    verify_seconds: float
    warnings: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What `verify` found. `not_a_backup`: the path is no backup of a vertex-tui database
    this release can open at all (restore refuses it as bad input); otherwise a bad verdict
    is a backup that fails its checks (damaged, changed since its sha256 was recorded)."""

    ok: bool
    kind: str
    reason: str
    seconds: float = 0.0
    not_a_backup: bool = False


# ---- database -------------------------------------------------------------------------------

# What a database backup copies: the SQLite file, or a PostgreSQL database (pgdump.py).
Source = Path | PgSource


def copy_database(src: Source, dest: Path, cancel: threading.Event | None = None) -> float:
    """Online backup of `src` into the new file `dest` (a consistent snapshot, however busy
    the writers are; a pg_dump archive for PostgreSQL); returns the seconds it took."""
    started = time.perf_counter()
    if isinstance(src, PgSource):
        pgdump.dump(src, dest, cancel)
        return time.perf_counter() - started

    def progress(status: int, remaining: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("backup cancelled (engine stopping)")

    sqlitefile.online_copy(src, dest, pages=STEP_PAGES, progress=progress)
    return time.perf_counter() - started


def check_database(path: Path, bin_dir: Path | None = None) -> str | None:
    """None if `path` is a SQLite database that passes `integrity_check`, or a pg_dump
    archive that `pg_restore --list` reads, else why not."""
    if pgdump.is_dump(path):
        return pgdump.check_dump(path, bin_dir)
    try:
        with path.open("rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                return "not a SQLite database"
        problems = sqlitefile.integrity_problems(path)
    except (OSError, sqlitefile.DatabaseError) as exc:
        return f"cannot be read as SQLite: {exc}"
    if problems:
        return "integrity check failed: " + "; ".join(problems[:5])
    return None


def smoke_query(path: Path) -> dict[str, Any]:
    """Schema version and row counts of a restored database (raises if it is unusable); of
    a pg_dump archive, its schema version and the versions that wrote it."""
    if pgdump.is_dump(path):
        return pgdump.detail(path)
    version, counts = sqlitefile.smoke(path, SMOKE_TABLES)
    return {"schema_version": version, "rows": counts}


def _publish_checked(final: Path, write: Callable[[Path], Any],
                     check: Callable[[Path], str | None], what: str) -> tuple[Any, float, float,
                                                                              str]:
    """Write to a temp name, make it private, check it, fsync and rename it to `final`.

    Returns (what `write` returned, copy seconds, check seconds, sha256). On any failure
    nothing is left at `final` nor at the temp name.
    """
    private_dir(final.parent)
    tmp = temp_path(final, host=True)
    try:
        started = time.perf_counter()
        written = write(tmp)
        os.chmod(tmp, 0o600)
        copy_seconds = time.perf_counter() - started
        started = time.perf_counter()
        problem = check(tmp)
        if problem:
            raise BackupFailed(f"{what} failed its check: {problem}")
        verify_seconds = time.perf_counter() - started
        digest = sha256_file(tmp)
        publish(tmp, final)
    except BaseException:
        remove(tmp)
        remove(Path(f"{tmp}-journal"))  # left by SQLite when a write into a copy failed
        raise
    return written, copy_seconds, verify_seconds, digest


def backup_database(src: Source, final: Path,
                    cancel: threading.Event | None = None) -> Artifact:
    bin_dir = src.bin_dir if isinstance(src, PgSource) else None
    _, copy_seconds, verify_seconds, digest = _publish_checked(
        final, lambda tmp: copy_database(src, tmp, cancel),
        lambda tmp: check_database(tmp, bin_dir), "copy")
    return Artifact(path=final, size=final.stat().st_size, sha256=digest,
                    copy_seconds=copy_seconds, verify_seconds=verify_seconds,
                    detail=_db_detail(final))


def _db_detail(path: Path) -> dict[str, Any]:
    try:
        return smoke_query(path)
    except (sqlitefile.DatabaseError, pgdump.DumpFailed):
        return {}


# ---- storage --------------------------------------------------------------------------------


def write_storage_tar(storage: Path, dest: Path,
                      cancel: threading.Event | None = None) -> dict[str, Any]:
    """A gzip tar of `storage` at `dest`. Links are stored as links, never followed;
    unreadable entries are listed in the result (and left out), never silently skipped."""
    if not storage.is_dir():
        if storage.exists():
            raise BackupFailed(f"storage folder {storage} (VERTEX_STORAGE_DIR) is not a folder")
        raise BackupFailed(f"storage folder {storage} does not exist")
    unreadable: list[str] = []
    special: list[str] = []
    files = links = total = 0
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        tar.add(storage, arcname=".", recursive=False)

        def walk_error(exc: OSError) -> None:
            unreadable.append(f"{exc.filename}: {exc.strerror}")

        for root, dirs, names in os.walk(storage, onerror=walk_error, followlinks=False):
            if cancel is not None and cancel.is_set():
                raise Cancelled("backup cancelled (engine stopping)")
            dirs.sort()
            for name in sorted(dirs) + sorted(names):
                full = Path(root, name)
                arc = str(full.relative_to(storage))
                try:
                    st = full.lstat()
                    if stat.S_ISLNK(st.st_mode):
                        tar.add(full, arcname=arc, recursive=False)
                        links += 1
                    elif stat.S_ISDIR(st.st_mode):
                        if name in dirs and os.access(full, os.R_OK | os.X_OK):
                            tar.add(full, arcname=arc, recursive=False)
                        elif name in dirs:
                            unreadable.append(f"{full}: permission denied")
                    elif stat.S_ISREG(st.st_mode):
                        with full.open("rb") as fh:
                            info = tar.gettarinfo(arcname=arc, fileobj=fh)
                            tar.addfile(info, fh)
                        files += 1
                        total += st.st_size
                    else:
                        special.append(arc)
                except OSError as exc:
                    unreadable.append(f"{full}: {exc.strerror}")
    return {"files": files, "links": links, "bytes": total, "unreadable": unreadable,
            "special_skipped": special}


def check_tar(path: Path) -> str | None:
    """None if every member of the gzip tar at `path` reads back whole, else why not."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.isfile():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        while fh.read(1 << 20):
                            pass
    except (OSError, tarfile.TarError, EOFError) as exc:
        return f"archive unreadable: {exc}"
    return None


def _storage_warnings(detail: dict[str, Any]) -> tuple[str, ...]:
    warnings = []
    if detail["unreadable"]:
        listed = ", ".join(detail["unreadable"][:5])
        warnings.append(f"{len(detail['unreadable'])} unreadable entr(ies) left out: {listed}")
    if detail["special_skipped"]:
        warnings.append(f"{len(detail['special_skipped'])} special file(s) left out")
    return tuple(warnings)


def backup_storage(storage: Path, final: Path,
                   cancel: threading.Event | None = None) -> Artifact:
    detail, copy_seconds, verify_seconds, digest = _publish_checked(
        final, lambda tmp: write_storage_tar(storage, tmp, cancel), check_tar, "archive")
    return Artifact(path=final, size=final.stat().st_size, sha256=digest,
                    copy_seconds=copy_seconds, verify_seconds=verify_seconds,
                    warnings=_storage_warnings(detail), detail=detail)


# ---- full -----------------------------------------------------------------------------------


def backup_full(src: Source, storage: Path, final: Path,
                cancel: threading.Event | None = None) -> Artifact:
    """A folder with the database, the storage archive and a manifest of both."""
    private_dir(final.parent)
    tmp = temp_path(final, host=True)
    try:
        private_dir(tmp)
        started = time.perf_counter()
        pg = isinstance(src, PgSource)
        db_file, tar_file = tmp / (FULL_DUMP if pg else FULL_DB), tmp / FULL_STORAGE
        copy_database(src, db_file, cancel)
        storage_detail = write_storage_tar(storage, tar_file, cancel)
        for f in (db_file, tar_file):
            os.chmod(f, 0o600)
        copy_seconds = time.perf_counter() - started
        started = time.perf_counter()
        problem = (check_database(db_file, src.bin_dir if isinstance(src, PgSource) else None)
                   or check_tar(tar_file))
        if problem:
            raise BackupFailed(f"full backup failed its check: {problem}")
        manifest: dict[str, Any] = {
            "format": 1,
            "vertex_tui": __version__,
            **({"postgresql": True} if pg else {"sqlite": sqlitefile.SQLITE_VERSION}),
            "created_at": time.time(),
            "database": {"file": db_file.name, "size": db_file.stat().st_size,
                         "sha256": sha256_file(db_file), **smoke_query(db_file)},
            "storage": {"file": FULL_STORAGE, "size": tar_file.stat().st_size,
                        "sha256": sha256_file(tar_file), **storage_detail},
        }
        manifest_path = tmp / MANIFEST
        manifest_path.write_text(json.dumps(manifest, indent=2))
        os.chmod(manifest_path, 0o600)
        verify_seconds = time.perf_counter() - started
        digest = sha256_file(manifest_path)
        publish(tmp, final)
    except BaseException:
        remove(tmp)
        raise
    return Artifact(path=final, size=tree_size(final), sha256=digest,
                    copy_seconds=copy_seconds, verify_seconds=verify_seconds,
                    warnings=_storage_warnings(storage_detail),
                    detail={"database": manifest["database"],
                            "storage": {k: v for k, v in manifest["storage"].items()
                                        if k not in ("unreadable", "special_skipped")}})


# ---- verify and restore --------------------------------------------------------------------


def kind_of(path: Path) -> str:
    if path.is_dir() and (path / MANIFEST).exists():
        return "full"
    if path.name.endswith(".tar.gz"):
        return "storage"
    return "database"


def verify(path: Path, expected_sha256: str | None = None,
           bin_dir: Path | None = None) -> Verdict:
    """Check any backup: a database file or dump, a storage archive or a full backup folder,
    and that the database in it is a vertex-tui database this release can open."""
    started = time.perf_counter()
    if not path.exists():
        return Verdict(ok=False, kind="unknown", reason=f"{path} does not exist",
                       not_a_backup=True)
    kind = kind_of(path)
    db_file = None if kind == "storage" else database_file_of(path)
    foreign = _not_a_backup(db_file, bin_dir)
    problem: str | None
    if foreign:
        problem = None
    elif kind == "full":
        problem = _verify_full(path, bin_dir)
        digest_file = path / MANIFEST
    else:
        problem = check_tar(path) if kind == "storage" else check_database(path, bin_dir)
        digest_file = path
    if foreign is None and problem is None:
        if expected_sha256 and sha256_file(digest_file) != expected_sha256:
            problem = "sha256 differs from the one recorded when the backup was made"
        elif db_file is not None and not pgdump.is_dump(db_file):
            foreign = schema_problem(db_file)  # sound: whose database is it?
    return Verdict(ok=problem is None and foreign is None, kind=kind,
                   reason=foreign or problem or "ok", not_a_backup=foreign is not None,
                   seconds=time.perf_counter() - started)


def _not_a_backup(db_file: Path | None, bin_dir: Path | None) -> str | None:
    """Why the database file of a backup is no vertex-tui database at all, as far as can be
    told before its checks: not a SQLite file nor a dump, or a dump of another schema (read
    by pg_restore, which is itself a check; an unreadable dump is left to check_dump)."""
    if db_file is None or not db_file.exists():
        return None  # a storage archive; a full backup missing its database: _verify_full
    if db_file.is_dir():
        return f"not a backup (a folder without {MANIFEST})"
    if pgdump.is_dump(db_file):
        return schema_problem(db_file, bin_dir)
    return None if is_sqlite(db_file) else NEITHER


def _verify_full(path: Path, bin_dir: Path | None) -> str | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        parts = [manifest["database"], manifest["storage"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"manifest unreadable: {exc}"
    for part in parts:
        f = path / part["file"]
        if not f.is_file():
            return f"{part['file']} is missing"
        if f.stat().st_size != part["size"] or sha256_file(f) != part["sha256"]:
            return f"{part['file']} does not match the manifest"
    return (check_database(path / parts[0]["file"], bin_dir)
            or check_tar(path / FULL_STORAGE))


def database_file_of(path: Path) -> Path:
    """The database file inside a backup (the file itself, or the one in a full backup)."""
    kind = kind_of(path)
    if kind == "storage":
        raise NotRestorable(
            f"{path} is a storage archive; extract it with: tar -xzf {path} -C STORAGE_DIR"
        )
    if kind == "full":
        return path / FULL_DUMP if (path / FULL_DUMP).exists() else path / FULL_DB
    return path


def drill(backup: Path, workdir: Path, database_url: str | None = None,
          bin_dir: Path | None = None) -> dict[str, Any]:
    """Restore `backup` into `workdir`, check it and run a smoke query. A pg_dump archive is
    restored into a temporary database on the server of `database_url`, then dropped."""
    source = database_file_of(backup)
    if pgdump.is_dump(source):
        if database_url is None:
            raise BackupFailed(f"{backup} is a pg_dump archive: a drill needs a PostgreSQL "
                               "server to restore it into (VERTEX_DATABASE_URL)")
        return pgdump.drill(source, database_url, SMOKE_TABLES, bin_dir)
    target_path = workdir / "drill.db"
    started = time.perf_counter()
    sqlitefile.copy_into(source, target_path)
    problem = check_database(target_path)
    if problem:
        raise BackupFailed(f"restored copy failed its check: {problem}")
    return {"seconds": time.perf_counter() - started, **smoke_query(target_path)}
