"""Backups against real files: the SQLite online backup under a concurrent writer, storage
archives that the real `tar` extracts, full backups with a manifest, private modes, verify of
corrupted copies, disk-full and permission failures, restore, restore drills and leases.

Every run must land in `backups` and `service_runs`; operator actions in `audit_log`. A
backup that is not complete and checked never appears at a final name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.ballast import add_ballast
from support.db import Target, query

from vertex_tui.engine.backup import manager
from vertex_tui.engine.backup.restore import MAINTENANCE_LEASE, restore
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.settings import Settings

if TYPE_CHECKING:
    from conftest import WaitFor

HOUR = 3600.0
DAY = 86_400.0
SETTING_PREFIXES = (
    "VERTEX_",
    "SMTP_",
    "EMAIL_",
    "BACKUP_",
    "VIDEO_SCHEDULER_",
    "LIFECYCLE_",
    "NOTIFY_",
)
# No cron job may fire while a test runs a started engine.
NO_SCHEDULES = {
    "backup_database_enabled": False,
    "backup_full_enabled": False,
    "backup_rotation_enabled": False,
    "backup_storage_enabled": False,
    "backup_drill_enabled": False,
}


# ---- helpers --------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def finals(folder: Path) -> list[Path]:
    """Entries at final (non-hidden) names in a backup folder."""
    return (
        sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
    )


def temps(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if ".tmp-" in p.name) if root.exists() else []


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def runs_of(db: Target, job: str) -> list[tuple[str, str | None, str]]:
    """(outcome, error, owner) of each service_runs row of the backup `job`, oldest first."""
    return [
        (r[0], r[1], r[2])
        for r in query(
            db,
            "SELECT outcome, error, owner FROM service_runs WHERE service = 'backup' AND job = ?"
            " ORDER BY id",
            (job,),
        )
    ]


def audit(db: Target, action: str) -> list[dict[str, Any]]:
    rows = query(db, "SELECT detail FROM audit_log WHERE action = ? ORDER BY id", (action,))
    return [json.loads(r[0]) for r in rows]


def backup_row(db: Target, backup_id: int) -> dict[str, Any]:
    cols = (
        "kind",
        "status",
        "path",
        "size",
        "sha256",
        "duration",
        "verified",
        "error",
        "warnings",
        "detail",
    )
    row = query(db, f"SELECT {', '.join(cols)} FROM backups WHERE id = ?", (backup_id,))[0]
    return dict(zip(cols, row, strict=True))


def fill_storage(root: Path, outside: Path, marker: str) -> None:
    (root / "portraits" / "p1").mkdir(parents=True)
    (root / "portraits" / "p1" / "photo.jpg").write_bytes(os.urandom(20_000))
    (root / "videos").mkdir()
    (root / "videos" / "clip.mp4").write_bytes(b"frame" * 4000)
    (root / "videos" / "latest.mp4").symlink_to("clip.mp4")  # relative link, inside
    (root / "empty").mkdir()
    (root / "note.txt").write_text("hello\n")
    outside.mkdir()
    (outside / "secret.txt").write_text(marker)
    (root / "link-out.txt").symlink_to(outside / "secret.txt")  # absolute link, outside
    (root / "dir-out").symlink_to(outside, target_is_directory=True)


def corrupt_page(path: Path, table: str) -> None:
    """Overwrite one b-tree leaf page of `table` with garbage (the file must be closed)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [
            r[0]
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                (table,),
            )
        ]
    assert pages, f"{table} has no leaf pages to corrupt"
    page = pages[len(pages) // 2]
    with path.open("r+b") as fh:
        fh.seek((page - 1) * page_size)
        fh.write(b"\xa5" * page_size)


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.update(
        VERTEX_DB_PATH=str(settings.db_path),
        VERTEX_STORAGE_DIR=str(settings.storage_dir),
        VERTEX_BACKUP_DIR=str(settings.backup_dir),
    )
    env.update(extra)
    return env


def run_cli(
    settings: Settings, *args: str, prefix: tuple[str, ...] = (), **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "vertex_tui", *args],
        env=cli_env(settings, **extra),
        cwd=settings.db_path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


async def acli(
    settings: Settings, *args: str, prefix: tuple[str, ...] = (), **extra: str
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, settings, *args, prefix=prefix, **extra)


async def run_tar(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `tar` command."""
    return await asyncio.to_thread(
        subprocess.run, ["tar", *args], capture_output=True, text=True, check=False
    )


def without_dac_override(tmp_path: Path) -> tuple[str, ...]:
    """A command prefix under which file permissions apply to this process.

    Tests run as root, and root reads a chmod 000 file. `setpriv` drops CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the bounding set, so the child stays uid 0 (it can write our
    root-owned database) but mode bits bind it like any user.
    """
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: no way to make a file unreadable")
    prefix = (setpriv, "--bounding-set=-dac_override,-dac_read_search", "--")
    probe = tmp_path / "probe.txt"
    probe.write_text("x")
    probe.chmod(0)
    result = subprocess.run(
        [*prefix, sys.executable, "-c", f"open({str(probe)!r}).read()"],
        capture_output=True,
        text=True,
        check=False,
    )
    probe.unlink()
    if "PermissionError" not in result.stderr:
        pytest.skip(f"setpriv could not drop root's file access: {result.stderr.strip()!r}")
    return prefix


@pytest.fixture
async def engine(settings: Settings, clock: FakeClock) -> AsyncIterator[Engine]:
    async with Engine(settings, run=[], clock=clock) as e:
        yield e


@pytest.fixture
async def backend_engine(backend_settings: Settings, clock: FakeClock) -> AsyncIterator[Engine]:
    """`engine` on this test's backend (run twice: SQLite, PostgreSQL)."""
    async with Engine(backend_settings, run=[], clock=clock) as e:
        yield e


class Writer(threading.Thread):
    """Inserts into two tables in one transaction, as fast as it can, until stopped."""

    def __init__(self, db: Path, watch: Path) -> None:
        super().__init__(daemon=True)
        self.db, self.watch = db, watch
        self.stop = threading.Event()
        self.commits = 0
        self.during_copy = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with contextlib.closing(
                sqlite3.connect(self.db, timeout=60, isolation_level=None)
            ) as conn:
                while not self.stop.is_set():
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("INSERT INTO pair_a (n) VALUES (?)", (self.commits,))
                    conn.execute("INSERT INTO pair_b (n) VALUES (?)", (self.commits,))
                    conn.execute("COMMIT")
                    self.commits += 1
                    if any(self.watch.glob(".database-*.tmp-*")):
                        self.during_copy += 1
        except BaseException as exc:
            self.error = exc


# ---- database backups ---------------------------------------------------------------------------


# SQLite only: opens the copy as SQLite; PG: test_pg_backup's verified_pg_dump test.
async def test_database_backup_records_checksum_size_duration_and_private_modes(
    engine: Engine, settings: Settings
) -> None:
    for i in range(20):
        await engine.email.enqueue(to=f"u{i}@example.com", subject=f"s{i}", body="b")
    result = await engine.backup.run("database")
    assert result["status"] == "ok", result
    path = Path(result["path"])
    assert path.parent == settings.backup_dir.absolute() / "database"
    assert path.name.startswith("database-") and path.suffix == ".db"
    assert integrity(path) == "ok"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        assert conn.execute("SELECT count(*) FROM email_jobs").fetchone()[0] == 20
        # Self-contained: a copy in rollback-journal mode, no -wal needed beside it.
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

    row = backup_row(settings.db_path, result["id"])
    assert row["status"] == "ok" and row["verified"] == 1 and row["error"] is None
    assert row["path"] == str(path)
    assert row["sha256"] == sha256(path) == result["sha256"]
    assert row["size"] == path.stat().st_size == result["size"]
    assert row["duration"] is not None and row["duration"] >= 0
    assert json.loads(row["detail"])["rows"]["email_jobs"] == 20

    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(settings.backup_dir) == 0o700
    assert temps(settings.backup_dir) == []
    assert runs_of(settings.db_path, "database") == [("ok", None, engine.owner)]
    assert len(audit(settings.db_path, "backup.run.database")) == 1


# SQLite only: the online backup API; PG: test_pg_backup's snapshot test.
@pytest.mark.slow
async def test_database_backup_is_consistent_under_a_concurrent_writer(
    engine: Engine, settings: Settings, wait_for: WaitFor
) -> None:
    db = settings.db_path
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE pair_a (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.execute("CREATE TABLE pair_b (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.execute("CREATE TABLE ballast (b BLOB)")
        # ~96 MiB: several backup steps of 16 MiB, so the writer interleaves with the copy.
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO ballast VALUES (randomblob(?))", [(1 << 20,)] * 96)
        conn.execute("COMMIT")

    writer = Writer(db, settings.backup_dir / "database")
    writer.start()
    try:
        await wait_for(lambda: writer.commits >= 20 or writer.error, message="the writer")
        before = query(db, "SELECT count(*) FROM pair_a")[0][0]
        result = await engine.backup.run("database")
        after = query(db, "SELECT count(*) FROM pair_a")[0][0]
    finally:
        writer.stop.set()
        await asyncio.to_thread(writer.join, 30)
    assert writer.error is None, writer.error
    assert result["status"] == "ok", result
    assert writer.during_copy > 0, "the writer never committed while the copy was in progress"

    path = Path(result["path"])
    assert integrity(path) == "ok"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        a = conn.execute("SELECT count(*) FROM pair_a").fetchone()[0]
        b = conn.execute("SELECT count(*) FROM pair_b").fetchone()[0]
        ballast = conn.execute("SELECT count(*) FROM ballast").fetchone()[0]
    # One snapshot: both halves of every transaction, or neither.
    assert a == b
    assert before <= a <= after
    assert ballast == 96
    assert backup_row(db, result["id"])["sha256"] == sha256(path)


async def test_two_backups_in_the_same_second_get_distinct_files(
    backend_engine: Engine, backend_settings: Settings
) -> None:
    engine, settings = backend_engine, backend_settings
    first = await engine.backup.run("database")
    await engine.email.enqueue(to="late@example.com", subject="late", body="b")
    second = await engine.backup.run("database")  # the fake clock has not moved
    assert first["status"] == second["status"] == "ok"
    assert first["path"] != second["path"]
    assert sha256(Path(first["path"])) == first["sha256"]
    assert sha256(Path(second["path"])) == second["sha256"]
    assert len(finals(settings.backup_dir / "database")) == 2
    # Rotation of the older one must not take the newer one's file with it.
    async with Engine(
        dataclasses.replace(settings, backup_keep_last=1), run=[], clock=FakeClock()
    ) as other:
        rotated = await other.backup.run("rotation")
    assert rotated["deleted"]["database"] == 1
    assert not Path(first["path"]).exists()
    assert sha256(Path(second["path"])) == second["sha256"]


# SQLite only: a damaged source file (PostgreSQL has none).
async def test_source_that_fails_its_check_is_recorded_failed_and_never_listed_good(
    settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = settings_factory(backup_keep_last=1)
    async with Engine(settings, run=[], clock=clock) as engine:
        good = []
        for _ in range(2):
            good.append(await engine.backup.run("database"))
            clock.advance(HOUR)
    with contextlib.closing(sqlite3.connect(settings.db_path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE junk (id INTEGER PRIMARY KEY, t TEXT)")
        with conn:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO junk (t) VALUES (?)", [("x" * 200,)] * 2000)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    corrupt_page(settings.db_path, "junk")

    async with Engine(settings, run=[], clock=clock) as engine:
        result = await engine.backup.run("database")
        assert result["status"] == "failed"
        assert "failed its check" in result["error"]
        row = backup_row(settings.db_path, result["id"])
        assert row["status"] == "failed" and row["verified"] == 0 and row["path"] is None
        assert "integrity" in row["error"] or "malformed" in row["error"]
        # Only the two earlier backups are at final names, and nothing half-made is left.
        assert finals(settings.backup_dir / "database") == sorted(Path(g["path"]) for g in good)
        assert temps(settings.backup_dir) == []
        history = await engine.backup.history()
        assert [(r.status, r.verified) for r in history] == [
            ("failed", False),
            ("ok", True),
            ("ok", True),
        ]
        assert runs_of(settings.db_path, "database")[-1][0] == "error"
        # The failure blocks rotation: keep_last=1 would otherwise delete the older good one.
        rotated = await engine.backup.run("rotation")
    assert rotated["status"] == "ok"
    assert rotated["deleted"] == {"database": 0, "storage": 0, "full": 0}
    assert all(Path(g["path"]).exists() for g in good)


async def test_backup_dir_under_a_regular_file_records_a_failure(
    backend_settings_factory: Callable[..., Settings], tmp_path: Path, clock: FakeClock
) -> None:
    (tmp_path / "afile").write_text("not a folder")
    settings = backend_settings_factory(backup_dir=tmp_path / "afile" / "backups")
    async with Engine(settings, run=[], clock=clock) as engine:
        for kind in ("database", "full"):
            result = await engine.backup.run(kind)
            assert result["status"] == "failed", result
            assert "Not a directory" in result["error"]
            row = backup_row(settings, result["id"])
            assert row["status"] == "failed" and row["path"] is None
            assert "Not a directory" in row["error"]
            assert runs_of(settings, kind)[-1][0] == "error"
            assert engine.backup.last_error and kind in engine.backup.last_error


# SQLite only: the CLI under setpriv on a SQLite file; the folder check is the same code.
async def test_unwritable_backup_dir_records_permission_denied(
    settings: Settings, tmp_path: Path, engine: Engine
) -> None:
    prefix = without_dac_override(tmp_path)
    settings.backup_dir.mkdir(mode=0o700)
    settings.backup_dir.chmod(0o500)  # r-x for the owner: no new entries
    try:
        result = await acli(settings, "backup", "run", "database", "--json", prefix=prefix)
    finally:
        settings.backup_dir.chmod(0o700)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "failed"
    assert "Permission denied" in doc["error"]
    row = backup_row(settings.db_path, doc["id"])
    assert row["status"] == "failed" and "Permission denied" in row["error"]
    assert list(settings.backup_dir.iterdir()) == []


# ---- disk full ---------------------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root may mount one); the RLIMIT_FSIZE test covers hosts that can't."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; see the RLIMIT_FSIZE variant")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
async def test_disk_full_leaves_no_file_and_rotation_deletes_nothing(
    backend_settings_factory: Callable[..., Settings], tiny_fs: Path, clock: FakeClock
) -> None:
    settings = backend_settings_factory(backup_dir=tiny_fs / "backups", backup_keep_last=1)
    settings.storage_dir.mkdir()
    async with Engine(settings, run=[], clock=clock) as engine:
        good = []
        for _ in range(2):
            good.append(await engine.backup.run("database"))
            assert good[-1]["status"] == "ok", good[-1]
            clock.advance(HOUR)
        if settings.database_url is not None:  # pg_dump writes what cannot fit
            add_ballast(settings, 2)
        else:
            with contextlib.closing(sqlite3.connect(settings.db_path, isolation_level=None)) as c:
                c.execute("CREATE TABLE ballast (b BLOB)")
                c.executemany("INSERT INTO ballast VALUES (randomblob(?))", [(1 << 20,)] * 2)
        (settings.storage_dir / "big.bin").write_bytes(os.urandom(2 << 20))

        failed = {}
        for kind in ("database", "storage", "full"):
            failed[kind] = await engine.backup.run(kind)
            clock.advance(60)
        for kind, result in failed.items():
            assert result["status"] == "failed", (kind, result)
            assert "full" in result["error"].lower() or "No space" in result["error"], result
            row = backup_row(settings, result["id"])
            assert row["status"] == "failed" and row["path"] is None and row["error"]
            assert runs_of(settings, kind)[-1][0] == "error"
        # No partial file at a final name, no temp leftovers, the good ones intact.
        assert finals(settings.backup_dir / "database") == sorted(Path(g["path"]) for g in good)
        assert finals(settings.backup_dir / "storage") == []
        assert finals(settings.backup_dir / "full") == []
        assert temps(settings.backup_dir) == []
        assert all(sha256(Path(g["path"])) == g["sha256"] for g in good)

        rotated = await engine.backup.run("rotation")
        assert rotated["status"] == "ok"
        assert rotated["deleted"] == {"database": 0, "storage": 0, "full": 0}
        assert all(Path(g["path"]).exists() for g in good)
        statuses = query(
            settings, "SELECT status FROM backups WHERE kind = 'database' ORDER BY id"
        )
        assert [s[0] for s in statuses] == ["ok", "ok", "failed"]


# SQLite only: SQLite's own writes under RLIMIT_FSIZE; PG: disk full.
@pytest.mark.slow
async def test_file_size_limit_fails_the_backup_cleanly(
    settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    """Disk full without root: RLIMIT_FSIZE makes writes past 1 MiB fail with EFBIG."""
    settings = settings_factory(backup_keep_last=1)
    async with Engine(settings, run=[], clock=clock):
        pass
    with contextlib.closing(sqlite3.connect(settings.db_path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE ballast (b BLOB)")
        conn.executemany("INSERT INTO ballast VALUES (randomblob(?))", [(1 << 20,)] * 3)
    env = {"BACKUP_KEEP_LAST": "1"}
    good = []
    for _ in range(2):
        done = await acli(settings, "backup", "run", "database", "--json", **env)
        assert done.returncode == 0, done.stderr
        good.append(json.loads(done.stdout))
    limited = (
        sys.executable,
        "-c",
        "import os, resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n",
    )
    done = await acli(settings, "backup", "run", "database", "--json", prefix=limited, **env)
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "failed" and doc["error"]
    row = backup_row(settings.db_path, doc["id"])
    assert row["status"] == "failed" and row["path"] is None and row["error"]
    folder = settings.backup_dir / "database"
    assert finals(folder) == sorted(Path(g["path"]) for g in good)
    assert temps(settings.backup_dir) == []

    done = await acli(settings, "backup", "run", "rotation", "--json", **env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deleted"]["database"] == 0
    assert all(sha256(Path(g["path"])) == g["sha256"] for g in good)


# ---- storage and full ---------------------------------------------------------------------------
# Storage archives are the same code whatever the database: these run on SQLite only.


async def test_storage_archive_extracts_with_tar_and_keeps_links_as_links(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    marker = "MARKER-" + os.urandom(8).hex()
    outside = tmp_path / "outside"
    fill_storage(settings.storage_dir, outside, marker)
    result = await engine.backup.run("storage")
    assert result["status"] == "ok", result
    assert result["warnings"] is None
    archive = Path(result["path"])
    assert archive.name.endswith(".tar.gz")
    assert mode(archive) == 0o600 and mode(archive.parent) == 0o700

    listed = await run_tar("-tzf", str(archive))
    assert listed.returncode == 0, listed.stderr
    names = {n.removeprefix("./").rstrip("/") for n in listed.stdout.split()}
    assert {
        "note.txt",
        "portraits/p1/photo.jpg",
        "videos/clip.mp4",
        "videos/latest.mp4",
        "link-out.txt",
        "dir-out",
        "empty",
    } <= names
    assert not any(n.startswith("dir-out/") for n in names)

    out = tmp_path / "extracted"
    out.mkdir()
    done = await run_tar("-xzf", str(archive), "-C", str(out))
    assert done.returncode == 0, done.stderr
    src = settings.storage_dir
    for rel in ("note.txt", "portraits/p1/photo.jpg", "videos/clip.mp4"):
        assert (out / rel).read_bytes() == (src / rel).read_bytes()
    assert (out / "empty").is_dir()
    assert os.readlink(out / "videos" / "latest.mp4") == "clip.mp4"
    assert (out / "videos" / "latest.mp4").read_bytes() == (src / "videos/clip.mp4").read_bytes()
    assert os.readlink(out / "link-out.txt") == str(outside / "secret.txt")
    assert (out / "dir-out").is_symlink()

    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
    assert members["link-out.txt"].issym()
    assert members["link-out.txt"].linkname == str(outside / "secret.txt")
    assert members["dir-out"].issym()
    assert members["videos/latest.mp4"].issym()
    # The target outside the folder was never read into the archive.
    assert marker.encode() not in gzip.decompress(archive.read_bytes())

    row = backup_row(settings.db_path, result["id"])
    detail = json.loads(row["detail"])
    assert detail["files"] == 3 and detail["links"] == 3
    assert row["sha256"] == sha256(archive) and row["size"] == archive.stat().st_size


async def test_special_files_are_reported_not_read(engine: Engine, settings: Settings) -> None:
    settings.storage_dir.mkdir()
    (settings.storage_dir / "ok.txt").write_text("fine")
    os.mkfifo(settings.storage_dir / "pipe")  # reading it would block forever
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(settings.storage_dir / "sock"))
        result = await engine.backup.run("storage")
    finally:
        server.close()
    assert result["status"] == "ok", result
    assert result["warnings"] and "2 special file(s) left out" in result["warnings"]
    row = backup_row(settings.db_path, result["id"])
    assert row["warnings"] == result["warnings"]
    assert sorted(json.loads(row["detail"])["special_skipped"]) == ["pipe", "sock"]
    with tarfile.open(result["path"], "r:gz") as tar:
        names = {m.name for m in tar.getmembers()}
    assert "ok.txt" in names and "pipe" not in names and "sock" not in names


@pytest.mark.slow
async def test_unreadable_files_are_reported_as_warnings(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    prefix = without_dac_override(tmp_path)
    storage = settings.storage_dir
    (storage / "locked-dir").mkdir(parents=True)
    (storage / "readable.txt").write_text("fine")
    (storage / "locked.bin").write_bytes(b"private")
    (storage / "locked-dir" / "inner.txt").write_text("hidden")
    (storage / "locked.bin").chmod(0)
    (storage / "locked-dir").chmod(0)
    try:
        done = await acli(settings, "backup", "run", "storage", "--json", prefix=prefix)
    finally:
        (storage / "locked-dir").chmod(0o755)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "ok"
    assert doc["warnings"] and "unreadable" in doc["warnings"]
    assert "locked.bin" in doc["warnings"] and "locked-dir" in doc["warnings"]
    row = backup_row(settings.db_path, doc["id"])
    assert row["warnings"] == doc["warnings"]
    unreadable = json.loads(row["detail"])["unreadable"]
    assert any("locked.bin" in u for u in unreadable)
    with tarfile.open(doc["path"], "r:gz") as tar:
        names = {m.name for m in tar.getmembers()}
    assert "readable.txt" in names
    assert "locked.bin" not in names and "locked-dir/inner.txt" not in names


async def test_missing_storage_folder_is_a_failed_backup(
    engine: Engine, settings: Settings
) -> None:
    result = await engine.backup.run("storage")
    assert result["status"] == "failed"
    assert "does not exist" in result["error"]
    assert backup_row(settings.db_path, result["id"])["status"] == "failed"
    assert finals(settings.backup_dir / "storage") == []
    assert temps(settings.backup_dir) == []


# SQLite only: reads database.db; PG: test_pg_backup's full-backup tests.
async def test_full_backup_holds_database_storage_and_manifest(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    fill_storage(settings.storage_dir, tmp_path / "outside", "MARKER")
    await engine.email.enqueue(to="a@example.com", subject="s", body="b")
    result = await engine.backup.run("full")
    assert result["status"] == "ok", result
    folder = Path(result["path"])
    assert folder.is_dir() and mode(folder) == 0o700 and mode(folder.parent) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == [
        "database.db",
        "manifest.json",
        "storage.tar.gz",
    ]
    assert all(mode(p) == 0o600 for p in folder.iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["database"]["sha256"] == sha256(folder / "database.db")
    assert manifest["database"]["size"] == (folder / "database.db").stat().st_size
    assert manifest["database"]["rows"]["email_jobs"] == 1
    assert manifest["storage"]["sha256"] == sha256(folder / "storage.tar.gz")
    assert manifest["storage"]["files"] == 3
    assert integrity(folder / "database.db") == "ok"
    assert (await run_tar("-tzf", str(folder / "storage.tar.gz"))).returncode == 0
    row = backup_row(settings.db_path, result["id"])
    assert row["sha256"] == sha256(folder / "manifest.json")
    assert row["size"] == sum(p.stat().st_size for p in folder.iterdir())

    verdict = await engine.backup.verify(folder)
    assert verdict.ok and verdict.kind == "full"
    with (folder / "storage.tar.gz").open("ab") as fh:
        fh.write(b"\0")
    verdict = await engine.backup.verify(folder)
    assert not verdict.ok
    assert "storage.tar.gz does not match the manifest" in verdict.reason
    assert backup_row(settings.db_path, result["id"])["verified"] == 0


# ---- verify -----------------------------------------------------------------------------------


# SQLite only: a flipped SQLite page; PG: test_pg_backup's verify test.
async def test_flipped_bytes_in_a_database_backup_fail_verify(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    await engine.email.enqueue_many(
        {"to": f"u{i}@example.com", "subject": f"s{i}", "body": "x" * 300} for i in range(300)
    )
    result = await engine.backup.run("database")
    path = Path(result["path"])
    assert (await engine.backup.verify(path)).ok
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)

    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(x ^ 0xFF for x in data[mid : mid + 64])
    path.write_bytes(bytes(data))
    verdict = await engine.backup.verify(path)
    assert not verdict.ok and verdict.kind == "database"
    assert verdict.reason != "ok"
    row = backup_row(settings.db_path, result["id"])
    assert row["verified"] == 0 and row["error"] == verdict.reason
    assert await engine.backup.history() and not (await engine.backup.history())[0].verified
    assert audit(settings.db_path, "backup.verify")[-1]["ok"] is False

    done = await acli(settings, "backup", "verify", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BAD" in done.stdout and verdict.reason in done.stdout

    # A copy the history does not know (no sha256 to compare): the integrity check decides.
    assert manager.verify(copy).ok
    corrupt_page(copy, "email_jobs")
    verdict = await engine.backup.verify(copy)
    assert not verdict.ok
    assert "integrity" in verdict.reason or "malformed" in verdict.reason
    done = await acli(settings, "backup", "verify", str(copy), "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["ok"] is False


async def test_truncated_storage_archive_fails_verify(engine: Engine, settings: Settings) -> None:
    settings.storage_dir.mkdir()
    (settings.storage_dir / "big.bin").write_bytes(os.urandom(200_000))
    result = await engine.backup.run("storage")
    archive = Path(result["path"])
    assert (await engine.backup.verify(archive)).ok
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    verdict = await engine.backup.verify(archive)
    assert not verdict.ok and verdict.kind == "storage"
    assert "archive unreadable" in verdict.reason
    done = await acli(settings, "backup", "verify", str(archive))
    assert done.returncode == 1
    assert "archive unreadable" in done.stdout


async def test_verify_of_a_missing_path_is_bad(backend_engine: Engine, tmp_path: Path) -> None:
    verdict = await backend_engine.backup.verify(tmp_path / "nope.db")
    assert not verdict.ok and "does not exist" in verdict.reason


# ---- rotation -----------------------------------------------------------------------------------


async def test_rotation_deletes_files_beyond_keep_last_and_records_the_run(
    backend_settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = backend_settings_factory(backup_keep_last=2)
    async with Engine(settings, run=[], clock=clock) as engine:
        made = []
        for _ in range(4):
            made.append(await engine.backup.run("database"))
            clock.advance(DAY)
        result = await engine.backup.run("rotation")
        assert result == {
            "job": "rotation",
            "status": "ok",
            "deleted": {"database": 2, "storage": 0, "full": 0},
        }
        assert [Path(m["path"]).exists() for m in made] == [False, False, True, True]
        statuses = [r[0] for r in query(settings, "SELECT status FROM backups ORDER BY id")]
        assert statuses == ["deleted", "deleted", "ok", "ok"]
        assert [r.id for r in await engine.backup.history()] == [made[3]["id"], made[2]["id"]]
        outcome, _, _ = runs_of(settings, "rotation")[-1]
        assert outcome == "ok"
        counts = json.loads(
            query(settings, "SELECT counts FROM service_runs WHERE job = 'rotation'")[0][0]
        )
        assert counts == {"database": 2, "storage": 0, "full": 0}
        # A second pass has nothing left to do.
        again = await engine.backup.run("rotation")
        assert again["deleted"]["database"] == 0


async def test_rotation_and_its_preview_leave_backups_outside_the_backup_dir_alone(
    backend_settings_factory: Callable[..., Settings], clock: FakeClock, tmp_path: Path
) -> None:
    """A backup recorded in another folder (a one-off run with another VERTEX_BACKUP_DIR, or
    an earlier one) is the operator's: rotation used to delete it with the others beyond
    BACKUP_KEEP_LAST, from a folder it was not configured to manage."""
    elsewhere = tmp_path / "one-off"
    async with Engine(backend_settings_factory(backup_dir=elsewhere), run=[],
                      clock=clock) as engine:
        kept = await engine.backup.run("database")
    assert kept["status"] == "ok" and Path(kept["path"]).parent.parent == elsewhere
    clock.advance(DAY)
    settings = backend_settings_factory(backup_keep_last=1)
    async with Engine(settings, run=[], clock=clock) as engine:
        made = []
        for _ in range(3):
            made.append(await engine.backup.run("database"))
            clock.advance(DAY)
        preview = await engine.backup.rotation_preview()
        assert [b["id"] for b in preview["database"]] == [made[0]["id"], made[1]["id"]]
        result = await engine.backup.run("rotation")
    assert result["deleted"]["database"] == 2
    assert [Path(m["path"]).exists() for m in made] == [False, False, True]
    assert Path(kept["path"]).exists()
    assert query(settings, "SELECT status FROM backups WHERE id = ?", (kept["id"],)) == [
        ("ok",)]


# ---- restore ---------------------------------------------------------------------------------


def jobs(db: Path) -> list[tuple[Any, ...]]:
    return query(db, "SELECT id, recipients, subject, status FROM email_jobs ORDER BY id")


# SQLite only: a file kept aside; PG: test_pg_backup's restore tests.
async def test_restore_round_trip_keeps_the_old_database_aside(
    settings: Settings, clock: FakeClock
) -> None:
    async with Engine(settings, run=[], clock=clock) as engine:
        for i in range(3):
            await engine.email.enqueue(to=f"u{i}@example.com", subject=f"kept {i}", body="b")
        at_backup = jobs(settings.db_path)
        made = await engine.backup.run("database")
        assert made["status"] == "ok"
        clock.advance(HOUR)
        for i in range(2):
            await engine.email.enqueue(to=f"v{i}@example.com", subject=f"later {i}", body="b")
    after_backup = jobs(settings.db_path)
    assert after_backup != at_backup

    clock.advance(HOUR)
    result = await restore(settings, Path(made["path"]), owner="test-restorer", clock=clock)
    assert result["restored_from"] == made["path"]
    assert jobs(settings.db_path) == at_backup
    assert integrity(settings.db_path) == "ok"

    aside = Path(result["previous_saved_as"])
    assert aside.parent == settings.db_path.parent
    assert aside.name.startswith(f"{settings.db_path.name}.before-restore-")
    assert jobs(aside) == after_backup
    assert integrity(aside) == "ok"
    entries = audit(settings.db_path, "backup.restore")
    assert entries == [{"path": made["path"], "previous_saved_as": str(aside)}]
    assert (
        query(settings.db_path, "SELECT count(*) FROM leases WHERE name = ?", (MAINTENANCE_LEASE,))[
            0
        ][0]
        == 0
    )

    # The restored database is usable at once, and backups run on it (no stale lease from
    # the moment the copy was taken blocks them).
    async with Engine(settings, run=[], clock=clock) as engine:
        assert [j.id for j in await engine.email.list_jobs()] != []
        again = await engine.backup.run("database")
        assert again["status"] == "ok", again


# SQLite only: reads the copy as SQLite; PG: test_pg_backup.
async def test_restore_keeps_the_backup_records_and_the_newer_audit_trail(
    settings: Settings, clock: FakeClock
) -> None:
    """The restored copy was taken while its own backup ran, and knows no later backup: the
    backup records (files on disk) and what operators did since come from the replaced
    database, so history, listing and rotation still see every file."""
    async with Engine(settings, run=[], clock=clock) as engine:
        made = await engine.backup.run("database")
        clock.advance(HOUR)
        later = await engine.backup.run("database")
        drill = await engine.backup.drill()
        await engine.email.pause()  # an audited operator action after the backup
        before = query(settings.db_path, "SELECT id, kind, status, path, sha256 FROM backups"
                                         " ORDER BY id")
        drills = query(settings.db_path, "SELECT id, backup_id, ok FROM restore_drills")
        actions = [a for (a,) in query(settings.db_path,
                                       "SELECT action FROM audit_log ORDER BY id")]
    assert made["status"] == later["status"] == drill["status"] == "ok"
    # In the copy itself, its own backup is still running and the later one does not exist.
    copy_rows = query(Path(made["path"]), "SELECT id, status FROM backups ORDER BY id")
    assert copy_rows == [(before[0][0], "running")]

    clock.advance(HOUR)
    result = await restore(settings, Path(made["path"]), owner="test-restorer", clock=clock)
    assert result["carried_over"]["backups"] == len(before) == 2
    assert query(settings.db_path, "SELECT id, kind, status, path, sha256 FROM backups"
                                   " ORDER BY id") == before
    assert query(settings.db_path, "SELECT id, backup_id, ok FROM restore_drills") == drills
    trail = [a for (a,) in query(settings.db_path, "SELECT action FROM audit_log ORDER BY id")]
    assert trail == [*actions, "backup.restore"]
    # Rotation and the next start see both files as good backups: nothing 'interrupted'.
    async with Engine(settings, run=[], clock=clock) as engine:
        listed = await engine.backup.history()
        assert {(r.path, r.status) for r in listed} == {(made["path"], "ok"),
                                                         (later["path"], "ok")}


# SQLite only: files aside; PG: test_pg_backup's refused-while-an-engine-runs.
async def test_restore_is_refused_while_an_engine_is_alive(
    settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = settings_factory(**NO_SCHEDULES)
    async with Engine(settings, run=[], clock=clock) as engine:
        made = await engine.backup.run("database")
    async with Engine(settings, clock=clock) as running:
        assert running.running()  # services started: it holds a heartbeat lease
        with pytest.raises(UsageError, match="engine is running"):
            await restore(settings, Path(made["path"]), owner="test-restorer", clock=clock)
        assert running.owner in (await running.leases.alive_engines(clock.time()))
    assert not list(settings.db_path.parent.glob("*.before-restore-*"))
    assert (
        query(settings.db_path, "SELECT count(*) FROM leases WHERE name = ?", (MAINTENANCE_LEASE,))[
            0
        ][0]
        == 0
    )
    # Once the engine is gone, the same restore goes through.
    result = await restore(settings, Path(made["path"]), owner="test-restorer", clock=clock)
    assert Path(result["previous_saved_as"]).exists()


# SQLite only: a flipped SQLite byte; PG: test_pg_backup.
async def test_restore_refuses_a_backup_that_does_not_verify(
    settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    async with Engine(settings, run=[], clock=clock) as engine:
        await engine.email.enqueue(to="a@example.com", subject="s", body="b")
        made = await engine.backup.run("database")
        await engine.email.enqueue(to="b@example.com", subject="t", body="b")
    path = Path(made["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    state = jobs(settings.db_path)

    with pytest.raises(manager.BackupFailed, match="does not verify"):
        await restore(settings, path, owner="test-restorer", clock=clock)
    # A text file is no backup that failed: it is not a vertex-tui database (bad input, 2).
    not_a_backup = tmp_path / "notes.db"
    not_a_backup.write_text("hello")
    with pytest.raises(manager.NotRestorable, match="not a vertex-tui database"):
        await restore(settings, not_a_backup, owner="test-restorer", clock=clock)
    assert jobs(settings.db_path) == state
    assert not list(settings.db_path.parent.glob("*.before-restore-*"))
    # The maintenance lease was released: an engine starts on the database again.
    async with Engine(settings, run=[], clock=clock) as engine:
        assert len(await engine.email.list_jobs()) == 2


# ---- drills -------------------------------------------------------------------------------


async def test_restore_drill_is_recorded_and_shown(backend_settings: Settings,
                                                   clock: FakeClock) -> None:
    settings = backend_settings
    async with Engine(settings, run=[], clock=clock) as engine:
        await drill_is_recorded_and_shown(engine, settings)


async def drill_is_recorded_and_shown(engine: Engine, settings: Settings) -> None:
    none_yet = await engine.backup.run("drill")
    assert none_yet["status"] == "failed"
    last = await engine.backup.last_drill()
    assert last is not None and last["ok"] is False and last["error"]
    assert (await engine.backup.status())["last_verified_restore"] is None

    await engine.email.enqueue(to="a@example.com", subject="s", body="b")
    made = await engine.backup.run("database")
    drilled = await engine.backup.run("drill")
    assert drilled["status"] == "ok", drilled
    assert drilled["path"] == made["path"]
    assert drilled["rows"]["email_jobs"] == 1
    last = await engine.backup.last_drill()
    assert last is not None
    assert last["ok"] is True and last["path"] == made["path"]
    assert last["backup_id"] == made["id"] and last["error"] is None
    assert last["detail"]["rows"]["email_jobs"] == 1
    shown = (await engine.backup.status())["last_verified_restore"]
    assert shown is not None and shown["path"] == made["path"]
    assert [r[0] for r in runs_of(settings, "drill")] == ["error", "ok"]
    assert len(audit(settings, "backup.run.drill")) == 2

    # A corrupted newest backup fails its drill, and "last verified restore" stays the old one.
    path = Path(made["path"])
    if settings.database_url is None:
        corrupt_page(path, "backups")
    else:  # a dump cut short
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    failed = await engine.backup.run("drill")
    assert failed["status"] == "failed"
    assert (await engine.backup.last_drill() or {})["ok"] is False
    assert (await engine.backup.status())["last_verified_restore"]["path"] == made["path"]


# ---- leases and recovery ----------------------------------------------------------------------


async def test_two_engines_trigger_the_same_job_and_only_one_runs(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    async with (
        Engine(settings, run=[], clock=clock, owner="engine-one") as one,
        Engine(settings, run=[], clock=clock, owner="engine-two") as two,
    ):
        results = await asyncio.gather(one.backup.run("database"), two.backup.run("database"))
    assert sorted(r["status"] for r in results) == ["ok", "skipped"]
    skipped = next(r for r in results if r["status"] == "skipped")
    ran = next(r for r in results if r["status"] == "ok")
    assert "holds the lease" in skipped["reason"]
    assert query(settings, "SELECT count(*) FROM backups")[0][0] == 1
    assert len(finals(settings.backup_dir / "database")) == 1
    outcomes = sorted(r[0] for r in runs_of(settings, "database"))
    assert outcomes == ["ok", "skipped"]
    owners = {r[0]: r[2] for r in runs_of(settings, "database")}
    assert owners["ok"] != owners["skipped"]
    assert Path(ran["path"]).exists()
    # The lease is released after the run: the next trigger from either engine runs.
    assert (
        query(settings, "SELECT count(*) FROM leases WHERE name LIKE 'backup:%'")[0][0] == 0
    )


async def test_service_start_recovers_what_a_dead_process_left(
    backend_settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = backend_settings_factory(**NO_SCHEDULES)
    async with Engine(settings, run=[], clock=clock):
        pass
    dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await dead.wait()
    folder = settings.backup_dir / "database"
    folder.mkdir(parents=True)
    stale = folder / f".database-20270101T000000Z.db.tmp-{dead.pid}"
    stale.write_bytes(b"half a copy")
    live = folder / f".database-20270101T000001Z.db.tmp-{os.getpid()}"
    live.write_bytes(b"someone is writing this")
    query(settings, "INSERT INTO backups (kind, status, started_at, owner)"
          " VALUES ('database', 'running', 1, 'gone-host:1:dead')")
    query(settings, "INSERT INTO service_runs (service, job, owner, started_at)"
          " VALUES ('backup', 'database', 'gone-host:1:dead', 1)")

    async with Engine(settings, run=["backup"], clock=clock):
        pass
    assert not stale.exists()
    assert live.exists()  # its process is alive: not ours to remove
    status, error = query(settings, "SELECT status, error FROM backups")[0]
    assert status == "failed" and "interrupted" in error
    assert runs_of(settings, "database")[0][0] == "error"
