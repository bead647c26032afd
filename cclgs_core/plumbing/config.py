"""Run configs: a TOML file naming one component per kind with its options.

    seed = 0

    [mask_generator]
    name = "sam"
    checkpoint = "checkpoints/sam_vit_h_4b8939.pth"

    [compressor]
    name = "ccl"
    num_prototypes = 128

A section per component kind holds ``name`` plus that component's options (its constructor
keywords); a kind left out takes the default component of ``DEFAULT_COMPONENTS``. Any value can
be overridden with ``section.key=value`` (the value parsed as TOML, else taken as a string).
Every problem raises ConfigError naming the file and the fix. The config actually used, with
every default filled in, is written next to the results by ``write_resolved``.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from cclgs_core.errors import CclgsError, ConfigError
from cclgs_core.helpers.devices import check_device_name
from cclgs_core.interfaces import KINDS
from cclgs_core.plumbing.registry import ComponentInfo, PluginRegistry, get_registry

#: The paper's pipeline: SAM masks, SAM2 tracking, OpenCLIP features, CCL, gsplat-compatible CPU rendering.
DEFAULT_COMPONENTS: dict[str, str] = {
    "mask_generator": "sam",
    "tracker": "sam2",
    "feature_extractor": "openclip",
    "compressor": "ccl",
    "field_backend": "torch",
}

#: Top-level keys that are not component sections, with their types and defaults.
GENERAL_KEYS: dict[str, tuple[type, Any]] = {"seed": (int, 0), "device": (str, "auto")}
#: Value rules of top-level keys beyond their type: key -> check raising ConfigError.
GENERAL_CHECKS: dict[str, Callable[[Any], Any]] = {"device": check_device_name}


@dataclass
class TrainSettings:
    """[train]: the semantic field (docs/design.md, "Semantic field")."""

    iterations: int = 30_000
    lr: float = 1e-3
    field_dim: int = 8
    #: Pixels sampled per step from the view's masked pixels (0: all of them).
    pixels_per_step: int = 0
    checkpoint_every: int = 1000


#: Settings sections: name -> dataclass whose fields are the accepted keys.
SETTINGS_SECTIONS: dict[str, type] = {"train": TrainSettings}


def check_options(component: ComponentInfo, options: dict[str, Any]) -> dict[str, Any]:
    """Options with values coerced to the factory's annotations; ConfigError on unknown keys or wrong types."""
    accepted = component.options()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        listing = ", ".join(f"{n} (default {d!r})" for n, (_, d) in accepted.items()) or "no options"
        raise ConfigError(
            f"{component.kind} {component.name!r} has no option {', '.join(map(repr, unknown))}. It accepts: {listing}."
        )
    checked = {}
    for name, value in options.items():
        hint = accepted[name][0]
        try:
            checked[name] = coerce(value, hint)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{component.kind} {component.name!r} option {name!r}: {error}") from None
    return checked


def coerce(value: Any, hint: Any) -> Any:
    """Check ``value`` against a simple type hint, converting where lossless (int -> float, str -> Path,
    list -> tuple). Hints outside int/float/bool/str/Path/Literal/Optional/list/tuple accept anything."""
    if hint is None or hint is Any:
        return value
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in arguments:
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(value, option)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"{value!r} matches none of {hint}")
    if origin is typing.Literal:
        if value not in arguments:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, arguments))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {value!r}")
        item_hint = arguments[0] if arguments else None
        items = [coerce(item, item_hint) for item in value]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise TypeError(f"expected a path, got {value!r}")
        return Path(value)
    return value


def _settings_from_mapping(section: str, values: Any, source: str) -> Any:
    schema = SETTINGS_SECTIONS[section]
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: [{section}] must be a table")
    hints = typing.get_type_hints(schema)
    known = {f.name for f in dataclasses.fields(schema)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{source}: [{section}] has no key {', '.join(map(repr, unknown))}; keys are {', '.join(sorted(known))}"
        )
    checked = {}
    for key, value in values.items():
        try:
            checked[key] = coerce(value, hints[key])
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{source}: [{section}] {key}: {error}") from None
    return schema(**checked)


