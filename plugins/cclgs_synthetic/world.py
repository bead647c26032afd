"""The synthetic benchmark world: a table with objects of named classes, made of Gaussians, with
exact ground truth, written in nerfstudio's format.

``generate_world(out, seed)`` builds the scene, renders every view through a field backend
obtained by name from the registry, and writes (paths relative to ``out``)::

    transforms.json            nerfstudio: intrinsics at top level (OPENCV, no distortion),
                               frames with OpenGL camera-to-world ``transform_matrix`` and a
                               ``ground_truth`` dict, train/val/test filename lists (val = test,
                               which ``ns-train`` needs), ``ply_file_path``, ``gaussians_file_path``
    images/frame_00001.png     RGB, Gaussians composited over ``background``
    ground_truth/{class,instance,part}/frame_00001.png
                               16-bit PNG label maps storing value + 1 (0 = no label)
    ground_truth/depth/frame_00001.npy
                               (H, W) float32 depth along the optical axis, 0 where unlabelled
    label/frame_00005.json     LERF-OVS (ISAT) polygons and boxes, test views only (named by
                               the test frames' ``ground_truth["objects"]``)
    classes.json               {"classes": [{id, name, query}], "instances": [...], "parts": [...]}
    visibility.json            per view and instance: visible and unoccluded pixels, occlusion
    world.json                 the generation options, background colour and counts
    gaussians.ply              the scene's Gaussians (standard 3DGS layout)
    sparse_points.ply          a subset of the Gaussian centres with colours (x, y, z, r, g, b)

Labelling rule (the same for every map, so labels agree with the RGB): a pixel is labelled when
the accumulated opacity of all Gaussians there is at least ``label_alpha`` (0.5 by default);
its instance is the one whose Gaussians contribute the largest accumulated blending weight,
its part the largest contributor among that instance's parts, its class the instance's class.
An instance's unoccluded pixels in a view are those the same rule gives it when every other
object is removed (the table stays, so occlusion means occlusion by other objects; the table's
own are those it gets alone); its occlusion is ``1 - visible / unoccluded`` (clipped to [0, 1]).

The world is deterministic per seed: the same options give identical bytes (on one machine and
torch build). It is a simulation for measuring the pipeline, not real data.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from cclgs_core import Camera, ConfigError
from cclgs_core.evaluation.labelmaps import write_label_map
from cclgs_core.scene.cameras import look_at
from cclgs_core.scene.ply import write_gaussians, write_points
from cclgs_synthetic.lerf_labels import isat_labels
from cclgs_synthetic.seeding import derived_rng
from cclgs_synthetic.shapes import (
    OBJECTS_WITH_PARTS,
    SINGLE_PART_OBJECTS,
    TABLE_COLOR,
    TABLE_HALF_SIZE,
    TABLE_NAME,
    ObjectClass,
)

#: Instance id of the table, the supporting plane.
TABLE_INSTANCE = 0
#: Opacity of every Gaussian; high enough that surfaces are solid.
OPACITY = 0.95
#: Tangent standard deviation of a surface disc, in units of the sampling spacing.
DISC_SIZE = 0.8
#: Thickness of a disc relative to its tangent size.
DISC_THICKNESS = 0.1
#: Surface samples drawn per Gaussian, of which an evenly spread subset is kept.
CANDIDATES = 4
#: Objects are placed inside this radius of the table centre (widened for many objects).
PLACEMENT_RADIUS = 0.6
#: Cameras look at this point (world z is up, the table top is z = 0).
LOOK_AT = np.array([0.0, 0.0, 0.12])
CAMERA_DISTANCE = 2.0


@dataclass
class _Assembly:
    """Per-Gaussian arrays of the whole scene (N Gaussians) and its label tables."""

    means: np.ndarray  # (N, 3)
    normals: np.ndarray  # (N, 3)
    tangent_scales: np.ndarray  # (N,)
    colors: np.ndarray  # (N, 3) in [0, 1]
    instance_ids: np.ndarray  # (N,) int
    part_ids: np.ndarray  # (N,) int
    classes: list[dict] = field(default_factory=list)
    instances: list[dict] = field(default_factory=list)
    parts: list[dict] = field(default_factory=list)


def generate_world(
    out: Path,
    seed: int = 0,
    objects: int = 6,
    duplicates: int = 1,
    width: int = 128,
    height: int = 128,
    train_views: int = 30,
    test_views: int = 8,
    cameras: Literal["orbit", "hemisphere"] = "orbit",
    fov_degrees: float = 45.0,
    density: float = 800.0,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    label_alpha: float = 0.5,
    sparse_points: int = 1000,
    renderer: str = "torch",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate a synthetic world into the directory ``out`` and return ``out``.

    objects:     distinct object classes on the table (half of them, rounded up, have parts)
    duplicates:  extra instances of already chosen classes (a category may repeat in a view)
    density:     Gaussians per unit of surface area (the table is about 1.9 x 1.9 units)
    renderer:    field backend name in the registry used to render every map
    progress:    called with (views done, views total) after each view
    The default world has about 1,400 Gaussians and 38 views and renders in a few seconds with
    the "torch" backend (the exact but O(pixels x Gaussians) "reference" needs about 1 s per view).
    The directory is written under a temporary name and renamed at the end, so an interrupted
    run leaves no partial world; an existing world is replaced only with ``overwrite``.
    """
    import torch

    from cclgs_core import get_registry

    _check_options(
        objects, duplicates, width, height, train_views, test_views, fov_degrees, density, label_alpha, background
    )
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"{out} is not empty; choose another directory or pass overwrite (--overwrite) to replace it"
            )
        if not (out / "world.json").is_file():
            raise ConfigError(
                f"{out} is not empty and holds no synthetic world (no world.json); refusing to replace it"
            )
    backend = get_registry().create("field_backend", renderer)

    assembly = _assemble(seed, objects, duplicates, density)
    gaussians = _to_gaussians(assembly)
    poses = _camera_poses(cameras, train_views + test_views, seed)
    focal = 0.5 * width / math.tan(math.radians(fov_degrees) / 2)
    views = [Camera(pose, focal, focal, width / 2, height / 2, width, height) for pose in poses]
    test_indices = set(_spread(test_views, len(views)))

    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    for sub in (
        "images",
        "ground_truth/class",
        "ground_truth/instance",
        "ground_truth/part",
        "ground_truth/depth",
        "label",
    ):
        (staging / sub).mkdir(parents=True)

    instance_count, part_count = len(assembly.instances), len(assembly.parts)
    one_hot = torch.zeros(len(gaussians), instance_count + part_count)
    one_hot[torch.arange(len(gaussians)), torch.as_tensor(assembly.instance_ids)] = 1.0
    one_hot[torch.arange(len(gaussians)), instance_count + torch.as_tensor(assembly.part_ids)] = 1.0
    part_instance = np.array([part["instance_id"] for part in assembly.parts])
    instance_class = np.array([instance["class_id"] for instance in assembly.instances])
    categories = [entry["query"] for entry in assembly.classes]
    background_array = np.asarray(background, dtype=np.float32)

    frames, train, test, visibility = [], [], [], {}
    for index, camera in enumerate(views):
        stem = f"frame_{index + 1:05d}"
        with torch.no_grad():
            maps = _render_view(
                backend, gaussians, one_hot, camera, background_array, label_alpha, instance_count, part_instance
            )
            unoccluded = [
                _unoccluded_pixels(backend, gaussians, assembly.instance_ids, instance, camera, label_alpha)
                for instance in range(instance_count)
            ]
        class_map = np.where(maps["instance"] >= 0, instance_class[np.maximum(maps["instance"], 0)], -1)
        _save_rgb(staging / "images" / f"{stem}.png", maps["rgb"])
        write_label_map(staging / "ground_truth/class" / f"{stem}.png", class_map)
        write_label_map(staging / "ground_truth/instance" / f"{stem}.png", maps["instance"])
        write_label_map(staging / "ground_truth/part" / f"{stem}.png", maps["part"])
        np.save(staging / "ground_truth/depth" / f"{stem}.npy", maps["depth"])
        visibility[stem] = _visibility(maps["instance"], unoccluded)
        (test if index in test_indices else train).append(f"images/{stem}.png")
        if index in test_indices:
            labels = isat_labels(class_map, maps["depth"], categories, f"{stem}.png")
            _write_json(staging / "label" / f"{stem}.json", labels)
        ground_truth = {
            "class": f"ground_truth/class/{stem}.png",
            "instance": f"ground_truth/instance/{stem}.png",
            "part": f"ground_truth/part/{stem}.png",
            "depth": f"ground_truth/depth/{stem}.npy",
        }
        if index in test_indices:
            ground_truth["objects"] = f"label/{stem}.json"
        frames.append(
            {
                "file_path": f"images/{stem}.png",
                "transform_matrix": _opencv_to_opengl(camera.camera_to_world).tolist(),
                "ground_truth": ground_truth,
            }
        )
        if progress is not None:
            progress(index + 1, len(views))

    write_gaussians(staging / "gaussians.ply", gaussians)
    points, point_colors = _sparse_points(assembly, sparse_points, seed)
    write_points(staging / "sparse_points.ply", points, point_colors)
    _write_json(
        staging / "transforms.json",
        {
            "camera_model": "OPENCV",
            "fl_x": focal,
            "fl_y": focal,
            "cx": width / 2,
            "cy": height / 2,
            "w": width,
            "h": height,
            "k1": 0.0,
            "k2": 0.0,
            "p1": 0.0,
            "p2": 0.0,
            "frames": frames,
            "train_filenames": train,
            "val_filenames": test,
            "test_filenames": test,
            "ply_file_path": "sparse_points.ply",
            "gaussians_file_path": "gaussians.ply",
        },
    )
    _write_json(
        staging / "classes.json",
        {"classes": assembly.classes, "instances": assembly.instances, "parts": assembly.parts},
    )
    _write_json(
        staging / "visibility.json",
        {
            "rule": (
                f"labelled pixels: accumulated opacity >= {label_alpha}, largest contributor; unoccluded: the same "
                "with every other object removed (the table stays); occlusion = 1 - visible / unoccluded"
            ),
            "frames": visibility,
        },
    )
    options = dict(
        seed=seed, objects=objects, duplicates=duplicates, width=width, height=height, train_views=train_views,
        test_views=test_views, cameras=cameras, fov_degrees=fov_degrees, density=density,
        background=list(background), label_alpha=label_alpha, sparse_points=sparse_points, renderer=renderer,
    )  # fmt: skip
    _write_json(
        staging / "world.json", {"simulation": "cclgs synthetic world", "options": options, "gaussians": len(gaussians)}
    )
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    return out


