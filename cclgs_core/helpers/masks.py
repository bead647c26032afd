"""Model-free two-level mask logic shared by the promptable-segmenter mask generators (SAM, SAM2).

docs/design.md, "Two-level masks". A segmenter prompted with one point of a uniform grid (``point_grid``)
returns three masks (logits) and a predicted IoU for each. ``TwoLevelCollector`` turns them
into the two levels:

1. ``add`` (per point batch): binarise the logits, compute SAM's stability score, order the
   three masks of each point by area (subpart < part < whole, ``level_ranks``) and keep those
   that pass the thresholds as candidates of ``sp`` (subpart + part) and/or ``wp`` (whole + part).
   Candidates are stored bit-packed (1 bit per pixel).
2. ``finish``: ``select_masks`` per level, independently.

``select_masks`` filters one set of masks into a ``SegmentMap``:

a. keep masks with predicted IoU >= ``pred_iou_thresh``, stability >= ``stability_score_thresh``
   and area >= ``min_region_area``; rank them by predicted IoU x stability (ties: lower index
   first);
b. greedy box NMS: drop a mask whose box IoU with a higher-ranked kept mask > ``box_nms_thresh``;
c. duplicates: the same greedy rule on mask IoU with ``duplicate_iou_thresh``;
d. non-overlapping selection: in rank order a mask claims its pixels that no accepted mask has
   claimed yet, and is accepted when that visible part is >= ``min_visible_fraction`` of its
   area and >= ``min_region_area`` pixels;
e. connected regions (4-connectivity, scikit-image's ``label``) smaller than ``min_region_area``
   become -1 and masks left with no pixel are dropped. Ids follow the rank; scores are predicted
   IoU x stability.

Vectorization: no step compares masks pairwise at full resolution. Box NMS works on the (M, M)
box IoUs. For duplicates, ``intersection_bounds`` gives every pair an upper bound on its
intersection from the areas and the box overlap; the IoU from the bound is at least the true
one, so only pairs whose bound exceeds the threshold (near-duplicates: 59 of the 34,000 pairs
of the benchmark's 262 masks) need an exact count, which ``pair_intersections`` takes within the
overlap of the two boxes. The selection claims each mask's pixels within its box, and small
regions come from one labelling of the final map. The Python loops are steps of vector work,
one per mask (over its box or over one row of an (M, M) matrix) or per candidate pair.

``select_masks_reference`` is the same filter written straightforwardly (pairwise loops over
full-resolution masks); tests check equality and ``benchmarks/masks.py`` times both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cclgs_core.types import UNLABELED, FrameMasks, SegmentMap

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MaskSelectionOptions:
    """Thresholds of ``select_masks`` (LangSplat's settings, except ``min_visible_fraction``)."""

    pred_iou_thresh: float = 0.7
    stability_score_thresh: float = 0.85
    box_nms_thresh: float = 0.7
    duplicate_iou_thresh: float = 0.8
    min_visible_fraction: float = 0.5
    min_region_area: int = 100


def point_grid(points_per_side: int, height: int, width: int) -> np.ndarray:
    """(n*n, 2) float32 (x, y) pixel coordinates of the centres of an n x n grid of cells, row-major."""
    steps = (np.arange(points_per_side, dtype=np.float64) + 0.5) / points_per_side
    ys, xs = np.meshgrid(steps * height, steps * width, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def stability_scores(logits: "torch.Tensor", mask_threshold: float, offset: float) -> "torch.Tensor":
    """SAM's stability score: |logits > t + offset| / |logits > t - offset| (0 for an empty mask).

    logits: (..., H, W) float. Returns (...) float32.
    """
    import torch

    inner = (logits > mask_threshold + offset).sum(dim=(-1, -2), dtype=torch.int64)
    outer = (logits > mask_threshold - offset).sum(dim=(-1, -2), dtype=torch.int64)
    return torch.where(outer > 0, inner / outer.clamp(min=1), torch.zeros((), device=logits.device)).float()


def level_ranks(areas: "torch.Tensor") -> "torch.Tensor":
    """Rank of each of a point's three masks by area: 0 subpart, 1 part, 2 whole (ties keep output order).

    areas: (P, 3) int. Returns (P, 3) int64.
    """
    import torch

    order = torch.argsort(areas, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(3, device=areas.device).expand_as(order).contiguous())
    return ranks


def level_membership(ranks: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Which masks belong to ``sp`` (subpart + part) and ``wp`` (whole + part).

    ranks: (P, 3) from ``level_ranks``. Returns two (P, 3) bool.
    """
    return ranks <= 1, ranks >= 1


#: Rows ``mask_extents`` tests at once: a contiguous run of ROWS_PER_RUN * W bytes, whole 8-byte
#: words whatever W, reduced by a bitwise OR over the widest words that keep every run aligned.
ROWS_PER_RUN = 8


def mask_extents(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box and pixel count of each mask.

    masks: (M, H, W) bool. Returns (M, 4) int64 boxes (x0, y0, x1, y1), end-exclusive, (0, 0, 0, 0)
    for an empty mask, and (M,) int64 areas. One pass tests runs of ``ROWS_PER_RUN`` rows; the
    first and last non-empty run of each mask are resolved row by row, and columns and pixels
    are read only within the rows found.
    """
    masks = np.ascontiguousarray(masks)  # runs and bands are then contiguous (no copy if already so)
    num_masks, height, width = masks.shape
    boxes = np.zeros((num_masks, 4), dtype=np.int64)
    areas = np.zeros(num_masks, dtype=np.int64)
    if masks.size == 0:  # no mask, or an image without pixels
        return boxes, areas
    full_runs, runs = height // ROWS_PER_RUN, -(-height // ROWS_PER_RUN)
    run_any = np.empty((num_masks, runs), dtype=bool)  # (M, R) any pixel in the run
    word = next(size for size in (8, 4, 2, 1) if height * width % size == 0)  # every run starts word-aligned
    body = masks[:, : full_runs * ROWS_PER_RUN].reshape(num_masks, full_runs, ROWS_PER_RUN * width)
    words = body.view(np.dtype(f"u{word}"))  # (M, full runs, RPR * W / word)
    np.not_equal(np.bitwise_or.reduce(words, axis=2), 0, out=run_any[:, :full_runs])
    if runs > full_runs:  # the last, shorter run
        tail = masks[:, full_runs * ROWS_PER_RUN :].reshape(num_masks, 1, (height - full_runs * ROWS_PER_RUN) * width)
        tail.any(axis=2, out=run_any[:, full_runs:])
    nonempty = np.flatnonzero(run_any.any(axis=1))  # (K,)
    run_any = run_any[nonempty]  # (K, R)
    offsets = np.arange(ROWS_PER_RUN)
    first_rows = np.minimum(run_any.argmax(axis=1)[:, None] * ROWS_PER_RUN + offsets, height - 1)  # (K, RPR)
    last_run = runs - 1 - run_any[:, ::-1].argmax(axis=1)  # (K,)
    last_rows = np.minimum(last_run[:, None] * ROWS_PER_RUN + offsets, height - 1)  # (K, RPR)
    k = np.arange(len(nonempty))
    top = first_rows[k, masks[nonempty[:, None], first_rows].any(axis=2).argmax(axis=1)]  # (K,)
    bottom_hit = masks[nonempty[:, None], last_rows].any(axis=2)[:, ::-1].argmax(axis=1)  # (K,) from the end
    bottom = last_rows[k, ROWS_PER_RUN - 1 - bottom_hit] + 1  # (K,)
    cols = np.empty((len(nonempty), width), dtype=bool)  # (K, W) any pixel in the column
    for row, (j, y0, y1) in enumerate(zip(nonempty, top, bottom)):
        band = masks[j, y0:y1]  # (h, W)
        band.any(axis=0, out=cols[row])
        areas[j] = np.count_nonzero(band)  # the band is in cache now
    left, right = cols.argmax(axis=1), width - cols[:, ::-1].argmax(axis=1)  # (K,)
    boxes[nonempty] = np.stack([left, top, right, bottom], axis=1)
    return boxes, areas


def box_intersections(boxes: np.ndarray) -> np.ndarray:
    """boxes: (M, 4) end-exclusive pixel extents. Returns (M, M) int64 pixel areas of the pairwise overlaps."""
    x0, y0, x1, y1 = (boxes[:, k] for k in range(4))
    inter_w = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)  # (M, M)
    inter_h = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)  # (M, M)
    return inter_w * inter_h


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """boxes: (M, 4) end-exclusive pixel extents. Returns (M, M) float64 IoU."""
    inter = box_intersections(boxes)  # (M, M)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (M,)
    return inter / (area[:, None] + area[None] - inter)


def greedy_keep(overlap: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy suppression: item j is dropped when a kept item i < j has overlap[i, j] > thresh.

    overlap: (M, M) with items in rank order. Returns (M,) bool kept.
    """
    suppresses = np.triu(overlap > thresh, 1)  # (M, M) i would drop j
    keep = np.ones(len(overlap), dtype=bool)
    for i in np.flatnonzero(suppresses.any(axis=1)):  # the other rows drop nothing
        if keep[i]:
            keep &= ~suppresses[i]
    return keep


def rank_order(pred_iou: np.ndarray, stability: np.ndarray) -> np.ndarray:
    """pred_iou, stability: (M,). Returns (M,) int64 indices by decreasing pred_iou x stability, ties by index."""
    scores = pred_iou.astype(np.float64) * stability.astype(np.float64)
    return np.argsort(-scores, kind="stable")


def intersection_bounds(boxes: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Upper bounds on the pairwise intersections: min(area_i, area_j, |box_i & box_j|).

    boxes: (M, 4) end-exclusive extents; areas: (M,) int64 pixel counts. Returns (M, M) int64.
    """
    return np.minimum(np.minimum(areas[:, None], areas[None]), box_intersections(boxes))


def pair_intersections(
    masks: np.ndarray, index: np.ndarray, boxes: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """Exact pixel counts of ``masks[index[first]] & masks[index[second]]``, pair by pair.

    masks: (M_all, H, W) bool; index: (M,) int64 masks to use; boxes: (M, 4) their extents;
    first, second: (P,) int64 positions in ``index``. Each count reads only the overlap of the
    two boxes (one step of vector work per pair: meant for the few pairs bounds cannot decide).
    Returns (P,) int64.
    """
    x0 = np.maximum(boxes[first, 0], boxes[second, 0])  # (P,) overlap of the two boxes
    y0 = np.maximum(boxes[first, 1], boxes[second, 1])
    x1 = np.minimum(boxes[first, 2], boxes[second, 2])
    y1 = np.minimum(boxes[first, 3], boxes[second, 3])
    counts = np.zeros(len(first), dtype=np.int64)
    for p in np.flatnonzero((x1 > x0) & (y1 > y0)):
        window = np.s_[y0[p] : y1[p], x0[p] : x1[p]]
        counts[p] = np.count_nonzero(masks[index[first[p]]][window] & masks[index[second[p]]][window])
    return counts


def duplicate_keep(
    masks: np.ndarray, index: np.ndarray, boxes: np.ndarray, areas: np.ndarray, thresh: float
) -> np.ndarray:
    """Greedy duplicate removal on mask IoU (step c); masks ``index`` (M,) in rank order.

    boxes: (M, 4); areas: (M,) int64. The IoU computed from ``intersection_bounds`` bounds the
    true one from above (it grows with the intersection, and so does its rounding), so only the
    pairs whose bound exceeds ``thresh`` need their exact intersection: near-duplicates, few.
    Returns (M,) bool kept.
    """
    bound = intersection_bounds(boxes, areas).astype(np.float64)  # (M, M)
    union = areas[:, None] + areas[None]  # (M, M) int64, before subtracting the intersection
    iou = bound / (union - bound)  # (M, M) >= the true IoU
    first, second = np.nonzero(np.triu(iou > thresh, 1))  # (P,) candidate pairs
    inter = pair_intersections(masks, index, boxes, first, second).astype(np.float64)  # (P,)
    iou[first, second] = inter / (union[first, second] - inter)
    return greedy_keep(iou, thresh)


def claim_masks(
    masks: np.ndarray, index: np.ndarray, boxes: np.ndarray, areas: np.ndarray, options: MaskSelectionOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping selection (step d), mask by mask within its box.

    masks: (M_all, H, W) bool; index: (M,) int64 masks in rank order; boxes: (M, 4); areas: (M,).
    Returns (H, W) int32 segments (ids in acceptance order, -1 unclaimed) and the (M',) int64
    positions in ``index`` of the accepted masks.
    """
    _, height, width = masks.shape
    segments = np.full((height, width), UNLABELED, dtype=np.int32)  # (H, W)
    claimed = np.zeros((height, width), dtype=bool)  # (H, W) segments >= 0, as bool for cheap tests
    accepted = []
    for position, (j, (x0, y0, x1, y1)) in enumerate(zip(index, boxes)):
        taken = claimed[y0:y1, x0:x1]  # (h, w) view
        free = masks[j, y0:y1, x0:x1] > taken  # (h, w): mask and not taken
        visible = np.count_nonzero(free)
        if visible >= options.min_visible_fraction * areas[position] and visible >= options.min_region_area:
            taken |= free
            segments[y0:y1, x0:x1][free] = len(accepted)
            accepted.append(position)
    return segments, np.asarray(accepted, dtype=np.int64)


def _empty_segment_map(height: int, width: int) -> SegmentMap:
    return SegmentMap(np.full((height, width), UNLABELED, dtype=np.int32), 0, np.zeros(0, dtype=np.float32))


def select_masks(
    masks: np.ndarray,
    pred_iou: np.ndarray,
    stability: np.ndarray,
    options: MaskSelectionOptions,
    extents: tuple[np.ndarray, np.ndarray] | None = None,
) -> SegmentMap:
    """Filter one mask set into non-overlapping masks (steps a-e of the module docstring).

    masks: (M, H, W) bool; pred_iou, stability: (M,) float; extents: (M, 4) boxes and (M,) areas
    from ``mask_extents`` when already known. Returns a SegmentMap with (H, W) segments and
    (M',) float32 scores.
    """
    _, height, width = masks.shape
    boxes, areas = mask_extents(masks) if extents is None else extents
    order = rank_order(pred_iou, stability)
    passes = (
        (pred_iou[order] >= options.pred_iou_thresh)
        & (stability[order] >= options.stability_score_thresh)
        & (areas[order] >= max(1, options.min_region_area))
    )
    order = order[passes]
    if len(order) == 0:
        return _empty_segment_map(height, width)
    boxes = boxes[order]
    kept = greedy_keep(box_iou_matrix(boxes), options.box_nms_thresh)
    order, boxes, areas = order[kept], boxes[kept], areas[order[kept]]
    unique = duplicate_keep(masks, order, boxes, areas, options.duplicate_iou_thresh)
    order, boxes, areas = order[unique], boxes[unique], areas[unique]
    segments, accepted = claim_masks(masks, order, boxes, areas, options)
    selected = order[accepted]
    scores = (pred_iou[selected].astype(np.float64) * stability[selected].astype(np.float64)).astype(np.float32)
    return remove_small_regions(segments, scores, options.min_region_area)


def remove_small_regions(segments: np.ndarray, scores: np.ndarray, min_area: int) -> SegmentMap:
    """Unlabel 4-connected regions smaller than ``min_area``; drop masks left empty (ids keep their order).

    segments: (H, W) int32 ids in [0, M) or -1; scores: (M,) float32.
    """
    from skimage.measure import label

    regions = label(segments, background=UNLABELED, connectivity=1).ravel()  # (H*W,) int64, 0 = unlabeled
    sizes = np.bincount(regions)  # (R + 1,)
    region_mask = np.full(len(sizes), UNLABELED, dtype=np.int32)  # (R + 1,) mask of each region
    region_mask[regions] = segments.ravel()
    region_mask[sizes < min_area] = UNLABELED
    region_mask[0] = UNLABELED
    present = np.bincount(region_mask[region_mask >= 0], minlength=len(scores)) > 0  # (M,)
    new_ids = np.append(np.cumsum(present, dtype=np.int32) - 1, np.int32(UNLABELED))  # (M + 1,) -1 maps to -1
    segments = new_ids[region_mask][regions].reshape(segments.shape)  # one gather over the pixels
    return SegmentMap(segments, int(present.sum()), scores[present].astype(np.float32))


def select_masks_reference(
    masks: np.ndarray, pred_iou: np.ndarray, stability: np.ndarray, options: MaskSelectionOptions
) -> SegmentMap:
    """``select_masks`` written straightforwardly: O(M^2) pairwise loops on full-resolution masks.

    For tests and ``benchmarks/masks.py`` only. Shapes as in ``select_masks``.
    """
    num_masks, height, width = masks.shape
    areas = [int(np.count_nonzero(mask)) for mask in masks]
    ranked = sorted(range(num_masks), key=lambda i: -(float(pred_iou[i]) * float(stability[i])))
    candidates = [
        i
        for i in ranked
        if pred_iou[i] >= options.pred_iou_thresh
        and stability[i] >= options.stability_score_thresh
        and areas[i] >= max(1, options.min_region_area)
    ]

    def box(i: int) -> tuple[int, int, int, int]:
        ys, xs = np.nonzero(masks[i])
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

    boxes = {i: box(i) for i in candidates}

    def box_iou(i: int, j: int) -> float:
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[i], boxes[j]
        inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
        union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
        return inter / union

    after_nms: list[int] = []
    for i in candidates:
        if all(box_iou(k, i) <= options.box_nms_thresh for k in after_nms):
            after_nms.append(i)

    mask_iou = {}
    for a, i in enumerate(after_nms):
        for j in after_nms[a + 1 :]:
            inter = int(np.count_nonzero(masks[i] & masks[j]))
            mask_iou[i, j] = inter / (areas[i] + areas[j] - inter)
    unique: list[int] = []
    for j in after_nms:
        if all(mask_iou[i, j] <= options.duplicate_iou_thresh for i in unique):
            unique.append(j)

    segments = np.full((height, width), UNLABELED, dtype=np.int32)
    selected: list[int] = []
    for i in unique:
        free = masks[i] & (segments == UNLABELED)
        visible = int(np.count_nonzero(free))
        if visible >= options.min_visible_fraction * areas[i] and visible >= options.min_region_area:
            segments[free] = len(selected)
            selected.append(i)
    scores = np.array([float(pred_iou[i]) * float(stability[i]) for i in selected], dtype=np.float32)
    return remove_small_regions(segments, scores, options.min_region_area)


class TwoLevelCollector:
    """Accumulates a point grid's three-mask outputs batch by batch and builds both levels."""

    def __init__(
        self,
        height: int,
        width: int,
        options: MaskSelectionOptions,
        mask_threshold: float = 0.0,
        stability_offset: float = 1.0,
    ):
        self.height, self.width = height, width
        self.options = options
        self.mask_threshold = mask_threshold
        self.stability_offset = stability_offset
        self._packed: list[np.ndarray] = []  # (K, H, ceil(W/8)) uint8 per batch
        self._boxes: list[np.ndarray] = []  # (K, 4) int64
        self._areas: list[np.ndarray] = []  # (K,) int64
        self._pred_iou: list[np.ndarray] = []  # (K,) float32
        self._stability: list[np.ndarray] = []  # (K,) float32
        self._in_sp: list[np.ndarray] = []  # (K,) bool
        self._in_wp: list[np.ndarray] = []  # (K,) bool

    def add(self, logits: "torch.Tensor", pred_iou: "torch.Tensor") -> None:
        """logits: (P, 3, H, W) mask logits at image resolution; pred_iou: (P, 3) predicted IoU."""
        if logits.shape[1:] != (3, self.height, self.width) or pred_iou.shape != logits.shape[:2]:
            raise ValueError(
                f"expected (P, 3, {self.height}, {self.width}) logits and (P, 3) IoUs, "
                f"got {tuple(logits.shape)} and {tuple(pred_iou.shape)}"
            )
        masks = logits > self.mask_threshold  # (P, 3, H, W)
        areas = masks.sum(dim=(-1, -2))  # (P, 3)
        stability = stability_scores(logits, self.mask_threshold, self.stability_offset)  # (P, 3)
        in_sp, in_wp = level_membership(level_ranks(areas))
        pred_iou = pred_iou.float()
        candidate = (
            (pred_iou >= self.options.pred_iou_thresh)
            & (stability >= self.options.stability_score_thresh)
            & (areas >= max(1, self.options.min_region_area))
        )
        if not bool(candidate.any()):
            return
        kept_masks = masks[candidate].cpu().numpy()  # (K, H, W)
        self._packed.append(np.packbits(kept_masks, axis=-1))
        boxes, kept_areas = mask_extents(kept_masks)
        self._boxes.append(boxes)
        self._areas.append(kept_areas)
        for store, values in (
            (self._pred_iou, pred_iou),
            (self._stability, stability),
            (self._in_sp, in_sp),
            (self._in_wp, in_wp),
        ):
            store.append(values[candidate].cpu().numpy())

    def finish(self) -> FrameMasks:
        """Both levels, each selected independently with ``select_masks``."""
        if not self._packed:
            return FrameMasks(_empty_segment_map(self.height, self.width), _empty_segment_map(self.height, self.width))
        packed = np.concatenate(self._packed)
        boxes = np.concatenate(self._boxes)
        areas = np.concatenate(self._areas)
        pred_iou = np.concatenate(self._pred_iou)
        stability = np.concatenate(self._stability)
        levels = {}
        for name, in_level in (("sp", np.concatenate(self._in_sp)), ("wp", np.concatenate(self._in_wp))):
            index = np.flatnonzero(in_level)
            order = index[rank_order(pred_iou[index], stability[index])]
            # Box NMS first (it is idempotent, select_masks repeats it) so only survivors are unpacked.
            survivors = np.sort(order[greedy_keep(box_iou_matrix(boxes[order]), self.options.box_nms_thresh)])
            masks = np.unpackbits(packed[survivors], axis=-1, count=self.width).view(bool)  # (K, H, W), no copy
            extents = boxes[survivors], areas[survivors]
            levels[name] = select_masks(masks, pred_iou[survivors], stability[survivors], self.options, extents)
        return FrameMasks(sp=levels["sp"], wp=levels["wp"])
