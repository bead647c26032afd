"""The synthetic benchmark: world generator, noisy mask generator and simulated VLM."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cclgs_core.errors import ConfigError, DataError
from cclgs_core.evaluation.labelmaps import read_label_map, write_label_map
from cclgs_core.plumbing.registry import get_registry
from cclgs_core.types import Camera, Frame, SegmentMap
from cclgs_synthetic.lerf_labels import rasterize_polygon
from cclgs_synthetic.masks import SyntheticMaskGenerator
from cclgs_synthetic.vlm import SimulatedFeatureExtractor
from cclgs_synthetic.world import generate_world

SMALL = dict(width=48, height=48, train_views=4, test_views=2, objects=4, duplicates=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("synth") / "world", seed=3, **SMALL)


@pytest.fixture(scope="module")
def frames(world) -> list[Frame]:
    """The world read back through the transforms.json reader."""
    from cclgs_core.datasets import load_scene

    return load_scene(world).frames


@pytest.fixture(scope="module")
def tables(world) -> dict:
    return json.loads((world / "classes.json").read_text())


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


# -- world -----------------------------------------------------------------------------------------


def test_world_is_deterministic_per_seed(world, tmp_path):
    again = generate_world(tmp_path / "again", seed=3, **SMALL)
    assert _files(again) == _files(world)
    other = generate_world(tmp_path / "other", seed=4, **{**SMALL, "train_views": 1, "test_views": 0})
    assert _files(other)["gaussians.ply"] != _files(world)["gaussians.ply"]


def test_layout_and_keys(world, tables):
    meta = json.loads((world / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV"
    assert (meta["w"], meta["h"], meta["cx"], meta["cy"]) == (48, 48, 24.0, 24.0)
    assert meta["fl_x"] == meta["fl_y"] > 0
    assert len(meta["frames"]) == 6
    paths = [frame["file_path"] for frame in meta["frames"]]
    assert paths[0] == "images/frame_00001.png"
    assert sorted(meta["train_filenames"] + meta["test_filenames"]) == sorted(paths)
    assert len(meta["test_filenames"]) == 2 and meta["val_filenames"] == meta["test_filenames"]
    for frame in meta["frames"]:
        matrix = np.array(frame["transform_matrix"])
        assert matrix.shape == (4, 4) and np.allclose(matrix[3], [0, 0, 0, 1])
        assert np.allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-9)
        labelled = {"objects"} if frame["file_path"] in meta["test_filenames"] else set()
        assert set(frame["ground_truth"]) == {"class", "instance", "part", "depth"} | labelled
        assert frame["ground_truth"]["depth"].endswith(".npy")
        for relative in [frame["file_path"], *frame["ground_truth"].values()]:
            assert (world / relative).is_file()
        with Image.open(world / frame["ground_truth"]["instance"]) as label_image:
            assert label_image.mode.startswith("I;16")

    from plyfile import PlyData

    points = PlyData.read(str(world / meta["ply_file_path"]))["vertex"]
    assert [p.name for p in points.properties] == ["x", "y", "z", "red", "green", "blue"]
    gaussians = PlyData.read(str(world / meta["gaussians_file_path"]))["vertex"]
    names = [p.name for p in gaussians.properties]
    expected = [
        "x",
        "y",
        "z",
        "nx",
        "ny",
        "nz",
        "f_dc_0",
        "f_dc_1",
        "f_dc_2",
        *(f"f_rest_{i}" for i in range(45)),
        "opacity",
    ]
    assert names == expected + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    assert np.all(gaussians.data["f_rest_44"] == 0) and np.all(np.abs(gaussians.data["f_dc_0"]) > 0)
    assert len(gaussians.data) == json.loads((world / "world.json").read_text())["gaussians"]
    assert np.allclose(gaussians.data["opacity"], np.log(0.95 / 0.05), atol=1e-5)

    assert [c["id"] for c in tables["classes"]] == list(range(len(tables["classes"])))
    assert all(set(c) == {"id", "name", "query"} for c in tables["classes"])
    labels = sorted(path.name for path in (world / "label").iterdir())
    assert labels == sorted(Path(p).stem + ".json" for p in meta["test_filenames"])
    isat = json.loads((world / "label" / labels[0]).read_text())
    assert set(isat["info"]) >= {"name", "width", "height"} and isat["info"]["width"] == 48
    for entry in isat["objects"]:
        assert set(entry) == {"category", "segmentation", "bbox", "group", "area", "layer", "iscrowd", "note"}
        assert entry["category"] in {c["query"] for c in tables["classes"]}
        polygon = np.array(entry["segmentation"])
        assert polygon.ndim == 2 and polygon.shape[1] == 2 and len(polygon) >= 3
        x1, y1, x2, y2 = entry["bbox"]
        assert x1 == polygon[:, 0].min() and y2 == polygon[:, 1].max() and x1 < x2 and y1 < y2
    visibility = json.loads((world / "visibility.json").read_text())["frames"]
    assert sorted(visibility) == sorted(Path(p).stem for p in paths)


def test_gaussians_ply_renders_the_images(world, frames):
    """The .ply read back in the standard 3DGS layout, rendered from a view's pose, gives its image."""
    import torch

    from cclgs_core.scene.ply import read_gaussians

    gaussians = read_gaussians(world / "gaussians.ply")
    assert gaussians.sh_degree == 3 and len(gaussians) == json.loads((world / "world.json").read_text())["gaussians"]
    frame = frames[0]
    backend = get_registry().create("field_backend", "reference")
    with torch.no_grad():
        rendered = backend.render(gaussians, gaussians.colors(frame.camera), frame.camera)
    rgb = rendered.features.numpy() + (1.0 - rendered.alpha.numpy()[..., None])  # white background
    assert np.abs(np.clip(rgb, 0, 1) * 255 - frame.load_image()).max() <= 1.0


