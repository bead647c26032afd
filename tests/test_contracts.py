"""Every built-in component runs the contract suite of its kind.

``BUILTIN_OPTIONS`` lists each built-in with the options its contract run needs (random weights
for model-based components, which have no checkpoints here); a built-in missing from it fails
``test_every_builtin_has_a_contract_run``.
"""

from __future__ import annotations

import pytest

from cclgs_core.plumbing.registry import PluginRegistry
from cclgs_core.testing import CONTRACTS

#: Random weights predict arbitrary IoUs: thresholds off so that masks survive to be checked.
RANDOM_SAM_OPTIONS = {
    "allow_random_weights": True,
    "device": "cpu",
    "points_per_side": 3,
    "points_per_batch": 9,
    "pred_iou_thresh": -100.0,
    "stability_score_thresh": 0.0,
    "min_visible_fraction": 0.0,
    "min_region_area": 1,
}

BUILTIN_OPTIONS: dict[tuple[str, str], dict] = {
    ("mask_generator", "classical"): {},
    ("mask_generator", "sam"): {"model_type": "vit_b", **RANDOM_SAM_OPTIONS},
    ("mask_generator", "sam2-auto"): {"model_config": "configs/sam2.1/sam2.1_hiera_t.yaml", **RANDOM_SAM_OPTIONS},
    ("tracker", "none"): {},
    ("tracker", "reprojection"): {"renderer": "reference"},
    ("tracker", "sam2"): {
        "model_config": "configs/sam2.1/sam2.1_hiera_t.yaml",
        "allow_random_weights": True,
        "device": "cpu",
    },
    ("feature_extractor", "openclip"): {"allow_random_weights": True, "device": "cpu", "model_name": "ViT-B-32"},
    ("feature_extractor", "efficientnet"): {"device": "cpu"},
    ("compressor", "ccl"): {"steps": 60, "num_prototypes": 16},
    ("compressor", "codebook"): {"steps": 60, "num_prototypes": 16, "decode_rule": "expected"},
    ("compressor", "autoencoder"): {"steps": 60, "encoder_dims": [16, 3]},
}

#: Built-ins that need ground truth run on a small synthetic world instead of the tiny scene.
SYNTHETIC_SCENE = {("mask_generator", "synthetic"): {}, ("feature_extractor", "simulated"): {}}

#: Built-ins whose suites live elsewhere (field backends: tests/test_backends.py).
COVERED_ELSEWHERE = {("field_backend", name) for name in ("reference", "torch", "cached", "gsplat")}

_registry = PluginRegistry()


def test_every_builtin_has_a_contract_run():
    builtins = {(c.kind, c.name) for c in _registry.components() if c.plugin.distribution == "cclgs"}
    runs = set(BUILTIN_OPTIONS) | set(SYNTHETIC_SCENE)
    assert builtins - COVERED_ELSEWHERE <= runs, "add the new built-in to BUILTIN_OPTIONS"


@pytest.fixture(scope="module")
def synthetic_world(tmp_path_factory):
    from cclgs_core.datasets import load_scene
    from cclgs_synthetic.world import generate_world

    out = generate_world(
        tmp_path_factory.mktemp("world") / "world",
        objects=3,
        width=40,
        height=40,
        train_views=3,
        test_views=1,
        renderer="torch",
    )
    return load_scene(out)


_instances: dict[tuple[str, str], object] = {}


def _contract_class(kind: str, name: str, options: dict, on_synthetic_world: bool) -> type:
    def component(self):
        if (kind, name) not in _instances:  # one model per suite: building some takes seconds
            _instances[kind, name] = _registry.create(kind, name, options)
        return _instances[kind, name]

    members = {"component": pytest.fixture(component)}
    if on_synthetic_world:
        members["scene"] = pytest.fixture(lambda self, synthetic_world: synthetic_world)
    return type(f"TestContract_{kind}_{name}", (CONTRACTS[kind],), members)


for _runs, _on_world in ((BUILTIN_OPTIONS, False), (SYNTHETIC_SCENE, True)):
    for (_kind, _name), _options in _runs.items():
        _cls = _contract_class(_kind, _name, _options, _on_world)
        globals()[_cls.__name__] = _cls