def _check_options(
    objects, duplicates, width, height, train_views, test_views, fov_degrees, density, label_alpha, background
) -> None:
    available = len(OBJECTS_WITH_PARTS) + len(SINGLE_PART_OBJECTS)
    problems = []
    if not 1 <= objects <= available:
        problems.append(f"objects must lie in [1, {available}] (the class library's size), got {objects}")
    if duplicates < 0 or duplicates > objects:
        problems.append(f"duplicates must lie in [0, objects], got {duplicates}")
    if width < 8 or height < 8:
        problems.append(f"the image must be at least 8x8 pixels, got {width}x{height}")
    if train_views < 1 or test_views < 0:
        problems.append(f"need at least one train view and no negative test views, got {train_views} and {test_views}")
    if not 5.0 <= fov_degrees <= 150.0:
        problems.append(f"fov_degrees must lie in [5, 150], got {fov_degrees}")
    if density <= 0:
        problems.append(f"density must be positive, got {density}")
    if not 0.0 < label_alpha < 1.0:
        problems.append(f"label_alpha must lie in (0, 1), got {label_alpha}")
    if len(background) != 3 or not all(0.0 <= value <= 1.0 for value in background):
        problems.append(f"background must be three values in [0, 1], got {background}")
    if problems:
        raise ConfigError("synthetic world: " + "; ".join(problems))