def test_cameras_and_depth_agree_with_the_scene(frames):
    """Unprojecting labelled pixels with their depth lands on the table top or the objects above it."""
    for frame in frames:
        depth = np.load(frame.ground_truth["depth"])
        ys, xs = np.nonzero(depth > 0)
        rays = np.stack(
            [
                (xs + 0.5 - frame.camera.cx) / frame.camera.fx,
                (ys + 0.5 - frame.camera.cy) / frame.camera.fy,
                np.ones(len(xs)),
            ],
            1,
        )
        points = (rays * depth[ys, xs, None]) @ frame.camera.camera_to_world[:3, :3].T + frame.camera.center
        # Depth is that of the Gaussians' centres, so the table's broad discs scatter it a little.
        assert np.percentile(points[:, 2], 1) > -0.12 and points[:, 2].max() < 0.7
        assert np.abs(points[:, :2]).max() < 1.1


def test_label_maps_consistent_with_rgb_and_depth(frames, tables):
    instance_class = np.array([entry["class_id"] for entry in tables["instances"]])
    part_instance = np.array([entry["instance_id"] for entry in tables["parts"]])
    for frame in frames:
        classes, instances, parts = (read_label_map(frame.ground_truth[name]) for name in ("class", "instance", "part"))
        depth = np.load(frame.ground_truth["depth"])
        labelled = instances >= 0
        assert labelled.any() and (~labelled).any()
        np.testing.assert_array_equal(labelled, depth > 0)
        np.testing.assert_array_equal(labelled, classes >= 0)
        np.testing.assert_array_equal(labelled, parts >= 0)
        np.testing.assert_array_equal(classes[labelled], instance_class[instances[labelled]])
        np.testing.assert_array_equal(part_instance[parts[labelled]], instances[labelled])
        rgb = frame.load_image()
        # Unlabelled pixels have opacity < 0.5 over the white background, so every channel > 127.
        assert rgb[~labelled].min() >= 127
        assert rgb[labelled].mean() < rgb[~labelled].mean()


