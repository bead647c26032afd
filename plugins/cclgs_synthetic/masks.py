"""The "synthetic" mask generator: ground-truth masks of a synthetic world, damaged per view.

It is a simulation of an automatic segmenter such as SAM. ``sp`` starts from the world's part
map, ``wp`` from its instance map (objects without parts have one part, the whole). Each level
of each view is then damaged independently, in this order, every draw seeded by
(seed, image stem, level) so runs are reproducible and views differ:

1. merge: with ``merge_prob`` a mask is joined with one of its touching neighbours (a mask
   that spans two objects, so its feature mixes two classes);
2. split: with ``split_prob`` a mask is cut in two by a straight line through it, at a random
   angle and at a random 30-70 % quantile (partial masks);
3. boundary: with ``boundary_prob`` a mask is eroded or dilated (even odds) by 1 to
   ``boundary_px`` pixels; dilation takes pixels from neighbours and background (bleeding);
4. drop: with ``drop_prob`` a mask disappears (a missed object);
5. masks smaller than ``min_area`` pixels are removed, as SAM's minimum region area does.

Defaults (fixed before any comparison, see SIMULATION.md): merge 0.10, split 0.15, boundary
0.50 up to 2 px, drop 0.05, min_area 16 px at 128x128.
"""

from __future__ import annotations

import numpy as np

from cclgs_core import ConfigError, DataError, Frame, FrameMasks, SegmentMap
from cclgs_synthetic.groundtruth import frame_key, load_label_map
from cclgs_synthetic.seeding import derived_rng


class SyntheticMaskGenerator:
    """Simulated two-level masks: ground-truth parts (``sp``) and wholes (``wp``) with per-view damage."""

    def __init__(
        self,
        seed: int = 0,
        merge_prob: float = 0.10,
        split_prob: float = 0.15,
        boundary_prob: float = 0.50,
        boundary_px: int = 2,
        drop_prob: float = 0.05,
        min_area: int = 16,
    ):
        for name, value in (
            ("merge_prob", merge_prob),
            ("split_prob", split_prob),
            ("boundary_prob", boundary_prob),
            ("drop_prob", drop_prob),
        ):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"mask_generator 'synthetic': {name} must lie in [0, 1], got {value}")
        if boundary_px < 1 or min_area < 1:
            raise ConfigError(
                f"mask_generator 'synthetic': boundary_px and min_area must be >= 1, got {boundary_px} and {min_area}"
            )
        self.seed = seed
        self.merge_prob = merge_prob
        self.split_prob = split_prob
        self.boundary_prob = boundary_prob
        self.boundary_px = boundary_px
        self.drop_prob = drop_prob
        self.min_area = min_area

    def generate(self, image: np.ndarray, frame: Frame) -> FrameMasks:
        """image: (H, W, 3) uint8 (only its size is used). Returns damaged (H, W) segments per level."""
        parts, instances = load_label_map(frame, "part"), load_label_map(frame, "instance")
        if image.shape[:2] != parts.shape:
            raise DataError(
                f"image of frame {frame.name} is {image.shape[1]}x{image.shape[0]}, its ground truth "
                f"{parts.shape[1]}x{parts.shape[0]}"
            )
        key = frame_key(frame)
        levels = {}
        for level, labels in (("sp", parts), ("wp", instances)):
            segments = self.damage(labels, derived_rng(self.seed, "synthetic masks", key, level))
            levels[level] = SegmentMap(segments, int(segments.max()) + 1 if segments.size else 0)
        return FrameMasks(**levels)

    def damage(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """labels: (H, W) int, -1 = none. Returns (H, W) int32 segments with ids 0..M-1, -1 = none."""
        segments = _compact(labels)
        segments = self._merge(segments, rng)
        segments = self._split(segments, rng)
        segments = self._boundary(segments, rng)
        for mask_id in _ids(segments):
            if rng.uniform() < self.drop_prob:
                segments[segments == mask_id] = -1
        ids, counts = np.unique(segments[segments >= 0], return_counts=True)
        for mask_id in ids[counts < self.min_area]:
            segments[segments == mask_id] = -1
        return _compact(segments)

    def _merge(self, segments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        neighbours: dict[int, set[int]] = {int(i): set() for i in _ids(segments)}
        for a, b in ((segments[:, :-1], segments[:, 1:]), (segments[:-1, :], segments[1:, :])):
            touching = (a >= 0) & (b >= 0) & (a != b)
            for i, j in set(zip(a[touching].tolist(), b[touching].tolist())):
                neighbours[i].add(j)
                neighbours[j].add(i)
        if not neighbours:  # a view without masks: nothing to merge
            return segments
        root = np.arange(len(neighbours))

        def find(i: int) -> int:
            while root[i] != i:
                i = root[i]
            return i

        for mask_id in sorted(neighbours):
            draw, pick = rng.uniform(), rng.uniform()
            if draw < self.merge_prob and neighbours[mask_id]:
                other = sorted(neighbours[mask_id])[int(pick * len(neighbours[mask_id]))]
                root[find(mask_id)] = find(other)
        lookup = np.array([find(i) for i in range(len(root))], dtype=np.int32)
        return np.where(segments >= 0, lookup[np.maximum(segments, 0)], -1).astype(np.int32)

    def _split(self, segments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        next_id = int(segments.max()) + 1
        for mask_id in _ids(segments):
            draw, angle, quantile = rng.uniform(), rng.uniform(0, np.pi), rng.uniform(0.3, 0.7)
            if draw >= self.split_prob:
                continue
            ys, xs = np.nonzero(segments == mask_id)
            along = xs * np.cos(angle) + ys * np.sin(angle)
            far = along > np.quantile(along, quantile)
            if far.any() and not far.all():
                segments[ys[far], xs[far]] = next_id
                next_id += 1
        return segments

    def _boundary(self, segments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from scipy.ndimage import binary_dilation, binary_erosion

        for mask_id in _ids(segments):
            draw, grow, radius = rng.uniform(), rng.uniform() < 0.5, int(rng.integers(1, self.boundary_px + 1))
            if draw >= self.boundary_prob:
                continue
            mask = segments == mask_id
            if not mask.any():  # swallowed by an earlier dilation
                continue
            disk = _disk(radius)
            if grow:
                segments[binary_dilation(mask, disk) & ~mask] = mask_id
            else:
                segments[mask & ~binary_erosion(mask, disk, border_value=1)] = -1
        return segments


def _ids(segments: np.ndarray) -> np.ndarray:
    """(M,) sorted ids present in the map."""
    return np.unique(segments[segments >= 0])


def _compact(labels: np.ndarray) -> np.ndarray:
    """(H, W) ids renumbered 0..M-1 in increasing order of the old ids, -1 kept."""
    ids = _ids(labels)
    lookup = np.full(int(ids.max()) + 1 if ids.size else 1, -1, dtype=np.int32)
    lookup[ids] = np.arange(len(ids), dtype=np.int32)
    return np.where(labels >= 0, lookup[np.maximum(labels, 0)], -1).astype(np.int32)


def _disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) bool disk structuring element."""
    ys, xs = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xs**2 + ys**2 <= radius**2
