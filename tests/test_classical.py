"""The "classical" mask generator (scikit-image, no weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cclgs_classical.generator import ClassicalMaskGenerator
from cclgs_core.errors import ConfigError
from cclgs_core.plumbing.registry import PluginRegistry
from cclgs_core.types import UNLABELED, Camera, Frame, SegmentMap

HEIGHT, WIDTH = 60, 80


@pytest.fixture
def frame(tmp_path: Path) -> Frame:
    camera = Camera(np.eye(4), fx=50.0, fy=50.0, cx=WIDTH / 2, cy=HEIGHT / 2, width=WIDTH, height=HEIGHT)
    return Frame(index=0, name="frame_00000", image_path=tmp_path / "frame_00000.png", camera=camera)


@pytest.fixture
def two_regions() -> np.ndarray:
    """(H, W, 3) uint8: flat red left of column 32, flat blue from it on."""
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, :32] = (200, 30, 30)
    image[:, 32:] = (30, 30, 200)
    return image


def assert_valid_segment_map(level: SegmentMap) -> None:
    assert level.segments.shape == (HEIGHT, WIDTH) and level.segments.dtype == np.int32
    assert set(np.unique(level.segments)) <= {UNLABELED, *range(level.num_masks)}
    assert (level.areas() > 0).all()
    assert level.scores.shape == (level.num_masks,) and level.scores.dtype == np.float32


@pytest.mark.parametrize("max_side", [None, 40])
def test_two_flat_regions_give_two_masks_on_both_levels(two_regions, frame, max_side):
    masks = ClassicalMaskGenerator(sp_min_area=50, wp_min_area=50, max_side=max_side).generate(two_regions, frame)
    for level in (masks.sp, masks.wp):
        assert_valid_segment_map(level)
        assert level.num_masks == 2
        left, right = level.segments[:, :32], level.segments[:, 32:]
        assert len(np.unique(left)) == 1 and len(np.unique(right)) == 1
        assert left[0, 0] != right[0, 0] and UNLABELED not in level.segments


def test_coarse_scale_gives_fewer_larger_masks_and_runs_are_identical(frame):
    rng = np.random.default_rng(0)
    image = (rng.random((HEIGHT // 10, WIDTH // 10, 3)) * 255).astype(np.uint8).repeat(10, 0).repeat(10, 1)
    generator = ClassicalMaskGenerator(sp_scale=50.0, wp_scale=2000.0, sp_min_area=20, wp_min_area=200, max_side=None)
    first, second = generator.generate(image, frame), generator.generate(image, frame)
    assert first.wp.num_masks < first.sp.num_masks
    for level in (first.sp, first.wp):
        assert_valid_segment_map(level)
    np.testing.assert_array_equal(first.sp.segments, second.sp.segments)
    np.testing.assert_array_equal(first.wp.segments, second.wp.segments)


def test_registered_and_options_are_checked():
    registry = PluginRegistry(strict=True)
    generator = registry.create("mask_generator", "classical", {"sp_scale": 100, "max_side": None})
    assert isinstance(generator, ClassicalMaskGenerator) and generator.sp_scale == 100.0
    with pytest.raises(ConfigError):
        registry.create("mask_generator", "classical", {"sp_scale": -1.0})
    with pytest.raises(ConfigError, match="no option"):
        registry.create("mask_generator", "classical", {"scale": 1.0})
