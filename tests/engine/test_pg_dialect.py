"""The dialect seam: every named statement (`dialect.Sql`) has a text for both databases and
each one parses there; SQLite-only syntax outside `Sql(sqlite=...)` is listed and may only
shrink; the PostgreSQL migrations keep SQLite's version numbers."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import sqlite3
from collections import Counter
from pathlib import Path

import psycopg
import pytest

import vertex_tui.engine.store as store_pkg
from vertex_tui.engine.store import db as sqlite_db
from vertex_tui.engine.store import pgmigrate
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.dialect import REGISTRY, Sql
from vertex_tui.engine.store.pg import translate

STORE = Path(store_pkg.__file__).parent
# Modules about the SQLite file itself (pragmas, quick_check, backup API): SQLite-only by
# purpose, not by accident.
SQLITE_ONLY_MODULES = {"db.py", "sqlitefile.py", "doctor.py"}

# SQLite-only syntax (the list, and a few more of the same kind).
SQLITE_ONLY = {
    "INDEXED BY": r"\bINDEXED\s+BY\b",
    "NOT INDEXED": r"\bNOT\s+INDEXED\b",
    "INSERT OR IGNORE/REPLACE": r"\bINSERT\s+OR\s+(IGNORE|REPLACE)\b",
    "sqlite_sequence": r"\bsqlite_sequence\b",
    "LIMIT -1": r"\bLIMIT\s+-1\b",
    "printf(": r"\bprintf\s*\(",
    "char(": r"(?<![a-z_])char\s*\(",
    "strftime(": r"\bstrftime\s*\(",
    "julianday(": r"\bjulianday\s*\(",
    "json_each": r"\bjson_each\b",
    "json_group_array": r"\bjson_group_array\b",
    "group_concat": r"\bgroup_concat\b",
    "ifnull(": r"\bifnull\s*\(",
    "temp.": r"\btemp\.",
    "IS NOT '": r"\bIS\s+NOT\s+'",
    "rowid": r"\browid\b",
    "MATCH": r"\bMATCH\s+\?",
}

# Offenders today: (module, pattern) -> count. Converting one (an `Sql` with both texts)
# removes it from here; nothing may be added. Owners: email/search/history (the email
# helper), lifecycle/videos (the lifecycle/videos helper).
KNOWN_OFFENDERS: dict[tuple[str, str], int] = {
    ("email.py", "json_each"): 3,
    ("email.py", "sqlite_sequence"): 1,
    ("search.py", "MATCH"): 1,
    ("search.py", "rowid"): 2,
    # videos.activate's SQLite path (temp.video_candidates); PostgreSQL runs ACTIVATE_PG.
    ("videos.py", "INSERT OR IGNORE/REPLACE"): 2,
    ("videos.py", "temp."): 4,
}


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _sqlite_variants(tree: ast.Module) -> set[int]:
    """The string constants inside `Sql(..., sqlite=...)` (or its 2nd positional argument)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == "Sql":
            parts = [k.value for k in node.keywords if k.arg == "sqlite"] + node.args[1:2]
            for part in parts:
                ids.update(id(n) for n in ast.walk(part) if isinstance(n, ast.Constant))
    return ids


def sqlite_only_findings(source: str) -> Counter[str]:
    tree = ast.parse(source)
    skip = _docstrings(tree) | _sqlite_variants(tree)
    found: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            for label, pattern in SQLITE_ONLY.items():
                found[label] += len(re.findall(pattern, node.value, re.IGNORECASE))
    return +found


def current_offenders() -> dict[tuple[str, str], int]:
    out = {}
    for path in sorted(STORE.glob("*.py")):
        if path.name in SQLITE_ONLY_MODULES:
            continue
        for label, n in sqlite_only_findings(path.read_text(encoding="utf-8")).items():
            out[(path.name, label)] = n
    return out


def test_the_scan_finds_sqlite_only_syntax_but_not_in_sqlite_variants() -> None:
    source = '''
"""Docstring: INSERT OR IGNORE is fine here."""
A = "SELECT * FROM t INDEXED BY ix WHERE x IS NOT 'a' LIMIT -1"
B = Sql("b", sqlite="INSERT OR IGNORE INTO t VALUES (1)", postgresql="INSERT INTO t VALUES (1)"
        " ON CONFLICT DO NOTHING")
C = f"SELECT printf('%d', n), strftime('%s', x) FROM {t}"
D = Sql("d", "SELECT json_each(x) FROM temp.t", "SELECT 1")
E = Sql("e", sqlite="SELECT 1", postgresql="SELECT rowid FROM t")
'''
    assert sqlite_only_findings(source) == Counter({
        "INDEXED BY": 1, "IS NOT '": 1, "LIMIT -1": 1, "printf(": 1, "strftime(": 1,
        "rowid": 1})


