"""The 3D-OVS benchmark layout (Liu et al., "Weakly Supervised 3D Open-vocabulary Segmentation",
NeurIPS 2023), read as it is released and as its authors' loader (``dataLoader/llff.py``) reads it::

    <scene>/images/*.jpg                      the views (sorted by file name)
    <scene>/poses_bounds.npy                  their LLFF cameras (``cclgs_core.datasets.llff``)
    <scene>/sparse/0/                         or a COLMAP model, used instead when present
    <scene>/segmentations/classes.txt         the scene's class list, one name per line
    <scene>/segmentations/<NN>/<class>.png    mask of each class in view NN

``NN`` is the position of the view among the sorted images (``"00"``, ``"03"``...), and every
class of the list has a mask in every labelled view. The authors' rules, kept here:

- a mask pixel belongs to its class only where the mask, converted to 8-bit grey by PIL, is
  exactly 255 (their ``(mask / 255.0).astype(int8)``): grey anti-aliased edges, colours other
  than white (an RGB mask's red is grey 76) and palette entries other than white are background;
- at a resolution divisor ``downscale`` the images are ``int(W / downscale)`` x ``int(H /
  downscale)`` (truncated, not rounded), and masks are resized to that with nearest-neighbour
  sampling;
- the class list is sorted.

The labelled views form the "test" split and carry ``ground_truth["class_masks"]`` = their mask
folder; the classes become ``Scene.class_names``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cclgs_core.datasets.colmap import find_model, load_colmap
from cclgs_core.datasets.common import check_downscale, frame_names, image_size
from cclgs_core.datasets.llff import poses_file, read_llff_cameras
from cclgs_core.errors import DataError
from cclgs_core.types import Camera, Frame, Scene

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
    """Read a 3D-OVS scene: its cameras (COLMAP, else LLFF), the class list, and the labelled views
    as the "test" split; sizes at ``downscale`` are truncated as the authors truncate them."""
    check_downscale(downscale)
    scene_dir = Path(scene_dir)
    images = _image_files(scene_dir)
    if find_model(scene_dir) is not None:
        scene = load_colmap(scene_dir)
    elif poses_file(scene_dir).is_file():
        scene = _load_llff(scene_dir, images)
    else:
        raise DataError(
            f"{scene_dir}: a 3D-OVS scene needs its cameras: {poses_file(scene_dir).name} (as released) or a COLMAP "
            f"model in {scene_dir / 'sparse' / '0'}"
        )
    scene.frames = [replace(frame, camera=truncated(frame.camera, downscale)) for frame in scene.frames]
    classes = read_3dovs_classes(classes_file(scene_dir))
    image_names = [path.name for path in images]
    by_image = {Path(frame.image_path).name: position for position, frame in enumerate(scene.frames)}
    folders = sorted(path for path in (scene_dir / "segmentations").iterdir() if path.is_dir())
    if not folders:
        raise DataError(f"{scene_dir / 'segmentations'}: no labelled view folders (segmentations/<NN>/<class>.png)")
    for folder in folders:
        if not folder.name.isdigit() or int(folder.name) >= len(image_names):
            raise DataError(
                f"{folder}: a 3D-OVS mask folder is named by the view's position among the {len(image_names)} sorted "
                f"images of {scene_dir / 'images'} (00 .. {len(image_names) - 1:02d}); rename or remove it"
            )
        image = image_names[int(folder.name)]
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


def truncated(camera: Camera, downscale: int) -> Camera:
    """``camera`` at 1/``downscale`` resolution with the authors' sizes, ``int(W / downscale)``."""
    if downscale == 1:
        return camera
    return camera.resized(int(camera.width / downscale), int(camera.height / downscale))


def _image_files(scene_dir: Path) -> list[Path]:
    """The scene's images, sorted by name (the order mask folders and LLFF rows refer to)."""
    folder = scene_dir / "images"
    if not folder.is_dir():
        raise DataError(f"{folder}: no images folder; a 3D-OVS scene keeps its views in images/")
    return sorted(path for path in folder.iterdir() if path.suffix in _IMAGE_SUFFIXES)


def _load_llff(scene_dir: Path, images: list[Path]) -> Scene:
    """Full-resolution frames posed by ``poses_bounds.npy`` (one row per image, in name order)."""
    if not images:
        raise DataError(f"{scene_dir / 'images'}: no images (.jpg, .jpeg or .png)")
    sizes = [image_size(poses_file(scene_dir), path) for path in images]
    cameras = read_llff_cameras(poses_file(scene_dir), sizes)
    names = frame_names(poses_file(scene_dir), [path.name for path in images])
    frames = [
        Frame(index=index, name=name, image_path=path, camera=camera)
        for index, (name, path, camera) in enumerate(zip(names, images, cameras))
    ]
    return Scene(root=scene_dir, frames=frames)


def read_class_masks(folder: Path, classes: list[str], size: tuple[int, int]) -> np.ndarray:
    """The masks of one labelled view: (C, H, W) bool in the order of ``classes``, at ``size`` = (W, H).

    The authors' rule: each mask is converted to 8-bit grey (PIL's "L", whatever its mode: 1-bit,
    grey, RGB, palette), resized with nearest-neighbour sampling, and a pixel is its class only
    where it is 255. Classes may overlap, and a pixel may have none.
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
            masks.append(np.asarray(grey) == 255)
    return np.stack(masks)
