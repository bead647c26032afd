"""The "sam" and "sam2-auto" mask generators: the real architectures at random initialisation
(no weights exist here) through the plugin code on a tiny image, and the loading errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cclgs_core.errors import ConfigError, DataError
from cclgs_core.plumbing.registry import PluginRegistry
from cclgs_core.types import UNLABELED, Camera, Frame, SegmentMap
from cclgs_sam.generator import SamMaskGenerator
from cclgs_sam2.auto_masks import Sam2AutoMaskGenerator

HEIGHT, WIDTH = 48, 64
# Thresholds opened up so that masks of a random model reach the selection step.
SMOKE_OPTIONS = dict(
    allow_random_weights=True,
    points_per_side=3,
    points_per_batch=4,
    device="cpu",
    pred_iou_thresh=-100.0,
    stability_score_thresh=0.0,
    min_visible_fraction=0.0,
    min_region_area=1,
)


@pytest.fixture
def frame(tmp_path: Path) -> Frame:
    camera = Camera(np.eye(4), fx=50.0, fy=50.0, cx=WIDTH / 2, cy=HEIGHT / 2, width=WIDTH, height=HEIGHT)
    return Frame(index=0, name="frame_00000", image_path=tmp_path / "frame_00000.png", camera=camera)


@pytest.fixture
def image() -> np.ndarray:
    """(H, W, 3) uint8: a bright disc on a dark background."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    disc = (yy - 24) ** 2 + (xx - 30) ** 2 < 15**2
    return np.where(disc[..., None], 220, 30).astype(np.uint8).repeat(3, axis=2)


def assert_valid_segment_map(level: SegmentMap) -> None:
    assert level.segments.shape == (HEIGHT, WIDTH) and level.segments.dtype == np.int32
    assert set(np.unique(level.segments)) <= {UNLABELED, *range(level.num_masks)}
    assert (level.areas() > 0).all()
    assert level.scores.shape == (level.num_masks,) and level.scores.dtype == np.float32


def test_both_generators_are_registered_with_their_options():
    registry = PluginRegistry(strict=True)
    assert "model_type" in registry.get("mask_generator", "sam").options()
    assert "model_config" in registry.get("mask_generator", "sam2-auto").options()
    with pytest.raises(ConfigError, match="allow_random_weights"):
        registry.create("mask_generator", "sam", {}).load()


@pytest.mark.parametrize("generator", [SamMaskGenerator, Sam2AutoMaskGenerator])
def test_a_checkpoint_is_required_unless_random_weights_are_allowed(generator, tmp_path):
    with pytest.raises(ConfigError, match="allow_random_weights"):
        generator().load()
    missing = tmp_path / "missing.pt"
    with pytest.raises(DataError, match="missing.pt.*(segment-anything|sam2)"):
        generator(checkpoint=missing).load()


def test_registry_reports_a_missing_checkpoint_with_its_path(tmp_path):
    with pytest.raises(DataError, match="missing.pth"):
        PluginRegistry(strict=True).create(
            "mask_generator", "sam", {"checkpoint": str(tmp_path / "missing.pth")}
        ).load()


def test_a_checkpoint_of_another_architecture_is_a_data_error(tmp_path, image, frame):
    sam_file, sam2_file = tmp_path / "wrong.pth", tmp_path / "wrong.pt"
    torch.save({"not_a_sam_weight": torch.zeros(1)}, sam_file)
    torch.save({"model": {"not_a_sam2_weight": torch.zeros(1)}}, sam2_file)
    with pytest.raises(DataError, match="wrong.pth.*vit_b"):
        SamMaskGenerator(checkpoint=sam_file, model_type="vit_b", device="cpu").generate(image, frame)
    sam2 = Sam2AutoMaskGenerator(checkpoint=sam2_file, model_config="configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu")
    with pytest.raises(DataError, match="wrong.pt.*sam2.1_hiera_t"):
        sam2.generate(image, frame)


def test_unknown_sam2_config_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="configs/sam2.1/sam2.1_hiera_t.yaml"):
        Sam2AutoMaskGenerator(model_config="configs/sam2.1/sam2.1_hiera_xl.yaml", allow_random_weights=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is missing")
def test_cuda_without_a_gpu_is_a_config_error(image, frame):
    with pytest.raises(ConfigError, match="no CUDA device|sees no CUDA device"):
        SamMaskGenerator(model_type="vit_b", allow_random_weights=True, device="cuda").generate(image, frame)


# The real vit_b and hiera-tiny architectures at random initialisation run through the full
# MaskGeneratorContract in tests/test_contracts.py (with options that keep masks).
