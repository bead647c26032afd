"""Reading a synthetic world's ground truth from a ``Frame``.

A frame belongs to the world found by walking up from its image's directory to the first
directory holding ``classes.json`` (``images/frame_00001.png`` -> the world root). Its key in
``visibility.json`` is the image file's stem (``frame_00001``). Label maps come from the
frame's ``ground_truth`` paths ("class", "instance", "part").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cclgs_core import DataError, Frame
from cclgs_core.evaluation.labelmaps import read_label_map


@dataclass(frozen=True)
class WorldTables:
    """What a world says about its classes, instances and per-view occlusion."""

    root: Path
    class_names: tuple[str, ...]
    #: Text query of each class, the text the simulated model recognises it by.
    class_queries: tuple[str, ...]
    #: (I,) class id of each instance.
    instance_class: np.ndarray
    #: frame key -> {instance id: occlusion in [0, 1]} for the instances in that view.
    occlusion: dict[str, dict[int, float]]


def frame_key(frame: Frame) -> str:
    """The frame's key in ``visibility.json``: its image file's stem."""
    return Path(frame.image_path).stem


def find_world_root(frame: Frame) -> Path:
    """The nearest ancestor directory of the frame's image that holds ``classes.json``."""
    for directory in Path(frame.image_path).resolve().parents:
        if (directory / "classes.json").is_file():
            return directory
    raise DataError(
        f"no classes.json in any parent directory of {frame.image_path}: the synthetic plugins need a world "
        "written by `cclgs synth` (images/ beside classes.json and visibility.json)"
    )


def load_world_tables(root: Path) -> WorldTables:
    """Read ``classes.json`` and ``visibility.json`` of the world at ``root``."""
    classes_path, visibility_path = root / "classes.json", root / "visibility.json"
    try:
        classes = json.loads(classes_path.read_text())
        entries = sorted(classes["classes"], key=lambda entry: entry["id"])
        names = tuple(str(entry["name"]) for entry in entries)
        queries = tuple(str(entry.get("query", entry["name"])) for entry in entries)
        instances = sorted(classes["instances"], key=lambda entry: entry["id"])
        instance_class = np.array([int(entry["class_id"]) for entry in instances], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{classes_path} is not a synthetic world's classes file ({error}); regenerate it with `cclgs synth`"
        ) from None
    if [entry["id"] for entry in entries] != list(range(len(entries))):
        raise DataError(f"{classes_path}: class ids must be 0..{len(entries) - 1}; regenerate it with `cclgs synth`")
    try:
        frames = json.loads(visibility_path.read_text())["frames"]
        occlusion = {key: {int(e["instance"]): float(e["occlusion"]) for e in listed} for key, listed in frames.items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{visibility_path} is missing or malformed ({error}); regenerate the world with `cclgs synth`"
        ) from None
    return WorldTables(root, names, queries, instance_class, occlusion)


def load_label_map(frame: Frame, name: str) -> np.ndarray:
    """(H, W) int32 ground-truth map ``name`` of the frame, -1 where unlabelled, at the frame
    camera's resolution (nearest-neighbour resampled when the reader scaled the camera)."""
    if name not in frame.ground_truth:
        raise DataError(
            f"frame {frame.name} ({frame.image_path}) has no {name!r} ground truth; the synthetic plugins need a "
            "world written by `cclgs synth`, read with its transforms.json"
        )
    labels = read_label_map(Path(frame.ground_truth[name]))
    height, width = frame.camera.height, frame.camera.width
    if labels.shape != (height, width):
        rows = ((np.arange(height) + 0.5) * labels.shape[0] / height).astype(np.int64)
        cols = ((np.arange(width) + 0.5) * labels.shape[1] / width).astype(np.int64)
        labels = labels[rows[:, None], cols[None, :]]
    return labels
