"""Scene readers: transforms files (nerfstudio, instant-ngp, Blender), COLMAP ``sparse/0``, the
LERF-OVS and 3D-OVS layouts.

``load_scene`` detects the format. ``Scene.points_path`` is a ``.ply`` (nerfstudio) or a COLMAP
``points3D.bin``/``.txt``; read either with ``load_points``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cclgs_core.datasets.colmap import find_model, load_colmap, read_colmap_points
from cclgs_core.datasets.lerf_ovs import default_label_dir, load_lerf_ovs
from cclgs_core.datasets.llff import poses_file
from cclgs_core.datasets.nerfstudio import load_nerfstudio, transforms_files
from cclgs_core.datasets.three_d_ovs import classes_file, load_3dovs
from cclgs_core.errors import DataError
from cclgs_core.types import Scene

__all__ = ["load_scene", "load_points"]


def load_scene(path: Path, downscale: int = 1) -> Scene:
    """Read the scene at ``path``; cameras are scaled by 1/``downscale`` and images resized on load.

    Formats, tried in order: ``path`` is a ``*.json`` or a folder with ``transforms.json``
    (nerfstudio, instant-ngp) or ``transforms_train.json`` (Blender); a folder with
    ``segmentations/classes.txt`` and ``poses_bounds.npy`` or ``sparse/0`` (3D-OVS); one with
    ``sparse/0`` (or ``sparse``) and a LERF-OVS label folder ``../label/<name>`` (LERF-OVS); a
    folder with ``sparse/0`` (or ``sparse``) (COLMAP).
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return load_nerfstudio(path, downscale)
    if not path.is_dir():
        raise DataError(f"{path}: no such scene file or folder")
    if transforms_files(path):
        return load_nerfstudio(path, downscale)
    if classes_file(path).is_file() and (find_model(path) is not None or poses_file(path).is_file()):
        return load_3dovs(path, downscale)
    if find_model(path) is not None:
        if default_label_dir(path).is_dir():
            return load_lerf_ovs(path, downscale=downscale)
        return load_colmap(path, downscale)
    raise DataError(
        f"{path}: not a scene folder; looked for {path / 'transforms.json'} (nerfstudio, instant-ngp), "
        f"{path / 'transforms_train.json'} (Blender) and a COLMAP model "
        f"in {path / 'sparse' / '0'} or {path / 'sparse'} (cameras.bin/.txt, images.bin/.txt), or "
        f"{path / 'segmentations' / 'classes.txt'} with {path / 'poses_bounds.npy'} (3D-OVS as released)"
    )


def load_points(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """The scene's sparse points: (P, 3) float32 positions and (P, 3) uint8 colours."""
    from cclgs_core.scene.ply import read_points

    path = scene.points_path
    if path is None:
        raise DataError(
            f"{scene.root}: the scene has no sparse points (no ply_file_path in transforms.json, or an empty or "
            "missing COLMAP points3D); add a point cloud, or start `cclgs fit` from random points (--init random)"
        )
    if path.suffix == ".ply":
        return read_points(path)
    return read_colmap_points(path)
