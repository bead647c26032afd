"""Pictures of queries and evaluations: relevance heatmaps over images, masks, panel rows, PNG files.

Images are (H, W, 3) uint8 RGB; maps are (H, W) float; masks (H, W) bool.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from cclgs_core.plumbing.cache import atomic_write_bytes

#: Colour stops of the heatmap, from low to high: dark blue, blue, cyan, yellow, red.
_HEAT_STOPS = np.array([[20, 20, 90], [30, 90, 220], [40, 200, 200], [250, 220, 40], [220, 30, 20]], dtype=np.float64)
MASK_COLOR = np.array([255, 40, 40], dtype=np.float64)
TRUTH_COLOR = np.array([40, 220, 60], dtype=np.float64)


def colormap(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours, piecewise linear through ``_HEAT_STOPS``."""
    scaled = np.clip(values, 0.0, 1.0) * (len(_HEAT_STOPS) - 1)
    low = np.minimum(np.floor(scaled).astype(int), len(_HEAT_STOPS) - 2)
    fraction = (scaled - low)[..., None]
    return ((1 - fraction) * _HEAT_STOPS[low] + fraction * _HEAT_STOPS[low + 1]).astype(np.uint8)


def heatmap_overlay(image: np.ndarray, relevance: np.ndarray, low: float, high: float) -> np.ndarray:
    """The relevance coloured over the image: (H, W, 3) uint8.

    ``relevance`` (H, W) is mapped linearly from [low, high] to [0, 1]; a pixel's colour is
    blended over the image with that weight (times 0.75), so pixels at or below ``low`` show the
    image unchanged.
    """
    heat = np.clip((relevance - low) / max(high - low, 1e-9), 0.0, 1.0)
    weight = 0.75 * heat[..., None]
    return ((1 - weight) * image + weight * colormap(heat)).astype(np.uint8)


def mask_overlay(image: np.ndarray, mask: np.ndarray, color: np.ndarray = MASK_COLOR) -> np.ndarray:
    """(H, W, 3) uint8: the image darkened outside ``mask`` and tinted with ``color`` inside."""
    tinted = np.where(mask[..., None], 0.45 * image + 0.55 * color, 0.5 * image)
    return tinted.astype(np.uint8)


def panel_row(panels: Sequence[np.ndarray], min_height: int = 160, gap: int = 3) -> np.ndarray:
    """Panels (H, W, 3) uint8 of one size side by side on white, enlarged (nearest) to at least ``min_height``."""
    factor = max(1, -(-min_height // panels[0].shape[0]))
    enlarged = [np.repeat(np.repeat(panel, factor, axis=0), factor, axis=1) for panel in panels]
    height = enlarged[0].shape[0]
    separator = np.full((height, gap, 3), 255, dtype=np.uint8)
    parts = [enlarged[0]]
    for panel in enlarged[1:]:
        parts.extend([separator, panel])
    return np.concatenate(parts, axis=1)


def save_png(path: Path, array: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 or (H, W) bool/uint8 as PNG, atomically. Returns the path."""
    from PIL import Image

    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def slug(text: str) -> str:
    """A file-name-safe form of a query text ("red mug!" -> "red_mug")."""
    cleaned = "".join(character if character.isalnum() else "_" for character in text.strip().lower())
    return "_".join(part for part in cleaned.split("_") if part) or "query"


def target_picture(segments: np.ndarray, mask_targets: np.ndarray, num_outputs: int) -> np.ndarray:
    """A compressor's per-pixel training targets as colours: (H, W, 3) uint8, no-mask pixels black.

    segments: (H, W) int mask ids, -1 = no mask. mask_targets: (M,) int64 prototype indices,
    each prototype a fixed colour out of ``num_outputs`` (the same prototype has the same colour
    in every view, so a consistent object keeps one colour); or (M, L) float latents, whose first
    three dimensions are scaled to [0, 255] over this view's masks (LangSplat shows its 3-d
    latents the same way).
    """
    if mask_targets.ndim == 1:
        palette = np.random.default_rng(0).integers(40, 256, size=(max(num_outputs, 1), 3))  # (L, 3)
        colours = palette[mask_targets] if len(mask_targets) else np.zeros((0, 3))  # (M, 3)
    else:
        channels = np.zeros((len(mask_targets), 3))
        channels[:, : min(3, mask_targets.shape[1])] = mask_targets[:, :3]
        low, high = (channels.min(axis=0), channels.max(axis=0)) if len(channels) else (0.0, 1.0)
        colours = 40 + 215 * (channels - low) / np.maximum(high - low, 1e-9)  # (M, 3)
    picture = np.zeros((*segments.shape, 3), dtype=np.uint8)
    covered = segments >= 0
    picture[covered] = colours[segments[covered]].astype(np.uint8)
    return picture
