"""SAM (segment-anything) prompted with a uniform point grid; three masks per point become the
``sp`` and ``wp`` levels through ``cclgs_core.helpers.masks`` (docs/design.md, "Two-level masks").

SamAutomaticMaskGenerator is not used: it flattens the three outputs of a point and loses which
one is subpart, part or whole. torch and segment_anything are imported when the model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from cclgs_core import (
    ConfigError,
    Frame,
    FrameMasks,
    check_device_name,
    load_weights_into,
    repeatable_initialisation,
    require_checkpoint,
    resolve_device,
)
from cclgs_core.helpers.masks import MaskSelectionOptions, TwoLevelCollector, point_grid

CHECKPOINT_FILES = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}
DOWNLOAD_HINT = (
    "Download the official checkpoint ({file}, https://dl.fbaipublicfiles.com/segment_anything/{file}, "
    "listed at https://github.com/facebookresearch/segment-anything#model-checkpoints) and set the "
    "mask generator option checkpoint to its path"
)


class SamMaskGenerator:
    """Two-level masks from SAM's multimask output on a ``points_per_side`` x ``points_per_side`` grid.

    checkpoint: a segment-anything ``.pth`` matching ``model_type``. Without one the model is
    only built (at random initialisation, meaningless masks) when ``allow_random_weights`` is
    true, which is meant for tests and smoke runs. The thresholds are those of
    ``cclgs_core.helpers.masks.MaskSelectionOptions``; ``stability_score_offset`` is SAM's.
    """

    def __init__(
        self,
        checkpoint: Path | None = None,
        model_type: Literal["vit_h", "vit_l", "vit_b"] = "vit_h",
        allow_random_weights: bool = False,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        device: str = "auto",
        pred_iou_thresh: float = 0.7,
        stability_score_thresh: float = 0.85,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        duplicate_iou_thresh: float = 0.8,
        min_visible_fraction: float = 0.5,
        min_region_area: int = 100,
    ):
        if model_type not in CHECKPOINT_FILES:
            raise ConfigError(f"sam option model_type={model_type!r}: use one of {', '.join(CHECKPOINT_FILES)}")
        for option, value in (("points_per_side", points_per_side), ("points_per_batch", points_per_batch)):
            if value < 1:
                raise ConfigError(f"mask generator 'sam' option {option} must be >= 1 (got {value})")
        self.checkpoint = checkpoint
        self.allow_random_weights = allow_random_weights
        self.model_type = model_type
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.device = check_device_name(device)
        self.stability_score_offset = stability_score_offset
        self.selection = MaskSelectionOptions(
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            box_nms_thresh=box_nms_thresh,
            duplicate_iou_thresh=duplicate_iou_thresh,
            min_visible_fraction=min_visible_fraction,
            min_region_area=min_region_area,
        )
        self._predictor = None

    def load(self) -> None:
        """Check the checkpoint, build the model and load its weights (once; first use calls this)."""
        if self._predictor is not None:
            return
        from segment_anything import SamPredictor, sam_model_registry

        fix = DOWNLOAD_HINT.format(file=CHECKPOINT_FILES[self.model_type])
        checkpoint = require_checkpoint("mask generator 'sam'", self.checkpoint, self.allow_random_weights, fix)
        device = resolve_device(self.device)
        with repeatable_initialisation():  # random weights: the same network in every process
            model = sam_model_registry[self.model_type](checkpoint=None)
        if checkpoint is not None:
            what = f"SAM {self.model_type} weights"
            load_weights_into(model, checkpoint, what, f"Set model_type to the checkpoint's architecture or: {fix}")
        self._predictor = SamPredictor(model.to(device).eval())

    def generate(self, image: np.ndarray, frame: Frame) -> FrameMasks:
        """image: (H, W, 3) uint8 RGB. Returns ``sp`` and ``wp``, each (H, W) segments."""
        import torch

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frame {frame.name}: expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        self.load()
        predictor = self._predictor
        height, width = image.shape[:2]
        collector = TwoLevelCollector(
            height, width, self.selection, predictor.model.mask_threshold, self.stability_score_offset
        )
        points = torch.from_numpy(point_grid(self.points_per_side, height, width)).to(predictor.device)  # (n*n, 2)
        with torch.inference_mode():
            predictor.set_image(image)
            for start in range(0, len(points), self.points_per_batch):
                batch = points[start : start + self.points_per_batch]
                coords = predictor.transform.apply_coords_torch(batch, (height, width))[:, None, :]  # (B, 1, 2)
                labels = torch.ones(len(batch), 1, dtype=torch.int64, device=batch.device)  # (B, 1) foreground
                logits, pred_iou, _ = predictor.predict_torch(coords, labels, multimask_output=True, return_logits=True)
                collector.add(logits, pred_iou)  # (B, 3, H, W), (B, 3)
            predictor.reset_image()
        return collector.finish()
