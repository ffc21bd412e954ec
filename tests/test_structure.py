"""The house rules the code base keeps: one-way layers, a curated public API, no import cycles, short units.

Read from the source with ``ast`` (nothing is imported), so a violation names
the file and line that breaks the rule.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Layer of each part of the code: a module may import its own layer and those below.
LAYERS = {
    "flaxmodel.errors": 0,
    "flaxmodel.flags": 0,
    "flaxmodel.commands": 0,
    "flaxmodel.records": 0,
    "flaxmodel.core": 1,
    "flaxmodel.ckpts": 2,
    "flaxmodel.inference": 3,
    "flaxmodel": 3,  # the package's __init__: the inference API
    "flaxmodel.training": 4,
    # The pipelines: shared names, then sources -> (options) -> model -> sinks -> reviews -> reporting, then
    # the jobs on top.
    "pipelines.names": 5,
    "pipelines.sources": 6,
    "pipelines.options": 7,
    "pipelines.model": 8,
    "pipelines.sinks": 9,
    # Reading reviewed samples, then the run report's data and page, then the jobs.
    "pipelines.reviews": 10,
    "pipelines.reporting": 11,
    "pipelines": 12,
}
# What the pipelines may import of flaxmodel: its curated public API (flaxmodel/__init__.py), the one
# format layer (flaxmodel/records/__init__.py), the shared command-line layer (flags generated from
# dataclasses, the exit-status wrapper) and, for the adapt job, the training package's API.
PUBLIC_API = ("flaxmodel", "flaxmodel.records", "flaxmodel.flags", "flaxmodel.commands", "flaxmodel.training")
TRAINING_ONLY = ("optax", "orbax", "tqdm")
MAX_UNIT_LINES = 150
MAX_MODULE_LINES = 350


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for package in ("flaxmodel", "pipelines") for p in sorted((ROOT / package).rglob("*.py"))}


def _layer(module: str) -> int:
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)
    return LAYERS[best]


def _imports(path: pathlib.Path, *, submodules: bool = True) -> list[tuple[str, int]]:
    """Every module an import statement names (function-level imports included), with its line.

    With ``submodules``, "from flaxmodel.ckpts import files" also counts as importing flaxmodel.ckpts.files
    (which it may be); without, only the module the statement names.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, node.lineno))
            if submodules:
                found.extend((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)
    return found


def _internal_graph() -> dict[str, set[str]]:
    sources = _sources()
    return {
        name: {m for m, _ in _imports(path) if m in sources and m != name} for name, path in sources.items()
    }


def test_no_module_imports_a_layer_above_its_own():
    sources = _sources()
    wrong = []
    for name, path in sources.items():
        for imported, line in _imports(path):
            if imported in sources and _layer(imported) > _layer(name):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_pipelines_import_only_the_public_api_of_flaxmodel():
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for name, path in _sources().items()
        if name.startswith("pipelines")
        for imported, line in _imports(path, submodules=False)
        if imported.split(".")[0] == "flaxmodel" and imported not in PUBLIC_API
    ]
    assert not wrong, "\n".join(wrong)


def test_the_public_api_lists_every_name_it_exports():
    import flaxmodel
    import flaxmodel.inference
    import flaxmodel.records

    for package in (flaxmodel, flaxmodel.inference, flaxmodel.records):
        assert sorted(package.__all__) == sorted(
            name for name in vars(package) if not name.startswith("_") and not _is_module(getattr(package, name))
        ), package.__name__


def _is_module(value: object) -> bool:
    return type(value).__name__ == "module"


@pytest.mark.parametrize("package", ["flaxmodel", "pipelines"])
def test_no_module_is_longer_than_the_limit(package):
    long_modules = [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long_modules, "\n".join(long_modules)


def test_there_are_no_import_cycles():
    graph = _internal_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                cycles.append(" -> ".join(trail[trail.index(child) :] + [child]))
            elif child not in state:
                visit(child, trail + [child])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "\n".join(cycles)


def test_training_libraries_stay_in_the_training_package():
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for name, path in _sources().items()
        if not name.startswith("flaxmodel.training")
        for imported, line in _imports(path)
        if imported.split(".")[0] in TRAINING_ONLY
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", ["flaxmodel", "pipelines"])
def test_no_class_or_function_is_longer_than_the_limit(package):
    long_units = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_UNIT_LINES:
                    long_units.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long_units, "\n".join(long_units)
