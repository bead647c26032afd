"""Every built-in component runs the contract suite of its kind.

``BUILTIN_OPTIONS`` lists each built-in with the options its contract run needs (random weights
for model-based components, which have no checkpoints here); a built-in missing from it fails
``test_every_builtin_has_a_contract_run``.
"""

from __future__ import annotations

import pytest

from cclgs_core.registry import PluginRegistry
from cclgs_core.testing import CONTRACTS

BUILTIN_OPTIONS: dict[tuple[str, str], dict] = {
    ("mask_generator", "classical"): {},
    ("mask_generator", "sam"): {"model_type": "vit_b", "allow_random_weights": True, "device": "cpu", "points_per_side": 4},
    ("mask_generator", "sam2-auto"): {
        "model_config": "configs/sam2.1/sam2.1_hiera_t.yaml",
        "allow_random_weights": True,
        "device": "cpu",
        "points_per_side": 4,
    },
    ("tracker", "none"): {},
    ("tracker", "reprojection"): {"renderer": "reference"},
    ("tracker", "sam2"): {"model_config": "configs/sam2.1/sam2.1_hiera_t.yaml", "allow_random_weights": True, "device": "cpu"},
    ("feature_extractor", "openclip"): {"allow_random_weights": True, "device": "cpu", "model_name": "ViT-B-32"},
    ("compressor", "ccl"): {"steps": 60, "num_prototypes": 16},
    ("compressor", "codebook"): {"steps": 60, "num_prototypes": 16},
    ("compressor", "autoencoder"): {"steps": 60, "encoder_dims": [16, 3]},
}

#: Built-ins whose suites live elsewhere (field backends: tests/test_backends.py).
COVERED_ELSEWHERE = {("field_backend", "reference")}

_registry = PluginRegistry()


def test_every_builtin_has_a_contract_run():
    builtins = {(c.kind, c.name) for c in _registry.components() if c.plugin.distribution == "cclgs"}
    assert builtins - COVERED_ELSEWHERE <= set(BUILTIN_OPTIONS), "add the new built-in to BUILTIN_OPTIONS"


def _contract_class(kind: str, name: str, options: dict) -> type:
    def component(self):
        return _registry.create(kind, name, options)

    return type(
        f"TestContract_{kind}_{name}",
        (CONTRACTS[kind],),
        {"component": pytest.fixture(component, scope="class")},  # one model per suite
    )


for (_kind, _name), _options in BUILTIN_OPTIONS.items():
    _cls = _contract_class(_kind, _name, _options)
    globals()[_cls.__name__] = _cls
