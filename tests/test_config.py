"""Run configs: parsing, overrides, validation against installed plugins, resolved output."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cclgs_core.errors import ConfigError
from cclgs_core.plumbing.config import DEFAULT_COMPONENTS, coerce, load_config, parse_override, write_resolved


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_defaults_and_sections(tmp_path):
    config = load_config(_write(tmp_path, 'seed = 3\n[tracker]\nname = "none"\n'))
    assert config.seed == 3
    assert config.components["tracker"].name == "none"
    assert config.components["compressor"].name == DEFAULT_COMPONENTS["compressor"]


def test_overrides_take_precedence(tmp_path):
    path = _write(tmp_path, '[field_backend]\nname = "torch"\n')
    config = load_config(path, ["field_backend.name=reference", "field_backend.pixels_per_chunk=128", "seed=7"])
    assert config.components["field_backend"].name == "reference"
    assert config.components["field_backend"].options == {"pixels_per_chunk": 128}
    assert config.seed == 7


def test_parse_override_values():
    assert parse_override("compressor.steps=100") == ("compressor", "steps", 100)
    assert parse_override("compressor.weights=[1, 2]") == ("compressor", "weights", [1, 2])
    assert parse_override("mask_generator.checkpoint=ckpt/sam.pth") == ("mask_generator", "checkpoint", "ckpt/sam.pth")
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("compressor.steps")


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour = 1\n", "unknown key 'colour'"),
        ("seed = 'zero'\n", "seed must be of type int"),
        ("tracker = 'none'\n", r"\[tracker\] must be a table"),
        ("[tracker]\nname = 5\n", "name must be a string"),
        ("[tracker\n", "is not valid TOML"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value) or "TOML" in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_validate_names_unknown_component_and_option(tmp_path):
    config = load_config(_write(tmp_path, '[tracker]\nname = "tracky"\n'))
    config.components = {"tracker": config.components["tracker"]}
    with pytest.raises(ConfigError, match=r"(?s)\[tracker\] name = 'tracky'.*Installed trackers: .*none"):
        config.validate()
    config = load_config(_write(tmp_path, '[field_backend]\nname = "reference"\nchunk = 3\n'))
    config.components = {"field_backend": config.components["field_backend"]}
    with pytest.raises(ConfigError, match="has no option 'chunk'.*pixels_per_chunk"):
        config.validate()


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["tracker.name=none", "field_backend.name=reference"])
    config.components = {k: v for k, v in config.components.items() if k in ("tracker", "field_backend")}
    path = write_resolved(config, tmp_path)
    data = tomllib.loads(path.read_text())
    assert data["field_backend"] == {
        "name": "reference",
        "plugin": data["field_backend"]["plugin"],
        "pixels_per_chunk": 0,
    }
    assert data["field_backend"]["plugin"].startswith("cclgs ")
    again = load_config(path)
    assert again.components["field_backend"].options == {"pixels_per_chunk": 0}


def test_coerce_rules():
    assert coerce(3, float) == 3.0
    assert coerce([1, 2], tuple[int, ...]) == (1, 2)
    assert coerce(None, int | None) is None
    assert coerce("x", Path) == Path("x")
    with pytest.raises(TypeError):
        coerce(True, int)
    with pytest.raises(ValueError):
        from typing import Literal

        coerce("c", Literal["a", "b"])


def test_train_section(tmp_path):
    config = load_config(_write(tmp_path, "[train]\niterations = 500\n"), ["train.lr=0.01"])
    assert config.train.iterations == 500 and config.train.lr == 0.01 and config.train.field_dim == 8
    with pytest.raises(ConfigError, match=r"\[train\] has no key 'iters'; keys are .*iterations"):
        load_config(_write(tmp_path, "[train]\niters = 5\n"))
    with pytest.raises(ConfigError, match=r"\[train\] iterations: expected an integer"):
        load_config(None, ["train.iterations=many"])


def test_device_names_are_checked_when_the_config_loads():
    from cclgs_core.plumbing.config import config_from_mapping

    assert config_from_mapping({"device": "cuda:1"}).device == "cuda:1"
    assert config_from_mapping({}).device == "auto"
    with pytest.raises(ConfigError, match=r"run\.toml: device 'gpu': use auto, cpu, cuda or cuda:N"):
        config_from_mapping({"device": "gpu"}, source="run.toml")
