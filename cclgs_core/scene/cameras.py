"""Camera pose helpers."""

from __future__ import annotations

import numpy as np


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """(4, 4) OpenCV camera-to-world matrix of a camera at ``eye`` (3,) looking at ``target`` (3,).

    ``up`` (3,) is the world direction that should point up in the image (image y points down).
    """
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("look_at: the view direction is parallel to 'up'; choose another up vector")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, down, forward, eye
    return matrix


def orbit_poses(count: int, radius: float, height: float, target: np.ndarray = np.zeros(3)) -> list[np.ndarray]:
    """``count`` OpenCV camera-to-world matrices evenly spaced on a horizontal circle around ``target``."""
    poses = []
    for angle in np.linspace(0.0, 2.0 * np.pi, count, endpoint=False):
        eye = np.asarray(target, dtype=np.float64) + np.array([radius * np.cos(angle), radius * np.sin(angle), height])
        poses.append(look_at(eye, target))
    return poses


def view_distances(camera_to_worlds: list[np.ndarray], rotation_weight: float = 0.5) -> np.ndarray:
    """(V, V) float64 distances between views, inf on the diagonal.

    camera_to_worlds: V (4, 4) poses. The distance between two views is the distance between
    their centres (in units of the median nearest-neighbour spacing) plus ``rotation_weight``
    times the angle between their viewing directions in radians.
    """
    count = len(camera_to_worlds)
    centres = np.array([pose[:3, 3] for pose in camera_to_worlds]).reshape(count, 3)  # (V, 3)
    forwards = np.array([pose[:3, 2] / np.linalg.norm(pose[:3, 2]) for pose in camera_to_worlds]).reshape(count, 3)
    spacing = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.diag(np.full(count, np.inf))  # (V, V)
    scale = float(np.median(spacing.min(axis=1))) if count > 1 else 1.0
    angles = np.arccos(np.clip(forwards @ forwards.T, -1.0, 1.0))  # (V, V)
    return spacing / max(scale, 1e-12) + rotation_weight * angles


def path_order(camera_to_worlds: list[np.ndarray], rotation_weight: float = 0.5) -> list[int]:
    """Order views along a camera path by greedy nearest neighbour (``view_distances``),
    starting from view 0. camera_to_worlds: V (4, 4) poses. Returns a permutation of 0..V-1."""
    count = len(camera_to_worlds)
    if count == 0:
        return []
    distance = view_distances(camera_to_worlds, rotation_weight)
    order, visited = [0], np.zeros(count, dtype=bool)
    visited[0] = True
    for _ in range(count - 1):
        candidates = np.where(visited, np.inf, distance[order[-1]])
        order.append(int(np.argmin(candidates)))
        visited[order[-1]] = True
    return order
