"""SAM (segment-anything) prompted with a uniform point grid; three masks per point become the
``sp`` and ``wp`` levels through ``cclgs_core.helpers.masks`` (docs/design.md, "Two-level masks").

SamAutomaticMaskGenerator is not used: it flattens the three outputs of a point and loses which
one is subpart, part or whole. torch and segment_anything are imported when the model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from cclgs_core.errors import ConfigError, DataError, error_summary
from cclgs_core.helpers.masks import MaskSelectionOptions, TwoLevelCollector, point_grid
from cclgs_core.helpers.seeding import repeatable_initialisation
from cclgs_core.types import Frame, FrameMasks

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
        device: Literal["auto", "cpu", "cuda"] = "auto",
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
        hint = DOWNLOAD_HINT.format(file=CHECKPOINT_FILES[model_type])
        if checkpoint is None and not allow_random_weights:
            raise ConfigError(
                f"mask generator 'sam' needs a checkpoint. {hint} (or set allow_random_weights = true for a smoke run)."
            )
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise DataError(f"SAM checkpoint {checkpoint} does not exist. {hint}.")
        if points_per_side < 1 or points_per_batch < 1:
            raise ConfigError("sam options points_per_side and points_per_batch must be at least 1")
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.model_type = model_type
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.device = device
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

    def _load_predictor(self):
        """A ``SamPredictor`` around the model (built once, on first use)."""
        if self._predictor is None:
            import torch
            from segment_anything import SamPredictor, sam_model_registry

            device = _resolve_device(self.device)
            with repeatable_initialisation():  # random weights: the same network in every process
                model = sam_model_registry[self.model_type](checkpoint=None)
            if self.checkpoint is not None:
                try:
                    state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
                    model.load_state_dict(state)
                except Exception as error:  # unreadable file or another architecture's weights
                    hint = DOWNLOAD_HINT.format(file=CHECKPOINT_FILES[self.model_type])
                    raise DataError(
                        f"SAM checkpoint {self.checkpoint} could not be loaded as model_type {self.model_type!r} "
                        f"({error_summary(error)}). "
                        f"Set model_type to the checkpoint's architecture or: {hint}."
                    ) from error
            self._predictor = SamPredictor(model.to(device).eval())
        return self._predictor

    def generate(self, image: np.ndarray, frame: Frame) -> FrameMasks:
        """image: (H, W, 3) uint8 RGB. Returns ``sp`` and ``wp``, each (H, W) segments."""
        import torch

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frame {frame.name}: expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        predictor = self._load_predictor()
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


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("mask generator 'sam' option device='cuda': no CUDA device is available; use 'cpu' or 'auto'")
    return device
