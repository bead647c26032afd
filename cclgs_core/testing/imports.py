"""Which modules a component's code imports: the check behind "plugins reach each other only
through the registry" (CONTRIBUTING.md, "Using another plugin").

Every ``import``/``from ... import`` statement (module level or inside a function) and every
``importlib.import_module("...")`` call with a literal name counts.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

#: The entry-point group every cclgs plugin registers in.
PLUGIN_GROUP = "cclgs"


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in ``source``, in source order."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return sorted(found)


def installed_plugin_packages() -> set[str]:
    """Top-level package names of every installed cclgs plugin (from their entry points)."""
    points = importlib.metadata.entry_points(group=PLUGIN_GROUP)
    return {point.value.split(":")[0].split(".")[0] for point in points}


def source_files_of(module_name: str) -> list[Path]:
    """The .py files of the top-level package that holds ``module_name`` (one file for a plain module)."""
    top = sys.modules[module_name.split(".")[0]]
    file = getattr(top, "__file__", None)
    if file is None:
        return []
    path = Path(file)
    return sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]


def imports_of_other_plugins(component: object) -> list[str]:
    """ "path:line imports module" for each import, in the code of ``component``'s package, of
    another installed cclgs plugin's package."""
    own = type(component).__module__.split(".")[0]
    others = installed_plugin_packages() - {own}
    return [
        f"{path}:{line} imports {module}"
        for path in source_files_of(type(component).__module__)
        for line, module in imported_modules(path.read_text(encoding="utf-8"))
        if module.split(".")[0] in others
    ]
