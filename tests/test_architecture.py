"""The layout rules, checked on the source: the import graph of `ingester/` has no cycle (imports inside
functions count: a lazy import is still a dependency), every SQL statement lives in `ingester/store/`,
and the command-line modules hold no SQL and no lock handling (they parse, call `ingester.app`, render)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ingester"
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|WITH|BEGIN|COMMIT|ROLLBACK|SAVEPOINT)\b")
RAW_SQL_CALLS = {"execute", "executemany", "executescript"}
STORE_RAW = RAW_SQL_CALLS | {"one", "rows", "row", "iter_rows", "column", "connect"}  # raw SQL, a connection
LOCK_NAMES = {"acquire_lock", "release_lock", "check_lock", "lock_holder", "set_lock", "clear_lock",
              "requeue_abandoned"}


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for a package folder."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that a module imports, at any depth (functions included), except under
    `if TYPE_CHECKING:`. `from package import module` is an import of that module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(r for a in child.names if (r := resolve(a.name)))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in known else resolve(base)
                    if target:
                        found.add(target)
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    return found


def cycles(root: Path) -> list[list[str]]:
    """The import cycles of a package (each a list of modules, the first repeated at the end)."""
    known = modules(root)
    graph = {name: sorted(imports(name, path, known)) for name, path in known.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []
    for start in graph:
        if state.get(start):
            continue
        path = [start]
        stack = [iter(graph[start])]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(graph[nxt]))
    return found


def test_the_import_graph_of_ingester_has_no_cycle():
    found = cycles(PACKAGE)
    assert found == [], "import cycles: " + "; ".join(" → ".join(c) for c in found)


def test_the_cycle_finder_finds_a_lazy_import_cycle_and_ignores_type_checking_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.a import x\n")  # a lazy import closes the cycle
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    assert cycles(pkg) == [["pkg.a", "pkg.b", "pkg.a"]]
    (pkg / "b.py").write_text("X = 1\n")
    assert cycles(pkg) == []


def sql_outside_the_store(path: Path) -> list[str]:
    """SQL text and raw `execute` calls of a module."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
            problems.append(f"{path.name}:{node.lineno}: SQL {node.value[:40]!r}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RAW_SQL_CALLS:
            problems.append(f"{path.name}:{node.lineno}: .{node.func.attr}(…)")
    return problems


def test_every_sql_statement_lives_in_the_store_package():
    problems = [p for name, path in modules(PACKAGE).items() if not name.startswith("ingester.store")
                for p in sql_outside_the_store(path)]
    assert problems == []


def cli_problems(path: Path) -> list[str]:
    """SQL, raw store calls, connections, store construction and lock handling in a command-line module
    (importing sqlite3 for its error class, to say what a store error means, is fine)."""
    problems = sql_outside_the_store(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in STORE_RAW:
            problems.append(f"{path.name}:{node.lineno}: store.{node.func.attr}(…)")
        names = []
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
        elif isinstance(node, ast.ImportFrom):
            if node.module == "ingester.locks":
                problems.append(f"{path.name}:{node.lineno}: imports {node.module}")
            names += [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            problems += [f"{path.name}:{node.lineno}: imports {a.name}" for a in node.names
                         if a.name == "ingester.locks"]
        for name in names:
            if name in LOCK_NAMES:
                problems.append(f"{path.name}:{node.lineno}: lock handling ({name})")
            if name == "Store":
                problems.append(f"{path.name}:{node.lineno}: opens the store itself (Store)")
    return problems


def test_command_line_modules_hold_no_sql_and_no_lock_handling():
    problems = [p for path in sorted((PACKAGE / "cli").glob("*.py")) for p in cli_problems(path)]
    assert problems == []


@pytest.mark.parametrize("source, expected", [
    ('def f(store):\n    return store.execute("SELECT 1")\n', "SQL"),
    ("def f(store):\n    return store.one(q)\n", "store.one"),
    ("from ingester.coordinator import acquire_lock\n", "lock handling"),
    ("def f(s, aoi, run):\n    release_lock(s, aoi, run)\n", "lock handling"),
    ("def f():\n    from ingester.store import Store\n    return Store('x')\n", "Store"),
    ("import sqlite3\ndef f():\n    return sqlite3.connect('x')\n", "store.connect"),
])  # fmt: skip
def test_the_command_line_check_finds_what_it_forbids(tmp_path, source, expected):
    path = tmp_path / "cmd.py"
    path.write_text(source)
    assert any(expected in p for p in cli_problems(path))
