"""The LERF-OVS benchmark layout and its ISAT polygon labels (docs/design.md, "Evaluation").

Layout: ``<scene>/images/frame_%05d.jpg`` posed by COLMAP ``<scene>/sparse/0``, labels in
``<scene>/../label/<scene name>/frame_XXXXX.json``. The labelled frames form the "test" split
and carry ``ground_truth["objects"]`` = their label file. (LangSplat's protocol also trains on
these frames; which frames a run trains on is the pipeline's choice, not the reader's.)

A label file: ``{"info": {"name", "width", "height", ...}, "objects": [{"category",
"segmentation": [[x, y], ...], "bbox": [x1, y1, x2, y2], ...}]}``. Polygons are open lists of
[x, y] pairs; categories repeat (their masks are OR-ed). Rasterisation follows LangSplat's
evaluation: coordinates truncated to integers, then ``cv2.fillPoly`` (boundary pixels included).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cclgs_core.datasets.colmap import load_colmap
from cclgs_core.datasets.nerfstudio import read_json
from cclgs_core.errors import DataError
from cclgs_core.plumbing.cache import atomic_write_text
from cclgs_core.types import Scene


@dataclass
class CategoryLabel:
    """Ground truth of one category in one frame.

    mask:  (H, W) bool, union of the category's polygons
    boxes: (B, 4) float64 boxes x1, y1, x2, y2 in pixels, one per object
    """

    mask: np.ndarray
    boxes: np.ndarray


@dataclass
class FrameLabels:
    """All categories labelled in one frame, at ``width`` x ``height`` pixels."""

    image_name: str
    width: int
    height: int
    categories: dict[str, CategoryLabel]


def default_label_dir(scene_dir: Path) -> Path:
    """``<scene>/../label/<scene name>``, where the LERF-OVS release keeps a scene's labels."""
    scene_dir = Path(scene_dir)
    return scene_dir.resolve().parent / "label" / scene_dir.resolve().name


def _points(path: Path, where: str, values: object, pairs: bool) -> np.ndarray:
    """(V, 2) polygon vertices (``pairs``) or (4,) box as float64; DataError when malformed."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.empty(0)
    valid = (array.ndim == 2 and array.shape[1] == 2 and len(array) >= 1) if pairs else array.shape == (4,)
    if not valid or not np.all(np.isfinite(array)):
        expected = "a list of [x, y] pairs" if pairs else "[x1, y1, x2, y2]"
        raise DataError(f"{path}: {where} must be {expected} of finite numbers")
    return array


def read_ovs_labels(path: Path, size: tuple[int, int] | None = None) -> FrameLabels:
    """Read one ISAT label file; ``size`` = (width, height) rescales polygons and boxes to that image size."""
    import cv2

    path = Path(path)
    content = read_json(path)
    info = content.get("info") if isinstance(content, dict) else None
    objects = content.get("objects") if isinstance(content, dict) else None
    if not isinstance(info, dict) or not isinstance(objects, list):
        raise DataError(f"{path}: expected an ISAT label file with 'info' and 'objects'")
    try:
        source_width, source_height = int(info["width"]), int(info["height"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: info needs integer 'width' and 'height'") from None
    width, height = size if size is not None else (source_width, source_height)
    factor = np.array([width / source_width, height / source_height])

    masks: dict[str, np.ndarray] = {}
    boxes: dict[str, list[np.ndarray]] = {}
    for position, item in enumerate(objects):
        category = item.get("category") if isinstance(item, dict) else None
        if not isinstance(category, str) or "segmentation" not in item or "bbox" not in item:
            raise DataError(f"{path}: objects[{position}] needs 'category' (string), 'segmentation' and 'bbox'")
        polygon = _points(path, f"objects[{position}].segmentation", item["segmentation"], pairs=True) * factor
        box = _points(path, f"objects[{position}].bbox", item["bbox"], pairs=False) * np.tile(factor, 2)
        mask = masks.setdefault(category, np.zeros((height, width), np.uint8))
        cv2.fillPoly(mask, [np.trunc(polygon).astype(np.int32)], 1)
        boxes.setdefault(category, []).append(box)
    categories = {name: CategoryLabel(masks[name].astype(bool), np.stack(boxes[name])) for name in masks}
    return FrameLabels(str(info.get("name", path.stem)), width, height, categories)


def load_lerf_ovs(scene_dir: Path, label_dir: Path | None = None, downscale: int = 1) -> Scene:
    """Read a LERF-OVS scene; frames with a label file in ``label_dir`` become the "test" split."""
    scene = load_colmap(scene_dir, downscale)
    label_dir = Path(label_dir) if label_dir is not None else default_label_dir(scene_dir)
    if not label_dir.is_dir():
        raise DataError(
            f"{label_dir}: LERF-OVS label folder not found; pass label_dir or place labels in label/<scene>/"
        )
    labels = {path.stem: path for path in sorted(label_dir.glob("*.json"))}
    if not labels:
        raise DataError(f"{label_dir}: no frame_XXXXX.json label files")
    by_name = {Path(frame.name).name: position for position, frame in enumerate(scene.frames)}
    for stem, path in labels.items():
        if stem not in by_name:
            raise DataError(f"{path}: labels a frame {stem!r} that is not among the scene's images in {scene_dir}")
        frame = scene.frames[by_name[stem]]
        scene.frames[by_name[stem]] = replace(frame, split="test", ground_truth={**frame.ground_truth, "objects": path})
    return scene


def write_ovs_labels(
    path: Path, image_name: str, width: int, height: int, objects: list[tuple[str, np.ndarray]]
) -> None:
    """Write an ISAT label file of (category, (V, 2) open polygon in pixels) pairs; boxes and areas are derived."""
    entries = []
    for group, (category, polygon) in enumerate(objects, start=1):
        polygon = np.asarray(polygon, dtype=np.float64)
        x, y = polygon[:, 0], polygon[:, 1]
        area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
        entries.append(
            {
                "category": category,
                "group": group,
                "segmentation": polygon.tolist(),
                "area": area,
                "layer": float(group),
                "bbox": [float(x.min()), float(y.min()), float(x.max()), float(y.max())],
                "iscrowd": 0,
                "note": "",
            }
        )
    info = {
        "description": "ISAT",
        "folder": "",
        "name": image_name,
        "width": width,
        "height": height,
        "depth": 3,
        "note": "",
    }
    atomic_write_text(Path(path), json.dumps({"info": info, "objects": entries}, indent=4))
