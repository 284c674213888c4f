"""The CLI's command table: each subcommand module registers with one line in `cli.AREAS`,
and every action a parser accepts has its handler. The plugged-in command opens an engine, on
both backends (`backend`); the table itself opens no database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.db import backend_url

from vertex_tui import (
    cli,
    cli_backup,
    cli_email,
    cli_entities,
    cli_jobs,
    cli_log,
    cli_status,
    doctor,
)

PLUGIN = '''
async def _hello(args, engine):
    doc = await engine.status()
    print("hello", args.times, sorted(doc["services"]))
    return 0


def add_parser(sub, parser_class, positive_int):
    hello = sub.add_parser("hello", help="say hello")
    hello.add_argument("--times", type=positive_int, default=1)


async def command(args, engine):
    return await _hello(args, engine)
'''

RUNNER = '''
import sys
sys.path.insert(0, sys.argv[1])
import cli_hello
from vertex_tui import cli
cli.AREAS.append(cli_hello)
sys.exit(cli.main(sys.argv[2:]))
'''


def _run(tmp_path: Path, url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERTEX_", "SMTP_"))}
    env["VERTEX_DB_PATH"] = str(tmp_path / "vertex.db")
    if url is not None:
        env["VERTEX_DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path), *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


def test_every_subcommand_is_in_the_table_with_its_module() -> None:
    _, table = cli.build_parser()
    assert table == {
        "config": cli_status, "status": cli_status, "email": cli_email, "backup": cli_backup,
        "lifecycle": cli_entities, "video": cli_entities, "project": cli_entities,
        "portrait": cli_entities, "jobs": cli_jobs, "log": cli_log, "doctor": doctor,
    }


def test_every_email_and_backup_action_has_a_handler() -> None:
    parser, _ = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, actions in (("email", cli_email.ACTIONS), ("backup", cli_backup.ACTIONS)):
        accepted = set(next(a for a in sub.choices[name]._actions if a.dest == "action").choices)
        # restore runs before any engine opens the database (cli_backup.run)
        assert set(actions) == accepted - ({"restore"} if name == "backup" else set()), name


@pytest.mark.usefixtures("backend")
def test_a_module_plugs_in_with_one_line(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = backend_url(request)
    (tmp_path / "cli_hello.py").write_text(PLUGIN, encoding="utf-8")
    done = _run(tmp_path, url, "hello", "--times", "2")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "hello 2 ['backup', 'email', 'lifecycle', 'video']\n"
    # The command ran on this test's database (PostgreSQL: no SQLite file made).
    assert (tmp_path / "vertex.db").exists() is (url is None)
    listed = _run(tmp_path, url, "--help")
    assert listed.returncode == 0 and "hello" in listed.stdout and "say hello" in listed.stdout
    bad = _run(tmp_path, url, "hello", "--times", "0")
    assert bad.returncode == 2
    assert bad.stderr == ("vertex-tui hello: argument --times: expected a number >= 1, got 0\n")
