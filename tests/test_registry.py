"""Plugin discovery through real entry points: isolation of broken plugins, strict mode, conflicts."""

from __future__ import annotations

import itertools

import pytest
from helpers import make_distribution

from cclgs_core.errors import ConfigError, PluginError
from cclgs_core.plumbing.registry import PluginRegistry

_counter = itertools.count()

GOOD = """
from cclgs_core import hookimpl

class Echo:
    def __init__(self, gain: float = 1.0, mode: str = "a"):
        self.gain, self.mode = gain, mode

@hookimpl
def cclgs_register_tracker(register):
    register("{name}", Echo)
"""


def _install(tmp_path, monkeypatch, source: str, component: str = "echo") -> str:
    """Install a one-module distribution with a unique module name; return its entry point name."""
    index = next(_counter)
    module = f"thirdparty_mod_{index}"
    entry = f"thirdparty{index}"
    root = make_distribution(
        tmp_path / f"site{index}", f"thirdparty-{index}", {module: source.replace("{name}", component)}, {entry: module}
    )
    monkeypatch.syspath_prepend(str(root))
    return entry


def _plugin(registry, entry):
    return next(p for p in registry.plugins() if p.name == entry)


def test_builtins_found_through_entry_points():
    registry = PluginRegistry()
    assert registry.get("tracker", "none").plugin.distribution == "cclgs"
    assert registry.get("field_backend", "reference").plugin.status == "ok"


def test_third_party_discovered_and_created(tmp_path, monkeypatch):
    entry = _install(tmp_path, monkeypatch, GOOD)
    registry = PluginRegistry()
    component = registry.get("tracker", "echo")
    assert component.plugin.name == entry and component.plugin.version == "0.1.0"
    instance = registry.create("tracker", "echo", {"gain": 2})
    assert instance.gain == 2.0 and isinstance(instance.gain, float)


@pytest.mark.parametrize(
    "source, reason",
    [
        ("raise ImportError('missing dependency foo')", "import failed: ImportError: missing dependency foo"),
        (
            "from cclgs_core import hookimpl\n@hookimpl\ndef cclgs_register_trackers(register):\n    pass\n",
            "unknown hook cclgs_register_trackers (did you mean cclgs_register_tracker?)",
        ),
        ("def cclgs_register_tracker(register):\n    pass\n", "not marked with @cclgs_core.hookimpl"),
        (
            "from cclgs_core import hookimpl\n@hookimpl\ndef cclgs_register_tracker(reg, extra):\n    pass\n",
            "invalid hook",
        ),
        (
            "from cclgs_core import hookimpl\n@hookimpl\ndef cclgs_register_tracker(register):\n    raise "
            "RuntimeError('boom')\n",
            "cclgs_register_tracker raised RuntimeError: boom",
        ),
    ],
    ids=["import-error", "misspelt-hook", "unmarked-hook", "bad-signature", "raising-hook"],
)
def test_broken_plugin_is_isolated(tmp_path, monkeypatch, source, reason):
    broken = _install(tmp_path, monkeypatch, source)
    _install(tmp_path, monkeypatch, GOOD, component="still-works")
    registry = PluginRegistry()
    info = _plugin(registry, broken)
    assert info.status == "broken"
    assert reason in info.reason
    assert registry.get("tracker", "still-works").plugin.status == "ok"
    assert registry.get("tracker", "none")  # built-ins unaffected

    with pytest.raises(PluginError, match="is broken"):
        PluginRegistry(strict=True).plugins()


def test_strict_mode_from_environment(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "raise ImportError('nope')")
    monkeypatch.setenv("CCLGS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="nope"):
        PluginRegistry().components()


def test_disable_plugins(tmp_path, monkeypatch):
    entry = _install(tmp_path, monkeypatch, GOOD)
    monkeypatch.setenv("CCLGS_DISABLE_PLUGINS", f"{entry}, other")
    registry = PluginRegistry()
    assert _plugin(registry, entry).status == "disabled"
    with pytest.raises(PluginError, match="no tracker named 'echo'"):
        registry.get("tracker", "echo")


def test_duplicate_names_are_an_error(tmp_path, monkeypatch):
    first = _install(tmp_path, monkeypatch, GOOD, component="twin")
    second = _install(tmp_path, monkeypatch, GOOD, component="twin")
    registry = PluginRegistry()
    with pytest.raises(PluginError, match="more than one plugin") as error:
        registry.get("tracker", "twin")
    assert first in str(error.value) and second in str(error.value)
    assert ("tracker", "twin") in registry.conflicts()
    with pytest.raises(PluginError, match="more than one plugin"):
        PluginRegistry(strict=True).plugins()


def test_duplicate_of_a_builtin_is_an_error(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, GOOD, component="none")
    with pytest.raises(PluginError, match="more than one plugin"):
        PluginRegistry().get("tracker", "none")


def test_discovery_is_lazy(tmp_path, monkeypatch):
    registry = PluginRegistry()
    entry = _install(tmp_path, monkeypatch, GOOD)  # installed after construction, before first use
    assert _plugin(registry, entry).status == "ok"


def test_unknown_component_lists_installed():
    with pytest.raises(PluginError, match="Installed trackers: .*none"):
        PluginRegistry().get("tracker", "sam9")
    with pytest.raises(ConfigError, match="unknown component kind"):
        PluginRegistry().get("trackers", "none")


def test_options_checked(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, GOOD)
    registry = PluginRegistry()
    with pytest.raises(ConfigError, match=r"no option 'gian'.*gain \(default 1.0\)"):
        registry.create("tracker", "echo", {"gian": 2.0})
    with pytest.raises(ConfigError, match="option 'gain': expected a number"):
        registry.create("tracker", "echo", {"gain": "loud"})
    with pytest.raises(ConfigError, match="option 'mode': expected a string"):
        registry.create("tracker", "echo", {"mode": 3})


def test_factory_failure_names_plugin(tmp_path, monkeypatch):
    source = GOOD.replace("self.gain, self.mode = gain, mode", "raise ValueError('bad gain')")
    entry = _install(tmp_path, monkeypatch, source)
    with pytest.raises(PluginError, match=f"from plugin {entry} failed to start: ValueError: bad gain"):
        PluginRegistry().create("tracker", "echo")
