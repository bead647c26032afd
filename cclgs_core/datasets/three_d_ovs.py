"""The 3D-OVS benchmark layout (Liu et al., "Weakly Supervised 3D Open-vocabulary Segmentation",
NeurIPS 2023), as its own data loader reads it::

    <scene>/images/*.jpg                      the views (sorted by file name)
    <scene>/sparse/0/                         their COLMAP model
    <scene>/segmentations/classes.txt         the scene's class list, one name per line
    <scene>/segmentations/<NN>/<class>.png    binary mask of each class in view NN (255 = class)

``NN`` is the position of the view among the sorted images (``"00"``, ``"03"``...), every class
of the list has a mask in every labelled view, and masks may be at the images' full resolution
(they are resized with nearest-neighbour sampling to the camera size). The labelled views form
the "test" split and carry ``ground_truth["class_masks"]`` = their mask folder; the classes
(sorted, as 3D-OVS sorts them) become ``Scene.class_names``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cclgs_core.datasets.colmap import load_colmap
from cclgs_core.errors import DataError
from cclgs_core.types import Scene

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


def classes_file(scene_dir: Path) -> Path:
    return Path(scene_dir) / "segmentations" / "classes.txt"


def read_3dovs_classes(path: Path) -> list[str]:
    """The class names of a ``classes.txt`` (blank lines skipped), sorted; DataError when empty or repeated."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: 3D-OVS class list not found; it holds one class name per line")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path}: the class list is empty; write one class name per line")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"{path}: class {repeated[0]!r} is listed more than once; list each class once")
    return sorted(names)


def load_3dovs(scene_dir: Path, downscale: int = 1) -> Scene:
    """Read a 3D-OVS scene: COLMAP cameras, the class list, and the labelled views as the "test" split."""
    scene_dir = Path(scene_dir)
    scene = load_colmap(scene_dir, downscale)
    classes = read_3dovs_classes(classes_file(scene_dir))
    images = sorted(path.name for path in (scene_dir / "images").iterdir() if path.suffix in _IMAGE_SUFFIXES)
    by_image = {Path(frame.image_path).name: position for position, frame in enumerate(scene.frames)}
    folders = sorted(path for path in (scene_dir / "segmentations").iterdir() if path.is_dir())
    if not folders:
        raise DataError(f"{scene_dir / 'segmentations'}: no labelled view folders (segmentations/<NN>/<class>.png)")
    for folder in folders:
        if not folder.name.isdigit() or int(folder.name) >= len(images):
            raise DataError(
                f"{folder}: a 3D-OVS mask folder is named by the view's position among the {len(images)} sorted "
                f"images of {scene_dir / 'images'} (00 .. {len(images) - 1:02d}); rename or remove it"
            )
        image = images[int(folder.name)]
        if image not in by_image:
            raise DataError(f"{folder}: labels image {image}, which the COLMAP model of {scene_dir} does not register")
        missing = [name for name in classes if not (folder / f"{name}.png").is_file()]
        if missing:
            raise DataError(
                f"{folder}: no mask {missing[0]}.png; every class of classes.txt needs a mask in every labelled view"
            )
        position = by_image[image]
        frame = scene.frames[position]
        scene.frames[position] = replace(
            frame, split="test", ground_truth={**frame.ground_truth, "class_masks": folder}
        )
    scene.class_names = tuple(classes)
    return scene


def read_class_masks(folder: Path, classes: list[str], size: tuple[int, int]) -> np.ndarray:
    """The masks of one labelled view: (C, H, W) bool in the order of ``classes``, at ``size`` = (W, H).

    A pixel belongs to a class where its mask is at least 128 (255 in the release's binary masks).
    """
    from PIL import Image

    masks = []
    for name in classes:
        path = Path(folder) / f"{name}.png"
        if not path.is_file():
            raise DataError(f"{path}: mask of class {name!r} not found")
        with Image.open(path) as image:
            grey = image.convert("L")
            if grey.size != size:
                grey = grey.resize(size, Image.Resampling.NEAREST)
            masks.append(np.asarray(grey) >= 128)
    return np.stack(masks)
