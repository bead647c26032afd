"""Open-vocabulary segmentation metrics, including LangSplat's LERF-OVS protocol.

LangSplat's protocol, per frame and text query, for each mask level's relevance map R (H, W):

1. localisation: B = box_s(R), the s x s mean filter (mirrored borders); on the level whose
   B has the highest peak, a hit when any pixel attaining that peak lies inside any box of
   the query's category;
2. segmentation: R' = (R + B) / 2; on the level whose R' has the highest peak, rescale R' by
   its min and max to [-1, 1], clip to [0, 1], threshold at 0.4, and clean the mask with a
   k x k majority filter (a median filter; borders replicate, where LangSplat truncates).

LangSplat's windows are s = 30 and k = 7 pixels of LERF-OVS's images (985 px on the long
side). ``scaled_windows`` scales them to another image size so that they cover the same share
of the image: unchanged at LERF-OVS's resolution, while on a 96 px synthetic view a 30 px
filter would average over a third of the image and decide localisation by itself.

mIoU is the mean IoU over (frame, category) pairs; localisation accuracy the share of hits.
A category that occurs several times in a frame is one ground-truth mask (the union).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

#: LangSplat's windows in pixels of LERF-OVS's images, whose long side is LERF_LONG_SIDE.
SMOOTHING_WINDOW = 30
MAJORITY_WINDOW = 7
LERF_LONG_SIDE = 985
MASK_THRESHOLD = 0.4


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 1.0 when both are empty (nothing to find, nothing found)."""
    union = np.logical_or(predicted, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(predicted, truth).sum() / union)


def scaled_windows(height: int, width: int) -> tuple[int, int]:
    """LangSplat's (smoothing, majority) windows for an image of this size, scaled by its long
    side relative to LERF-OVS's: (30, 7) at LERF-OVS's resolution; both at least 1, the
    majority window odd so that it is centred."""
    scale = max(height, width) / LERF_LONG_SIDE
    return max(1, round(SMOOTHING_WINDOW * scale)), max(1, round(MAJORITY_WINDOW * scale)) | 1


def box_filter(relevance: np.ndarray, window: int = SMOOTHING_WINDOW) -> np.ndarray:
    """(H, W) -> (H, W) window x window mean filter with mirrored borders (OpenCV's default)."""
    from scipy.ndimage import uniform_filter

    return uniform_filter(relevance.astype(np.float64), size=window, mode="mirror")


def relevance_to_mask(
    smoothed: np.ndarray, threshold: float = MASK_THRESHOLD, majority_window: int = MAJORITY_WINDOW
) -> np.ndarray:
    """(H, W) smoothed relevance -> (H, W) bool mask (rescale to [-1, 1], clip to [0, 1],
    threshold, majority filter of ``majority_window``)."""
    from scipy.ndimage import median_filter

    low, high = float(smoothed.min()), float(smoothed.max())
    rescaled = np.clip((smoothed - low) / (high - low + 1e-9) * 2.0 - 1.0, 0.0, 1.0)
    mask = (rescaled > threshold).astype(np.uint8)
    return median_filter(mask, size=majority_window, mode="nearest").astype(bool)


def point_in_boxes(point: tuple[int, int], boxes: Sequence[Sequence[float]]) -> bool:
    """point (row, col); boxes as two opposite corners [x1, y1, x2, y2] (inclusive)."""
    row, col = point
    return any(min(x1, x2) <= col <= max(x1, x2) and min(y1, y2) <= row <= max(y1, y2) for x1, y1, x2, y2 in boxes)


@dataclass
class QueryResult:
    """One (frame, category) evaluation."""

    frame: str
    category: str
    iou: float
    localized: bool
    level: int
    mask: np.ndarray  # (H, W) bool predicted mask
    relevance: np.ndarray  # (H, W) smoothed relevance of the chosen level


def evaluate_query(
    frame: str,
    category: str,
    relevance_levels: np.ndarray,
    truth: np.ndarray,
    boxes: Sequence[Sequence[float]],
    windows: tuple[int, int] = (SMOOTHING_WINDOW, MAJORITY_WINDOW),
) -> QueryResult:
    """Apply the protocol to one query.

    relevance_levels: (levels, H, W) relevance of the query per mask level.
    truth: (H, W) bool ground truth (union of the category's objects); boxes: its boxes.
    windows: (smoothing, majority) window sizes in pixels; LangSplat's by default.
    """
    smoothing_window, majority_window = windows
    filtered = np.stack([box_filter(level, smoothing_window) for level in relevance_levels])  # (levels, H, W)
    peaks = filtered.reshape(len(filtered), -1).max(axis=1)
    best = filtered[int(np.argmax(peaks))]
    rows, cols = np.nonzero(best == best.max())
    localized = any(point_in_boxes((row, col), boxes) for row, col in zip(rows, cols))
    smoothed = 0.5 * (relevance_levels + filtered)  # (levels, H, W)
    level = int(np.argmax(smoothed.reshape(len(smoothed), -1).max(axis=1)))
    mask = relevance_to_mask(smoothed[level], majority_window=majority_window)
    return QueryResult(frame, category, iou(mask, truth), localized, level, mask, smoothed[level])


@dataclass
class Summary:
    """Aggregate of many query results; ``localization`` is None when no result was localised
    (3D-OVS scores segmentation only)."""

    miou: float
    localization: float | None
    count: int
    per_category: dict[str, float] = field(default_factory=dict)


def summarize(results: Sequence[Any]) -> Summary:
    """mIoU and localisation accuracy over (frame, category) pairs, plus mean IoU per category.

    results: anything with ``category``, ``iou`` and ``localized`` (bool, or None when not scored).
    """
    if not results:
        return Summary(float("nan"), None, 0)
    per_category: dict[str, list[float]] = {}
    for result in results:
        per_category.setdefault(result.category, []).append(result.iou)
    localized = [r.localized for r in results if r.localized is not None]
    return Summary(
        miou=float(np.mean([r.iou for r in results])),
        localization=float(np.mean(localized)) if localized else None,
        count=len(results),
        per_category={name: float(np.mean(values)) for name, values in sorted(per_category.items())},
    )
