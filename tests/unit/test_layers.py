"""Dependencies point one way (see ARCHITECTURE.md): every import under src/bertcompress, read with `ast`
(function-level and TYPE_CHECKING imports included), is checked against the layer rules below."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bertcompress

PACKAGE = Path(bertcompress.__file__).parent
ABOVE_METHODS = ("methods", "pipeline", "cli", "recipe")

# layer -> the bertcompress subpackages/modules it may not import ("" is the top-level package, which
# imports every method). `core` may import only `core`; see `allowed_only`.
FORBIDDEN = {
    "evaluation": ("", *ABOVE_METHODS),  # measures any model; a replacement brings its own export stand-in
    "reports": ("", *ABOVE_METHODS),  # reads rows, not methods
    "runtimes": ("", *ABOVE_METHODS),
    "training": ("", *ABOVE_METHODS),
    "data": ("", *ABOVE_METHODS),
    "surgery": ("", *ABOVE_METHODS, "training", "data", "evaluation"),
    "arch": ("", *ABOVE_METHODS, "training", "data", "evaluation", "surgery"),
}
ALLOWED_ONLY = {"core": ("core",)}


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").exists()


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of the bertcompress modules a source file imports (relative imports resolved;
    `from pkg import name` counts as importing `pkg.name` when that is a module, else `pkg`)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base for a in node.names}
    return {name for name in found if name == "bertcompress" or name.startswith("bertcompress.")}


def layer_of(name: str) -> str:
    """'bertcompress.methods.common' -> 'methods'; the package itself -> ''."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(source: str, module: str) -> list[str]:
    layer = layer_of(module)
    bad = []
    for name in sorted(imported_modules(source, module)):
        target = layer_of(name)
        allowed = target in ALLOWED_ONLY[layer] if layer in ALLOWED_ONLY else target not in FORBIDDEN.get(layer, ())
        if not allowed:
            bad.append(f"{module} imports {name}")
    return bad


def source_files() -> dict[str, str]:
    """{module name: source} for every file of the package; a package's own file keeps its `__init__`, so
    that relative imports resolve from it like from any module of the package."""
    return {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts): path.read_text(encoding="utf-8")
            for path in PACKAGE.rglob("*.py")}


def test_the_rules_see_every_layer_they_name():
    layers = {layer_of(module) for module in source_files()}
    assert {"core", "evaluation", "reports", "training", "data", "surgery", "arch", "methods"} <= layers


@pytest.mark.parametrize("layer", sorted({*FORBIDDEN, *ALLOWED_ONLY}))
def test_layer_imports_only_below_it(layer):
    bad = [v for module, source in source_files().items() if layer_of(module) == layer
           for v in violations(source, module)]
    assert not bad, "imports against the layer rules:\n" + "\n".join(bad)


@pytest.mark.parametrize("source,module,expected", [
    ("from bertcompress.methods.common import x", "bertcompress.evaluation.size", True),
    ("def f():\n    import bertcompress.methods.common", "bertcompress.evaluation.size", True),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bertcompress.data.tasks import Task",
     "bertcompress.core.context", True),
    ("from bertcompress import methods", "bertcompress.reports.tables", True),
    ("from bertcompress import DynamicInt8", "bertcompress.evaluation.size", True),
    ("from bertcompress import core", "bertcompress.evaluation.size", False),
    ("import bertcompress as bc", "bertcompress.evaluation.latency", True),
    ("from ..methods import common", "bertcompress.evaluation.size", True),
    ("from . import bytes", "bertcompress.core.__init__", False),
    ("from .. import methods", "bertcompress.core.__init__", True),
    ("from bertcompress.arch.spec import get_spec", "bertcompress.core.api", True),
    ("from bertcompress.core.bytes import stored_bytes", "bertcompress.evaluation.size", False),
    ("from bertcompress.core import errors", "bertcompress.core.api", False),
    ("from bertcompress.methods.common import x", "bertcompress.pipeline", False),
])
def test_the_check_catches_what_it_should(source, module, expected):
    assert bool(violations(source, module)) is expected