# -- scene assembly ------------------------------------------------------------------------------


def _choose_classes(rng: np.random.Generator, objects: int, duplicates: int) -> list[ObjectClass]:
    """Half the objects (rounded up) from the classes with parts, the rest without, then duplicates."""
    with_parts = min(len(OBJECTS_WITH_PARTS), (objects + 1) // 2)
    without = objects - with_parts
    if without > len(SINGLE_PART_OBJECTS):
        with_parts, without = objects - len(SINGLE_PART_OBJECTS), len(SINGLE_PART_OBJECTS)
    chosen = [OBJECTS_WITH_PARTS[i] for i in rng.choice(len(OBJECTS_WITH_PARTS), with_parts, replace=False)]
    chosen += [SINGLE_PART_OBJECTS[i] for i in rng.choice(len(SINGLE_PART_OBJECTS), without, replace=False)]
    chosen += [chosen[i] for i in rng.choice(len(chosen), duplicates, replace=False)]
    return chosen


def _place(rng: np.random.Generator, footprints: list[float]) -> list[np.ndarray]:
    """Non-overlapping (x, y) positions on the table for footprints of the given radii: the
    largest first, each by rejection sampling, the whole layout restarted when one does not fit.
    The layout's radius is PLACEMENT_RADIUS, widened for many objects so they cover at most
    40 % of it (up to the table's edge)."""
    area = sum((radius + 0.02) ** 2 for radius in footprints)
    extent = float(np.clip(math.sqrt(area / 0.4), PLACEMENT_RADIUS, TABLE_HALF_SIZE - 0.05))
    order = sorted(range(len(footprints)), key=lambda i: -footprints[i])
    for _ in range(100):
        placed: dict[int, np.ndarray] = {}
        for index in order:
            radius = footprints[index]
            for _ in range(200):
                r = max(extent - radius, 0.0) * np.sqrt(rng.uniform())
                angle = rng.uniform(0, 2 * np.pi)
                position = np.array([r * np.cos(angle), r * np.sin(angle)])
                if all(
                    np.linalg.norm(position - placed[other]) >= radius + footprints[other] + 0.02 for other in placed
                ):
                    placed[index] = position
                    break
            else:
                break
        if len(placed) == len(footprints):
            return [placed[index] for index in range(len(footprints))]
    raise ConfigError(
        f"synthetic world: could not place {len(footprints)} objects on the table; use fewer objects or duplicates"
    )


def _assemble(seed: int, objects: int, duplicates: int, density: float) -> _Assembly:
    rng = derived_rng(seed, "world")
    chosen = _choose_classes(rng, objects, duplicates)
    scales = rng.uniform(0.85, 1.15, len(chosen))
    positions = _place(rng, [spec.footprint * scale for spec, scale in zip(chosen, scales)])
    spacing = 1.0 / math.sqrt(density)

    class_names = [TABLE_NAME] + sorted({spec.name for spec in chosen})
    classes = [{"id": i, "name": name, "query": name} for i, name in enumerate(class_names)]
    instances: list[dict] = []
    parts: list[dict] = []
    chunks: dict[str, list[np.ndarray]] = {
        key: [] for key in ("means", "normals", "tangent_scales", "colors", "instance_ids", "part_ids")
    }

    def add(points, normals, colors, instance_id, part_id, tangent_scale):
        chunks["means"].append(points)
        chunks["normals"].append(normals)
        chunks["colors"].append(colors)
        chunks["tangent_scales"].append(np.full(len(points), tangent_scale))
        chunks["instance_ids"].append(np.full(len(points), instance_id))
        chunks["part_ids"].append(np.full(len(points), part_id))

    points, normals, colors, table_spacing = _table(rng, spacing)
    instances.append({"id": TABLE_INSTANCE, "class_id": 0, "name": TABLE_NAME, "parts": [0]})
    parts.append({"id": 0, "instance_id": TABLE_INSTANCE, "name": "top"})
    add(points, normals, colors, TABLE_INSTANCE, 0, DISC_SIZE * table_spacing)

    copies: dict[str, int] = {}
    for spec, scale, position in zip(chosen, scales, positions):
        instance_id = len(instances)
        copies[spec.name] = copies.get(spec.name, 0) + 1
        name = spec.name if copies[spec.name] == 1 else f"{spec.name} #{copies[spec.name]}"
        rotation = _yaw(rng.uniform(0, 2 * np.pi))
        part_ids = []
        for part in spec.parts:
            part_id = len(parts)
            part_ids.append(part_id)
            parts.append({"id": part_id, "instance_id": instance_id, "name": part.name})
            for primitive, color in part.pieces:
                count = max(12, int(round(primitive.area() * scale**2 * density)))
                local_points, local_normals = primitive.sample(rng, CANDIDATES * count)
                keep = _farthest_points(local_points, count)
                local_points, local_normals = local_points[keep], local_normals[keep]
                world_points = (local_points * scale) @ rotation.T + np.array([position[0], position[1], 0.0])
                jitter = rng.normal(0.0, 0.03, (count, 3))
                add(
                    world_points,
                    local_normals @ rotation.T,
                    np.clip(np.asarray(color) + jitter, 0, 1),
                    instance_id,
                    part_id,
                    DISC_SIZE * spacing,
                )
        instances.append({"id": instance_id, "class_id": class_names.index(spec.name), "name": name, "parts": part_ids})

    arrays = {key: np.concatenate(values) for key, values in chunks.items()}
    return _Assembly(**arrays, classes=classes, instances=instances, parts=parts)


def _farthest_points(points: np.ndarray, count: int) -> np.ndarray:
    """(count,) indices of an evenly spread subset of points (P, 3), by farthest-point sampling
    (random uniform samples alone leave holes in a surface)."""
    chosen = np.zeros(count, dtype=np.int64)
    distance = np.linalg.norm(points - points[0], axis=1)
    for k in range(1, count):
        chosen[k] = int(np.argmax(distance))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[k]], axis=1))
    return chosen


