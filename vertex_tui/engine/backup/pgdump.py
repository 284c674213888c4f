"""Backups of a PostgreSQL database: `pg_dump --format=custom` and `pg_restore`. Blocking code,
run in a worker thread, like manager.py's SQLite copies.

- The password never goes on a command line (another user's `ps` would see it): it is taken
  out of the URL and handed to the child in its environment (`PGPASSWORD`); a URL without
  one leaves libpq to `PGPASSWORD`, `~/.pgpass` or a service file, as for the engine.
- The tools are those of `bin_dir` (VERTEX_PG_BIN) or else the newest installed (PATH and
  Debian's /usr/lib/postgresql/*/bin). pg_dump older than the server cannot dump it and
  pg_restore older than the dump cannot read it: both are refused up front with one line
  naming the two versions.
- A dump's header names the pg_dump and server versions that wrote it (read here without
  any tool), so `verify` can say which pg_restore it needs.
- A tool dies with the process that started it (Linux: the parent-death signal): a backup
  or restore killed with -9 leaves no pg_dump running on for nobody, holding its snapshot
  open and filling a temp file the recovery deletes, nor a pg_restore writing on. util-linux's
  `setpriv --pdeathsig` sets it and execs the tool, so no Python runs in the forked child (a
  `preexec_fn` would: Python documents that as unsafe in a process with threads, and the
  engine has several); without setpriv, a `preexec_fn` does it.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from vertex_tui.engine.errors import VertexError
from vertex_tui.engine.store.pgurl import display_url, mask_url

MAGIC = b"PGDMP"
DEBIAN_BINS = "/usr/lib/postgresql/*/bin"
TABLES_NEEDED = ("schema_migrations", "email_jobs", "backups", "leases", "audit_log")


class DumpFailed(VertexError):
    """pg_dump or pg_restore failed, or is too old; the message says why (one line)."""


@dataclass(frozen=True, kw_only=True)
class PgSource:
    """The PostgreSQL database to back up: its URL (with any password) and tool folder."""

    url: str
    bin_dir: Path | None = None


# ---- connecting without a password on the command line ------------------------------------


def split_password(url: str) -> tuple[str, dict[str, str]]:
    """`url` without its password, and the environment that gives the password to libpq."""
    parts = urlsplit(url)
    env: dict[str, str] = {}
    netloc = parts.netloc
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}@{hostinfo}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if k.lower() != "password"]
    for k, v in query:
        if k.lower() == "password":
            env["PGPASSWORD"] = v
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(kept))), env


# ---- the tools and their versions -----------------------------------------------------------


_TOOL_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


_PR_SET_PDEATHSIG = 1  # prctl(2)
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _killed_with_parent(args: list[str]) -> tuple[list[str], Any]:
    """(command, preexec_fn) that run `args` so the tool is killed when the thread that
    starts it ends (this worker thread waits for the tool, so: when this process dies)."""
    if _SETPRIV is not None:
        return [_SETPRIV, "--pdeathsig", "KILL", "--", *args], None
    return args, _dying_with(os.getpid())


def _dying_with(parent: int) -> Any:
    """A `preexec_fn` that has the child killed when the thread that started it ends; None
    off Linux. Only where there is no setpriv (see `_killed_with_parent`)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # died between the fork and the prctl
            os._exit(1)

    return arm


@functools.cache
def tool_version(path: str) -> tuple[int, int]:
    """(major, minor) that `path --version` reports."""
    try:
        # No parent-death signal: `--version` prints a line and exits (the timeout bounds it).
        out = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    except OSError as exc:
        raise DumpFailed(f"cannot run {path}: {exc.strerror}") from None
    found = _TOOL_VERSION.search(out)
    if found is None:
        raise DumpFailed(f"{path} --version said {out.strip()[:80]!r}, not a PostgreSQL tool")
    return int(found[1]), int(found[2] or 0)


def candidates(name: str, bin_dir: Path | None) -> list[str]:
    if bin_dir is not None:
        return [str(bin_dir / name)] if (bin_dir / name).is_file() else []
    found = sorted(glob.glob(f"{DEBIAN_BINS}/{name}"))
    on_path = shutil.which(name)
    return [*found, *([on_path] if on_path else [])]


