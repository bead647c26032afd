"""Reader for transforms files: nerfstudio's ``transforms.json``, instant-ngp's, and the Blender
(NeRF-synthetic) layout of one ``transforms_<split>.json`` per split.

Files: ``path`` is a ``*.json`` file, or a folder holding ``transforms.json``, or a folder
holding ``transforms_train.json`` and optionally ``transforms_val.json`` / ``transforms_test.json``
(Blender; a frame's split is its file's, val counting as test). Keys read (paths relative to the
folder of the file):

- top level: ``frames`` (required); intrinsics (here or per frame): focal lengths ``fl_x``,
  ``fl_y`` in pixels, or fields of view ``camera_angle_x``, ``camera_angle_y`` in radians (or
  ``x_fov``, ``y_fov`` in degrees); ``fl_y`` defaults to ``fl_x``; ``cx``, ``cy`` default to the
  image centre; ``w``, ``h`` default to the size of the frame's image. Lens distortion ``k1 k2
  k3 p1 p2`` (``k4`` must be 0) or ``distortion_params`` (the six in nerfstudio's order): the
  photos are undistorted on load as nerfstudio undistorts them (``cclgs_core.scene.undistort``).
  ``camera_model`` (absent or a perspective model). ``train_filenames``, ``val_filenames``,
  ``test_filenames``: the split of a single transforms.json (val counts as test).
  ``ply_file_path``: sparse points .ply. ``applied_scale``: refused unless 1 when there are
  sparse points. ``aabb_scale``: instant-ngp's scene box, with its ``scale`` and ``offset``,
  read into ``Scene.bounds``. Ours: ``gaussians_file_path`` (a 3DGS .ply).
- per frame: ``file_path`` (a file path, or one without extension that names a ``.png``, as
  nerfstudio's instant-ngp and Blender parsers read it), ``transform_matrix`` (OpenGL
  camera-to-world, 4x4 or 3x4), the intrinsics and distortion when not at the top level. Ours:
  ``ground_truth`` = ``{kind: path}`` with kinds from ``GROUND_TRUTH_KINDS``.
- ``classes.json`` beside the transforms (optional, ours):
  ``{"classes": [{"id": 0, "name": ..., "query": ...}, ...]}`` with ids 0..C-1.

Images with an alpha channel are composited over white (``Frame.load_image``). Frames are ordered
by image path as nerfstudio orders them, so frame indices agree with nerfstudio's camera indices.
Without split lists or per-split files every frame is "train".
"""

from __future__ import annotations

import json
import math
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
    image_size,
    rigid_pose,
)
from cclgs_core.errors import DataError
from cclgs_core.scene.undistort import LensDistortion, lens_distortion
from cclgs_core.types import Camera, Frame, Scene

#: OpenGL camera axes (x right, y up, z backward) to OpenCV (x right, y down, z forward).
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])

_DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")
_PERSPECTIVE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
_SPLIT_KEYS = {"train_filenames": "train", "val_filenames": "test", "test_filenames": "test"}
#: Blender's per-split transforms files and the split of their frames.
_SPLIT_FILES = {"transforms_train.json": "train", "transforms_val.json": "test", "transforms_test.json": "test"}
#: instant-ngp maps world coordinates p to p * scale + offset and centres its box of side
#: aabb_scale on (0.5, 0.5, 0.5); these are its defaults for scale and offset.
_NGP_SCALE, _NGP_OFFSET = 0.33, (0.5, 0.5, 0.5)
_UNDISTORT_HINT = (
    "undistort the images first (for COLMAP data: `colmap image_undistorter` then load its output; "
    "for other sources with OpenCV) and write the pinhole intrinsics with zero distortion"
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


def _focal(values: dict, focal_key: str, angle_key: str, degrees_key: str, size: int) -> float | None:
    """A focal length in pixels from itself or from a field of view across ``size`` pixels."""
    if values.get(focal_key) is not None:
        return float(values[focal_key])
    if values.get(angle_key) is not None:
        return 0.5 * size / math.tan(0.5 * float(values[angle_key]))
    if values.get(degrees_key) is not None:
        return 0.5 * size / math.tan(0.5 * math.radians(float(values[degrees_key])))
    return None


def _camera(source: Path, meta: dict, frame: dict, where: str, size: tuple[int, int]) -> Camera:
    """The OpenCV camera of one frame at full resolution; ``size``, the (width, height) of its image,
    stands in for ``w``, ``h`` when the transforms omit them."""
    keys = ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y", "x_fov", "y_fov", "cx", "cy", "w", "h")
    values = {key: frame.get(key, meta.get(key)) for key in keys}
    values = {key: value for key, value in values.items() if value is not None}
    try:
        if "w" in values and "h" in values:
            width, height = int(values["w"]), int(values["h"])
        else:
            width, height = size
        fx = _focal(values, "fl_x", "camera_angle_x", "x_fov", width)
        if fx is None:
            raise DataError(
                f"{source}: {where} has no focal length; add fl_x (pixels) or camera_angle_x (radians), "
                "per frame or at the top level"
            )
        fy = _focal(values, "fl_y", "camera_angle_y", "y_fov", height) or fx
        cx, cy = float(values.get("cx", width / 2.0)), float(values.get("cy", height / 2.0))
    except (TypeError, ValueError):
        raise DataError(f"{source}: {where} has non-numeric intrinsics {values}") from None
    if not all(np.isfinite([fx, fy, cx, cy])) or fx <= 0 or fy <= 0 or width <= 0 or height <= 0:
        raise DataError(f"{source}: {where} has invalid intrinsics {values}; focal lengths and sizes must be positive")

    pose = rigid_pose(source, f"{where} transform_matrix", frame.get("transform_matrix"))
    return Camera(pose @ OPENGL_TO_OPENCV, fx, fy, cx, cy, width, height)


def _distortion(source: Path, meta: dict, frame: dict, where: str, camera: Camera) -> LensDistortion | None:
    """The frame's lens distortion (None for a pinhole photo): ``k1 k2 k3 k4 p1 p2`` or nerfstudio's
    ``distortion_params`` list in that order, per frame or at the top level."""
    listed = frame.get("distortion_params", meta.get("distortion_params"))
    try:
        if listed is not None:
            values = [float(value) for value in listed]
            if len(values) != len(_DISTORTION):
                raise ValueError
        else:
            values = [float(frame.get(key, meta.get(key, 0.0))) for key in _DISTORTION]
    except (TypeError, ValueError):
        raise DataError(
            f"{source}: {where} has invalid distortion parameters; give numbers {' '.join(_DISTORTION)} "
            "(or distortion_params, six numbers in that order)"
        ) from None
    coefficients = dict(zip(_DISTORTION, values))
    if not np.isfinite(values).all():
        raise DataError(f"{source}: {where} has non-finite distortion parameters {coefficients}; fix them")
    if not any(values):
        return None
    if coefficients.pop("k4") != 0.0:
        raise DataError(
            f"{source}: {where} has k4 = {values[3]}; like nerfstudio, cclgs undistorts perspective photos with "
            f"OpenCV's k1, k2, k3, p1, p2 only: {_UNDISTORT_HINT}"
        )
    distortion = lens_distortion(camera, **coefficients)
    if distortion.camera.width < 2 or distortion.camera.height < 2:
        raise DataError(
            f"{source}: {where}: undistorting with {coefficients} leaves no valid image region; check the "
            "distortion parameters"
        )
    return distortion


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


def transforms_files(path: Path) -> list[tuple[Path, str | None]]:
    """The transforms files of the scene at ``path``, each with the split it gives its frames
    (None: from the split lists inside, else "train"); empty when there are none."""
    path = Path(path)
    if path.suffix == ".json":
        return [(path, None)]
    if (path / "transforms.json").is_file():
        return [(path / "transforms.json", None)]
    if (path / "transforms_train.json").is_file():
        return [(path / name, split) for name, split in _SPLIT_FILES.items() if (path / name).is_file()]
    return []


def _image_path(data_dir: Path, file_path: str) -> Path:
    """The image a frame's ``file_path`` names; without an extension, the ``.png`` it stands for."""
    path = data_dir / file_path
    with_png = Path(f"{path}.png")
    return with_png if not path.exists() and with_png.is_file() else path


class _FrameRecord(NamedTuple):
    """One frame entry of a transforms file."""

    source: Path  # the transforms file
    meta: dict  # its top level
    entry: dict  # the frame's own entry
    where: str  # "frames[i] (file_path)", for messages
    image_path: Path
    split: str | None  # fixed by a per-split file, else None


def _read_records(source: Path, split: str | None) -> list[_FrameRecord]:
    meta = read_json(source)
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise DataError(f"{source}: needs a non-empty 'frames' list (nerfstudio transforms.json format)")
    model = meta.get("camera_model", "OPENCV")
    if model not in _PERSPECTIVE_MODELS:
        raise DataError(f"{source}: camera_model {model!r} is not a pinhole camera; {_UNDISTORT_HINT}")
    if split is not None and any(key in meta for key in _SPLIT_KEYS):
        raise DataError(f"{source}: a per-split file cannot carry split lists ({', '.join(_SPLIT_KEYS)}); remove them")
    records = []
    for position, entry in enumerate(meta["frames"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("file_path"), str):
            raise DataError(f"{source}: frames[{position}] has no 'file_path'")
        if "transform_matrix" not in entry:
            raise DataError(f"{source}: frames[{position}] ({entry['file_path']}) has no 'transform_matrix'")
        where = f"frames[{position}] ({entry['file_path']})"
        records.append(_FrameRecord(source, meta, entry, where, _image_path(source.parent, entry["file_path"]), split))
    return records


def load_nerfstudio(path: Path, downscale: int = 1) -> Scene:
    """Read a transforms scene: ``path`` is a transforms ``*.json`` or the folder holding
    ``transforms.json`` or Blender's ``transforms_<split>.json`` files."""
    check_downscale(downscale)
    path = Path(path)
    files = transforms_files(path)
    if not files:
        raise DataError(f"{path}: holds neither transforms.json nor transforms_train.json")
    data_dir = files[0][0].parent
    records = sorted(
        (record for source, split in files for record in _read_records(source, split)),
        key=lambda record: os.path.relpath(record.image_path, data_dir),
    )
    image_paths = [record.image_path for record in records]
    source = files[0][0] if len(files) == 1 else data_dir
    check_unique(source, image_paths)
    sizes = [image_size(source, path) for path in image_paths]  # each header read once
    cameras = [
        _camera(record.source, record.meta, record.entry, record.where, size) for record, size in zip(records, sizes)
    ]
    check_images(source, image_paths, cameras, sizes)
    distortions = [
        _distortion(record.source, record.meta, record.entry, record.where, camera)
        for record, camera in zip(records, cameras)
    ]
    if len(files) == 1 and files[0][1] is None:
        splits = _splits(source, records[0].meta, data_dir, image_paths)
    else:
        splits = [record.split for record in records]
    names = frame_names(source, [os.path.relpath(path, data_dir) for path in image_paths])

    frames = []
    for index, (record, camera, distortion) in enumerate(zip(records, cameras, distortions)):
        pinhole = camera if distortion is None else distortion.camera
        frames.append(
            Frame(
                index=index,
                name=names[index],
                image_path=image_paths[index],
                camera=downscaled(pinhole, downscale),
                split=splits[index],
                ground_truth=_ground_truth(record.source, data_dir, record.entry, record.where),
                distortion=distortion,
            )
        )

    meta = next(record.meta for record in records if record.source == files[0][0])  # the (train) file's top level
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
        bounds=_ngp_bounds(source, meta),
    )


def _ngp_bounds(source: Path, meta: dict) -> np.ndarray | None:
    """(2, 3) world-space corners of instant-ngp's scene box, or None without ``aabb_scale``.

    instant-ngp maps a world point p to p * scale + offset and bounds the scene by the cube of side
    aabb_scale centred on (0.5, 0.5, 0.5) in those coordinates; mapped back to the world:
    (0.5 -+ aabb_scale / 2 - offset) / scale.
    """
    if "aabb_scale" not in meta:
        return None
    try:
        side = float(meta["aabb_scale"])
        scale = float(meta.get("scale", _NGP_SCALE))
        offset = np.asarray(meta.get("offset", _NGP_OFFSET), dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{source}: aabb_scale, scale and offset must be numbers (offset: three)") from None
    if offset.shape != (3,) or not np.isfinite([side, scale, *offset]).all() or side <= 0 or scale <= 0:
        raise DataError(
            f"{source}: aabb_scale {meta['aabb_scale']!r}, scale {scale} and offset {offset.tolist()} must be "
            "finite, positive (offset: three numbers); fix them or remove aabb_scale"
        )
    corners = np.stack([0.5 - side / 2.0 - offset, 0.5 + side / 2.0 - offset]) / scale
    return corners


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
