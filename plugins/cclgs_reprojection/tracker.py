"""Tracking masks across views through the scene's geometry.

The SAM2 video predictor propagates masks in 2D; with a 3D Gaussian scene at hand the same can
be done exactly in 3D. Views are visited along the camera path. Each track keeps the 3D
points (mask pixels lifted with the rendered depth) of every mask it has claimed so far. In a
new view each track's points are projected and depth-tested against the view's rendered
depth, which gives the track's *propagated mask*; a mask takes the label of the propagated
mask it overlaps with IoU above ``iou_threshold`` (0.5 as in CCL-LGS; at most one track can
pass for a mask because masks do not overlap). A mask that no track claims starts a new
track, so objects unseen in the first view get labels too (the re-seeding the paper lacks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cclgs_core.errors import DataError
from cclgs_core.types import UNLABELED, Camera, Frame, Scene, SegmentMap


def lift_pixels(rows: np.ndarray, cols: np.ndarray, depth: np.ndarray, camera: Camera) -> np.ndarray:
    """World points of pixels (rows, cols: (P,) int) with camera depths (P,): returns (P, 3)."""
    x = (cols + 0.5 - camera.cx) / camera.fx * depth
    y = (rows + 0.5 - camera.cy) / camera.fy * depth
    points_camera = np.stack([x, y, depth, np.ones_like(depth)], axis=-1)  # (P, 4)
    return (points_camera @ camera.camera_to_world.T)[:, :3]


def propagate(points: np.ndarray, camera: Camera, depth: np.ndarray, valid: np.ndarray, tolerance: float, radius: int) -> np.ndarray:
    """(H, W) bool pixels where ``points`` (P, 3) are visible: inside the image, in front of the
    camera and within ``tolerance`` (relative) of the rendered ``depth`` (H, W) where ``valid``
    (H, W) marks pixels with geometry; each hit is dilated by ``radius`` pixels."""
    height, width = depth.shape
    mask = np.zeros((height, width), dtype=bool)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    camera_points = homogeneous @ camera.world_to_camera.T  # (P, 4)
    z = camera_points[:, 2]
    front = z > 1e-6
    cols = np.floor(camera_points[front, 0] / z[front] * camera.fx + camera.cx).astype(np.int64)
    rows = np.floor(camera_points[front, 1] / z[front] * camera.fy + camera.cy).astype(np.int64)
    z = z[front]
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    rows, cols, z = rows[inside], cols[inside], z[inside]
    surface = depth[rows, cols]
    visible = valid[rows, cols] & (np.abs(z - surface) <= tolerance * surface)
    rows, cols = rows[visible], cols[visible]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            mask[np.clip(rows + dy, 0, height - 1), np.clip(cols + dx, 0, width - 1)] = True
    return mask


class ReprojectionTracker:
    """Labels masks consistently across views using depth rendered from the scene's Gaussians."""

    def __init__(
        self,
        renderer: str = "torch",
        iou_threshold: float = 0.5,
        depth_tolerance: float = 0.03,
        dilation: int = 1,
        min_alpha: float = 0.5,
        max_points_per_track: int = 50_000,
        gaussians: Path | None = None,
        seed: int = 0,
    ):
        self.renderer = renderer
        self.iou_threshold = iou_threshold
        self.depth_tolerance = depth_tolerance
        self.dilation = dilation
        self.min_alpha = min_alpha
        self.max_points_per_track = max_points_per_track
        self.gaussians = gaussians
        self.seed = seed

    def _depths(self, scene: Scene, frames: Sequence[Frame]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame: rendered depth (H, W) float64 and alpha >= min_alpha (H, W) bool."""
        import torch

        from cclgs_core.ply import read_gaussians
        from cclgs_core.registry import get_registry

        path = self.gaussians or scene.gaussians_path
        if path is None:
            raise DataError(
                f"{scene.root}: the reprojection tracker needs the scene's Gaussians; set gaussians_file_path in "
                "transforms.json or the tracker option gaussians = \"PATH.ply\""
            )
        gaussians = read_gaussians(path)
        backend = get_registry().create("field_backend", self.renderer)
        backend.prepare(gaussians, [frame.camera for frame in frames])
        blank = torch.zeros(len(gaussians), 1)
        result = []
        with torch.no_grad():
            for frame in frames:
                output = backend.render(gaussians, blank, frame.camera)
                result.append((output.depth.numpy().astype(np.float64), output.alpha.numpy() >= self.min_alpha))
        return result

    def track(self, scene: Scene, frames: Sequence[Frame], segment_maps: Sequence[SegmentMap]) -> list[np.ndarray]:
        """Returns per view an (M_t,) int64 array of track ids, -1 for masks without geometry."""
        from cclgs_core.cameras import path_order

        labels = [np.full(segment_map.num_masks, UNLABELED, dtype=np.int64) for segment_map in segment_maps]
        if not any(segment_map.num_masks for segment_map in segment_maps):
            return labels
        depths = self._depths(scene, frames)
        rng = np.random.default_rng(self.seed)
        tracks: list[np.ndarray] = []  # per track (P, 3) world points
        for view in path_order([frame.camera.camera_to_world for frame in frames]):
            segments, camera = segment_maps[view].segments, frames[view].camera
            depth, valid = depths[view]
            propagated = [
                propagate(points, camera, depth, valid, self.depth_tolerance, self.dilation) for points in tracks
            ]
            for mask_id in range(segment_maps[view].num_masks):
                mask = segments == mask_id
                if propagated:
                    stack = np.stack(propagated)  # (tracks, H, W)
                    intersection = (stack & mask).sum(axis=(1, 2))
                    union = (stack | mask).sum(axis=(1, 2))
                    iou = intersection / np.maximum(union, 1)
                    best = int(np.argmax(iou))
                    if iou[best] > self.iou_threshold:
                        labels[view][mask_id] = best
                rows, cols = np.nonzero(mask & valid)
                if len(rows) == 0:
                    continue  # a mask over empty space has no 3D points: it stays unlabeled
                points = lift_pixels(rows, cols, depth[rows, cols], camera)
                if labels[view][mask_id] == UNLABELED:
                    labels[view][mask_id] = len(tracks)
                    tracks.append(points)
                else:
                    track_id = int(labels[view][mask_id])
                    merged = np.concatenate([tracks[track_id], points])
                    if len(merged) > self.max_points_per_track:
                        merged = merged[rng.choice(len(merged), self.max_points_per_track, replace=False)]
                    tracks[track_id] = merged
        return labels
