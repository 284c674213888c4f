"""A throwaway PostgreSQL server for tests and benchmarks.

`PgServer.start()` either uses the server named by `VERTEX_TEST_DATABASE_URL` (a libpq URL
of a role that may create databases), or initialises a cluster of its own with Debian's
binaries (`/usr/lib/postgresql/<ver>/bin`, or `VERTEX_TEST_PG_BIN`): `initdb` as the
`postgres` user when run as root (initdb and pg_ctl refuse root), trust authentication on
loopback only, a free port of `VERTEX_TEST_PG_PORTS` (default 55400-55499), `fsync=off`
(a test cluster: its data is thrown away). `template()` migrates one template database once;
`database()` makes a fresh database from it (`CREATE DATABASE x TEMPLATE tpl`, a file copy:
no migration per test). `stop()` drops what it made or stops and removes the cluster.

    server = PgServer.start(prefix="pg-core-")
    url = server.database()          # postgresql://postgres@127.0.0.1:55400/vt_1234_1
    ...
    server.drop(url)
    server.stop()

`Unavailable` is raised when neither a URL nor the binaries are there (tests skip on it).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from vertex_tui.engine.store.pgadmin import create_database, drop_database
from vertex_tui.engine.store.pgmigrate import migrate_url
from vertex_tui.engine.store.pgurl import database_name, with_database

URL_VARIABLE = "VERTEX_TEST_DATABASE_URL"
DEFAULT_PORTS = (55400, 55499)


class Unavailable(RuntimeError):
    """No PostgreSQL server can be had: no URL given and no binaries installed."""


def find_bin() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: `VERTEX_TEST_PG_BIN`, else the newest Debian
    /usr/lib/postgresql/<version>/bin, else the PATH's."""
    given = os.environ.get("VERTEX_TEST_PG_BIN")
    if given:
        return Path(given) if (Path(given) / "initdb").exists() else None
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                    key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                    else 0)
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _ports() -> tuple[int, int]:
    raw = os.environ.get("VERTEX_TEST_PG_PORTS", "")
    lo, sep, hi = raw.partition("-")
    if sep and lo.strip().isdigit() and hi.strip().isdigit():
        return int(lo), int(hi)
    return DEFAULT_PORTS


def free_port(lo: int, hi: int) -> int:
    """A loopback port of lo..hi that nothing listens on (nor binds) right now."""
    for port in range(lo, hi + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise Unavailable(f"no free loopback port in {lo}-{hi} for a test PostgreSQL server")


def _as_postgres(argv: list[str]) -> list[str]:
    """`argv` run as the `postgres` user when we are root (initdb/pg_ctl refuse root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


class PgServer:
    """A running PostgreSQL server to make test databases on (see the module doc)."""

    def __init__(self, admin_url: str, *, data_dir: Path | None = None,
                 bin_dir: Path | None = None) -> None:
        self.admin_url = admin_url  # the maintenance database ("postgres") of the server
        self.data_dir = data_dir    # None: not ours (VERTEX_TEST_DATABASE_URL)
        self.bin_dir = bin_dir
        self._template: str | None = None
        self._made: list[str] = []
        self._count = 0
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def port(self) -> int | None:
        from urllib.parse import urlsplit

        return urlsplit(self.admin_url).port

    # ---- start and stop ----------------------------------------------------------------

    @classmethod
    def start(cls, *, prefix: str = "vertex-pg-", ports: tuple[int, int] | None = None
              ) -> PgServer:
        """The server of `VERTEX_TEST_DATABASE_URL`, else a new cluster under /tmp/`prefix`*."""
        given = os.environ.get(URL_VARIABLE)
        if given:
            server = cls(with_database(given, database_name(given) or "postgres"))
        else:
            server = cls._init_cluster(prefix, ports or _ports())
        atexit.register(server.stop)
        return server

    @classmethod
    def _init_cluster(cls, prefix: str, ports: tuple[int, int]) -> PgServer:
        bin_dir = find_bin()
        if bin_dir is None:
            raise Unavailable("PostgreSQL binaries (initdb, pg_ctl) are not installed and "
                              f"{URL_VARIABLE} is not set")
        data = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        try:
            cls._run([str(bin_dir / "initdb"), "-D", str(data / "pgdata"), "-U", "postgres",
                      "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                     cwd=data)
            port = free_port(*ports)
            options = (f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
                       " -c synchronous_commit=off -c full_page_writes=off"
                       " -c max_connections=300")
            cls._run([str(bin_dir / "pg_ctl"), "-D", str(data / "pgdata"), "-o", options,
                      "-l", str(data / "server.log"), "-w", "-t", "60", "start"], cwd=data)
        except BaseException:
            cls._stop_cluster(bin_dir, data)
            raise
        return cls(f"postgresql://postgres@127.0.0.1:{port}/postgres", data_dir=data,
                   bin_dir=bin_dir)

    @staticmethod
    def _run(argv: list[str], cwd: Path) -> None:
        proc = subprocess.run(_as_postgres(argv), cwd=cwd, capture_output=True, text=True,
                              timeout=120, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise Unavailable(f"{Path(argv[0]).name} failed ({proc.returncode}): "
                              + " / ".join(tail))

    @staticmethod
    def _stop_cluster(bin_dir: Path, data: Path) -> None:
        if (data / "pgdata" / "postmaster.pid").exists():
            subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data / "pgdata"),
                                         "-m", "immediate", "-w", "stop"]),
                           cwd=data, capture_output=True, timeout=60, check=False)
        shutil.rmtree(data, ignore_errors=True)

    def stop(self) -> None:
        """Drop the databases this made (a given server), or stop and remove the cluster."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            made = [*self._made, *([self._template] if self._template else [])]
        if self.data_dir is not None and self.bin_dir is not None:
            self._stop_cluster(self.bin_dir, self.data_dir)
            return
        for name in made:
            with contextlib.suppress(Exception):
                drop_database(self.admin_url, name)

    # ---- databases ---------------------------------------------------------------------

    def _name(self, kind: str) -> str:
        with self._lock:
            self._count += 1
            return f"vt_{kind}_{os.getpid()}_{self._count}"

    def template(self) -> str:
        """The name of the migrated template database, made (and migrated) on first use."""
        with self._lock:
            if self._template is not None:
                return self._template
        name = self._name("tpl")
        url = create_database(self.admin_url, name)
        migrate_url(url)
        with self._lock:
            self._template = name
        return name

    def database(self, *, migrated: bool = True) -> str:
        """The URL of a new database: a copy of the migrated template, or empty."""
        template = self.template() if migrated else None
        name = self._name("db")
        url = create_database(self.admin_url, name, template=template)
        with self._lock:
            self._made.append(name)
        return url

    def drop(self, url: str) -> None:
        """Drop the database of `url` (made by `database()`)."""
        name = database_name(url)
        drop_database(self.admin_url, name)
        with self._lock:
            if name in self._made:
                self._made.remove(name)
