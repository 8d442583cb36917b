"""The package layout is the data flow (sources -> case -> provenance -> rules -> export, with
the CLI a thin layer on top); these checks keep imports going only that way, read with ast so
no module needs to be imported to be checked."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "tokentrail"

# package -> packages (or third-party top-level modules) it must never import
FORBIDDEN = {
    "sources": {"case", "provenance", "rules", "export", "scale", "cli", "analyse", "results"},
    "case": {"provenance", "rules", "export", "scale", "cli", "analyse", "results"},
    "provenance": {"rules", "export", "scale", "cli", "analyse", "results"},
    "rules": {"export", "cli"},
    "export": {"cli"},
    "scale": {"export", "cli"},
}
LIBRARY_NEVER = {"click", "rich"}  # everything but tokentrail/cli and __main__.py
# Known exception, a reason to fix, not a rule: the mapping compiler and loader read the case's
# event column list (case/schema.py). Exports read what a format provides from the case's
# `sources` table (stored at ingest), never from the mapping registry.
ALLOWED = {("sources", "case"): {"sources/mapping.py", "sources/compiler.py"}}


def _imports(path: Path, root: Path) -> set[str]:
    rel = path.relative_to(root).with_suffix("").parts
    module = ["tokentrail", *rel]
    if module[-1] == "__init__":
        module = module[:-1]
    package = module if path.name == "__init__.py" else module[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
                found.add(name)
                found.update(f"{name}.{a.name}" for a in node.names)
            else:
                found.add(node.module or "")
                found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def violations(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        where = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        imported = _imports(path, root)
        tops = {m.split(".")[0] for m in imported}
        internal = {m.split(".")[1] for m in imported if m.startswith("tokentrail.") and m.count(".") >= 1}
        if where not in ("cli", "__main__"):
            out += [f"{rel}: imports {bad}" for bad in sorted(tops & LIBRARY_NEVER)]
        for bad in sorted(internal & FORBIDDEN.get(where, set())):
            if rel.as_posix() not in ALLOWED.get((where, bad), set()):
                out.append(f"{rel}: {where}/ imports tokentrail.{bad}")
    return out


def test_imports_follow_the_data_flow():
    assert violations(PACKAGE) == []


def test_the_check_catches_a_backward_import(tmp_path):
    """A provenance module importing an export, and a library module importing rich, fail."""
    (tmp_path / "provenance").mkdir()
    (tmp_path / "provenance" / "__init__.py").write_text("")
    (tmp_path / "provenance" / "lineage.py").write_text("from ..export import html\n")
    (tmp_path / "output.py").write_text("import rich.console\n")
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "__init__.py").write_text("import click\n")
    assert violations(tmp_path) == ["output.py: imports rich",
                                    "provenance/lineage.py: provenance/ imports tokentrail.export"]
