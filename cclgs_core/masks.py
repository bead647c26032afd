"""Model-free two-level mask logic shared by the promptable-segmenter mask generators (SAM, SAM2).

DESIGN.md §1 step 1. A segmenter prompted with one point of a uniform grid (``point_grid``)
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

Vectorization (steps c and d): pixels are grouped by the set of masks covering them, by exact
partition refinement: each mask, within its box, gives its pixels a fresh group id per old id
(a bincount over the ids; no sort, no hashing), so the cost is about the sum of the masks' box
areas. With G groups of pixel counts ``counts`` and a (G, M) membership matrix, all pairwise
intersections are sums of ``counts`` over the pairs of masks sharing a group (one bincount over
sum_g |members of g|^2 pairs, not H*W*M^2 work), and the selection claims groups instead of
pixels. The only Python loops are O(M) steps of vector work (greedy suppression over one row of
the overlap matrix, refining by one mask, claiming one mask's groups); none is pairwise.

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


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Pixel extents (x0, y0, x1, y1), end-exclusive, of each mask; (0, 0, 0, 0) for an empty one.

    masks: (M, H, W) bool. Returns (M, 4) int64. One pass over the rows, then each mask's
    columns only within its row band.
    """
    num_masks, height, width = masks.shape
    rows = masks.any(axis=2)  # (M, H)
    boxes = np.zeros((num_masks, 4), dtype=np.int64)
    for j in np.flatnonzero(rows.any(axis=1)):
        y0, y1 = rows[j].argmax(), height - rows[j, ::-1].argmax()
        cols = masks[j, y0:y1].any(axis=0)  # (W,)
        boxes[j] = cols.argmax(), y0, width - cols[::-1].argmax(), y1
    return boxes


