"""The package's layers point one way (docs/architecture.md, "Layers"): a module imports only from its own layer or
the layers below it, no modules import each other in a circle, no module imports another's private (`_name`)
names, and edgedeploy modules are imported at the top of a module (a function-level import is for an optional SDK
or torch, or for the CLI's start-up time). Read from the source with `ast`, so nothing here imports the package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgedeploy"

# lowest first; a module belongs to the layer of its longest listed prefix
LAYERS: list[tuple[str, list[str]]] = [
    ("core", ["edgedeploy", "edgedeploy.errors", "edgedeploy.fileio", "edgedeploy.arrayfile", "edgedeploy.config",
              "edgedeploy.shapes", "edgedeploy.device", "edgedeploy.outfolder", "edgedeploy.versions",
              "edgedeploy.tensor_error", "edgedeploy.checks"]),
    ("data", ["edgedeploy.data", "edgedeploy.preprocess", "edgedeploy.tasks"]),
    ("graph", ["edgedeploy.graph", "edgedeploy.onnx_checks", "edgedeploy.static_batch", "edgedeploy.export",
               "edgedeploy.sources", "edgedeploy.demo"]),
    ("precision", ["edgedeploy.precision"]),
    ("backends", ["edgedeploy.backends"]),
    ("validate", ["edgedeploy.validate"]),
    ("report", ["edgedeploy.validate.report", "edgedeploy.validate.html", "edgedeploy.validate.junit",
                "edgedeploy.validate.write"]),
    ("pipeline", ["edgedeploy.pipeline", "edgedeploy.auto", "edgedeploy.stagecache", "edgedeploy.bundle",
                  "edgedeploy.precision_debug", "edgedeploy.revalidate"]),
    ("app", ["edgedeploy.cli", "edgedeploy.remote", "edgedeploy.fleet"]),
]
# function-level imports of edgedeploy modules allowed here: the CLI imports a command's modules when it runs
LAZY_IMPORTERS = {"edgedeploy.cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, rank = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    assert rank is not None, f"{module} is in no layer: add it to LAYERS in tests/test_layers.py"
    return rank


def imports_of(module: str) -> list[tuple[str, list[str], int, bool]]:
    """(imported module, names, line, inside a function) for every edgedeploy import of `module`."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "edgedeploy" and not target.startswith("edgedeploy."):
                continue
            modules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            names = [a.name for a in node.names if f"{target}.{a.name}" not in MODULES]
            for m in modules:
                found.append((m, [], node.lineno, id(node) in nested))
            if names:
                found.append((target, names, node.lineno, id(node) in nested))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "edgedeploy" or a.name.startswith("edgedeploy."):
                    found.append((a.name, [], node.lineno, id(node) in nested))
    return found


def upward_imports() -> list[str]:
    bad = []
    for module in MODULES:
        for target, _, line, _ in imports_of(module):
            if layer_of(target) > layer_of(module):
                bad.append(f"{module}:{line} ({LAYERS[layer_of(module)][0]}) imports {target} "
                           f"({LAYERS[layer_of(target)][0]})")
    return bad


def import_cycles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), over every import, top level or not."""
    graph = {m: sorted({t for t, _, _, _ in imports_of(m) if t in MODULES and t != m}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for m in graph:
        if m not in index:
            visit(m)
    return groups


def private_imports() -> list[str]:
    return [f"{module}:{line} imports {', '.join(n for n in names if n.startswith('_'))} from {target}"
            for module in MODULES for target, names, line, _ in imports_of(module)
            if target != module and any(n.startswith("_") and not n.startswith("__") for n in names)]


def function_level_imports() -> list[str]:
    return [f"{module}:{line} imports {target} inside a function" for module in MODULES
            if module not in LAZY_IMPORTERS for target, _, line, inside in imports_of(module) if inside]


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_upward_imports():
    bad = upward_imports()
    assert not bad, "imports that point up a layer:\n" + "\n".join(bad)


def test_no_import_cycles():
    cycles = import_cycles()
    assert not cycles, "modules that import each other in a circle:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def test_no_private_names_across_modules():
    bad = private_imports()
    assert not bad, "private names imported from another module:\n" + "\n".join(bad)


def test_edgedeploy_imports_at_module_level():
    bad = function_level_imports()
    assert not bad, "function-level imports of edgedeploy modules:\n" + "\n".join(bad)


def target_name_tests() -> list[str]:
    """Places outside backends/ that decide by target name: `x.target == "..."` (or !=, in, not in), and a table
    keyed by target names looked up with `x.target`."""
    found = []
    for module, path in MODULES.items():
        if module.startswith("edgedeploy.backends"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                names_target = any(isinstance(s, ast.Attribute) and s.attr == "target" for s in sides)
                strings = any(isinstance(s, ast.Constant) and isinstance(s.value, str) or
                              isinstance(s, (ast.Tuple, ast.List, ast.Set)) for s in sides)
                if names_target and strings:
                    found.append(f"{module}:{node.lineno} compares a target name")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and isinstance(node.func.value, ast.Dict) and node.args
                    and isinstance(node.args[0], ast.Attribute) and node.args[0].attr == "target"):
                found.append(f"{module}:{node.lineno} looks a target name up in a table")
    return found


def test_targets_are_decided_in_backends_only():
    bad = target_name_tests()
    assert not bad, "decisions by target name outside edgedeploy/backends (declare them in its TargetKind):\n" + \
        "\n".join(bad)


def test_every_target_of_the_config_is_registered():
    from typing import get_args

    from edgedeploy.backends import TARGETS
    from edgedeploy.config import Target

    assert set(TARGETS) == set(get_args(Target))