@dataclass
class ComponentChoice:
    """The component chosen for one kind and the options given to it."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """A parsed run config: a component per kind plus general settings."""

    components: dict[str, ComponentChoice]
    general: dict[str, Any]
    source: str = "<defaults>"
    settings: dict[str, Any] = field(
        default_factory=lambda: {name: schema() for name, schema in SETTINGS_SECTIONS.items()}
    )

    @property
    def train(self) -> TrainSettings:
        return self.settings["train"]

    @property
    def seed(self) -> int:
        return self.general["seed"]

    @property
    def device(self) -> str:
        """The device name ("auto", "cpu", "cuda" or "cuda:N"); ``devices.resolve_device`` resolves it."""
        return self.general["device"]

    def create(self, kind: str, registry: PluginRegistry | None = None) -> Any:
        """Instantiate the component chosen for ``kind``."""
        registry = registry or get_registry()
        choice = self.components[kind]
        try:
            return registry.create(kind, choice.name, choice.options)
        except ConfigError as error:
            raise ConfigError(f"{self.source} [{kind}]: {error}") from None

    def validate(self, registry: PluginRegistry | None = None) -> None:
        """Check that every named component exists and accepts its options (without creating it).

        All problems are reported together in one ConfigError, one line each."""
        registry = registry or get_registry()
        problems = []
        for kind, choice in self.components.items():
            try:
                check_options(registry.get(kind, choice.name), choice.options)
            except ConfigError as error:
                problems.append(f"[{kind}]: {error}")
            except Exception as error:  # a PluginError naming what is installed
                problems.append(f"[{kind}] name = {choice.name!r}: {error}")
        if problems:
            raise ConfigError(f"{self.source}:\n  " + "\n  ".join(problems))

    def check_values(self, registry: PluginRegistry | None = None) -> None:
        """Build every component once, so that its constructor's value rules run (a constructor
        checks option values only: no files, weights or devices; CONTRIBUTING.md). All problems
        are reported together in one ConfigError, one line each, e.g. ``[compressor] compressor
        'ccl': num_prototypes must be >= 1``."""
        self.validate(registry)
        registry = registry or get_registry()
        problems = []
        for kind, choice in self.components.items():
            try:
                registry.create(kind, choice.name, choice.options)
            except CclgsError as error:
                problems.append(f"[{kind}] {choice.name!r}: {error}")
        if problems:
            raise ConfigError(f"{self.source}:\n  " + "\n  ".join(problems))

    def resolved(self, registry: PluginRegistry | None = None) -> dict[str, Any]:
        """The config with every component's defaults filled in and its provider recorded."""
        registry = registry or get_registry()
        data: dict[str, Any] = dict(self.general)
        for name, values in self.settings.items():
            data[name] = dataclasses.asdict(values)
        for kind, choice in self.components.items():
            component = registry.get(kind, choice.name)
            options = options_with_defaults(component, choice.options)
            section = {"name": choice.name, "plugin": f"{component.plugin.distribution} {component.plugin.version}"}
            section.update({k: _to_toml_value(v) for k, v in options.items() if v is not None})
            data[kind] = section
        return data

    def unset_options(self, registry: PluginRegistry | None = None) -> dict[str, list[str]]:
        """Per component kind, the options left without a value (default None, not set), which TOML
        cannot write; ``cclgs config`` lists them so that users learn they exist."""
        registry = registry or get_registry()
        unset = {}
        for kind, choice in self.components.items():
            options = options_with_defaults(registry.get(kind, choice.name), choice.options)
            unset[kind] = [name for name, value in options.items() if value is None]
        return unset


def options_with_defaults(component: ComponentInfo, chosen: dict[str, Any]) -> dict[str, Any]:
    """Every option of a registered component: its defaults, overridden by the checked ``chosen``."""
    options = {name: default for name, (_, default) in component.options().items()}
    options.update(check_options(component, chosen))
    return options


def _to_toml_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_to_toml_value(item) for item in value]
    return value


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` (or ``key=value`` for a general key) -> (section, key, value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. compressor.name=codebook")
    path, raw = text.split("=", 1)
    section, _, key = path.strip().rpartition(".")
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def config_from_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> RunConfig:
    """Build a RunConfig from parsed TOML; ConfigError on unknown sections, keys or wrong types."""
    general = {key: default for key, (_, default) in GENERAL_KEYS.items()}
    components = {kind: ComponentChoice(name) for kind, name in DEFAULT_COMPONENTS.items()}
    settings = {name: schema() for name, schema in SETTINGS_SECTIONS.items()}
    for key, value in data.items():
        if key in SETTINGS_SECTIONS:
            settings[key] = _settings_from_mapping(key, value, source)
        elif key in KINDS:
            if not isinstance(value, Mapping):
                raise ConfigError(f'{source}: [{key}] must be a table with a name, e.g. [{key}] name = "..."')
            options = dict(value)
            name = options.pop("name", DEFAULT_COMPONENTS[key])
            options.pop("plugin", None)  # recorded by write_resolved; informative only
            if not isinstance(name, str):
                raise ConfigError(f"{source}: [{key}] name must be a string, got {name!r}")
            components[key] = ComponentChoice(name, options)
        elif key in GENERAL_KEYS:
            expected, _ = GENERAL_KEYS[key]
            if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
                raise ConfigError(f"{source}: {key} must be of type {expected.__name__}, got {value!r}")
            if key in GENERAL_CHECKS:
                try:
                    GENERAL_CHECKS[key](value)
                except ConfigError as error:
                    raise ConfigError(f"{source}: {error}") from None
            general[key] = value
        else:
            sections = [*KINDS, *SETTINGS_SECTIONS]
            accepted = ", ".join([*GENERAL_KEYS, *(f"[{name}]" for name in sections)])
            raise ConfigError(f"{source}: unknown key {key!r}. Accepted: {accepted}.")
    return RunConfig(components, general, source, settings)


def load_config(path: Path | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a TOML run config (or start from the defaults) and apply ``section.key=value`` overrides."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass the path of a TOML run config")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
    for text in overrides:
        section, key, value = parse_override(text)
        if not section:
            data[key] = value
        elif section in KINDS or section in SETTINGS_SECTIONS:
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [{section}] must be a table")
            table[key] = value
        else:
            sections = ", ".join([*KINDS, *SETTINGS_SECTIONS])
            raise ConfigError(f"override {text!r}: unknown section {section!r}; sections are {sections}")
    return config_from_mapping(data, source)


def write_resolved(config: RunConfig, directory: Path, registry: PluginRegistry | None = None) -> Path:
    """Write ``config.resolved.toml`` (atomically) into ``directory`` and return its path."""
    import tomli_w

    from cclgs_core.plumbing.cache import atomic_write_text

    path = Path(directory) / "config.resolved.toml"
    atomic_write_text(path, f"# resolved from {config.source}\n" + tomli_w.dumps(config.resolved(registry)))
    return path
