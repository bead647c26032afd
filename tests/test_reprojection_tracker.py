"""The reprojection tracker's building blocks on crafted inputs: containment counts, the 3D IoU
from two containments, and clustering of links with the one-mask-per-view rule."""

from __future__ import annotations

import numpy as np

from cclgs_core.scene.correspondence import lift_pixels, project_visible
from cclgs_core.types import Camera
from cclgs_reprojection.tracker import cluster_links, containment, iou_from_containments


def test_containment_counts_only_seen_points():
    mask_ids = np.array([0, 0, 0, 0, 1, 1, 1])
    seen = np.array([True, True, True, False, True, True, False])
    landed = np.array([0, 0, 1, 0, -1, 1, 1])
    # Mask 0: 3 seen points, 2 in target 0 and 1 in target 1. Mask 1: 2 seen, 1 in target 1.
    np.testing.assert_allclose(containment(mask_ids, seen, landed, 2, 2, min_seen=1), [[2 / 3, 1 / 3], [0.0, 0.5]])
    # With min_seen = 3, mask 1 has too few seen points to be compared at all.
    np.testing.assert_allclose(containment(mask_ids, seen, landed, 2, 2, min_seen=3), [[2 / 3, 1 / 3], [0.0, 0.0]])


def test_iou_from_containments_matches_set_iou():
    # Sets of 10 and 20 elements sharing 5: IoU 5 / 25.
    forward, backward = np.array([[5 / 10]]), np.array([[5 / 20]])
    np.testing.assert_allclose(iou_from_containments(forward, backward), [[0.2]])
    np.testing.assert_allclose(iou_from_containments(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]])), [[1.0, 0.0]])


def test_cluster_links_never_joins_two_masks_of_one_view_through_a_chain():
    # Views 0..2. Object A: masks 0 (view 0), 3 (view 1); object B: masks 1 (view 0), 4 (view 1).
    # Mask 5 in view 2 spans both objects and links to A and to B; mask 2 (view 0) is alone.
    mask_view = np.array([0, 0, 0, 1, 1, 2])
    a = np.array([0, 1, 5, 5])
    b = np.array([3, 4, 3, 4])
    iou = np.array([0.9, 0.8, 0.6, 0.55])
    labels = cluster_links(a, b, iou, mask_view, min_views=2)
    assert labels[0] == labels[3] == labels[5]  # the stronger link of mask 5 wins
    assert labels[1] == labels[4] != labels[0]  # B stays apart although mask 5 also links it
    assert labels[2] == -1  # linked to nothing
    np.testing.assert_array_equal(np.unique(labels[labels >= 0]), [0, 1])  # ids numbered from 0


def test_cluster_links_min_views():
    mask_view = np.array([0, 1, 2])
    labels = cluster_links(np.array([0]), np.array([1]), np.array([0.7]), mask_view, min_views=3)
    np.testing.assert_array_equal(labels, [-1, -1, -1])
    labels = cluster_links(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), mask_view, min_views=1)
    np.testing.assert_array_equal(labels, [0, 1, 2])


def test_lifted_pixels_project_back_and_occluded_points_are_not_seen():
    camera = Camera(width=8, height=6, fx=10.0, fy=10.0, cx=4.0, cy=3.0, camera_to_world=np.eye(4))
    depth = np.full((6, 8), 2.0)
    valid = np.ones((6, 8), dtype=bool)
    rows, cols = np.array([0, 3, 5]), np.array([0, 4, 7])
    points = lift_pixels(rows, cols, depth[rows, cols], camera)  # (3, 3)
    seen, pixel = project_visible(points, camera, depth, valid, tolerance=0.01)
    assert seen.all()
    np.testing.assert_array_equal(pixel, rows * 8 + cols)
    behind = points * 1.5  # same rays, farther than the surface: hidden
    assert not project_visible(behind, camera, depth, valid, tolerance=0.01)[0].any()
    valid[3, 4] = False  # no geometry at that pixel
    np.testing.assert_array_equal(project_visible(points, camera, depth, valid, tolerance=0.01)[0], [True, False, True])
