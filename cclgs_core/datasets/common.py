"""Checks and helpers shared by the scene readers."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from cclgs_core.errors import ConfigError, DataError
from cclgs_core.types import Camera

#: Ground-truth kinds a frame may carry: (H, W) label maps (16-bit PNG, see ``cclgs_core.evaluation.labelmaps``)
#: for "class", "instance" and "part", a depth map for "depth", for "objects" a LERF-OVS /
#: ISAT polygon label JSON (``cclgs_core.datasets.lerf_ovs.read_ovs_labels``), and for
#: "class_masks" a folder of one binary PNG per class (3D-OVS, ``cclgs_core.datasets.three_d_ovs``).
GROUND_TRUTH_KINDS = ("class", "instance", "part", "depth", "objects", "class_masks")

#: The kinds that make a frame an evaluation frame of an open-vocabulary benchmark.
EVALUATION_KINDS = ("objects", "class_masks")


def check_downscale(downscale: int) -> None:
    if not isinstance(downscale, (int, np.integer)) or isinstance(downscale, bool) or downscale < 1:
        raise ConfigError(f"downscale must be an integer >= 1 (1 = full resolution), got {downscale!r}")


def rigid_pose(source: Path, what: str, matrix: object) -> np.ndarray:
    """(4, 4) float64 from a 3x4 or 4x4 nested list; DataError unless finite and rigid."""
    try:
        pose = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{source}: {what} is not a numeric matrix") from None
    if pose.shape == (3, 4):
        pose = np.vstack([pose, [0.0, 0.0, 0.0, 1.0]])
    if pose.shape != (4, 4):
        raise DataError(f"{source}: {what} has shape {pose.shape}, expected 4x4 (or 3x4)")
    if not np.all(np.isfinite(pose)):
        raise DataError(f"{source}: {what} contains NaN or inf; fix or remove that frame")
    rotation = pose[:3, :3]
    if (
        not np.allclose(pose[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6)
        or not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-3)
        or np.linalg.det(rotation) < 0
    ):
        raise DataError(f"{source}: {what} is not a rigid transform (rotation + translation); fix that frame's pose")
    return pose


def frame_names(source: Path, image_paths: list[str]) -> list[str]:
    """Unique frame names: the image paths without suffix, relative to their common folder."""
    stripped = [Path(os.path.normpath(path)).with_suffix("") for path in image_paths]
    try:
        common = os.path.commonpath([str(path.parent) for path in stripped])
        names = [path.relative_to(common).as_posix() for path in stripped]
    except ValueError:  # absolute and relative paths mixed: keep them whole
        names = [path.as_posix() for path in stripped]
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise DataError(f"{source}: several images are named {repeated[0]!r} (differing only in suffix); rename them")
    return names


def check_unique(source: Path, image_paths: list[Path]) -> None:
    resolved = [os.path.normpath(path) for path in image_paths]
    duplicated = [path for path, count in Counter(resolved).items() if count > 1]
    if duplicated:
        raise DataError(
            f"{source}: image {duplicated[0]} is listed by more than one frame; remove the duplicate frames"
        )


def image_size(source: Path, path: Path) -> tuple[int, int]:
    """(width, height) from the header of the image at ``path``; DataError naming ``source`` (the
    file that lists the image) when it is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(f"{source}: image {path} does not exist; fix the frame's path or restore the image")
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{source}: image {path} cannot be read ({error}); replace the file") from None


def check_images(
    source: Path, image_paths: list[Path], cameras: list[Camera], sizes: list[tuple[int, int]] | None = None
) -> None:
    """Every image exists and its header size equals its camera's (full-resolution) width and height.
    ``sizes``: the (width, height) of each image when its header was already read (``image_size``)."""
    sizes = sizes if sizes is not None else [image_size(source, path) for path in image_paths]
    for path, camera, size in zip(image_paths, cameras, sizes):
        if size != (camera.width, camera.height):
            raise DataError(
                f"{source}: image {path} is {size[0]}x{size[1]} but its intrinsics say {camera.width}x{camera.height}; "
                "point the scene at full-resolution images (use downscale=N to work at lower resolution) "
                "or fix the intrinsics (w, h and fl_x, fl_y, cx, cy scaled together)"
            )


def downscaled(camera: Camera, downscale: int) -> Camera:
    return camera if downscale == 1 else camera.scaled(1.0 / downscale)
