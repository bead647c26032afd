"""Reader for nerfstudio's ``transforms.json`` scene format.

Keys read (all paths relative to the folder of transforms.json):

- top level: ``frames`` (required); intrinsics ``fl_x fl_y cx cy w h`` (here or per frame);
  distortion ``k1 k2 k3 k4 p1 p2`` or ``distortion_params`` (here or per frame, must be zero);
  ``camera_model`` (absent or a perspective model); ``train_filenames``, ``val_filenames``,
  ``test_filenames`` (the split; val counts as test); ``ply_file_path`` (sparse points .ply);
  ``applied_scale`` (refused unless 1 when there are sparse points). Ours: ``gaussians_file_path``
  (a 3DGS .ply).
- per frame: ``file_path``, ``transform_matrix`` (OpenGL camera-to-world, 4x4 or 3x4), the
  intrinsics and distortion when not at the top level. Ours: ``ground_truth`` =
  ``{kind: path}`` with kinds from ``GROUND_TRUTH_KINDS``.
- ``classes.json`` beside transforms.json (optional, ours):
  ``{"classes": [{"id": 0, "name": ..., "query": ...}, ...]}`` with ids 0..C-1.

Frames are ordered by file path as nerfstudio orders them, so frame indices agree with
nerfstudio's camera indices. Without split lists every frame is "train".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cclgs_core.datasets.common import (
    GROUND_TRUTH_KINDS,
    check_downscale,
    check_images,
    check_unique,
    downscaled,
    frame_names,
    rigid_pose,
)
from cclgs_core.errors import DataError
from cclgs_core.types import Camera, Frame, Scene

#: OpenGL camera axes (x right, y up, z backward) to OpenCV (x right, y down, z forward).
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])

_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")
_PERSPECTIVE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
_SPLIT_KEYS = {"train_filenames": "train", "val_filenames": "test", "test_filenames": "test"}
_UNDISTORT_HINT = (
    "undistort the images first (for COLMAP data: `colmap image_undistorter` then load its output; "
    "for other sources undistort with OpenCV) and write zero distortion"
)


class SceneClass(NamedTuple):
    """One ground-truth class: its id (the value in class label maps), name and text query."""

    id: int
    name: str
    query: str


def read_json(path: Path) -> Any:
    """Parsed JSON, or DataError naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error}); fix or regenerate the file") from None


def read_classes(path: Path) -> list[SceneClass]:
    """The classes of a ``classes.json``, ordered by id; ids must be exactly 0..C-1 (a missing query is the name)."""
    path = Path(path)
    content = read_json(path)
    entries = content.get("classes") if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise DataError(f'{path}: expected {{"classes": [{{"id": 0, "name": ..., "query": ...}}, ...]}}')
    classes = []
    for position, entry in enumerate(entries):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("id"), int)
            or not isinstance(entry.get("name"), str)
        ):
            raise DataError(f"{path}: class entry {position} needs an integer 'id' and a string 'name'")
        query = entry.get("query", entry["name"])
        if not isinstance(query, str):
            raise DataError(f"{path}: class entry {position} has a non-string 'query'")
        classes.append(SceneClass(entry["id"], entry["name"], query))
    classes.sort(key=lambda item: item.id)
    if [item.id for item in classes] != list(range(len(classes))):
        raise DataError(
            f"{path}: class ids are {[item.id for item in classes]}; they must be 0..{len(classes) - 1}, each once"
        )
    return classes


def _lookup(source: Path, meta: dict, frame: dict, key: str, where: str) -> Any:
    if key in frame:
        return frame[key]
    if key in meta:
        return meta[key]
    raise DataError(f"{source}: {where} has no '{key}' and there is no top-level '{key}'; add the camera intrinsics")


def _camera(source: Path, meta: dict, frame: dict, where: str) -> Camera:
    """The OpenCV camera of one frame at full resolution."""
    values = {key: _lookup(source, meta, frame, key, where) for key in _INTRINSICS}
    try:
        fx, fy, cx, cy = (float(values[key]) for key in ("fl_x", "fl_y", "cx", "cy"))
        width, height = int(values["w"]), int(values["h"])
    except (TypeError, ValueError):
        raise DataError(f"{source}: {where} has non-numeric intrinsics {values}") from None
    if not all(np.isfinite([fx, fy, cx, cy])) or fx <= 0 or fy <= 0 or width <= 0 or height <= 0:
        raise DataError(f"{source}: {where} has invalid intrinsics {values}; focal lengths and sizes must be positive")

    try:
        distortion = [float(frame.get(key, meta.get(key, 0.0))) for key in _DISTORTION]
        distortion += [float(value) for value in frame.get("distortion_params", meta.get("distortion_params", []))]
    except (TypeError, ValueError):
        raise DataError(f"{source}: {where} has non-numeric distortion parameters") from None
    if any(value != 0.0 for value in distortion):
        raise DataError(
            f"{source}: {where} has lens distortion {distortion}; cclgs needs pinhole images: {_UNDISTORT_HINT}"
        )

    pose = rigid_pose(source, f"{where} transform_matrix", frame.get("transform_matrix"))
    return Camera(pose @ OPENGL_TO_OPENCV, fx, fy, cx, cy, width, height)


