"""The core depends on no plugin: ``cclgs_core`` reaches plugins only through the registry.

Every ``import``/``from ... import`` statement in ``cclgs_core`` (module level or inside a
function) and every ``importlib.import_module("...")`` call with a literal name is checked.
"""

from __future__ import annotations

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
