"""The package's dependency order: every `digits` module imports only modules of its own layer or
the layers below it, and no modules import each other in a circle (function-level imports count too:
a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parent.parent / "src"

# From the bottom up. A module belongs to the layer of the longest prefix listed here; a new module
# outside every prefix fails the test until it is placed.
LAYERS: list[tuple[str, list[str]]] = [
    ("core", ["digits.version", "digits.errors", "digits.limits", "digits.hardware",
              "digits.precision", "digits.atomic", "digits.jsonfile", "digits.tensorfile",
              "digits.weightsfile", "digits.tomlfiles", "digits.schemas"]),
    ("data", ["digits.data"]),
    ("models", ["digits.models"]),
    ("train", ["digits.train", "digits.runs", "digits.runmodels", "digits.presets"]),
    ("predict", ["digits.predict"]),
    ("applications", ["digits.report", "digits.serve", "digits.tune", "digits.sklearn", "digits.tutorial",
                      "digits.console", "digits.output", "digits.results"]),
    ("cli", ["digits.cli", "digits.api", "digits.docs", "digits"]),  # "digits": the package face, `import digits`
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "digits").rglob("*.py"))}


def layer_of(module: str) -> int:
    best = max(((len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or (prefix != "digits" and module.startswith(prefix + "."))), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}"
    return best[1]


def imports_of(module: str) -> set[str]:
    """The `digits` modules ``module`` imports, anywhere in its body; ``from pkg import sub`` counts
    as an import of the submodule ``pkg.sub``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in MODULES else source)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_a_module_of_a_higher_layer() -> None:
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
              for module, deps in sorted(GRAPH.items()) for dep in sorted(deps)
              if layer_of(dep) > layer_of(module)]
    assert not upward, "imports that run back up the layers:\n" + "\n".join(upward)


def test_no_modules_import_each_other_in_a_circle() -> None:
    # Tarjan's strongly connected components over the import graph: any component of two or
    # more modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in GRAPH[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not circles, "modules that import each other in a circle:\n" + "\n".join(
        " <-> ".join(circle) for circle in circles)


def test_the_checker_sees_an_upward_import_and_a_circle() -> None:
    # The checks above would pass vacuously if imports were not found: pin that they are.
    assert "digits.data.dataset" in GRAPH["digits.data.kaggle"]
    assert "digits.models.registry" in GRAPH["digits.models.mlp"]
    assert layer_of("digits.cli.main" if "digits.cli.main" in MODULES else "digits.cli") == len(LAYERS) - 1
    assert layer_of("digits.data.kaggle") < layer_of("digits.train.fit" if "digits.train.fit" in MODULES
                                                     else "digits.train")
