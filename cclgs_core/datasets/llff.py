"""LLFF camera files (``poses_bounds.npy``), the cameras the 3D-OVS scenes ship with.

``poses_bounds.npy`` is an (N, 17) array, one row per image of ``images/`` sorted by name: a
3x5 matrix flattened row by row, then the near and far depth bounds. The matrix's first three
columns are the camera's axes in world coordinates in LLFF's order (down, right, backwards), the
fourth its centre, the fifth ``(height, width, focal)`` of the images the poses were made for
(one focal length in pixels, the principal point at the centre).

Poses are normalised as the 3D-OVS authors' loader does: the world is re-expressed in the frame
of the average camera (centre: the mean of the centres; backwards axis: the mean backwards axis;
right axis: normal to it and to the mean up axis), then scaled so that the nearest depth bound
becomes 1 / 0.75. That is a rigid motion and one scale, so the views keep their relation. One
difference: the authors' average frame takes its right axis as backwards x up, which points
left, so their world is a mirror image with cameras of determinant -1; this reader keeps the
right-handed frame, and its x coordinates are the negatives of theirs (y, z and scale agree).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cclgs_core.errors import DataError
from cclgs_core.types import Camera

POSES_FILE = "poses_bounds.npy"

#: The nearest depth bound is scaled to 1 / NEAR_SCALE (LLFF's and 3D-OVS's 0.75).
NEAR_SCALE = 0.75


def poses_file(scene_dir: Path) -> Path:
    return Path(scene_dir) / POSES_FILE


def read_llff_cameras(path: Path, image_sizes: list[tuple[int, int]]) -> list[Camera]:
    """The full-resolution cameras of ``poses_bounds.npy``, one per image (sorted by name).

    ``image_sizes``: (width, height) of each image file. The camera's size is the one the file
    states; an image of another size with the same aspect ratio is resized to it on load (as the
    authors' loader does), one of another aspect ratio is refused.
    """
    path = Path(path)
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the LLFF poses ({error}); replace the file") from None
    if rows.ndim != 2 or rows.shape[1] != 17 or not np.issubdtype(rows.dtype, np.number):
        raise DataError(
            f"{path}: expected an (N, 17) array of numbers (LLFF: a 3x5 pose matrix and near, far per image), "
            f"got {rows.dtype} of shape {rows.shape}"
        )
    rows = rows.astype(np.float64)
    if len(rows) != len(image_sizes):
        raise DataError(
            f"{path}: {len(rows)} poses for {len(image_sizes)} images in {path.parent / 'images'}; "
            "LLFF keeps one row per image, in the images' name order: rerun COLMAP and LLFF's imgs2poses, "
            "or remove the images that have no pose"
        )
    if not np.all(np.isfinite(rows)):
        raise DataError(f"{path}: the poses contain NaN or inf; rerun COLMAP and LLFF's imgs2poses")
    matrices = rows[:, :15].reshape(-1, 3, 5)  # (N, 3, 5): axes (down, right, back), centre, (h, w, focal)
    near = rows[:, 15].min()
    if near <= 0:
        raise DataError(f"{path}: the nearest depth bound is {near}, expected > 0")
    # LLFF's (down, right, back) -> OpenGL's (right, up, back): the axes the authors average in.
    gl_poses = np.concatenate([matrices[..., 1:2], -matrices[..., 0:1], matrices[..., 2:4]], axis=-1)  # (N, 3, 4)
    gl_poses = _recentred(gl_poses)
    gl_poses[..., 3] /= NEAR_SCALE * near
    cameras = []
    for index, (gl_pose, (height, width, focal)) in enumerate(zip(gl_poses, matrices[..., 4])):
        _check_size(path, index, (width, height), image_sizes[index])
        camera_to_world = np.eye(4)
        camera_to_world[:3, :3] = gl_pose[:, :3] * np.array([1.0, -1.0, -1.0])  # (right, up, back) -> OpenCV
        camera_to_world[:3, 3] = gl_pose[:, 3]
        cameras.append(
            Camera(camera_to_world, float(focal), float(focal), width / 2.0, height / 2.0, int(width), int(height))
        )
    return cameras


def _recentred(poses: np.ndarray) -> np.ndarray:
    """(N, 3, 4) camera-to-world poses expressed in the frame of their average pose (module docstring)."""
    centre = poses[..., 3].mean(axis=0)
    back = _unit(poses[..., 2].mean(axis=0))
    right = _unit(np.cross(poses[..., 1].mean(axis=0), back))
    up = np.cross(back, right)
    average = np.eye(4)
    average[:3] = np.stack([right, up, back, centre], axis=1)
    homogeneous = np.concatenate([poses, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (len(poses), 1, 1))], axis=1)
    return (np.linalg.inv(average) @ homogeneous)[:, :3]


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _check_size(path: Path, index: int, stated: tuple[float, float], actual: tuple[int, int]) -> None:
    """The image's aspect ratio is the one the poses were made for (to within one pixel)."""
    width, height = stated
    if width < 1 or height < 1 or int(width) != width or int(height) != height:
        raise DataError(f"{path}: row {index} states an image size of {width} x {height}; expected whole pixels")
    if abs(actual[1] - actual[0] * height / width) > 1.0:
        raise DataError(
            f"{path}: row {index} was made for {int(width)}x{int(height)} images, but image {index} (in name "
            f"order) is {actual[0]}x{actual[1]}, another aspect ratio; put the images the poses were made for in "
            "images/"
        )
