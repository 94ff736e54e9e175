"""The layers of docs/architecture.md ("Layers"), checked from the source: every import of a bitedge module, at the
top of a file or inside a function, goes to the module's own layer or one above it, and no two modules import each
other (directly or round a longer loop). A new module must be given its layer here."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bitedge"

# top to bottom, as drawn in docs/architecture.md; a module is matched by its longest listed prefix
LAYERS = [
    ["bitedge", "bitedge.errors", "bitedge._shipped", "bitedge.output"],
    ["bitedge.targets"],
    ["bitedge.model"],
    ["bitedge.formats"],
    ["bitedge.gguf_read"],
    ["bitedge.reference", "bitedge.tokenizer"],
    ["bitedge.lossless", "bitedge.native"],
    ["bitedge.convert"],
    ["bitedge.render"],
    ["bitedge.board"],
    ["bitedge.builder"],
    ["bitedge.deploy"],
    ["bitedge.results"],
    ["bitedge.serve", "bitedge.demo", "bitedge.inspect"],
    ["bitedge.api"],
    ["bitedge.cli"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every bitedge module path imports, anywhere in the file (`from a import b` counts a.b when b is a module)."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {n for n in found if n == "bitedge" or n.startswith("bitedge.")}


def all_modules() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports_of(path):
            while imported and imported not in modules:  # `from pkg import function`: the module is pkg
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    if best is None:
        pytest.fail(f"{module} has no layer: give it one in tests/test_layers.py and docs/architecture.md")
    return best[0]


def test_every_import_goes_up_the_layers():
    wrong = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
             for m, targets in sorted(all_modules().items()) for t in sorted(targets)
             if t != "bitedge" and layer_of(t) > layer_of(m)]
    assert not wrong, "\n".join(wrong)


def test_targets_is_a_leaf():
    assert all_modules()["bitedge.targets"] <= {"bitedge.errors", "bitedge._shipped"}


def test_no_import_cycles():
    graph = all_modules()
    state: dict[str, int] = {}
    loops = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its submodules (bitedge.cli gathers its commands, they use its helpers)
            if state.get(nxt) == 1:
                loops.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not loops, "\n".join(loops)


def test_the_check_sees_a_wrong_import(tmp_path, monkeypatch):
    """It can fail: a targets module that imports the build is reported."""
    fake = tmp_path / "bitedge"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "targets.py").write_text("def f():\n    from bitedge.builder.compile import build_runtime\n")
    (fake / "builder").mkdir()
    (fake / "builder" / "__init__.py").write_text("")
    (fake / "builder" / "compile.py").write_text("from bitedge.targets import f\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="bitedge.targets .layer 1. imports bitedge.builder.compile"):
        test_every_import_goes_up_the_layers()
    with pytest.raises(AssertionError):
        test_targets_is_a_leaf()
    with pytest.raises(AssertionError, match="bitedge.builder.compile -> bitedge.targets -> bitedge.builder.compile|"
                                             "bitedge.targets -> bitedge.builder.compile -> bitedge.targets"):
        test_no_import_cycles()
