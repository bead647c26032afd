"""Integer label maps (class, instance, part ids) stored as 16-bit grayscale PNG.

A pixel stores ``label + 1``, so ``UNLABELED`` (-1) is 0 and labels 0..65534 fit.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from cclgs_core.errors import DataError
from cclgs_core.plumbing.cache import atomic_write_bytes
from cclgs_core.types import UNLABELED

#: The largest label a 16-bit label map can hold.
MAX_LABEL = 65534


def write_label_map(path: Path, labels: np.ndarray) -> None:
    """Write labels: (H, W) integer in [-1, 65534], -1 meaning no label."""
    from PIL import Image

    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"a label map must be a 2D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < UNLABELED or labels.max() > MAX_LABEL):
        raise ValueError(
            f"label map values must lie in [{UNLABELED}, {MAX_LABEL}] for {path}, found [{labels.min()}, "
            f"{labels.max()}]"
        )
    stored = (labels.astype(np.int64) + 1).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_label_map(path: Path) -> np.ndarray:
    """(H, W) int32 labels, -1 where unlabeled, from a 16-bit PNG written by ``write_label_map``."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: label map not found; check the frame's ground_truth entry in the scene file")
    try:
        with Image.open(path) as image:
            mode = image.mode
            stored = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{path}: cannot read the label map ({error}); the PNG is corrupt, regenerate it") from None
    if mode not in ("I;16", "I;16B", "I;16L") or stored.ndim != 2:
        raise DataError(
            f"{path}: label map is a {mode} image; expected a 16-bit grayscale PNG storing label + 1 "
            "(write it with cclgs_core.evaluation.labelmaps.write_label_map)"
        )
    return stored.astype(np.int32) - 1