def _table(rng: np.random.Generator, spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A square grid of horizontal discs at z = 0 with a wood-grain colour: points, normals, colours (G, 3), spacing."""
    cells = int(math.ceil(2 * TABLE_HALF_SIZE / (3.0 * spacing)))
    table_spacing = 2 * TABLE_HALF_SIZE / cells
    coordinates = -TABLE_HALF_SIZE + table_spacing * (np.arange(cells) + 0.5)
    xs, ys = np.meshgrid(coordinates, coordinates, indexing="ij")
    points = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], 1)
    points[:, :2] += rng.uniform(-0.2, 0.2, (len(points), 2)) * table_spacing
    grain = 1.0 + 0.15 * np.sin(points[:, 0] * 25.0 + 3.0 * np.sin(points[:, 1] * 4.0))
    colors = np.clip(np.asarray(TABLE_COLOR) * grain[:, None] + rng.normal(0.0, 0.02, (len(points), 3)), 0, 1)
    return points, np.tile([0.0, 0.0, 1.0], (len(points), 1)), colors, table_spacing


def _yaw(angle: float) -> np.ndarray:
    """(3, 3) rotation about the world z axis."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _quaternions_from_normals(normals: np.ndarray) -> np.ndarray:
    """normals: (N, 3) unit. Returns (N, 4) wxyz quaternions rotating the z axis onto each normal."""
    quats = np.stack([1.0 + normals[:, 2], -normals[:, 1], normals[:, 0], np.zeros(len(normals))], 1)
    flipped = quats[:, 0] < 1e-8  # normal = -z: half turn about x
    quats[flipped] = [0.0, 1.0, 0.0, 0.0]
    return quats / np.linalg.norm(quats, axis=1, keepdims=True)


def _to_gaussians(assembly: _Assembly):
    """The assembly as ``Gaussians`` (float32). Colours are view-independent, but the SH degree
    is 3 (higher coefficients zero) because the original 3DGS loader expects 45 ``f_rest``."""
    import torch

    from cclgs_core.scene.gaussians import Gaussians, rgb_to_sh_dc

    scales = np.stack([assembly.tangent_scales, assembly.tangent_scales, DISC_THICKNESS * assembly.tangent_scales], 1)

    def as_tensor(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float32))

    return Gaussians(
        means=as_tensor(assembly.means),
        quats=as_tensor(_quaternions_from_normals(assembly.normals)),
        log_scales=as_tensor(np.log(scales)),
        opacity_logits=as_tensor(np.full(len(assembly.means), math.log(OPACITY / (1 - OPACITY)))),
        sh=torch.cat(
            [as_tensor(rgb_to_sh_dc(assembly.colors))[:, None, :], torch.zeros(len(assembly.means), 15, 3)], dim=1
        ),
    )


