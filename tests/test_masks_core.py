"""cclgs_core.helpers.masks: level assignment, set building and the vectorized filter against its reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cclgs_core.helpers.masks import (
    MaskSelectionOptions,
    TwoLevelCollector,
    intersection_bounds,
    level_membership,
    level_ranks,
    mask_extents,
    pair_intersections,
    point_grid,
    remove_small_regions,
    select_masks,
    select_masks_reference,
    stability_scores,
)
from cclgs_core.types import UNLABELED


def random_masks(rng: np.random.Generator, num_masks: int, height: int, width: int) -> np.ndarray:
    """(M, H, W) bool: ellipses and rectangles, nested masks, shifted near-duplicates, specks."""
    yy, xx = np.mgrid[:height, :width]
    masks = np.zeros((num_masks, height, width), dtype=bool)
    for m in range(num_masks):
        kind = rng.integers(5) if m else 0
        if kind == 0 or kind == 1:
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry, rx = rng.uniform(0.05, 0.35, 2) * (height, width)
            if kind == 0:
                masks[m] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            else:
                masks[m] = (abs(yy - cy) < ry) & (abs(xx - cx) < rx)
        elif kind == 2:  # near duplicate of an earlier mask
            masks[m] = np.roll(masks[rng.integers(m)], tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
        elif kind == 3:  # nested: an earlier mask cut by a half-plane
            half_plane = yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1) > rng.uniform(-20, 60)
            masks[m] = masks[rng.integers(m)] & half_plane
        else:  # an earlier mask plus scattered specks (islands for the small-region step)
            masks[m] = masks[rng.integers(m)] | (rng.random((height, width)) < 0.01)
    return masks


def test_point_grid_is_cell_centres_row_major():
    np.testing.assert_allclose(point_grid(2, 4, 8), [[2, 1], [6, 1], [2, 3], [6, 3]])
    assert point_grid(32, 730, 986).shape == (1024, 2)


def test_level_ranks_order_by_area_whatever_the_output_order():
    areas = torch.tensor([[30, 10, 20], [5, 5, 9], [7, 3, 1]])
    ranks = level_ranks(areas)
    assert ranks.tolist() == [[2, 0, 1], [0, 1, 2], [2, 1, 0]]
    in_sp, in_wp = level_membership(ranks)
    assert in_sp.tolist() == [[False, True, True], [True, True, False], [False, True, True]]
    assert in_wp.tolist() == [[True, False, True], [False, True, True], [True, True, False]]


def test_stability_score_is_the_ratio_of_the_offset_thresholds():
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]], [[-2.0, -2.0, -2.0, -2.0]]])  # (2, 1, 4)
    scores = stability_scores(logits, mask_threshold=0.0, offset=1.0)
    # first: > 1 at one pixel, > -1 at three; second: empty mask scores 0
    np.testing.assert_allclose(scores.numpy(), [1 / 3, 0.0])


def square_logits(height: int, width: int, top: int, left: int, size: int, inside: float = 10.0) -> torch.Tensor:
    logits = torch.full((height, width), -10.0)
    logits[top : top + size, left : left + size] = inside
    return logits


def test_collector_builds_sp_from_subpart_and_part_and_wp_from_whole_and_part():
    height, width = 48, 64
    whole = square_logits(height, width, 4, 4, 30)
    part = square_logits(height, width, 8, 8, 16)
    subpart = square_logits(height, width, 10, 10, 8)
    # The decoder's output order is not subpart/part/whole: areas decide.
    logits = torch.stack([whole, subpart, part])[None]  # (1, 3, H, W)
    pred_iou = torch.tensor([[0.95, 0.97, 0.90]])  # whole, subpart, part
    options = MaskSelectionOptions(min_region_area=10)
    collector = TwoLevelCollector(height, width, options)
    collector.add(logits, pred_iou)
    # A second point whose masks all fail: one unstable (logits barely above 0), two low IoU.
    unstable = square_logits(height, width, 30, 40, 12, inside=0.5)
    collector.add(torch.stack([unstable, part, whole])[None], torch.tensor([[0.99, 0.1, 0.1]]))
    masks = collector.finish()

    expected_sp = np.full((height, width), UNLABELED)
    expected_sp[8:24, 8:24] = 1  # the part, minus the higher-ranked subpart
    expected_sp[10:18, 10:18] = 0
    np.testing.assert_array_equal(masks.sp.segments, expected_sp)
    np.testing.assert_allclose(masks.sp.scores, [0.97, 0.90], rtol=1e-6)

    expected_wp = np.full((height, width), UNLABELED)
    expected_wp[4:34, 4:34] = 0  # the whole claims the part inside it, which is then dropped
    np.testing.assert_array_equal(masks.wp.segments, expected_wp)
    np.testing.assert_allclose(masks.wp.scores, [0.95], rtol=1e-6)


def test_collector_with_no_candidate_gives_empty_levels():
    collector = TwoLevelCollector(8, 8, MaskSelectionOptions())
    collector.add(torch.full((2, 3, 8, 8), -5.0), torch.ones(2, 3))
    masks = collector.finish()
    for level in (masks.sp, masks.wp):
        assert level.num_masks == 0 and (level.segments == UNLABELED).all() and level.scores.shape == (0,)


@pytest.mark.parametrize("width", [12, 13])  # runs of rows read as 8-, 4- or 1-byte words
@pytest.mark.parametrize("height", [1, 7, 8, 9, 17, 33])
def test_mask_extents_match_the_pixels(height, width):
    rng = np.random.default_rng(height)
    masks = rng.random((12, height, width)) < 0.05
    masks[3] = False  # empty: (0, 0, 0, 0)
    masks[5, -1, -1] = masks[6, 0, 0] = True  # pixels in the last (shorter) run of rows and the first
    expected = np.zeros((len(masks), 4), dtype=np.int64)
    for j, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(ys):
            expected[j] = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    boxes, areas = mask_extents(masks)
    np.testing.assert_array_equal(boxes, expected)
    np.testing.assert_array_equal(areas, masks.sum(axis=(1, 2)))
    assert mask_extents(masks[:0])[0].shape == (0, 4)
    boxes, areas = mask_extents(masks[:, :0])
    assert not boxes.any() and not areas.any()


def test_pair_intersections_are_exact_and_bounded():
    rng = np.random.default_rng(3)
    masks = random_masks(rng, 25, 40, 50)
    masks[7] = False  # an empty mask intersects nothing
    index = np.arange(len(masks))[::-1].copy()
    boxes, areas = (extent[index] for extent in mask_extents(masks))
    flat = masks[index].reshape(len(masks), -1).astype(np.int64)
    brute = flat @ flat.T  # (M, M)
    bounds = intersection_bounds(boxes, areas)
    assert (bounds >= brute).all()
    first, second = np.triu_indices(len(masks), 1)
    np.testing.assert_array_equal(pair_intersections(masks, index, boxes, first, second), brute[first, second])
    assert pair_intersections(masks, index, boxes, first[:0], second[:0]).shape == (0,)


@pytest.mark.parametrize("seed", range(6))
def test_select_masks_equals_reference(seed):
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, 60, 72, 96)
    pred_iou = rng.uniform(0.5, 1.0, len(masks)).astype(np.float32)
    stability = rng.uniform(0.7, 1.0, len(masks)).astype(np.float32)
    options = MaskSelectionOptions(
        box_nms_thresh=float(rng.uniform(0.6, 0.95)),
        duplicate_iou_thresh=float(rng.uniform(0.5, 0.9)),
        min_visible_fraction=float(rng.uniform(0.0, 0.8)),
        min_region_area=int(rng.integers(5, 60)),
    )
    fast = select_masks(masks, pred_iou, stability, options)
    reference = select_masks_reference(masks, pred_iou, stability, options)
    assert fast.num_masks == reference.num_masks > 0
    np.testing.assert_array_equal(fast.segments, reference.segments)
    np.testing.assert_array_equal(fast.scores, reference.scores)
    # Ids follow the rank; every kept region is large enough.
    assert (np.diff(fast.scores) <= 0).all()
    assert set(np.unique(fast.segments)) == {UNLABELED, *range(fast.num_masks)}
    assert fast.areas().min() >= options.min_region_area


@pytest.mark.parametrize(
    "duplicate_iou_thresh, min_region_area, min_visible_fraction",
    [(0.0, 30, 0.5), (0.3, 1, 0.2), (1.0, 0, 0.0), (1.0, 20, 0.0)],
)
def test_select_masks_equals_reference_at_extreme_thresholds(
    duplicate_iou_thresh, min_region_area, min_visible_fraction
):
    # IoU threshold 0: every overlapping pair needs its exact intersection; 1: none does.
    # No minimum area or visible share: masks hidden entirely are accepted, then dropped empty.
    rng = np.random.default_rng(11)
    masks = random_masks(rng, 60, 72, 96)
    pred_iou = rng.uniform(0.7, 1.0, len(masks)).astype(np.float32)
    stability = rng.uniform(0.85, 1.0, len(masks)).astype(np.float32)
    options = MaskSelectionOptions(
        box_nms_thresh=0.9,
        duplicate_iou_thresh=duplicate_iou_thresh,
        min_visible_fraction=min_visible_fraction,
        min_region_area=min_region_area,
    )
    fast = select_masks(masks, pred_iou, stability, options)
    reference = select_masks_reference(masks, pred_iou, stability, options)
    assert fast.num_masks == reference.num_masks > 0
    np.testing.assert_array_equal(fast.segments, reference.segments)
    np.testing.assert_array_equal(fast.scores, reference.scores)


def test_select_masks_of_nothing_is_empty():
    no_scores = np.zeros(0, np.float32)
    empty = select_masks(np.zeros((0, 5, 6), bool), no_scores, no_scores, MaskSelectionOptions())
    assert empty.num_masks == 0 and empty.segments.shape == (5, 6) and (empty.segments == UNLABELED).all()


def test_remove_small_regions_drops_islands_and_empty_masks():
    segments = np.full((10, 12), UNLABELED, dtype=np.int32)
    segments[0:5, 0:5] = 0
    segments[8, 10] = 0  # a one-pixel island of mask 0
    segments[8:10, 0:2] = 1  # mask 1 is too small altogether
    segments[5:10, 5:10] = 2
    result = remove_small_regions(segments, np.array([0.9, 0.8, 0.7], dtype=np.float32), min_area=5)
    expected = np.full((10, 12), UNLABELED)
    expected[0:5, 0:5] = 0
    expected[5:10, 5:10] = 1
    np.testing.assert_array_equal(result.segments, expected)
    assert result.num_masks == 2
    np.testing.assert_array_equal(result.scores, np.array([0.9, 0.7], dtype=np.float32))