def test_some_objects_have_parts(frames, tables):
    assert any(len(entry["parts"]) > 1 for entry in tables["instances"])
    clean = SyntheticMaskGenerator(merge_prob=0, split_prob=0, boundary_prob=0, drop_prob=0, min_area=1)
    differs = 0
    for frame in frames:
        masks = clean.generate(frame.load_image(), frame)
        parts, instances = read_label_map(frame.ground_truth["part"]), read_label_map(frame.ground_truth["instance"])
        assert masks.sp.num_masks == len(np.unique(parts[parts >= 0]))
        assert masks.wp.num_masks == len(np.unique(instances[instances >= 0]))
        differs += masks.sp.num_masks > masks.wp.num_masks
    assert differs >= len(frames) // 2


def test_lerf_polygons_rerasterise_to_the_class_maps(frames, tables, world):
    queries = {entry["query"]: entry["id"] for entry in tables["classes"]}
    for frame in [f for f in frames if f.split == "test"]:
        labels = json.loads((world / "label" / f"{frame.name}.json").read_text())
        classes = read_label_map(frame.ground_truth["class"])
        redrawn = np.full(classes.shape, -1)
        for category, class_id in queries.items():
            drawn = np.zeros(classes.shape, dtype=bool)
            for entry in labels["objects"]:
                if entry["category"] == category:
                    drawn |= rasterize_polygon(np.array(entry["segmentation"]), classes.shape)
            redrawn[drawn] = class_id
            truth = classes == class_id
            if truth.sum() >= 40:  # specks under 4 px are not annotated, so tiny regions may lose a few
                assert (drawn & truth).sum() / (drawn | truth).sum() > 0.9, category
        assert np.mean(redrawn == classes) > 0.995


def test_world_options_are_checked(tmp_path, world):
    with pytest.raises(ConfigError, match="objects"):
        generate_world(tmp_path / "w", objects=99)
    with pytest.raises(ConfigError, match="not empty"):
        generate_world(world)


# -- noisy masks ------------------------------------------------------------------------------------


def test_mask_damage_is_reproducible_and_varies_per_view(frames):
    generator = get_registry().create("mask_generator", "synthetic")
    changed, signatures = 0, set()
    for frame in frames:
        image = frame.load_image()
        first, second = generator.generate(image, frame), generator.generate(image, frame)
        for level, truth_name in (("sp", "part"), ("wp", "instance")):
            damaged = first.level(level)
            np.testing.assert_array_equal(damaged.segments, second.level(level).segments)
            assert set(np.unique(damaged.segments)) <= set(range(-1, damaged.num_masks))
            assert len(np.unique(damaged.segments[damaged.segments >= 0])) == damaged.num_masks
            truth = read_label_map(frame.ground_truth[truth_name])
            moved = float(np.mean((damaged.segments >= 0) != (truth >= 0)))
            changed += moved > 0
            signatures.add((level, damaged.num_masks - len(np.unique(truth[truth >= 0])), round(moved, 3)))
    assert changed >= len(frames)  # damage happens in most views
    assert len(signatures) > 4  # and differs between views
    other = SyntheticMaskGenerator(seed=1)
    assert any(
        not np.array_equal(
            other.generate(f.load_image(), f).wp.segments, generator.generate(f.load_image(), f).wp.segments
        )
        for f in frames
    )


def test_each_damage_kind():
    labels = np.full((40, 40), -1)
    labels[5:20, 5:35], labels[20:35, 5:35] = 0, 1  # two touching masks

    def rng():
        return np.random.default_rng(0)

    off = dict(merge_prob=0.0, split_prob=0.0, boundary_prob=0.0, drop_prob=0.0, min_area=1)
    merged = SyntheticMaskGenerator(**{**off, "merge_prob": 1.0}).damage(labels, rng())
    assert merged.max() == 0 and (merged == 0).sum() == 900
    split = SyntheticMaskGenerator(**{**off, "split_prob": 1.0}).damage(labels, rng())
    assert split.max() == 3 and ((split >= 0) == (labels >= 0)).all()
    dropped = SyntheticMaskGenerator(**{**off, "drop_prob": 1.0}).damage(labels, rng())
    assert (dropped == -1).all()
    reshaped = SyntheticMaskGenerator(**{**off, "boundary_prob": 1.0}).damage(labels, rng())
    assert (reshaped != labels).any() and reshaped.max() <= 1
    tiny = SyntheticMaskGenerator(**{**off, "min_area": 500}).damage(labels, rng())
    assert (tiny == -1).all()
    with pytest.raises(ConfigError, match="split_prob"):
        SyntheticMaskGenerator(split_prob=1.5)


