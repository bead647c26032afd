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
