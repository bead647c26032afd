"""``cclgs plugins check``: run a kind's contract suite against an installed component."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cclgs_core.errors import ConfigError
from cclgs_core.interfaces import KINDS

_TEST_MODULE = """\
import pytest

from cclgs_core.plumbing.registry import get_registry
from cclgs_core.testing import CONTRACTS


class TestInstalledComponent(CONTRACTS[{kind!r}]):
    @pytest.fixture
    def component(self):
        return get_registry().create({kind!r}, {name!r}, {options!r})
"""


def run_contract(name: str, kind: str | None, option_texts: list[str]) -> int:
    """Resolve the component, write a one-class test module and run pytest on it; returns pytest's exit code."""
    import pytest

    from cclgs_core.plumbing.config import check_options, parse_override
    from cclgs_core.plumbing.registry import get_registry
    from cclgs_core.testing import CONTRACTS

    registry = get_registry()
    kinds = [kind] if kind else [k for k in KINDS if any(c.name == name for c in registry.components(k))]
    if not kinds:
        installed = ", ".join(f"{c.kind}:{c.name}" for c in registry.components())
        raise ConfigError(f"no installed component is named {name!r}. Installed: {installed}")
    if len(kinds) > 1:
        raise ConfigError(f"{name!r} exists for several kinds ({', '.join(kinds)}); choose one with --kind")
    chosen = kinds[0]
    if chosen not in CONTRACTS:
        raise ConfigError(f"unknown kind {chosen!r}; kinds are {', '.join(CONTRACTS)}")
    options = {}
    for text in option_texts:
        _, key, value = parse_override(text)
        options[key] = value
    check_options(registry.get(chosen, name), options)
    with tempfile.TemporaryDirectory(prefix="cclgs-contract-") as directory:
        folder = Path(directory)
        (folder / "pytest.ini").write_text("[pytest]\n")
        module = folder / f"test_contract_{chosen}.py"
        module.write_text(_TEST_MODULE.format(kind=chosen, name=name, options=options))
        return int(pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", directory, str(module)]))