# -- simulated VLM ----------------------------------------------------------------------------------


def crafted_world(
    root: Path, occlusions: list[float], class_names=("red mug", "ramen bowl", "blue book", "green apple")
) -> list[Frame]:
    """A world on disk with hand-made maps: instance 0 (class 0) fills the left half, instance 1
    (class 1) the right half of a 16x16 view; the views differ only in instance 0's occlusion."""
    (root / "images").mkdir(parents=True)
    instances = np.zeros((16, 16), dtype=np.int64)
    instances[:, 8:] = 1
    for name, values in (("instance", instances), ("class", instances), ("part", instances)):
        write_label_map(root / f"{name}.png", values)
    classes = [{"id": i, "name": name, "query": name} for i, name in enumerate(class_names)]
    parts = [{"id": 0, "instance_id": 0, "name": "a"}, {"id": 1, "instance_id": 1, "name": "b"}]
    instances_table = [
        {"id": 0, "class_id": 0, "name": "a", "parts": [0]},
        {"id": 1, "class_id": 1, "name": "b", "parts": [1]},
    ]
    (root / "classes.json").write_text(json.dumps({"classes": classes, "instances": instances_table, "parts": parts}))
    visibility = {
        f"frame_{i:05d}": [{"instance": 0, "occlusion": o}, {"instance": 1, "occlusion": 0.0}]
        for i, o in enumerate(occlusions)
    }
    (root / "visibility.json").write_text(json.dumps({"frames": visibility}))
    camera = Camera(np.eye(4), 20.0, 20.0, 8.0, 8.0, 16, 16)
    truth = {name: root / f"{name}.png" for name in ("instance", "class", "part")}
    return [
        Frame(i, f"frame_{i:05d}", root / "images" / f"frame_{i:05d}.png", camera, "train", truth)
        for i in range(len(occlusions))
    ]


def _nearest_class(extractor, features, class_names) -> np.ndarray:
    return np.argmax(features @ extractor.encode_texts(class_names).T, axis=1)


def test_text_embeddings():
    extractor = get_registry().create("feature_extractor", "simulated")
    assert extractor.dim == 512 and extractor.canonical_phrases == ("object", "things", "stuff", "texture")
    texts = extractor.encode_texts(["red mug", "Red  Mug ", "ramen bowl", *extractor.canonical_phrases])
    assert texts.shape == (7, 512) and texts.dtype == np.float32
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(texts[0], texts[1])
    similarity = texts[1:] @ texts[1:].T
    off_diagonal = similarity[~np.eye(len(similarity), dtype=bool)]
    assert np.all(off_diagonal < 0.75) and abs(off_diagonal.mean() - 0.6) < 0.1
    np.testing.assert_array_equal(SimulatedFeatureExtractor().encode_texts(["red mug"]), texts[:1])
    assert extractor.encode_texts([]).shape == (0, 512)


def test_mask_features_mix_the_covered_classes(tmp_path):
    frames = crafted_world(tmp_path / "w", [0.0])
    exact = SimulatedFeatureExtractor(noise=0.0, confusion_base=0.0, confusion_occlusion=0.0)
    left = np.full((16, 16), -1, dtype=np.int32)
    left[:, :8] = 0
    features = exact.encode_masks(np.zeros((16, 16, 3), np.uint8), SegmentMap(left, 1), frames[0])
    np.testing.assert_allclose(features[0], exact.encode_texts(["red mug"])[0], atol=1e-6)
    straddling = np.full((16, 16), -1, dtype=np.int32)
    straddling[:, 4:12] = 0
    both = exact.encode_masks(np.zeros((16, 16, 3), np.uint8), SegmentMap(straddling, 1), frames[0])[0]
    scores = exact.encode_texts(["red mug", "ramen bowl", "blue book", "green apple"]) @ both
    assert abs(scores[0] - scores[1]) < 1e-5 and scores[0] > scores[2] + 0.1
    empty = exact.encode_masks(
        np.zeros((16, 16, 3), np.uint8), SegmentMap(np.full((16, 16), -1, np.int32), 0), frames[0]
    )
    assert empty.shape == (0, 512) and empty.dtype == np.float32