def _sparse_points(assembly: _Assembly, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` Gaussian centres with a little positional noise: points (P, 3), colours (P, 3) uint8."""
    rng = derived_rng(seed, "sparse points")
    chosen = np.sort(rng.choice(len(assembly.means), min(count, len(assembly.means)), replace=False))
    points = assembly.means[chosen] + rng.normal(0.0, 0.005, (len(chosen), 3))
    return points, np.round(assembly.colors[chosen] * 255).astype(np.uint8)


# -- cameras -------------------------------------------------------------------------------------


def _camera_poses(kind: str, count: int, seed: int) -> list[np.ndarray]:
    """``count`` OpenCV camera-to-world matrices looking at the table, in path order.

    orbit:      one turn around the table, elevation waving between 15 and 35 degrees
    hemisphere: a spiral covering elevations 15 to 65 degrees with equal area per view
    """
    phase = derived_rng(seed, "cameras").uniform(0, 2 * np.pi)
    steps = np.arange(count)
    if kind == "orbit":
        azimuths = phase + 2 * np.pi * steps / count
        elevations = np.radians(25.0 + 10.0 * np.sin(3 * 2 * np.pi * steps / count))
    elif kind == "hemisphere":
        low, high = math.sin(math.radians(15.0)), math.sin(math.radians(65.0))
        elevations = np.arcsin(low + (high - low) * (steps + 0.5) / count)
        azimuths = phase + steps * math.pi * (3.0 - math.sqrt(5.0))  # golden angle
    else:
        raise ConfigError(f"synthetic world: cameras must be 'orbit' or 'hemisphere', got {kind!r}")
    eyes = LOOK_AT + CAMERA_DISTANCE * np.stack(
        [np.cos(elevations) * np.cos(azimuths), np.cos(elevations) * np.sin(azimuths), np.sin(elevations)], 1
    )
    return [look_at(eye, LOOK_AT) for eye in eyes]


def _spread(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over range(total)."""
    return [int((k + 0.5) * total / count) for k in range(count)]


def _opencv_to_opengl(camera_to_world: np.ndarray) -> np.ndarray:
    """(4, 4) OpenCV camera-to-world -> OpenGL (y up, z backward), as nerfstudio stores it."""
    return camera_to_world @ np.diag([1.0, -1.0, -1.0, 1.0])


# -- rendering -----------------------------------------------------------------------------------


def _render_view(
    backend, gaussians, one_hot, camera, background, label_alpha, instance_count, part_instance
) -> dict[str, np.ndarray]:
    """One render of colours plus one-hot instance and part channels.

    one_hot: (N, I + P) indicator features. Returns rgb (H, W, 3) float32, depth (H, W) float32
    (0 where unlabelled), instance and part (H, W) int32 (-1 where unlabelled).
    """
    import torch

    features = torch.cat([gaussians.colors(camera), one_hot], dim=1)
    rendered = backend.render(gaussians, features, camera)
    channels = rendered.features.numpy()
    alpha, depth = rendered.alpha.numpy(), rendered.depth.numpy()
    rgb = np.clip(channels[..., :3] + (1.0 - alpha[..., None]) * background, 0.0, 1.0)
    labelled = alpha >= label_alpha
    instance = np.where(labelled, np.argmax(channels[..., 3 : 3 + instance_count], axis=-1), -1)
    part_weights = channels[..., 3 + instance_count :]
    own_parts = part_instance[None, None, :] == instance[..., None]  # (H, W, P)
    part = np.where(labelled, np.argmax(np.where(own_parts, part_weights, -1.0), axis=-1), -1)
    return {
        "rgb": rgb.astype(np.float32),
        "depth": np.where(labelled, depth, 0.0).astype(np.float32),
        "instance": instance.astype(np.int32),
        "part": part.astype(np.int32),
    }


def _unoccluded_pixels(
    backend, gaussians, instance_ids: np.ndarray, instance: int, camera: Camera, label_alpha: float
) -> int:
    """Pixels the labelling rule gives ``instance`` when every other object is removed (the table,
    instance 0, stays: occlusion means occlusion by other objects). Rendered in a crop of the view
    around the instance's footprint, with the table's Gaussians whose footprint meets the crop."""
    import torch

    boxes = _footprints(gaussians, camera)  # (N, 4)
    own = instance_ids == instance
    x0, y0 = np.clip(boxes[own, :2].min(axis=0), 0, [camera.width, camera.height]).astype(int)
    x1, y1 = np.clip(boxes[own, 2:].max(axis=0), 0, [camera.width, camera.height]).astype(int)
    if x1 <= x0 or y1 <= y0:
        return 0
    meets_crop = (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)
    keep = own | ((instance_ids == TABLE_INSTANCE) & meets_crop)
    crop = Camera(
        camera.camera_to_world, camera.fx, camera.fy, camera.cx - x0, camera.cy - y0, int(x1 - x0), int(y1 - y0)
    )
    indicator = torch.as_tensor(own[keep], dtype=torch.float32)[:, None]  # (N_kept, 1)
    rendered = backend.render(gaussians.subset(torch.as_tensor(keep)), indicator, crop)
    alpha, weight = rendered.alpha.numpy(), rendered.features.numpy()[..., 0]
    return int(((alpha >= label_alpha) & (weight >= alpha - weight)).sum())


def _footprints(gaussians, camera: Camera) -> np.ndarray:
    """(N, 4) conservative pixel boxes (x0, y0, x1, y1) outside which a Gaussian's opacity is below
    the renderers' 1/255 cut-off: 3.5 standard deviations of its 2D footprint (the off-axis
    stretch of the projection and the 0.3 px^2 blur included), plus one pixel. A Gaussian too
    near or behind the camera gets the whole image."""
    means = gaussians.means.numpy().astype(np.float64)
    view = camera.world_to_camera
    points = means @ view[:3, :3].T + view[:3, 3]
    depth = np.maximum(points[:, 2], 1e-6)
    sigma = gaussians.scales.numpy().max(axis=1) * max(camera.fx, camera.fy) / depth
    stretch = 1.0 + np.abs(points[:, 0] / depth) + np.abs(points[:, 1] / depth)
    radius = 3.5 * (sigma * stretch + math.sqrt(0.3)) + 1.0
    us = camera.fx * points[:, 0] / depth + camera.cx
    vs = camera.fy * points[:, 1] / depth + camera.cy
    boxes = np.stack([np.floor(us - radius), np.floor(vs - radius), np.ceil(us + radius), np.ceil(vs + radius)], 1)
    boxes[points[:, 2] <= 0.05] = [0, 0, camera.width, camera.height]
    return boxes


def _visibility(instance_map: np.ndarray, unoccluded: list[int]) -> list[dict]:
    """Instances in view (unoccluded pixels > 0) with visible pixels and occlusion in [0, 1]."""
    visible = np.bincount(instance_map[instance_map >= 0].ravel(), minlength=len(unoccluded))
    entries = []
    for instance, alone in enumerate(unoccluded):
        if alone == 0:
            continue
        occlusion = float(np.clip(1.0 - visible[instance] / alone, 0.0, 1.0))
        entries.append(
            {
                "instance": instance,
                "visible_pixels": int(visible[instance]),
                "unoccluded_pixels": int(alone),
                "occlusion": round(occlusion, 4),
            }
        )
    return entries


def _save_rgb(path: Path, rgb: np.ndarray) -> None:
    """rgb: (H, W, 3) float in [0, 1] -> 8-bit PNG."""
    from PIL import Image

    Image.fromarray(np.round(rgb * 255.0).astype(np.uint8)).save(path)


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=1) + "\n")
