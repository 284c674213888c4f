"""The engine runs without the console: importing and using it never loads Textual or Rich.

Each check runs in a fresh interpreter, since this test process may have imported anything.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

FORBIDDEN_CHECK = """
def forbidden():
    bad = []
    for name in sorted(sys.modules):
        top = name.split(".")[0]
        if top.startswith(("textual", "rich")):
            bad.append(name)
        elif name == "vertex_tui.app" or name.startswith(("vertex_tui.app.", "vertex_tui.screens")):
            bad.append(name)
    return bad
"""


def _run(code: str, cwd: Path) -> dict[str, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys\n" + FORBIDDEN_CHECK + code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[str]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_importing_and_using_the_engine_loads_no_console_module(tmp_path: Path) -> None:
    code = f"""
import asyncio, json, importlib, pkgutil
import vertex_tui.engine
from vertex_tui.engine import Engine, FakeClock, Settings
out = {{"import": forbidden()}}

settings = Settings.from_env({{"VERTEX_DB_PATH": {str(tmp_path / "vertex.db")!r}}})
engine = Engine(settings, clock=FakeClock())
out["construct"] = forbidden()

for info in pkgutil.walk_packages(vertex_tui.engine.__path__, "vertex_tui.engine."):
    importlib.import_module(info.name)
out["all_engine_modules"] = forbidden()

async def main():
    async with Engine(settings, clock=FakeClock(), run=[]) as opened:
        await opened.status()
asyncio.run(main())
out["open_and_status"] = forbidden()
out["engine_loaded"] = [m for m in ("vertex_tui.engine.engine", "vertex_tui.engine.store.db")
                        if m in sys.modules]
# Guard against a vacuous pass: the same probe does flag Textual once it is imported.
import textual.app
out["control"] = forbidden()
print(json.dumps(out))
"""
    result = _run(code, tmp_path)
    assert result.pop("engine_loaded") == ["vertex_tui.engine.engine", "vertex_tui.engine.store.db"]
    control = result.pop("control")
    assert "textual" in control and "textual.app" in control
    assert result == {
        "import": [],
        "construct": [],
        "all_engine_modules": [],
        "open_and_status": [],
    }
    assert (tmp_path / "vertex.db").exists()


# ---- SQL lives in engine/store/ ---------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[2] / "vertex_tui"
STORE = PACKAGE / "engine" / "store"
# A statement's first word, as the code base writes SQL (upper case): prose ("Delete sent
# and failed jobs...", "select a backup") never matches.
SQL_START = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|PRAGMA|CREATE|DROP|ALTER|REPLACE|BEGIN|COMMIT"
    r"|ROLLBACK|SAVEPOINT|ATTACH|DETACH|VACUUM|ANALYZE|REINDEX)\s")
# Calls that run SQL: a driver's (sqlite3, aiosqlite, DB-API) and our Database's.
DRIVER_CALLS = {"execute", "executemany", "executescript", "execute_fetchall",
                "run_transaction", "read_one", "write_many"}
DB_CALLS = {"read", "write"}  # file objects have these too: only on a receiver named *db
DRIVERS = {"sqlite3", "aiosqlite", "psycopg", "psycopg_pool"}


def sql_findings(source: str, name: str) -> list[str]:
    """Where `source` holds SQL: statement literals, calls that run SQL, driver imports."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL_START.match(node.value):
                found.append(f"{where} SQL text {node.value.strip()[:50]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr, receiver = node.func.attr, ast.unparse(node.func.value)
            if attr in DRIVER_CALLS or (attr in DB_CALLS and receiver.lower().endswith("db")):
                found.append(f"{where} runs SQL: {receiver}.{attr}(...)")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""])
            for imported in names:
                if imported.split(".")[0] in DRIVERS:
                    found.append(f"{where} imports the driver {imported}")
    return found


def test_sql_statements_live_only_in_engine_store() -> None:
    """Screens, CLI and services call store functions; no statement, no `.execute`, no driver
    import anywhere else (the seam a PostgreSQL backend plugs into)."""
    outside = [p for p in sorted(PACKAGE.rglob("*.py")) if STORE not in p.parents]
    assert len(outside) > 40 and PACKAGE / "engine" / "leases.py" in outside
    findings = [f for p in outside
                for f in sql_findings(p.read_text(encoding="utf-8"), str(p.relative_to(PACKAGE)))]
    assert findings == []


def test_the_sql_scan_finds_sql_where_there_is_some() -> None:
    """The scan is not vacuous: it flags the statements of the store itself, and each kind."""
    leases = (STORE / "leases.py").read_text(encoding="utf-8")
    assert len(sql_findings(leases, "leases.py")) >= 7
    snippet = (
        "import aiosqlite\n"
        "from sqlite3 import connect\n"
        "Q = f'SELECT * FROM {t}'\n"
        "async def f(conn, self):\n"
        "    await conn.execute('x')\n"
        "    await self._db.read(Q)\n"
        "    fh.read(16)\n"  # a file: not flagged
        "    return 'Delete old mail'\n"  # prose: not flagged
    )
    kinds = [f.split(" ", 1)[1] for f in sql_findings(snippet, "s.py")]
    assert kinds == ["imports the driver aiosqlite", "imports the driver sqlite3",
                     "SQL text 'SELECT * FROM'", "runs SQL: conn.execute(...)",
                     "runs SQL: self._db.read(...)"]


