"""SAM2's image predictor prompted with a uniform point grid; three masks per point become the
``sp`` and ``wp`` levels through ``cclgs_core.helpers.masks`` (docs/design.md, "Two-level masks").

Like sam2's own automatic mask generator, this calls the predictor's ``_transforms`` and
``_predict`` to batch point prompts as tensors; SAM2AutomaticMaskGenerator itself is not used
because it flattens the three outputs of a point. torch and sam2 are imported on first use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cclgs_core import ConfigError, Frame, FrameMasks, check_device_name, require_checkpoint, resolve_device
from cclgs_core.helpers.masks import MaskSelectionOptions, TwoLevelCollector, point_grid
from cclgs_sam2.model import CHECKPOINT_HINT, build_sam2_model, check_model_config

COMPONENT = "mask generator 'sam2-auto'"


class Sam2AutoMaskGenerator:
    """Two-level masks from SAM2's multimask output on a ``points_per_side`` x ``points_per_side`` grid.

    model_config: a config name shipped with sam2 (``configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml``
    or ``configs/sam2/...``); checkpoint: the matching ``.pt``. Without a checkpoint the model is
    only built (random initialisation) when ``allow_random_weights`` is true, for tests and smoke
    runs. Thresholds as in ``cclgs_core.helpers.masks.MaskSelectionOptions``.
    """

    def __init__(
        self,
        checkpoint: Path | None = None,
        model_config: str = "configs/sam2.1/sam2.1_hiera_l.yaml",
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
        for option, value in (("points_per_side", points_per_side), ("points_per_batch", points_per_batch)):
            if value < 1:
                raise ConfigError(f"{COMPONENT} option {option} must be >= 1 (got {value})")
        self.checkpoint = checkpoint
        self.allow_random_weights = allow_random_weights
        self.model_config = check_model_config(COMPONENT, model_config)
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
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        checkpoint = require_checkpoint(COMPONENT, self.checkpoint, self.allow_random_weights, CHECKPOINT_HINT)
        model = build_sam2_model(self.model_config, checkpoint, resolve_device(self.device))
        self._predictor = SAM2ImagePredictor(model)

    def generate(self, image: np.ndarray, frame: Frame) -> FrameMasks:
        """image: (H, W, 3) uint8 RGB. Returns ``sp`` and ``wp``, each (H, W) segments."""
        import torch

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frame {frame.name}: expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        self.load()
        predictor = self._predictor
        height, width = image.shape[:2]
        collector = TwoLevelCollector(
            height, width, self.selection, predictor.mask_threshold, self.stability_score_offset
        )
        points = torch.from_numpy(point_grid(self.points_per_side, height, width)).to(predictor.device)  # (n*n, 2)
        with torch.inference_mode():
            predictor.set_image(image)
            for start in range(0, len(points), self.points_per_batch):
                batch = points[start : start + self.points_per_batch]
                coords = predictor._transforms.transform_coords(batch, normalize=True, orig_hw=(height, width))
                labels = torch.ones(len(batch), 1, dtype=torch.int64, device=batch.device)  # (B, 1) foreground
                logits, pred_iou, _ = predictor._predict(
                    coords[:, None, :], labels, multimask_output=True, return_logits=True
                )
                collector.add(logits, pred_iou)  # (B, 3, H, W), (B, 3)
            predictor.reset_predictor()
        return collector.finish()
