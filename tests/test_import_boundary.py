"""The core depends on no plugin: ``cclgs_core`` reaches plugins only through the registry.

Every ``import``/``from ... import`` statement in ``cclgs_core`` (module level or inside a
function) and every ``importlib.import_module("...")`` call with a literal name is checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cclgs_core

CORE = Path(cclgs_core.__file__).parent


def plugin_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source`` of a ``cclgs_*`` package other than the core
    (and the CLI, which sits above everything)."""

    def is_plugin(module: str) -> bool:
        top = module.split(".")[0]
        return top.startswith("cclgs_") and top != "cclgs_core"

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if is_plugin(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and is_plugin(node.module):
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and is_plugin(node.args[0].value)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


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
