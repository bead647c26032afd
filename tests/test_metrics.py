"""Metric functions against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from cclgs_core.evaluation.metrics import (
    box_filter,
    evaluate_query,
    iou,
    point_in_boxes,
    relevance_to_mask,
    scaled_windows,
    summarize,
)


def test_iou_hand_computed():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 pixels
    b[1:3, 1:3] = True  # 4 pixels, 1 shared
    assert iou(a, b) == pytest.approx(1 / 7)
    assert iou(a, a) == 1.0
    assert iou(np.zeros_like(a), b) == 0.0
    assert iou(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_box_corners_any_order():
    assert point_in_boxes((5, 3), [[0, 0, 3, 5]])
    assert point_in_boxes((5, 3), [[3, 5, 0, 0]])
    assert not point_in_boxes((6, 3), [[0, 0, 3, 5]])


def test_box_filter_is_a_mean():
    relevance = np.random.default_rng(0).random((64, 64))
    filtered = box_filter(relevance)
    # away from the borders the 30x30 window [i-15, i+14] is an exact mean
    assert filtered[32, 32] == pytest.approx(relevance[17:47, 17:47].mean())


def test_windows_scale_with_the_image_and_are_langsplats_at_lerf_resolution():
    assert scaled_windows(725, 985) == (30, 7)  # waldo_kitchen's frames
    assert scaled_windows(731, 988) == (30, 7)
    assert scaled_windows(96, 96) == (3, 1)  # the demo's synthetic views
    assert scaled_windows(363, 493) == (15, 5)  # half resolution: 3.5 rounds to 4, made odd
    assert scaled_windows(8, 8) == (1, 1)


def test_a_small_object_is_localised_with_scaled_windows_and_missed_with_lerf_sized_ones():
    # A 96 px view: a small object (6x6) with high relevance, a large region of moderate relevance.
    truth = np.zeros((96, 96), bool)
    truth[10:16, 10:16] = True
    relevance = np.full((1, 96, 96), 0.1)
    relevance[0, 40:96, 40:96] = 0.5
    relevance[0][truth] = 1.0
    scaled = evaluate_query("f", "apple", relevance, truth, [[10, 10, 15, 15]], scaled_windows(96, 96))
    assert scaled.localized and scaled.iou == 1.0
    # A 30 px mean filter on 96 px averages the object away: its peak lands in the large region.
    lerf_sized = evaluate_query("f", "apple", relevance, truth, [[10, 10, 15, 15]])
    assert not lerf_sized.localized


def test_mask_from_relevance_threshold_and_majority():
    relevance = np.zeros((40, 40))
    relevance[10:30, 10:30] = 1.0
    relevance[2, 2] = 1.0  # an isolated pixel: removed by the 7x7 majority filter
    mask = relevance_to_mask(relevance)
    assert mask[20, 20] and not mask[2, 2] and not mask[35, 35]
    assert 376 <= mask.sum() <= 400  # the majority filter only trims the square's corners


def test_query_with_perfect_relevance():
    truth = np.zeros((60, 60), bool)
    truth[20:40, 20:40] = True
    relevance = np.stack([truth.astype(float) * 0.2, truth.astype(float)])  # level 1 has the higher peak
    result = evaluate_query("frame_00001", "mug", relevance, truth, [[20, 20, 39, 39]])
    assert result.level == 1
    assert result.localized
    assert result.iou > 0.9


def test_category_absent_from_prediction_and_empty_prediction():
    truth = np.zeros((50, 50), bool)
    truth[5:15, 5:15] = True
    flat = np.zeros((2, 50, 50))  # the query lights up nothing: an all-empty mask
    result = evaluate_query("f", "absent", flat, truth, [[5, 5, 14, 14]])
    assert not result.mask.any()
    assert result.iou == 0.0
    assert result.localized  # LangSplat's rule: any pixel attaining the peak counts, so a flat map "hits"
    wrong = np.zeros((2, 50, 50))
    wrong[:, 35:45, 35:45] = 1.0  # relevance elsewhere
    missed = evaluate_query("f", "elsewhere", wrong, truth, [[5, 5, 14, 14]])
    assert missed.iou == 0.0 and not missed.localized
    summary = summarize([result, missed])
    assert summary.miou == 0.0 and summary.localization == 0.5 and summary.count == 2


def test_summary_means_over_frame_category_pairs():
    truth = np.zeros((50, 50), bool)
    truth[10:30, 10:30] = True
    good = evaluate_query("a", "mug", np.stack([truth.astype(float)] * 2), truth, [[10, 10, 29, 29]])
    bad = evaluate_query("b", "mug", np.zeros((2, 50, 50)), truth, [[10, 10, 29, 29]])
    summary = summarize([good, bad])
    assert summary.miou == pytest.approx((good.iou + 0.0) / 2)
    assert summary.per_category == {"mug": pytest.approx(summary.miou)}
    assert summarize([]).count == 0 and summarize([]).localization is None
