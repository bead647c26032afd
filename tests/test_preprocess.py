"""`cclgs preprocess` on photos with the classical masks and OpenCLIP at random initialisation:
a complete cache, a second run that does no work, and option changes that re-run only what
depends on them."""

from __future__ import annotations

import json
import re

import pytest
from helpers import run_cli

from cclgs_core.datasets import load_scene
from cclgs_core.testing.scenes import make_tiny_scene

CONFIG = """
[mask_generator]
name = "classical"

[feature_extractor]
name = "openclip"
model_name = "ViT-B-32"
allow_random_weights = true
device = "cpu"

[tracker]
name = "none"

[compressor]
name = "codebook"

[field_backend]
name = "reference"
"""


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_tiny_scene(root / "scene", frames=3)
    (root / "run.toml").write_text(CONFIG)
    return root


def _computed(stdout: str) -> tuple[int, int]:
    """(frames whose masks were computed, frames whose features were computed) from the summary line."""
    found = re.search(r"masks computed for (\d+), features for (\d+)", stdout)
    assert found, stdout
    return int(found.group(1)), int(found.group(2))


def test_preprocess_caches_and_reruns_only_what_changed(scene_dir):
    scene, config = scene_dir / "scene", scene_dir / "run.toml"
    first = run_cli("preprocess", str(scene), "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert _computed(first.stdout) == (3, 3)
    run = scene / "cclgs"
    assert (run / "config.resolved.toml").is_file()
    masks_dirs = list((run / "cache" / "masks").iterdir())
    features_dirs = list((run / "cache" / "features").iterdir())
    assert len(masks_dirs) == 1 and len(features_dirs) == 1
    manifest = json.loads((features_dirs[0] / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["items"]) == 3
    assert len(list((run / "previews" / "masks").glob("*.png"))) == 3

    again = run_cli("preprocess", str(scene), "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert _computed(again.stdout) == (0, 0)

    features_only = run_cli(
        "preprocess", str(scene), "--config", str(config), "--set", "feature_extractor.batch_size=2"
    )
    assert _computed(features_only.stdout) == (0, 3)

    both = run_cli("preprocess", str(scene), "--config", str(config), "--set", "mask_generator.sp_scale=150.0")
    assert both.returncode == 0, both.stderr
    assert _computed(both.stdout) == (3, 3)


def test_tiny_scene_reads_back(scene_dir):
    scene = load_scene(scene_dir / "scene")
    assert len(scene.frames) == 3 and scene.gaussians_path.name == "gaussians.ply"