def test_only_store_db_knows_aiosqlite() -> None:
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if re.search(r"^\s*(import|from) aiosqlite\b", p.read_text(encoding="utf-8"),
                                re.MULTILINE))
    assert users == ["engine/store/db.py"]


def test_only_engine_store_knows_psycopg() -> None:
    """The PostgreSQL driver is the store's business alone (its backend and admin modules)."""
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if re.search(r"^\s*(import|from) psycopg(_pool)?\b",
                                p.read_text(encoding="utf-8"), re.MULTILINE))
    assert users and all(u.startswith("engine/store/") for u in users), users
    assert "engine/store/pgadmin.py" in users


# ---- imports: no cycle, every engine module imports alone ---------------------------------


def engine_modules() -> list[str]:
    import vertex_tui.engine

    names = [info.name for info in
             pkgutil.walk_packages(vertex_tui.engine.__path__, "vertex_tui.engine.")]
    return ["vertex_tui.engine", *sorted(names)]


def _module_file(name: str) -> Path:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _load_time_imports(name: str, tree: ast.Module, modules: set[str]) -> set[str]:
    """vertex_tui modules that module `name` imports when it loads (not in functions, not
    under TYPE_CHECKING), with the packages an import runs on the way, except `name`'s own
    packages (being imported already, whatever it imports) unless named explicitly
    (`from vertex_tui.engine import x`)."""
    found: set[str] = set()
    ancestors = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}

    def add(imported: str) -> None:
        parts = imported.split(".")
        found.add(imported)
        found.update(".".join(parts[:i]) for i in range(1, len(parts))
                     if ".".join(parts[:i]) not in ancestors)

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    add(alias.name)
            elif isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
                add(stmt.module)
                for alias in stmt.names:
                    if f"{stmt.module}.{alias.name}" in modules:
                        add(f"{stmt.module}.{alias.name}")
            elif isinstance(stmt, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(stmt.test):
                    visit(stmt.body)
                visit(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                visit(stmt.body)
                for handler in stmt.handlers:
                    visit(handler.body)
                visit(stmt.orelse)
                visit(stmt.finalbody)
            elif isinstance(stmt, ast.ClassDef | ast.With):
                visit(stmt.body)

    visit(tree.body)
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    modules = set(engine_modules()) | {"vertex_tui"}
    graph = {}
    for name in sorted(modules):
        tree = ast.parse(_module_file(name).read_text(encoding="utf-8"))
        graph[name] = _load_time_imports(name, tree, modules) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` (the modules on it, in order), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_engine_modules_import_each_other_without_a_cycle() -> None:
    """A package `__init__` that imports its submodules, imported back by them through
    `from vertex_tui.engine import ...`, is a cycle; modules import siblings directly."""
    graph = import_graph()
    assert "vertex_tui.engine.store.db" in graph["vertex_tui.engine.store.email"]
    assert find_cycle(graph) == []


def test_each_engine_module_imports_alone_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """Each module imports by itself, first thing in a new interpreter (an order-dependent
    cycle fails here), and loads only what it imports, not the whole engine."""
    graph = import_graph()

    def closure(name: str) -> set[str]:
        """`name`, what it imports, and so on, each with its own packages."""
        seen, todo = set(), [name]
        while todo:
            node = todo.pop()
            parts = node.split(".")
            for nxt in {node, *graph[node], *(".".join(parts[:i]) for i in range(1, len(parts)))}:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    modules = engine_modules()
    code = ("import importlib, json, sys\nimportlib.import_module(sys.argv[1])\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('vertex_tui'))))")
    loaded: dict[str, list[str]] = {}
    for start in range(0, len(modules), 8):  # a few interpreters at a time
        batch = modules[start:start + 8]
        procs = {m: subprocess.Popen([sys.executable, "-c", code, m], cwd=tmp_path, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for m in batch}
        for m, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"import {m} alone: {err.strip().splitlines()[-1:]}"
            loaded[m] = json.loads(out)
    assert len(loaded) == len(modules) > 40
    extra = {m: sorted(set(found) - closure(m)) for m, found in loaded.items()
             if set(found) - closure(m)}
    assert extra == {}
    assert loaded["vertex_tui.engine.clock"] == ["vertex_tui", "vertex_tui.engine",
                                                 "vertex_tui.engine.clock"]


def test_the_public_surface_still_loads_from_the_package() -> None:
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys, vertex_tui.engine as e\n"
         "assert 'vertex_tui.engine.engine' not in sys.modules\n"
         "from vertex_tui.engine import Engine, Settings, VertexError, events\n"
         "assert Engine.__module__ == 'vertex_tui.engine.engine'\n"
         "assert all(getattr(e, n) is not None for n in e.__all__)\n"
         "try:\n    e.Nothing\nexcept AttributeError as exc:\n    print(exc)\n"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "module 'vertex_tui.engine' has no attribute 'Nothing'"
