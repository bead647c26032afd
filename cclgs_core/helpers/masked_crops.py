"""The masked-crop recipe of per-mask image features (docs/design.md, "Mask features").

A mask's crop is the image with every pixel outside the mask set to black, cut to the mask's
bounding box, padded with black to a centred square and resized (bicubic, antialiased) to the
encoder's input size. An empty mask gives an all-black crop. Shared by the image encoders
(OpenCLIP, EfficientNet), which normalise and encode the crops their own way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from cclgs_core.errors import DataError
from cclgs_core.types import Frame, SegmentMap

if TYPE_CHECKING:
    import torch


def encode_masked_crops(
    image: np.ndarray,
    segment_map: SegmentMap,
    frame: Frame,
    size: tuple[int, int],
    batch_size: int,
    dim: int,
    encode: Callable[["torch.Tensor"], np.ndarray],
) -> np.ndarray:
    """One embedding per mask: the masked crops of ``image``, ``batch_size`` at a time, through
    ``encode`` ((B, 3, S_h, S_w) float32 in [0, 1] -> (B, dim) float32 unit rows).

    image: (H, W, 3) uint8; segment_map.segments: (H, W). Returns (M, dim) float32. DataError,
    naming the frame, when the image and its segment map disagree.
    """
    segments = segment_map.segments
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != segments.shape:
        raise DataError(
            f"{frame.image_path}: image of shape {image.shape} does not match its segment map "
            f"{segments.shape}; regenerate the masks of this frame."
        )
    num_masks = segment_map.num_masks
    if segments.size and int(segments.max()) >= num_masks:
        raise DataError(
            f"{frame.image_path}: the segment map holds mask id {int(segments.max())} but claims "
            f"{num_masks} masks; regenerate the masks of this frame."
        )
    boxes = mask_boxes(segments, num_masks)
    features = np.empty((num_masks, dim), dtype=np.float32)
    for start in range(0, num_masks, batch_size):
        mask_ids = range(start, min(start + batch_size, num_masks))
        features[start : start + len(mask_ids)] = encode(masked_square_crops(image, segments, boxes, mask_ids, size))
    return features


def mask_boxes(segments: np.ndarray, num_masks: int) -> np.ndarray:
    """segments: (H, W) int, -1 where no mask. Returns (M, 4) int64 boxes (y0, x0, y1, x1), the
    ends exclusive; an empty mask gets (0, 0, 0, 0)."""
    height, width = segments.shape
    rows, cols = np.nonzero(segments >= 0)
    ids = segments[rows, cols]
    in_row = np.zeros((num_masks, height), dtype=bool)  # (M, H) mask m has a pixel in row y
    in_col = np.zeros((num_masks, width), dtype=bool)  # (M, W)
    in_row[ids, rows] = True
    in_col[ids, cols] = True
    boxes = np.stack(
        [
            in_row.argmax(axis=1),
            in_col.argmax(axis=1),
            height - in_row[:, ::-1].argmax(axis=1),
            width - in_col[:, ::-1].argmax(axis=1),
        ],
        axis=1,
    ).astype(np.int64)
    boxes[~in_row.any(axis=1)] = 0
    return boxes


def masked_square_crops(
    image: np.ndarray,
    segments: np.ndarray,
    boxes: np.ndarray,
    mask_ids: Sequence[int],
    size: tuple[int, int],
) -> "torch.Tensor":
    """Black out everything but the mask, crop to its box, pad to a centred square, resize.

    image: (H, W, 3) uint8; segments: (H, W) int; boxes: (M, 4) from ``mask_boxes``;
    size: (S_h, S_w). Returns (len(mask_ids), 3, S_h, S_w) float32 in [0, 1]; an empty mask
    gives an all-black crop.
    """
    import torch
    import torch.nn.functional as F

    crops = torch.zeros((len(mask_ids), 3, *size), dtype=torch.float32)
    for row, mask_id in enumerate(mask_ids):
        y0, x0, y1, x1 = (int(v) for v in boxes[mask_id])
        if y1 <= y0:
            continue
        inside = segments[y0:y1, x0:x1] == mask_id  # (h, w)
        height, width = inside.shape
        side = max(height, width)
        square = np.zeros((side, side, 3), dtype=np.uint8)
        top, left = (side - height) // 2, (side - width) // 2
        square[top : top + height, left : left + width] = np.where(inside[..., None], image[y0:y1, x0:x1], 0)
        pixels = torch.from_numpy(square).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, side, side)
        resized = F.interpolate(pixels, size=size, mode="bicubic", align_corners=False, antialias=True)
        crops[row] = resized[0].clamp_(0.0, 1.0)
    return crops


def unit_rows(embeddings: "torch.Tensor") -> np.ndarray:
    """(B, D) any float, any device -> (B, D) float32 numpy on the host, L2-normalised rows."""
    import torch.nn.functional as F

    return F.normalize(embeddings.float(), dim=-1).cpu().numpy()
