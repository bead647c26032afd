"""The core depends on no plugin: ``cclgs_core`` reaches plugins only through the registry.

Every ``import``/``from ... import`` statement in ``cclgs_core`` (module level or inside a
function) and every ``importlib.import_module("...")`` call with a literal name is checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cclgs_core
from cclgs_core.testing.imports import imported_modules

CORE = Path(cclgs_core.__file__).parent


def plugin_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source`` of a ``cclgs_*`` package other than the core
    (and the CLI, which sits above everything)."""

    def is_plugin(module: str) -> bool:
        top = module.split(".")[0]
        return top.startswith("cclgs_") and top != "cclgs_core"

    return [(line, module) for line, module in imported_modules(source) if is_plugin(module)]


def test_checker_flags_every_import_form():
    source = (
        "import cclgs_synthetic\n"
        "from cclgs_cpu_backends.tiles import composite\n"
        "def f():\n"
        "    import cclgs_sam2.model as m\n"
        "    importlib.import_module('cclgs_openclip')\n"
        "from cclgs_core.types import Frame\n"
        "from . import types\n"
    )
    assert plugin_imports(source) == [
        (1, "cclgs_synthetic"),
        (2, "cclgs_cpu_backends.tiles"),
        (4, "cclgs_sam2.model"),
        (5, "cclgs_openclip"),
    ]


def test_core_imports_no_plugin():
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) > 20, f"found only {len(modules)} core modules under {CORE}"
    offending = [
        f"{path.relative_to(CORE.parent)}:{line} imports {module}"
        for path in modules
        for line, module in plugin_imports(path.read_text(encoding="utf-8"))
    ]
    assert not offending, "the core must reach plugins through the registry:\n" + "\n".join(offending)


def test_the_curated_api_resolves_and_the_documented_module_paths_keep_working():
    import importlib

    import pytest

    missing = [name for name in cclgs_core.__all__ if not hasattr(cclgs_core, name)]
    assert not missing, f"cclgs_core.__all__ names what cclgs_core does not define: {missing}"
    for path in ("errors", "types", "interfaces", "validation", "testing", "testing.contracts", "testing.backends"):
        importlib.import_module(f"cclgs_core.{path}")
    with pytest.warns(DeprecationWarning, match="import encode_masked_crops and unit_rows from cclgs_core"):
        importlib.reload(importlib.import_module("cclgs_core.masked_crops"))


def test_the_core_stays_grouped():
    """At most about ten modules directly in cclgs_core/; every subpackage says what it holds."""
    modules = sorted(path.name for path in CORE.glob("*.py"))
    assert len(modules) <= 10, modules
    for package in sorted(path.parent for path in CORE.glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
        assert docstring, f"{package.name}/__init__.py needs a docstring saying what the subpackage holds"
