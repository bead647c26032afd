"""Plugin discovery and lookup; the only module that imports pluggy.

Every plugin, built-in or third-party, is a module named by an entry point in the group
``cclgs``. Its hook implementations (``cclgs_register_<kind>(register)``, marked with
``@hookimpl``) call ``register(name, factory)`` once per component. Discovery is lazy: nothing
is imported until the registry is first asked for something.

A plugin that fails to import, defines a misspelt or unmarked ``cclgs_*`` function, has a hook
with the wrong signature, or raises while registering is recorded as broken with the reason;
the other plugins keep working. Strict mode (``strict=True`` or ``CCLGS_STRICT_PLUGINS=1``)
raises instead. ``CCLGS_DISABLE_PLUGINS=a,b`` skips the named entry points. Two plugins
registering one (kind, name) make that name unusable until one is removed: names are never
silently renamed or shadowed.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from cclgs_core.errors import CclgsError, ConfigError, PluginError

ENTRY_POINT_GROUP = "cclgs"
hookspec = pluggy.HookspecMarker("cclgs")
hookimpl = pluggy.HookimplMarker("cclgs")


@dataclass
class PluginInfo:
    """One discovered plugin module and what came of loading it."""

    name: str
    module: str
    distribution: str
    version: str
    status: str = "ok"  # "ok", "broken" or "disabled"
    reason: str = ""
    components: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ComponentInfo:
    """A registered component: its kind, name, factory and the plugin that provides it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: PluginInfo

    def options(self) -> dict[str, tuple[Any, Any]]:
        """Option name -> (type hint or None, default) from the factory's keyword parameters."""
        signature = inspect.signature(self.factory)
        try:
            hints = typing.get_type_hints(self.factory.__init__ if inspect.isclass(self.factory) else self.factory)
        except Exception:  # unresolvable annotations: accept any value
            hints = {}
        return {
            name: (hints.get(name), parameter.default)
            for name, parameter in signature.parameters.items()
            if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        }


def _hook_kinds() -> dict[str, str]:
    """Hook function name -> component kind."""
    from cclgs_core.interfaces import KINDS

    return {f"cclgs_register_{kind}": kind for kind in KINDS}


