"""Static import closure of a stage's entry module: which project source files can affect its outputs.

Used by tests/test_config.py to check that every DVC stage declares (as a file or a folder) each
project module its command can import, lazy imports inside functions included."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("anyhead", "recon", "benchmarks", "pipelines")
# Their effect on outputs reaches every stage through the params values each stage declares.
CONFIG_MODULES = {"anyhead/config.py", "recon/config.py", "anyhead/paths.py", "pipelines/common.py"}


def module_file(name: str) -> Path | None:
    p = ROOT.joinpath(*name.split("."))
    if (p / "__init__.py").exists():
        return p / "__init__.py"
    if p.with_suffix(".py").exists():
        return p.with_suffix(".py")
    return None


def _imports(path: Path, modname: str) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = modname if path.name == "__init__.py" else modname.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # "from pkg import module"
    return {m for m in out if m.split(".")[0] in PACKAGES}


def closure(entry: str) -> set[str]:
    """Repository-relative source files reachable from module ``entry`` by imports."""
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        f = module_file(name)
        if f is None:
            continue
        seen[name] = f
        parts = name.split(".")
        for i in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__
            todo.append(".".join(parts[:i]))
        todo.extend(_imports(f, name))
    return {str(p.relative_to(ROOT)) for p in seen.values()} - CONFIG_MODULES


def undeclared(entry: str, deps: list[str]) -> list[str]:
    """Files of ``closure(entry)`` covered by no dependency (a file, or a folder above it)."""
    def covered(f: str) -> bool:
        return any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)

    return sorted(f for f in closure(entry) if not covered(f) and not f.endswith("__init__.py"))
