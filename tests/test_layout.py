"""The package's shape: no import cycle among tfxai's modules, every module importable on its own."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tfxai

PACKAGE = Path(tfxai.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """tfxai modules that ``name`` imports, anywhere but inside a lazy ``__getattr__``."""
    tree = ast.parse(path.read_text())
    lazy = {id(n) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
            for n in ast.walk(node)}
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".") if is_pkg else name.split(".")[:-1]
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("tfxai"):
                found.add(t)
    return found


def test_no_import_cycle_among_tfxai_modules():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_planted_cycle(tmp_path, monkeypatch):
    # A test that cannot fail is a defect: the same walk must see a cycle when there is one.
    pkg = tmp_path / "tfxai"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    with pytest.raises(AssertionError, match="tfxai.a -> tfxai.b -> tfxai.a"):
        test_no_import_cycle_among_tfxai_modules()


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], "tfxai.") if m.name != "tfxai.__main__")
    code = "import importlib\nfor n in %r:\n    importlib.import_module(n)\n" % names
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_importing_tfxai_loads_no_tensorflow():
    out = subprocess.run([sys.executable, "-c", "import sys, tfxai, tfxai.data, tfxai.io.atomic, tfxai.io.output_folder, "
                          "tfxai.io.model_files, tfxai.explain, tfxai.compress; print('tensorflow' in sys.modules)"],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def _oversized() -> set[str]:
    """Modules over MAX_MODULE_LINES and functions over MAX_FUNCTION_LINES, except functions that
    declare a flag list and say so in their docstring ("declarative flag list")."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.add(rel)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                exempt = "declarative flag list" in (ast.get_docstring(node) or "")
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES and not exempt:
                    found.add(f"{rel}:{node.name}")
    return found


def test_no_module_or_function_is_too_long_to_read():
    oversized = _oversized()
    assert not oversized, (f"over {MAX_MODULE_LINES} lines (module) or {MAX_FUNCTION_LINES} (function): "
                           f"{sorted(oversized)}")
