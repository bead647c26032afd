"""Tracking masks across views through the scene's geometry.

The SAM2 video predictor propagates masks in 2D; with a 3D Gaussian scene at hand, masks of
different views can be compared in 3D directly. Every mask pixel with geometry is lifted to a
world point with the depth rendered from the Gaussians. For two views u and v, the points of
mask a (of u) are projected into v and depth-tested against v's rendered depth; those that
pass are the part of a that v sees, and the share of them landing in mask b (of v) is the
*containment* c(a -> b). Measured both ways, the two containments give an IoU of a and b in
3D, restricted to the surface both views see:

    IoU(a, b) = 1 / (1 / c(a -> b) + 1 / c(b -> a) - 1)

Two masks whose IoU exceeds ``iou_threshold`` (0.5, CCL-LGS's matching threshold) are linked,
over all pairs of nearby views, and tracks grow from the links strongest first (``cluster_links``)
under one rule: two tracks that already hold masks of the same view are never joined, so a
track has at most one mask per view. Without it, a mask spanning two objects, linked to each
from views that see only one of them, chains both objects into one track. Because the
comparison is between every pair of views, not a chain from the first frame:

- an object unseen in the first view gets a track like any other (the re-seeding the paper
  lacks);
- one damaged mask (split, merged, eroded) fails its own links only; it cannot start a rival
  track that captures later clean masks of the object, as a sequential tracker's would;
- occlusion is handled by the depth test: only the surface both views see is compared.

A mask linked to nothing in any other view (``min_views``) stays -1, so it takes part in no
pull or push pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cclgs_core import UNLABELED, Camera, ConfigError, DataError, Frame, Scene, SegmentMap
from cclgs_core.scene.correspondence import lift_pixels, neighbouring_view_pairs, project_visible, render_geometry


def containment(
    mask_ids: np.ndarray, seen: np.ndarray, landed: np.ndarray, num_source: int, num_target: int, min_seen: int
) -> np.ndarray:
    """Share of each source mask's seen points that land in each target mask.

    mask_ids: (P,) source mask of each point; seen: (P,) bool whether the target view sees it;
    landed: (P,) target mask id under it (-1 = none). Returns (num_source, num_target) float64,
    0 for a source mask with fewer than ``min_seen`` seen points.
    """
    seen_counts = np.bincount(mask_ids[seen], minlength=num_source)  # (num_source,)
    hit = seen & (landed >= 0)
    joint = np.bincount(mask_ids[hit] * num_target + landed[hit], minlength=num_source * num_target)
    joint = joint.reshape(num_source, num_target).astype(np.float64)
    reliable = seen_counts >= max(min_seen, 1)
    return np.where(reliable[:, None], joint / np.maximum(seen_counts, 1)[:, None], 0.0)


def iou_from_containments(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """forward: (Mu, Mv) c(a -> b); backward: (Mu, Mv) c(b -> a). Returns (Mu, Mv) IoU in 3D."""
    product = forward * backward
    denominator = forward + backward - product
    return np.divide(product, denominator, out=np.zeros_like(product), where=denominator > 0)


def cluster_links(a: np.ndarray, b: np.ndarray, iou: np.ndarray, mask_view: np.ndarray, min_views: int) -> np.ndarray:
    """Tracks from links between masks, strongest link first, never joining two tracks that
    already hold masks of one view.

    a, b: (E,) global ids of linked masks; iou: (E,) their 3D IoU; mask_view: (n,) view of
    each mask. Two masks of one view are two regions of the image, so a merge is refused when
    both tracks hold a mask of one view, and a track keeps at most one mask per view; this stops
    a chain of links (through a mask spanning two objects, say) from joining two objects that
    some view shows apart. Returns (n,) int64 track ids numbered by first mask, -1 for tracks spanning fewer
    than ``min_views`` views.
    """
    count = len(mask_view)
    parent = np.arange(count)
    views: list[set[int]] = [{int(view)} for view in mask_view]  # per root, the views its track holds

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for edge in np.argsort(-iou, kind="stable"):
        root_a, root_b = find(int(a[edge])), find(int(b[edge]))
        if root_a == root_b or not views[root_a].isdisjoint(views[root_b]):
            continue
        if len(views[root_a]) < len(views[root_b]):
            root_a, root_b = root_b, root_a
        parent[root_b] = root_a
        views[root_a] |= views[root_b]
    roots = np.array([find(node) for node in range(count)], dtype=np.int64)  # (n,)
    labels = np.full(count, UNLABELED, dtype=np.int64)
    next_label: dict[int, int] = {}
    for node, root in enumerate(roots):
        if len(views[root]) >= min_views:
            labels[node] = next_label.setdefault(int(root), len(next_label))
    return labels


class ReprojectionTracker:
    """Labels masks consistently across views by their 3D overlap, using depth rendered from
    the scene's Gaussians (see the module docstring).

    renderer:            field backend that renders the depth
    iou_threshold:       3D IoU above which two masks of different views are linked
    depth_tolerance:     relative depth difference within which a projected point is visible
    min_alpha:           rendered opacity from which a pixel has geometry
    neighbours:          each view is compared with this many nearest views (by pose)
    min_views:           a track must span this many views; smaller ones are labelled -1
    min_seen_pixels:     a mask needs this many points seen by the other view to be compared
    max_points_per_view: mask pixels are lifted on a regular grid thinned to at most this many
    gaussians:           a 3DGS .ply to render depth from (default: the scene's own)
    """

    def __init__(
        self,
        renderer: str = "torch",
        iou_threshold: float = 0.5,
        depth_tolerance: float = 0.03,
        min_alpha: float = 0.5,
        neighbours: int = 16,
        min_views: int = 2,
        min_seen_pixels: int = 16,
        max_points_per_view: int = 200_000,
        gaussians: Path | None = None,
    ):
        problems = []
        if not 0.0 < iou_threshold < 1.0:
            problems.append(f"iou_threshold must lie in (0, 1), got {iou_threshold}")
        if depth_tolerance <= 0:
            problems.append(f"depth_tolerance must be > 0, got {depth_tolerance}")
        if neighbours < 1:
            problems.append(f"neighbours must be >= 1, got {neighbours}")
        if min_views < 1:
            problems.append(f"min_views must be >= 1, got {min_views}")
        if max_points_per_view < 1:
            problems.append(f"max_points_per_view must be >= 1, got {max_points_per_view}")
        if problems:
            raise ConfigError("tracker reprojection: " + "; ".join(problems))
        self.renderer = renderer
        self.iou_threshold = iou_threshold
        self.depth_tolerance = depth_tolerance
        self.min_alpha = min_alpha
        self.neighbours = neighbours
        self.min_views = min_views
        self.min_seen_pixels = min_seen_pixels
        self.max_points_per_view = max_points_per_view
        self.gaussians = gaussians

    def _depths(self, scene: Scene, frames: Sequence[Frame]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame: rendered depth (H, W) float64 and alpha >= min_alpha (H, W) bool."""
        from cclgs_core import get_registry
        from cclgs_core.scene.ply import read_gaussians

        path = self.gaussians or scene.gaussians_path
        if path is None:
            raise DataError(
                f"{scene.root}: the reprojection tracker needs the scene's Gaussians; pass `cclgs train --gaussians "
                'PATH.ply`, set gaussians_file_path in transforms.json or the tracker option gaussians = "PATH.ply" '
                "(no .ply yet: make one with `cclgs fit`)"
            )
        backend = get_registry().create("field_backend", self.renderer)
        cameras = [frame.camera for frame in frames]
        geometry = render_geometry(read_gaussians(path), cameras, backend, self.min_alpha)
        return [(view.depth, view.valid) for view in geometry]

    def _mask_points(
        self, segments: np.ndarray, depth: np.ndarray, valid: np.ndarray, camera: Camera
    ) -> tuple[np.ndarray, np.ndarray]:
        """World points (P, 3) of one view's mask pixels with geometry, on a grid thinned to at
        most ``max_points_per_view`` pixels, and the (P,) int64 mask id of each."""
        height, width = segments.shape
        stride = max(1, int(np.ceil(np.sqrt(height * width / self.max_points_per_view))))
        keep = (segments >= 0) & valid
        grid = np.zeros_like(keep)
        grid[::stride, ::stride] = True
        rows, cols = np.nonzero(keep & grid)
        return lift_pixels(rows, cols, depth[rows, cols], camera), segments[rows, cols].astype(np.int64)

    def track(self, scene: Scene, frames: Sequence[Frame], segment_maps: Sequence[SegmentMap]) -> list[np.ndarray]:
        """Returns per view an (M_t,) int64 array of track ids, -1 for masks in no track."""
        counts = [segment_map.num_masks for segment_map in segment_maps]
        labels = [np.full(count, UNLABELED, dtype=np.int64) for count in counts]
        if len(frames) < 2 or not any(counts):
            return labels
        depths = self._depths(scene, frames)
        points = [
            self._mask_points(segment_map.segments, depth, valid, frame.camera)
            for segment_map, (depth, valid), frame in zip(segment_maps, depths, frames)
        ]
        offsets = np.concatenate([[0], np.cumsum(counts)])  # (V + 1,) first global id of each view's masks
        links_a, links_b, link_ious = [], [], []
        for u, v in neighbouring_view_pairs([frame.camera for frame in frames], self.neighbours):
            if counts[u] == 0 or counts[v] == 0:
                continue
            forward = self._containment(points[u], counts[u], segment_maps[v], depths[v], frames[v].camera)  # (Mu, Mv)
            backward = self._containment(points[v], counts[v], segment_maps[u], depths[u], frames[u].camera)  # (Mv, Mu)
            iou = iou_from_containments(forward, backward.T)  # (Mu, Mv)
            rows, cols = np.nonzero(iou > self.iou_threshold)
            links_a.append(offsets[u] + rows)
            links_b.append(offsets[v] + cols)
            link_ious.append(iou[rows, cols])
        if links_a:
            a, b, iou = np.concatenate(links_a), np.concatenate(links_b), np.concatenate(link_ious)
        else:
            a = b = np.zeros(0, dtype=np.int64)
            iou = np.zeros(0)
        mask_view = np.repeat(np.arange(len(counts)), counts)  # (total,)
        global_labels = cluster_links(a, b, iou, mask_view, self.min_views)  # (total,)
        return [global_labels[offsets[view] : offsets[view + 1]] for view in range(len(counts))]

    def _containment(
        self,
        source: tuple[np.ndarray, np.ndarray],
        num_source: int,
        target: SegmentMap,
        target_depth,
        target_camera: Camera,
    ) -> np.ndarray:
        """c(a -> b) for the masks of one view (points, ids from ``_mask_points``) into another.
        target_depth: (depth (H, W), valid (H, W)). Returns (num_source, M_target)."""
        world_points, mask_ids = source
        depth, valid = target_depth
        seen, pixel = project_visible(world_points, target_camera, depth, valid, self.depth_tolerance)
        landed = np.where(seen, target.segments.reshape(-1)[pixel], UNLABELED)  # (P,)
        return containment(mask_ids, seen, landed, num_source, target.num_masks, self.min_seen_pixels)