def find_tool(name: str, bin_dir: Path | None = None) -> tuple[str, tuple[int, int]]:
    """The newest `name` (pg_dump, pg_restore) there is, and its version."""
    found = [(tool_version(p), p) for p in candidates(name, bin_dir)]
    if not found:
        where = str(bin_dir) if bin_dir is not None else f"PATH nor {DEBIAN_BINS}"
        raise DumpFailed(f"{name} not found in {where}: install the PostgreSQL client tools"
                         " (Debian: postgresql-client) or set VERTEX_PG_BIN")
    version, path = max(found)
    return path, version


def version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def too_old(tool: str, version: tuple[int, int], needed_major: int,
            needed_by: str) -> str | None:
    """Why `tool` at `version` cannot work with `needed_by` (of major version
    `needed_major`), or None when it can. Pure: table-tested."""
    if version[0] >= needed_major:
        return None
    return (f"{tool} {version_text(version)} is older than {needed_by}: install the "
            f"PostgreSQL {needed_major} client tools (or newer) or point VERTEX_PG_BIN at them")


# ---- a dump's header -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DumpHeader:
    archive: tuple[int, int, int]
    database: str
    server_version: str
    pg_dump_version: str

    @property
    def pg_dump_major(self) -> int:
        found = re.match(r"\d+", self.pg_dump_version)
        return int(found[0]) if found else 0


def read_header(path: Path) -> DumpHeader | None:
    """The header of a custom-format dump at `path`, or None if it is not one."""
    try:
        with path.open("rb") as fh:
            data = fh.read(4096)
    except OSError:
        return None
    if not data.startswith(MAGIC) or len(data) < 11:
        return None
    vmaj, vmin, vrev, int_size = data[5], data[6], data[7], data[8]
    pos = 11  # magic, 3 version bytes, int size, offset size, format

    def read_int() -> int:
        nonlocal pos
        sign, raw = data[pos], data[pos + 1: pos + 1 + int_size]
        pos += 1 + int_size
        value = int.from_bytes(raw, "little")
        return -value if sign else value

    def read_str() -> str:
        nonlocal pos
        n = read_int()
        if n < 0:
            return ""
        text = data[pos: pos + n].decode("utf-8", "replace")
        pos += n
        return text

    try:
        if (vmaj, vmin) >= (1, 15):
            pos += 1  # compression algorithm, one byte
        else:
            read_int()  # compression level
        for _ in range(7):
            read_int()  # creation time
        database, server, dumper = read_str(), read_str(), read_str()
    except IndexError:
        return None
    return DumpHeader(archive=(vmaj, vmin, vrev), database=database, server_version=server,
                      pg_dump_version=dumper)


def is_dump(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


# ---- running the tools -------------------------------------------------------------------


def _run(args: list[str], env: dict[str, str], what: str,
         cancel: threading.Event | None = None) -> str:
    """Run a tool to the end (or until `cancel`); its stdout, or DumpFailed with its first
    error line (passwords masked). The tool dies with this process."""
    child_env = {**os.environ, **env}
    command, arm = _killed_with_parent(args)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=child_env, stdin=subprocess.DEVNULL, preexec_fn=arm) as proc:
        while True:
            try:
                out, err = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    proc.terminate()
                    proc.communicate()
                    from vertex_tui.engine.backup.manager import Cancelled

                    raise Cancelled("backup cancelled (engine stopping)") from None
    if proc.returncode != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()] or lines or ["(no message)"]
        raise DumpFailed(f"{what} failed: {mask_url(errors[0])}")
    return out


def dump(source: PgSource, dest: Path, cancel: threading.Event | None = None) -> dict[str, Any]:
    """`pg_dump --format=custom` of the database into the new file `dest`: one consistent
    snapshot of the database (MVCC: no writer waits for it). Returns the versions."""
    from vertex_tui.engine.store import pgadmin  # psycopg: only when PostgreSQL is used

    tool, version = find_tool("pg_dump", source.bin_dir)
    server = pgadmin.server_version(source.url)
    server_text = f"{server // 10000}.{server % 10000}"
    problem = too_old("pg_dump", version, server // 10000,
                      f"the server (PostgreSQL {server_text}, at {display_url(source.url)})")
    if problem:
        raise DumpFailed(problem)
    url, env = split_password(source.url)
    _run([tool, "--format=custom", "--no-password", f"--file={dest}", f"--dbname={url}"],
         env, "pg_dump", cancel)
    return {"format": "pg_dump custom", "pg_dump": version_text(version),
            "server": server_text}