def test_sqlite_only_syntax_outside_sqlite_variants_only_shrinks() -> None:
    now = current_offenders()
    new = {k: n for k, n in now.items() if n > KNOWN_OFFENDERS.get(k, 0)}
    assert new == {}, "SQLite-only SQL outside Sql(sqlite=...): write both variants"
    gone = {k: n for k, n in KNOWN_OFFENDERS.items() if now.get(k, 0) < n}
    assert gone == {}, "converted (thank you): lower or remove these in KNOWN_OFFENDERS"


# ---- the registry ----------------------------------------------------------------------------


def _import_store() -> None:
    for info in pkgutil.iter_modules(store_pkg.__path__, "vertex_tui.engine.store."):
        importlib.import_module(info.name)


def _dummy_params(text: str) -> tuple[object, ...] | dict[str, object]:
    converted = translate(text)
    names = re.findall(r"%\((\w+)\)s", converted)
    if names:
        return dict.fromkeys(names)
    return (None,) * converted.replace("%%", "").count("%s")


def test_every_named_statement_has_both_dialects() -> None:
    _import_store()
    assert {"requests.pick", "engines.alive"} <= set(REGISTRY)
    for statement in REGISTRY.values():
        assert statement.sqlite.strip() and statement.postgresql.strip(), statement.name
        found = sqlite_only_findings(f"X = {statement.postgresql!r}")
        assert not found, f"{statement.name}: SQLite-only syntax in its PostgreSQL text: {found}"


def test_a_name_used_twice_for_different_sql_is_refused() -> None:
    Sql("test.dialect.twice", sqlite="SELECT 1", postgresql="SELECT 1")
    Sql("test.dialect.twice", sqlite="SELECT 1", postgresql="SELECT 1")  # the same: fine
    with pytest.raises(ValueError, match="used twice"):
        Sql("test.dialect.twice", sqlite="SELECT 2", postgresql="SELECT 1")
    with pytest.raises(ValueError, match="postgresql text is empty"):
        Sql("test.dialect.empty", sqlite="SELECT 1", postgresql=" ")


async def test_every_named_statement_parses_on_its_database(tmp_path: Path, pg_url: str
                                                            ) -> None:
    """EXPLAIN (plan, run nothing) each statement's text on a migrated database of each kind:
    a misspelt column or a dialect's missing function fails here, not in production."""
    _import_store()
    db = await Database.open(tmp_path / "v.db")
    await db.close()
    statements = [s for s in REGISTRY.values() if not s.name.startswith("test.")]
    assert statements
    with sqlite3.connect(tmp_path / "v.db") as conn:
        for s in statements:
            conn.execute(f"EXPLAIN {s.sqlite}", _dummy_params(s.sqlite))
    conn.close()
    with psycopg.connect(pg_url, autocommit=True) as pg:
        for s in statements:
            params = _dummy_params(s.postgresql)
            pg.execute(f"EXPLAIN {translate(s.postgresql)}", params or None)


# ---- migrations ------------------------------------------------------------------------------


def test_postgresql_migrations_keep_the_sqlite_version_numbers() -> None:
    sqlite_versions = [(n, name) for n, name, _ in sqlite_db.load_migrations()]
    pg_versions = [(n, name) for n, name, _ in pgmigrate.load_migrations()]
    assert [n for n, _ in pg_versions] == [n for n, _ in sqlite_versions]
    assert pg_versions == sqlite_versions  # the same names too: one change, two files
    for _, name, text in pgmigrate.load_migrations():
        script = re.sub(r"--[^\n]*", "", text)  # comments may name SQLite's types
        assert "double precision" in script or name != "0001_foundation.sql"
        for label, pattern in {"REAL": r"\bREAL\b", "AUTOINCREMENT": r"\bAUTOINCREMENT\b",
                               "WITHOUT ROWID": r"\bWITHOUT\s+ROWID\b",
                               "INTEGER PRIMARY KEY": r"\bINTEGER\s+PRIMARY\s+KEY\b"}.items():
            assert not re.search(pattern, script, re.IGNORECASE), f"{name}: {label}"
