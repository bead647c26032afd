"""The SAM2 video tracker (CCL-LGS section "tracking labels").

The K masks of the first frame are given to SAM2's video predictor as K objects and propagated
through the frames. In frame t, mask i takes the id of the propagated mask with the largest
IoU when that IoU exceeds ``iou_threshold`` (0.5), else -1. With ``reseed_every`` = k > 0,
every k-th frame also seeds its still unmatched masks as new objects, so objects unseen in the
first frame get labels too (off by default, as in the paper). Frames that are not a video are
first ordered along the camera path (nearest neighbour by pose).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from cclgs_core import (
    UNLABELED,
    ConfigError,
    Frame,
    Scene,
    SegmentMap,
    check_device_name,
    require_checkpoint,
    resolve_device,
)
from cclgs_sam2.model import CHECKPOINT_HINT, build_sam2_model, check_model_config

COMPONENT = "tracker 'sam2'"


def labels_from_propagation(
    segments: np.ndarray, count: int, propagated: np.ndarray, object_ids: Sequence[int], threshold: float
) -> np.ndarray:
    """Label the ``count`` masks of ``segments`` (H, W) by the propagated masks (O, H, W) bool.

    Returns (count,) int64: the object id whose propagated mask has the largest IoU with the
    mask when above ``threshold``, else -1.
    """
    labels = np.full(count, UNLABELED, dtype=np.int64)
    if count == 0 or len(object_ids) == 0:
        return labels
    flat = propagated.reshape(len(object_ids), -1).astype(np.float32)  # (O, H*W)
    one_hot = np.zeros((count, segments.size), dtype=np.float32)  # (M, H*W)
    covered = segments.reshape(-1) >= 0
    one_hot[segments.reshape(-1)[covered], np.nonzero(covered)[0]] = 1.0
    intersection = one_hot @ flat.T  # (M, O)
    union = one_hot.sum(1, keepdims=True) + flat.sum(1)[None] - intersection
    iou = intersection / np.maximum(union, 1.0)
    best = iou.argmax(axis=1)
    matched = iou[np.arange(count), best] > threshold
    labels[matched] = np.asarray(object_ids, dtype=np.int64)[best[matched]]
    return labels


class Sam2Tracker:
    """SAM2 video predictor from a model config and a local checkpoint."""

    def __init__(
        self,
        model_config: str = "configs/sam2.1/sam2.1_hiera_l.yaml",
        checkpoint: Path | None = None,
        allow_random_weights: bool = False,
        device: str = "auto",
        iou_threshold: float = 0.5,
        reseed_every: int = 0,
        order: Literal["path", "given"] = "path",
    ):
        if not 0.0 <= iou_threshold <= 1.0:
            raise ConfigError(f"{COMPONENT} option iou_threshold={iou_threshold}: must lie in [0, 1]")
        if reseed_every < 0:
            raise ConfigError(f"{COMPONENT} option reseed_every={reseed_every}: must be 0 (never) or a positive count")
        self.model_config = check_model_config(COMPONENT, model_config)
        self.checkpoint = checkpoint
        self.allow_random_weights = allow_random_weights
        self.device = check_device_name(device)
        self.iou_threshold = iou_threshold
        self.reseed_every = reseed_every
        self.order = order
        self._predictor = None

    def load(self) -> None:
        """Check the checkpoint, build the video predictor and load its weights (once; first use calls this)."""
        if self._predictor is None:
            checkpoint = require_checkpoint(COMPONENT, self.checkpoint, self.allow_random_weights, CHECKPOINT_HINT)
            self._predictor = build_sam2_model(self.model_config, checkpoint, resolve_device(self.device), video=True)

    def track(self, scene: Scene, frames: Sequence[Frame], segment_maps: Sequence[SegmentMap]) -> list[np.ndarray]:
        """Returns per view an (M_t,) int64 array of object ids, -1 for unmatched masks."""
        import torch
        from PIL import Image

        from cclgs_core.scene.cameras import path_order

        labels = [np.full(m.num_masks, UNLABELED, dtype=np.int64) for m in segment_maps]
        if not any(m.num_masks for m in segment_maps):
            return labels
        order = list(range(len(frames)))
        if self.order == "path":
            order = path_order([frame.camera.camera_to_world for frame in frames])
        self.load()
        predictor = self._predictor
        with tempfile.TemporaryDirectory(prefix="cclgs-sam2-") as video_dir:
            for position, view in enumerate(order):  # SAM2 reads a folder of <index>.jpg frames
                Image.fromarray(frames[view].load_image()).save(Path(video_dir) / f"{position:05d}.jpg", quality=95)
            with torch.inference_mode():
                state = predictor.init_state(video_path=video_dir, offload_video_to_cpu=True, offload_state_to_cpu=True)
                next_id = 0
                keyframes = [0]
                if self.reseed_every > 0:
                    keyframes += list(range(self.reseed_every, len(order), self.reseed_every))
                for index, start in enumerate(keyframes):
                    view = order[start]
                    segment_map = segment_maps[view]
                    for mask_id in range(segment_map.num_masks):
                        if labels[view][mask_id] == UNLABELED:
                            predictor.add_new_mask(state, start, next_id, segment_map.segments == mask_id)
                            labels[view][mask_id] = next_id
                            next_id += 1
                    if next_id == 0:
                        continue  # nothing to track yet
                    stop = keyframes[index + 1] if index + 1 < len(keyframes) else len(order)
                    for position, object_ids, logits in predictor.propagate_in_video(
                        state, start_frame_idx=start, max_frame_num_to_track=stop - start
                    ):
                        if position == start or position > stop:
                            continue
                        view_at = order[position]
                        propagated = (logits[:, 0] > 0).cpu().numpy()  # (O, H, W)
                        segment = segment_maps[view_at]
                        labels[view_at] = labels_from_propagation(
                            segment.segments, segment.num_masks, propagated, object_ids, self.iou_threshold
                        )
        return labels