def test_confusion_rises_with_occlusion(tmp_path):
    names = ["red mug", "ramen bowl", "blue book", "green apple"]
    frames = crafted_world(tmp_path / "w", [0.0] * 150 + [0.8] * 150, names)
    extractor = SimulatedFeatureExtractor()
    left = np.full((16, 16), -1, dtype=np.int32)
    left[:, :8] = 0
    image = np.zeros((16, 16, 3), np.uint8)
    features = np.concatenate([extractor.encode_masks(image, SegmentMap(left, 1), frame) for frame in frames])
    wrong = _nearest_class(extractor, features, names) != 0
    clear, occluded = wrong[:150].mean(), wrong[150:].mean()
    assert clear < 0.12  # about confusion_base = 0.05
    assert occluded > clear + 0.2  # about 0.05 + 0.5 * 0.8 = 0.45
    np.testing.assert_array_equal(
        features, np.concatenate([extractor.encode_masks(image, SegmentMap(left, 1), f) for f in frames])
    )
    reseeded = SimulatedFeatureExtractor(seed=1).encode_masks(image, SegmentMap(left, 1), frames[0])
    assert not np.allclose(reseeded, features[:1])


def test_clean_masks_in_a_world_are_nearest_to_their_class(frames, tables):
    """Without confusion, every single-class mask's feature is nearest its class text, despite the noise."""
    extractor = SimulatedFeatureExtractor(confusion_base=0.0, confusion_occlusion=0.0)
    queries = [entry["query"] for entry in tables["classes"]]
    instance_class = np.array([entry["class_id"] for entry in tables["instances"]])
    for frame in frames:
        instances = read_label_map(frame.ground_truth["instance"])
        ids = np.unique(instances[instances >= 0])
        segments = np.full(instances.shape, -1, dtype=np.int32)
        for mask_id, instance in enumerate(ids):
            segments[instances == instance] = mask_id
        features = extractor.encode_masks(frame.load_image(), SegmentMap(segments, len(ids)), frame)
        assert features.shape == (len(ids), 512) and np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(_nearest_class(extractor, features, queries), instance_class[ids])


def test_plugins_need_a_synthetic_world(tmp_path):
    (tmp_path / "images").mkdir()
    frame = Frame(0, "frame_00001", tmp_path / "images" / "frame_00001.png", Camera(np.eye(4), 10, 10, 4, 4, 8, 8))
    masks = SegmentMap(np.zeros((8, 8), np.int32), 1)
    with pytest.raises(DataError, match="classes.json"):
        SimulatedFeatureExtractor().encode_masks(np.zeros((8, 8, 3), np.uint8), masks, frame)
    with pytest.raises(DataError, match="ground truth"):
        SyntheticMaskGenerator().generate(np.zeros((8, 8, 3), np.uint8), frame)


# -- CLI --------------------------------------------------------------------------------------------


def test_cli_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from cclgs_cli.synth import synth

    app = typer.Typer()
    app.command()(synth)
    app.command("other")(lambda: None)  # more than one command: the name "synth" is required, as in cclgs
    result = CliRunner().invoke(
        app,
        [
            "synth",
            str(tmp_path / "w"),
            "--seed",
            "2",
            "--width",
            "32",
            "--height",
            "32",
            "--train-views",
            "2",
            "--test-views",
            "1",
            "--objects",
            "2",
            "--cameras",
            "hemisphere",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "simulation" in result.output and (tmp_path / "w" / "transforms.json").is_file()
    defaults = {name: p.default for name, p in inspect.signature(generate_world).parameters.items()}
    for name, parameter in inspect.signature(synth).parameters.items():
        if name != "out":
            assert parameter.default.default == defaults[name], name