class PluginRegistry:
    """Components of every kind, discovered from entry points on first use."""

    def __init__(
        self,
        strict: bool | None = None,
        disabled: Iterable[str] | None = None,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    ):
        self.strict = strict if strict is not None else os.environ.get("CCLGS_STRICT_PLUGINS", "") not in ("", "0")
        if disabled is None:
            disabled = [n.strip() for n in os.environ.get("CCLGS_DISABLE_PLUGINS", "").split(",") if n.strip()]
        self.disabled = set(disabled)
        self._entry_points = entry_points
        self._plugins: list[PluginInfo] = []
        self._components: dict[tuple[str, str], ComponentInfo] = {}
        self._conflicts: dict[tuple[str, str], list[PluginInfo]] = {}
        self._manager: pluggy.PluginManager | None = None

    # -- discovery ---------------------------------------------------------------------------

    def _ensure_loaded(self) -> pluggy.PluginManager:
        if self._manager is None:
            from cclgs_core.plumbing import hookspecs

            self._manager = pluggy.PluginManager("cclgs")
            self._manager.add_hookspecs(hookspecs)
            points = self._entry_points
            if points is None:
                points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            for point in sorted(points, key=lambda p: p.name):
                self._load_entry_point(point)
        return self._manager

    def _load_entry_point(self, point: importlib.metadata.EntryPoint) -> None:
        distribution = point.dist.name if point.dist is not None else "unknown"
        version = point.dist.version if point.dist is not None else "unknown"
        info = PluginInfo(point.name, point.value, distribution, version)
        self._plugins.append(info)
        if point.name in self.disabled:
            info.status, info.reason = "disabled", "listed in CCLGS_DISABLE_PLUGINS"
            return
        try:
            module = point.load()
        except Exception as error:  # any import failure of a third-party module is isolated
            self._mark_broken(info, f"import failed: {type(error).__name__}: {error}", error)
            return
        self._register_module(module, info)

    def add_plugin(self, module: types.ModuleType | object, name: str, distribution: str = "local") -> PluginInfo:
        """Register a plugin object directly (for scripts and tests; installed plugins use entry points)."""
        self._ensure_loaded()
        info = PluginInfo(name, getattr(module, "__name__", repr(module)), distribution, "local")
        self._plugins.append(info)
        self._register_module(module, info)
        return info

    def _register_module(self, module: object, info: PluginInfo) -> None:
        manager = self._manager
        assert manager is not None
        hook_kinds = _hook_kinds()
        problems = []
        for attribute in dir(module):
            if not attribute.startswith("cclgs_") or not callable(getattr(module, attribute)):
                continue
            if attribute not in hook_kinds:
                guess = difflib.get_close_matches(attribute, hook_kinds, n=1)
                hint = f" (did you mean {guess[0]}?)" if guess else f" (hooks are {', '.join(hook_kinds)})"
                problems.append(f"unknown hook {attribute}{hint}")
            elif manager.parse_hookimpl_opts(module, attribute) is None:
                problems.append(f"{attribute} is not marked with @cclgs_core.hookimpl")
        if problems:
            self._mark_broken(info, "; ".join(problems), None)
            return
        try:
            manager.register(module, name=f"{info.distribution}:{info.name}")
        except Exception as error:  # pluggy's validation of hook signatures, or a duplicate module
            self._mark_broken(info, f"invalid hook: {error}", error)
            return
        registered: list[tuple[str, ComponentInfo]] = []
        for hook_name, kind in hook_kinds.items():
            for implementation in getattr(manager.hook, hook_name).get_hookimpls():
                if implementation.plugin is not module:
                    continue

                def register(name: str, factory: Callable[..., Any], _kind: str = kind) -> None:
                    if not isinstance(name, str) or not name or not callable(factory):
                        raise TypeError(
                            f"register(name, factory) needs a non-empty str and a callable, got {name!r}, {factory!r}"
                        )
                    registered.append((_kind, ComponentInfo(_kind, name, factory, info)))

                try:
                    implementation.function(register=register)
                except Exception as error:
                    manager.unregister(module)
                    self._mark_broken(info, f"{hook_name} raised {type(error).__name__}: {error}", error)
                    return
        for kind, component in registered:
            self._add_component(kind, component)

    def _add_component(self, kind: str, component: ComponentInfo) -> None:
        key = (kind, component.name)
        component.plugin.components.append(key)
        if key in self._conflicts:
            self._conflicts[key].append(component.plugin)
        elif key in self._components:
            first = self._components.pop(key)
            self._conflicts[key] = [first.plugin, component.plugin]
        else:
            self._components[key] = component
            return
        message = self._conflict_message(key)
        if self.strict:
            raise PluginError(message)

    def _conflict_message(self, key: tuple[str, str]) -> str:
        providers = ", ".join(f"{p.name} ({p.distribution} {p.version})" for p in self._conflicts[key])
        return (
            f"{key[0]} {key[1]!r} is registered by more than one plugin: {providers}. "
            "Uninstall one of them or list one in CCLGS_DISABLE_PLUGINS."
        )

    def _mark_broken(self, info: PluginInfo, reason: str, error: Exception | None) -> None:
        info.status, info.reason = "broken", reason
        if self.strict:
            raise PluginError(f"plugin {info.name} ({info.distribution}) is broken: {reason}") from error

    # -- lookup --------------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        self._ensure_loaded()
        return list(self._plugins)

    def components(self, kind: str | None = None) -> list[ComponentInfo]:
        self._ensure_loaded()
        found = [c for (k, _), c in self._components.items() if kind is None or k == kind]
        return sorted(found, key=lambda c: (c.kind, c.name))

    def conflicts(self) -> dict[tuple[str, str], str]:
        """(kind, name) -> message for every name registered more than once."""
        self._ensure_loaded()
        return {key: self._conflict_message(key) for key in self._conflicts}

    def get(self, kind: str, name: str) -> ComponentInfo:
        """The component ``name`` of ``kind``; a PluginError lists what is installed otherwise."""
        from cclgs_core.interfaces import KINDS

        if kind not in KINDS:
            raise ConfigError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        self._ensure_loaded()
        key = (kind, name)
        if key in self._conflicts:
            raise PluginError(self._conflict_message(key))
        if key not in self._components:
            installed = ", ".join(c.name for c in self.components(kind)) or "none"
            broken = [p for p in self._plugins if p.status == "broken"]
            note = f" Broken plugins: {', '.join(p.name for p in broken)} (see `cclgs plugins`)." if broken else ""
            raise PluginError(f"no {kind} named {name!r}. Installed {kind}s: {installed}.{note}")
        return self._components[key]

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
        """Instantiate a component after checking its options against the factory's signature."""
        from cclgs_core.plumbing.config import check_options  # config imports this module

        component = self.get(kind, name)
        checked = check_options(component, dict(options or {}))
        try:
            return component.factory(**checked)
        except CclgsError:  # already a clear message for the user
            raise
        except Exception as error:
            raise PluginError(
                f"{kind} {name!r} from plugin {component.plugin.name} failed to start: {type(error).__name__}: {error}"
            ) from error


_default_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide registry (created, not loaded, on first call)."""
    global _default_registry
    if _default_registry is None:
        _default_registry = PluginRegistry()
    return _default_registry
