"""Two mask levels without any model: Felzenszwalb's graph segmentation (scikit-image) at a
fine scale for ``sp`` and a coarse scale for ``wp``, so real photos can be preprocessed with
no checkpoint. Deterministic. Every pixel gets a mask; scores are all 1 (no quality estimate).

The smoothing before segmenting turns a sharp edge into intermediate colours, which
Felzenszwalb keeps as strips one or two pixels wide; regions that are nowhere three pixels wide
are therefore handed to their nearest neighbouring regions.
"""

from __future__ import annotations

import numpy as np

from cclgs_core import ConfigError, Frame, FrameMasks, SegmentMap


class ClassicalMaskGenerator:
    """Felzenszwalb segmentation at two scales.

    The image is first shrunk so its longer side is at most ``max_side`` (None: full size);
    ``sp_scale``/``wp_scale`` and ``sigma`` are Felzenszwalb's parameters at that working size
    (larger scale, larger regions). ``sp_min_area``/``wp_min_area`` are minimum region areas in
    pixels of the full-size image. Labels are upsampled back by nearest neighbour.
    """

    def __init__(
        self,
        sp_scale: float = 300.0,
        wp_scale: float = 600.0,
        sigma: float = 0.8,
        sp_min_area: int = 200,
        wp_min_area: int = 2000,
        max_side: int | None = 640,
    ):
        if sp_scale <= 0 or wp_scale <= 0 or sigma < 0:
            raise ConfigError(
                "mask generator 'classical': sp_scale and wp_scale must be positive and sigma non-negative"
            )
        if max_side is not None and max_side < 16:
            raise ConfigError(
                f"mask generator 'classical' option max_side={max_side}: use at least 16, or none for full size"
            )
        self.sp_scale, self.wp_scale, self.sigma = sp_scale, wp_scale, sigma
        self.sp_min_area, self.wp_min_area = sp_min_area, wp_min_area
        self.max_side = max_side

    def generate(self, image: np.ndarray, frame: Frame) -> FrameMasks:
        """image: (H, W, 3) uint8 RGB. Returns ``sp`` (fine) and ``wp`` (coarse), each (H, W) segments."""
        from skimage.transform import resize

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frame {frame.name}: expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        factor = 1.0 if self.max_side is None else min(1.0, self.max_side / max(height, width))
        working = image.astype(np.float64) / 255.0  # (h, w, 3) in [0, 1]
        if factor < 1.0:
            size = (max(1, round(height * factor)), max(1, round(width * factor)))
            working = resize(working, size, anti_aliasing=True)
        area_factor = working.shape[0] * working.shape[1] / (height * width)
        return FrameMasks(
            sp=self._segment(working, self.sp_scale, self.sp_min_area * area_factor, (height, width)),
            wp=self._segment(working, self.wp_scale, self.wp_min_area * area_factor, (height, width)),
        )

    def _segment(self, working: np.ndarray, scale: float, min_size: float, size: tuple[int, int]) -> SegmentMap:
        """working: (h, w, 3) image. Returns a SegmentMap at ``size`` (H, W)."""
        from skimage.segmentation import expand_labels, felzenszwalb

        min_size = max(1, int(round(min_size)))
        labels = 1 + felzenszwalb(working, scale=scale, sigma=self.sigma, min_size=min_size, channel_axis=-1)
        labels = np.where(_has_interior(labels)[labels], labels, 0)  # (h, w), 0 = thin strip
        labels = expand_labels(labels, distance=sum(labels.shape))
        rows = np.arange(size[0]) * labels.shape[0] // size[0]  # nearest-neighbour upsampling
        cols = np.arange(size[1]) * labels.shape[1] // size[1]
        labels = labels[rows[:, None], cols[None, :]]  # (H, W)
        used = np.bincount(labels.ravel()) > 0
        used[0] = False
        new_ids = np.where(used, np.cumsum(used) - 1, -1)
        num_masks = int(used.sum())
        return SegmentMap(new_ids[labels].astype(np.int32), num_masks, np.ones(num_masks, dtype=np.float32))


def _has_interior(labels: np.ndarray) -> np.ndarray:
    """labels: (h, w) int >= 1. Returns (max + 1,) bool: the label has a pixel whose four
    neighbours (the image edge repeating itself) carry the same label."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    interior = (centre == padded[:-2, 1:-1]) & (centre == padded[2:, 1:-1])
    interior &= (centre == padded[1:-1, :-2]) & (centre == padded[1:-1, 2:])
    return np.bincount(labels[interior], minlength=labels.max() + 1) > 0