def box_areas(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Pixel count of each mask, counted inside its box. masks: (M, H, W) bool; boxes: (M, 4). Returns (M,) int64."""
    counts = [np.count_nonzero(mask[y0:y1, x0:x1]) for mask, (x0, y0, x1, y1) in zip(masks, boxes)]
    return np.array(counts, dtype=np.int64).reshape(len(masks))


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """boxes: (M, 4) end-exclusive pixel extents. Returns (M, M) float64 IoU."""
    x0, y0, x1, y1 = (boxes[:, k] for k in range(4))
    inter_w = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    inter_h = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    inter = inter_w * inter_h
    area = (x1 - x0) * (y1 - y0)
    return inter / (area[:, None] + area[None] - inter)


def greedy_keep(overlap: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy suppression: item j is dropped when a kept item i < j has overlap[i, j] > thresh.

    overlap: (M, M) with items in rank order. Returns (M,) bool kept.
    """
    keep = np.ones(len(overlap), dtype=bool)
    for i in range(len(overlap)):
        if keep[i]:
            keep[i + 1 :] &= overlap[i, i + 1 :] <= thresh
    return keep


def rank_order(pred_iou: np.ndarray, stability: np.ndarray) -> np.ndarray:
    """pred_iou, stability: (M,). Returns (M,) int64 indices by decreasing pred_iou x stability, ties by index."""
    scores = pred_iou.astype(np.float64) * stability.astype(np.float64)
    return np.argsort(-scores, kind="stable")


@dataclass
class PixelGroups:
    """Pixels grouped by the set of masks covering them.

    pixel_group: (H*W,) int64 group of each pixel.
    counts:      (G,) int64 pixels per group.
    members:     (G, M) bool, members[g, j] when mask j covers the pixels of group g.
    """

    pixel_group: np.ndarray
    counts: np.ndarray
    members: np.ndarray


def pixel_groups(masks: np.ndarray, index: np.ndarray, boxes: np.ndarray) -> PixelGroups:
    """Group pixels by the set of masks ``masks[index]`` covering them (exact partition refinement).

    masks: (M_all, H, W) bool; index: (M,) int64 masks to use, in member order; boxes: (M, 4)
    their extents. Each mask splits every group it covers: its pixels move to a fresh id per old
    id (a bincount over the ids, no sort), so the work is about the sum of the masks' box areas.
    """
    _, height, width = masks.shape
    group = np.zeros((height, width), dtype=np.int64)  # every pixel starts in id 0 (no mask)
    id_members = np.zeros((1024, len(index)), dtype=bool)  # (capacity, M) covering set of each id
    next_id, compact_above = 1, 1 << 16
    for position, (j, (x0, y0, x1, y1)) in enumerate(zip(index, boxes)):
        if next_id > compact_above:  # ids are never reused: renumber the live ones now and then
            group, id_members, next_id = _compact_ids(group, id_members, next_id)
            compact_above = max(compact_above, 2 * next_id)
        window = group[y0:y1, x0:x1]
        inside = masks[j, y0:y1, x0:x1]
        old = window.ravel()[inside.ravel()]  # (A_j,) ids of the mask's pixels (copies beat 2-D indexing)
        touched = np.flatnonzero(np.bincount(old, minlength=next_id))  # distinct old ids
        while next_id + len(touched) > len(id_members):
            id_members = np.concatenate([id_members, np.zeros_like(id_members)])
        fresh = np.arange(next_id, next_id + len(touched))
        id_members[fresh] = id_members[touched]
        id_members[fresh, position] = True
        fresh_of_old = np.empty(next_id, dtype=np.int64)
        fresh_of_old[touched] = fresh
        window[inside] = fresh_of_old[old]
        next_id += len(touched)
    group, id_members, num_groups = _compact_ids(group, id_members, next_id)
    pixel_group = group.ravel()
    return PixelGroups(pixel_group, np.bincount(pixel_group, minlength=num_groups), id_members[:num_groups])


def _compact_ids(group: np.ndarray, id_members: np.ndarray, next_id: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Renumber the ids present in ``group`` (H, W) to 0..G-1 in order, with their rows of
    ``id_members`` (capacity, M). Returns (group, id_members, G)."""
    used = np.bincount(group.ravel(), minlength=next_id) > 0
    compact_id = np.cumsum(used) - 1
    live = id_members[:next_id][used]
    id_members = np.zeros_like(id_members)
    id_members[: len(live)] = live
    return compact_id[group], id_members, len(live)


def pairwise_intersections(groups: PixelGroups) -> np.ndarray:
    """(M, M) int64 pixel counts of every pairwise intersection (diagonal: areas)."""
    group_of_entry, mask_of_entry = np.nonzero(groups.members)  # entries sorted by group
    num_masks = groups.members.shape[1]
    group_size = np.bincount(group_of_entry, minlength=len(groups.counts))
    group_start = np.cumsum(group_size) - group_size
    partners = group_size[group_of_entry]  # per entry, entries sharing its group (itself included)
    first = np.repeat(np.arange(len(group_of_entry)), partners)
    offset_in_group = np.arange(len(first)) - np.repeat(np.cumsum(partners) - partners, partners)
    second = group_start[group_of_entry[first]] + offset_in_group
    pair_index = mask_of_entry[first] * num_masks + mask_of_entry[second]
    weights = groups.counts[group_of_entry[first]].astype(np.float64)
    totals = np.bincount(pair_index, weights=weights, minlength=num_masks * num_masks)
    return np.rint(totals).astype(np.int64).reshape(num_masks, num_masks)


def _empty_segment_map(height: int, width: int) -> SegmentMap:
    return SegmentMap(np.full((height, width), UNLABELED, dtype=np.int32), 0, np.zeros(0, dtype=np.float32))


def select_masks(
    masks: np.ndarray,
    pred_iou: np.ndarray,
    stability: np.ndarray,
    options: MaskSelectionOptions,
    boxes: np.ndarray | None = None,
) -> SegmentMap:
    """Filter one mask set into non-overlapping masks (steps a-e of the module docstring).

    masks: (M, H, W) bool; pred_iou, stability: (M,) float; boxes: (M, 4) from ``mask_boxes``
    when already known. Returns a SegmentMap with (H, W) segments and (M',) float32 scores.
    """
    num_masks, height, width = masks.shape
    boxes = mask_boxes(masks) if boxes is None else boxes
    areas = box_areas(masks, boxes)
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

    groups = pixel_groups(masks, order, boxes)
    inter = pairwise_intersections(groups).astype(np.float64)
    mask_iou = inter / (areas[:, None] + areas[None] - inter)
    unique = np.flatnonzero(greedy_keep(mask_iou, options.duplicate_iou_thresh))

    entry_mask, entry_group = np.nonzero(groups.members[:, unique].T)  # entries sorted by mask
    bounds = np.searchsorted(entry_mask, np.arange(len(unique) + 1))
    owner = np.full(len(groups.counts), UNLABELED, dtype=np.int64)  # (G,) selected mask per group
    selected = []
    for position, mask_index in enumerate(unique):
        mask_groups = entry_group[bounds[position] : bounds[position + 1]]
        free = mask_groups[owner[mask_groups] == UNLABELED]
        visible = groups.counts[free].sum()
        if visible >= options.min_visible_fraction * areas[mask_index] and visible >= options.min_region_area:
            owner[free] = len(selected)
            selected.append(order[mask_index])
    segments = owner[groups.pixel_group].reshape(height, width).astype(np.int32)
    selected = np.asarray(selected, dtype=np.int64)
    scores = (pred_iou[selected].astype(np.float64) * stability[selected].astype(np.float64)).astype(np.float32)
    return remove_small_regions(segments, scores, options.min_region_area)


def remove_small_regions(segments: np.ndarray, scores: np.ndarray, min_area: int) -> SegmentMap:
    """Unlabel 4-connected regions smaller than ``min_area``; drop masks left empty (ids keep their order).

    segments: (H, W) int32 ids in [0, M) or -1; scores: (M,) float32.
    """
    from skimage.measure import label

    regions = label(segments, background=UNLABELED, connectivity=1).ravel()  # (H*W,), 0 = unlabeled
    region_mask = np.full(regions.max() + 1, UNLABELED, dtype=np.int64)  # (R + 1,) mask of each region
    region_mask[regions] = segments.ravel()
    region_mask[np.bincount(regions) < min_area] = UNLABELED
    region_mask[0] = UNLABELED
    present = np.bincount(region_mask[region_mask >= 0], minlength=len(scores)) > 0  # (M,)
    new_ids = np.append(np.cumsum(present) - 1, UNLABELED)  # index -1 maps unlabeled to itself
    segments = new_ids[region_mask[regions]].astype(np.int32).reshape(segments.shape)
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
        self._boxes.append(mask_boxes(kept_masks))
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
        pred_iou = np.concatenate(self._pred_iou)
        stability = np.concatenate(self._stability)
        levels = {}
        for name, in_level in (("sp", np.concatenate(self._in_sp)), ("wp", np.concatenate(self._in_wp))):
            index = np.flatnonzero(in_level)
            order = index[rank_order(pred_iou[index], stability[index])]
            # Box NMS first (it is idempotent, select_masks repeats it) so only survivors are unpacked.
            survivors = np.sort(order[greedy_keep(box_iou_matrix(boxes[order]), self.options.box_nms_thresh)])
            masks = np.unpackbits(packed[survivors], axis=-1, count=self.width).astype(bool)
            levels[name] = select_masks(
                masks, pred_iou[survivors], stability[survivors], self.options, boxes[survivors]
            )
        return FrameMasks(sp=levels["sp"], wp=levels["wp"])
