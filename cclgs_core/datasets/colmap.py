"""Reader for a COLMAP reconstruction: ``<root>/images/`` plus ``<root>/sparse/0/`` (binary or text).

Parsing is nerfstudio's (``nerfstudio.data.utils.colmap_parsing_utils``). The model may also
sit directly in ``<root>/sparse/``, as ``colmap image_undistorter`` writes it. Cameras must be
pinhole: PINHOLE or SIMPLE_PINHOLE, or another perspective model whose distortion is zero.
COLMAP poses are world-to-camera in the OpenCV convention already. Sparse points are the
model's ``points3D`` file (read with ``load_points``); a model without points gets
``Scene.points_path = None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cclgs_core.datasets.common import check_downscale, check_images, check_unique, downscaled, frame_names, rigid_pose
from cclgs_core.errors import DataError
from cclgs_core.types import Camera, Frame, Scene

# Perspective COLMAP models: parameter layout (focal lengths, principal point, distortion).
_FOCALS_PRINCIPAL = {
    "SIMPLE_PINHOLE": ((0, 0), (1, 2)),
    "PINHOLE": ((0, 1), (2, 3)),
    "SIMPLE_RADIAL": ((0, 0), (1, 2)),
    "RADIAL": ((0, 0), (1, 2)),
    "OPENCV": ((0, 1), (2, 3)),
    "FULL_OPENCV": ((0, 1), (2, 3)),
}
_UNDISTORT_HINT = (
    "undistort first: `colmap image_undistorter --image_path <root>/images --input_path <sparse> "
    "--output_path <out> --output_type COLMAP`, then load <out>"
)


def find_model(root: Path) -> Path | None:
    """The folder holding the COLMAP model of a scene (``sparse/0`` or ``sparse``), or None."""
    for candidate in (root / "sparse" / "0", root / "sparse"):
        if any((candidate / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return candidate
    return None


def _model_files(model: Path) -> tuple[str, Path, Path, Path | None]:
    """(extension, cameras, images, points3D or None) of a model folder."""
    for ext in (".bin", ".txt"):
        cameras, images, points = (model / f"{name}{ext}" for name in ("cameras", "images", "points3D"))
        if cameras.is_file():
            if not images.is_file():
                raise DataError(f"{model}: has {cameras.name} but no {images.name}; the COLMAP model is incomplete")
            return ext, cameras, images, points if points.is_file() else None
    raise DataError(f"{model}: no cameras.bin or cameras.txt; not a COLMAP model folder")


def _parse(path: Path, reader: Any) -> Any:
    try:
        return reader(str(path))
    except Exception as error:  # struct.error, ValueError, IndexError, UnicodeDecodeError on corrupt files
        raise DataError(
            f"{path}: cannot parse this COLMAP file ({type(error).__name__}: {error}); re-export the model"
        ) from None


def read_colmap_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Points of a COLMAP points3D.bin / .txt: (P, 3) float32 positions, (P, 3) uint8 colours."""
    from nerfstudio.data.utils import colmap_parsing_utils as colmap

    path = Path(path)
    reader = colmap.read_points3D_binary if path.suffix == ".bin" else colmap.read_points3D_text
    points = _parse(path, reader)
    if not points:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    ordered = [points[key] for key in sorted(points)]
    xyz = np.stack([point.xyz for point in ordered]).astype(np.float32)
    rgb = np.stack([point.rgb for point in ordered]).astype(np.uint8)
    return xyz, rgb


def _camera(source: Path, model: Any, pose: np.ndarray) -> Camera:
    if model.model not in _FOCALS_PRINCIPAL:
        raise DataError(
            f"{source}: camera {model.id} uses model {model.model}, which is not pinhole; {_UNDISTORT_HINT}"
        )
    params = np.asarray(model.params, dtype=np.float64)
    (fx_index, fy_index), (cx_index, cy_index) = _FOCALS_PRINCIPAL[model.model]
    distortion = np.delete(params, sorted({fx_index, fy_index, cx_index, cy_index}))
    if np.any(distortion != 0.0):
        raise DataError(
            f"{source}: camera {model.id} ({model.model}) has distortion {distortion.tolist()}; cclgs needs pinhole "
            f"images: {_UNDISTORT_HINT}"
        )
    if not np.all(np.isfinite(params)):
        raise DataError(f"{source}: camera {model.id} has non-finite parameters {params.tolist()}")
    return Camera(
        pose,
        params[fx_index],
        params[fy_index],
        params[cx_index],
        params[cy_index],
        int(model.width),
        int(model.height),
    )


def _camera_to_world(source: Path, image: Any) -> np.ndarray:
    """(4, 4) camera-to-world from a COLMAP image's quaternion (w, x, y, z) and translation."""
    from nerfstudio.data.utils.colmap_parsing_utils import qvec2rotmat

    qvec = np.asarray(image.qvec, dtype=np.float64)
    if not np.all(np.isfinite(qvec)) or not np.all(np.isfinite(image.tvec)) or np.linalg.norm(qvec) == 0:
        raise DataError(f"{source}: image {image.name} has a NaN, inf or zero pose; fix or remove that image")
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3] = qvec2rotmat(qvec / np.linalg.norm(qvec))
    world_to_camera[:3, 3] = image.tvec
    return rigid_pose(source, f"image {image.name} pose", np.linalg.inv(world_to_camera))


def load_colmap(root: Path, downscale: int = 1) -> Scene:
    """Read ``<root>/images`` posed by the COLMAP model in ``<root>/sparse/0`` (or ``<root>/sparse``)."""
    from nerfstudio.data.utils import colmap_parsing_utils as colmap

    check_downscale(downscale)
    root = Path(root)
    model_dir = find_model(root)
    if model_dir is None:
        raise DataError(f"{root}: no COLMAP model in {root / 'sparse' / '0'} or {root / 'sparse'}")
    ext, cameras_file, images_file, points_file = _model_files(model_dir)
    binary = ext == ".bin"
    camera_models = _parse(cameras_file, colmap.read_cameras_binary if binary else colmap.read_cameras_text)
    images = _parse(images_file, colmap.read_images_binary if binary else colmap.read_images_text)
    if not images:
        raise DataError(f"{images_file}: the COLMAP model has no registered images")

    ordered = sorted(images.values(), key=lambda image: image.name)
    image_paths = [root / "images" / image.name for image in ordered]
    check_unique(images_file, image_paths)
    cameras = []
    for image in ordered:
        if image.camera_id not in camera_models:
            raise DataError(
                f"{images_file}: image {image.name} uses camera {image.camera_id}, missing from {cameras_file.name}"
            )
        cameras.append(_camera(cameras_file, camera_models[image.camera_id], _camera_to_world(images_file, image)))
    check_images(images_file, image_paths, cameras)
    names = frame_names(images_file, [image.name for image in ordered])

    frames = [
        Frame(index=index, name=names[index], image_path=path, camera=downscaled(camera, downscale))
        for index, (path, camera) in enumerate(zip(image_paths, cameras))
    ]
    has_points = points_file is not None and _has_points(points_file)
    return Scene(root=root, frames=frames, points_path=points_file if has_points else None)


def _has_points(path: Path) -> bool:
    """Whether a points3D file holds at least one point (read cheaply from its header or first line)."""
    if path.suffix == ".bin":
        with open(path, "rb") as handle:
            header = handle.read(8)
        return len(header) == 8 and int.from_bytes(header, "little") > 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        return any(line.strip() and not line.lstrip().startswith("#") for line in handle)
