"""The test PostgreSQL server helper: a real cluster, a migrated template, a database per test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from vertex_tui.engine.store.pgmigrate import load_migrations
from vertex_tui.testing.pgserver import PgServer, find_bin


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_each_test_gets_a_migrated_database_of_its_own(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        conn.execute("INSERT INTO engine_flags (name, value, updated_at) VALUES ('x', '1', 0)")
    assert versions == [n for n, _, _ in load_migrations()]
    assert versions[:10] == list(range(1, 11))
    other = pg_server.database()
    try:
        with psycopg.connect(other) as conn:  # the insert above is not in the other copy
            assert conn.execute("SELECT count(*) FROM engine_flags").fetchone() == (0,)
    finally:
        pg_server.drop(other)
    with psycopg.connect(pg_server.admin_url) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert other.rsplit("/", 1)[1] not in names and pg_url.rsplit("/", 1)[1] in names


def test_an_empty_database_has_no_tables(pg_server: PgServer) -> None:
    url = pg_server.database(migrated=False)
    try:
        assert _tables(url) == set()
    finally:
        pg_server.drop(url)
    assert "email_jobs" in _tables(pg_server.database())


def test_a_killed_owner_leaves_no_cluster_behind(tmp_path: Path, wait_for: Any) -> None:
    """The process that started a cluster is killed (-9, no atexit): the watcher stops the
    server and removes its folder."""
    if find_bin() is None:
        pytest.skip("no PostgreSQL binaries for a cluster of its own")
    code = ("from vertex_tui.testing.pgserver import PgServer\n"
            "s = PgServer.start(prefix='pg-core-kill-')\n"
            "print(s.data_dir, s.admin_url, flush=True)\n"
            "import time; time.sleep(600)\n")
    env = {k: v for k, v in os.environ.items() if k != "VERTEX_TEST_DATABASE_URL"}
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env=env, cwd=tmp_path)
    try:
        assert owner.stdout is not None
        data, url = owner.stdout.readline().split()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        owner.kill()
        owner.wait(10)
        if owner.stdout is not None:
            owner.stdout.close()
    asyncio.run(wait_for(lambda: not Path(data).exists(), timeout=30,
                         message="the watcher to remove the cluster"))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()