def _splits(source: Path, meta: dict, data_dir: Path, image_paths: list[Path]) -> list[str]:
    """The split of each frame from nerfstudio's ``*_filenames`` lists, else all "train"."""
    present = [key for key in _SPLIT_KEYS if key in meta]
    if not present:
        return ["train"] * len(image_paths)
    index_of = {os.path.normpath(path): index for index, path in enumerate(image_paths)}
    splits: list[str | None] = [None] * len(image_paths)
    for key in present:
        for name in meta[key]:
            index = index_of.get(os.path.normpath(data_dir / name))
            if index is None:
                raise DataError(f"{source}: {key} lists {name!r}, which is not a frame's file_path; fix the list")
            if splits[index] not in (None, _SPLIT_KEYS[key]):
                raise DataError(f"{source}: {name!r} is listed for both train and test; list it once")
            splits[index] = _SPLIT_KEYS[key]
    unlisted = [path for path, split in zip(image_paths, splits) if split is None]
    if unlisted:
        raise DataError(
            f"{source}: frame {unlisted[0]} is in none of {', '.join(present)}; add it to a split list or remove the "
            "frame"
        )
    return splits  # type: ignore[return-value]


def _existing(source: Path, data_dir: Path, meta: dict, key: str) -> Path | None:
    if key not in meta:
        return None
    path = data_dir / str(meta[key])
    if not path.is_file():
        raise DataError(f"{source}: {key} points to {path}, which does not exist; fix the path or remove the key")
    return path


def load_nerfstudio(path: Path, downscale: int = 1) -> Scene:
    """Read a nerfstudio scene: ``path`` is transforms.json or the folder holding it."""
    check_downscale(downscale)
    path = Path(path)
    source = path if path.suffix == ".json" else path / "transforms.json"
    data_dir = source.parent
    meta = read_json(source)
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise DataError(f"{source}: needs a non-empty 'frames' list (nerfstudio transforms.json format)")
    model = meta.get("camera_model", "OPENCV")
    if model not in _PERSPECTIVE_MODELS:
        raise DataError(f"{source}: camera_model {model!r} is not a pinhole camera; {_UNDISTORT_HINT}")

    records = []
    for position, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise DataError(f"{source}: frames[{position}] has no 'file_path'")
        if "transform_matrix" not in frame:
            raise DataError(f"{source}: frames[{position}] ({frame['file_path']}) has no 'transform_matrix'")
        records.append((frame["file_path"], position, frame))
    records.sort(key=lambda record: record[0])

    image_paths = [data_dir / file_path for file_path, _, _ in records]
    check_unique(source, image_paths)
    cameras = [
        _camera(source, meta, frame, f"frames[{position}] ({file_path})") for file_path, position, frame in records
    ]
    check_images(source, image_paths, cameras)
    splits = _splits(source, meta, data_dir, image_paths)
    names = frame_names(source, [file_path for file_path, _, _ in records])

    frames = []
    for index, ((file_path, position, frame), camera) in enumerate(zip(records, cameras)):
        frames.append(
            Frame(
                index=index,
                name=names[index],
                image_path=image_paths[index],
                camera=downscaled(camera, downscale),
                split=splits[index],
                ground_truth=_ground_truth(source, data_dir, frame, f"frames[{position}] ({file_path})"),
            )
        )

    points_path = _existing(source, data_dir, meta, "ply_file_path")
    if points_path is not None and meta.get("applied_scale", 1.0) != 1.0:
        raise DataError(
            f"{source}: applied_scale {meta['applied_scale']} means ply_file_path is not in the cameras' frame; "
            "rescale the points or the poses so both share one frame and drop applied_scale"
        )
    classes_path = data_dir / "classes.json"
    class_names = tuple(item.name for item in read_classes(classes_path)) if classes_path.exists() else ()
    return Scene(
        root=data_dir,
        frames=frames,
        gaussians_path=_existing(source, data_dir, meta, "gaussians_file_path"),
        points_path=points_path,
        class_names=class_names,
    )


def _ground_truth(source: Path, data_dir: Path, frame: dict, where: str) -> dict[str, Path]:
    entries = frame.get("ground_truth", {})
    if not isinstance(entries, dict):
        raise DataError(f"{source}: {where} ground_truth must be an object {{kind: path}}")
    result = {}
    for kind, relative in entries.items():
        if kind not in GROUND_TRUTH_KINDS:
            raise DataError(f"{source}: {where} has ground_truth kind {kind!r}; known kinds are {GROUND_TRUTH_KINDS}")
        path = data_dir / str(relative)
        if not (path.is_dir() if kind == "class_masks" else path.is_file()):
            raise DataError(f"{source}: {where} ground_truth {kind!r} path {path} does not exist")
        result[kind] = path
    return result
