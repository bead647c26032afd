"""Pixels of two views that show one surface point, found through depth rendered from Gaussians.

A pixel with geometry (rendered opacity at least ``min_alpha``) is lifted to the world point at
its rendered depth; projected into another view, the point is *seen* there when it lands inside
the image, in front of the camera, on a pixel with geometry whose rendered depth agrees within
a relative tolerance. The depth test is what handles occlusion: a point hidden behind another
surface in the second view lands on a pixel whose rendered depth is smaller.

Used by the reprojection tracker (masks linked by their overlap in 3D) and by the label-free
consistency measure (``cclgs_core.evaluation.consistency``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cclgs_core.types import Camera


@dataclass
class ViewGeometry:
    """What one view sees of the scene: its camera, rendered depth and where there is geometry.

    depth: (H, W) float64 expected camera depth; valid: (H, W) bool pixels with geometry.
    """

    camera: Camera
    depth: np.ndarray
    valid: np.ndarray


def lift_pixels(rows: np.ndarray, cols: np.ndarray, depth: np.ndarray, camera: Camera) -> np.ndarray:
    """World points of pixels (rows, cols: (P,) int) with camera depths (P,): returns (P, 3)."""
    x = (cols + 0.5 - camera.cx) / camera.fx * depth
    y = (rows + 0.5 - camera.cy) / camera.fy * depth
    points_camera = np.stack([x, y, depth, np.ones_like(depth)], axis=-1)  # (P, 4)
    return (points_camera @ camera.camera_to_world.T)[:, :3]


def project_visible(
    points: np.ndarray, camera: Camera, depth: np.ndarray, valid: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which world points (P, 3) a view sees, and where.

    depth: (H, W) the view's rendered depth; valid: (H, W) bool pixels with geometry. A point
    is seen when it projects inside the image, in front of the camera, onto a valid pixel, with
    a camera depth within ``tolerance`` (relative) of the rendered one.
    Returns seen (P,) bool and pixel (P,) int64 flat index row * W + col (meaningful where seen).
    """
    height, width = depth.shape
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)  # (P, 4)
    camera_points = homogeneous @ camera.world_to_camera.T  # (P, 4)
    z = camera_points[:, 2]
    front = z > 1e-6
    safe_z = np.where(front, z, 1.0)
    cols = np.floor(camera_points[:, 0] / safe_z * camera.fx + camera.cx).astype(np.int64)
    rows = np.floor(camera_points[:, 1] / safe_z * camera.fy + camera.cy).astype(np.int64)
    seen = front & (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    pixel = np.where(seen, rows * width + cols, 0)  # (P,)
    surface = depth.reshape(-1)[pixel]
    seen &= valid.reshape(-1)[pixel] & (np.abs(z - surface) <= tolerance * surface)
    return seen, pixel


def carry_pixels(
    pixels: np.ndarray, source: ViewGeometry, target: ViewGeometry, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Where the target view sees the surface under some of the source view's pixels.

    pixels: (P,) int64 flat indices of source pixels with geometry. Returns seen (P,) bool and
    (P,) int64 flat target pixels (meaningful where seen)."""
    rows, cols = np.divmod(pixels, source.depth.shape[1])
    points = lift_pixels(rows, cols, source.depth[rows, cols], source.camera)  # (P, 3)
    return project_visible(points, target.camera, target.depth, target.valid, tolerance)


def render_geometry(
    gaussians: Any, cameras: Sequence[Camera], backend: Any, min_alpha: float = 0.5
) -> list[ViewGeometry]:
    """Render the depth of ``gaussians`` (a Gaussians) in every camera with a field backend;
    pixels with opacity at least ``min_alpha`` have geometry."""
    import torch

    from cclgs_core.helpers.devices import to_host

    backend.prepare(gaussians, list(cameras))
    blank = torch.zeros(len(gaussians), 1)  # (N, 1): only depth and alpha are wanted
    result = []
    with torch.no_grad():
        for camera in cameras:
            output = backend.render(gaussians, blank, camera)
            result.append(
                ViewGeometry(camera, to_host(output.depth).astype(np.float64), to_host(output.alpha) >= min_alpha)
            )
    return result


def neighbouring_view_pairs(cameras: Sequence[Camera], neighbours: int) -> list[tuple[int, int]]:
    """Unordered pairs (u, v), u < v, of views where one is among the other's ``neighbours``
    nearest views by pose (``cameras.view_distances``)."""
    from cclgs_core.scene.cameras import view_distances

    count = len(cameras)
    if count < 2:
        return []
    distance = view_distances([camera.camera_to_world for camera in cameras])  # (V, V)
    nearest = np.argsort(distance, axis=1, kind="stable")[:, : min(neighbours, count - 1)]  # (V, k)
    return sorted({(min(u, int(v)), max(u, int(v))) for u in range(count) for v in nearest[u]})