def _restore_tool(path: Path, bin_dir: Path | None) -> str:
    tool, version = find_tool("pg_restore", bin_dir)
    header = read_header(path)
    if header is not None:
        problem = too_old("pg_restore", version, header.pg_dump_major,
                          f"the pg_dump {header.pg_dump_version} that wrote {path.name}")
        if problem:
            raise DumpFailed(problem)
    return tool


def toc(path: Path, bin_dir: Path | None = None) -> str:
    """`pg_restore --list` of the dump: its table of contents (reads the whole archive
    index; DumpFailed if it cannot)."""
    return _run([_restore_tool(path, bin_dir), "--list", str(path)], {}, "pg_restore --list")


def check_dump(path: Path, bin_dir: Path | None = None) -> str | None:
    """None if `path` is a custom-format dump that pg_restore reads and that holds
    vertex-tui's tables, else why not."""
    if read_header(path) is None:
        return "not a pg_dump custom-format archive"
    try:
        listing = toc(path, bin_dir)
    except DumpFailed as exc:
        return str(exc)
    missing = [t for t in TABLES_NEEDED
               if not re.search(rf"^\d+; \d+ \d+ TABLE DATA \S+ {t} ", listing, re.MULTILINE)]
    if missing:
        return f"the dump has no data for {', '.join(missing)}"
    return None


def schema_history(path: Path, bin_dir: Path | None = None) -> list[tuple[int, str]]:
    """The migrations recorded in the dump (version, name), read from its data."""
    out = _run([_restore_tool(path, bin_dir), "--data-only", "--table=schema_migrations",
                "--file=-", str(path)], {}, "pg_restore")
    applied: list[tuple[int, str]] = []
    copying = False
    for line in out.splitlines():
        if line.startswith("COPY ") and "schema_migrations" in line:
            copying = True
        elif copying and line == "\\.":
            break
        elif copying:
            fields = line.split("\t")
            applied.append((int(fields[0]), fields[1]))
    return sorted(applied)


def detail(path: Path, bin_dir: Path | None = None) -> dict[str, Any]:
    """What a dump's record shows: schema version and the versions that wrote it."""
    header = read_header(path)
    applied = schema_history(path, bin_dir)
    return {"schema_version": applied[-1][0] if applied else None,
            "format": "pg_dump custom",
            "pg_dump": header.pg_dump_version if header else None,
            "server": header.server_version if header else None}


def restore_into(path: Path, url: str, bin_dir: Path | None = None) -> None:
    """Restore the dump at `path` into the (empty) database at `url`, in one transaction,
    stopping at the first error."""
    target, env = split_password(url)
    _run([_restore_tool(path, bin_dir), "--no-password", "--no-owner", "--no-privileges",
          "--exit-on-error", "--single-transaction", f"--dbname={target}", str(path)],
         env, "pg_restore")


def scratch_name(purpose: str) -> str:
    return f"vt_{purpose}_{os.getpid()}_{int(time.time() * 1000) % 10**10}"


def drill(path: Path, url: str, tables: tuple[str, ...],
          bin_dir: Path | None = None) -> dict[str, Any]:
    """Restore the dump into a temporary database on the server of `url`, run the smoke
    query there and drop it again (whatever happened)."""
    from vertex_tui.engine.store import pgadmin, pgbackup
    from vertex_tui.engine.store.pgurl import database_name

    started = time.perf_counter()
    name = scratch_name("drill")
    scratch = pgadmin.create_database(url, name, note=pgadmin.scratch_note(database_name(url)))
    try:
        restore_into(path, scratch, bin_dir)
        version, counts = pgbackup.smoke(scratch, tables)
    finally:
        pgadmin.drop_database(url, name)
    return {"seconds": time.perf_counter() - started, "schema_version": version,
            "rows": counts, "restored_into": f"temporary database {name} (dropped)"}
