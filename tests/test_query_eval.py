"""`cclgs query` and `cclgs eval` end to end on a tiny synthetic world (a simulation) and on
LERF-OVS and 3D-OVS fixtures written from it.

One world (48x48, 10 training + 2 held-out views) is trained once under the held-out protocol
with noise-free simulated masks and features, so that what is measured is the query and
evaluation path, not the simulation's noise. The fixtures copy the world's cameras into a
COLMAP model, so a field trained on the world is evaluated on exactly the same views.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import NOISE_FREE_SYNTHETIC_CONFIG
from helpers import invoke_cli as cclgs
from PIL import Image

from cclgs_core.datasets import load_scene
from cclgs_core.errors import ConfigError, DataError
from cclgs_core.evaluation.labelmaps import read_label_map

CONFIG = (
    NOISE_FREE_SYNTHETIC_CONFIG
    + """
[field_backend]
name = "cached"
top_k = 64

[train]
iterations = 100
lr = 0.05
"""
)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from cclgs_synthetic.world import generate_world

    root = tmp_path_factory.mktemp("query_eval")
    (root / "run.toml").write_text(CONFIG)
    return generate_world(
        root / "world",
        seed=0,
        objects=3,
        width=48,
        height=48,
        train_views=10,
        test_views=2,
        density=250.0,
        renderer="torch",
    )


@pytest.fixture(scope="module")
def trained(world) -> tuple[Path, str]:
    """The run directory of ``cclgs train`` on the world, and what the command printed."""
    run_dir = world.parent / "run_heldout"
    output = cclgs("train", world, "--config", world.parent / "run.toml", "--run", run_dir).output
    return run_dir, output


@pytest.fixture(scope="module")
def run(trained) -> Path:
    return trained[0]


@pytest.fixture(scope="module")
def langsplat_run(world) -> Path:
    """The world trained under LangSplat's protocol: every view, the labelled ones included."""
    run_dir = world.parent / "run_langsplat"
    cclgs("train", world, "--config", world.parent / "run.toml", "--run", run_dir, "--protocol", "langsplat")
    return run_dir


@pytest.fixture(scope="module")
def synthetic_report(run) -> tuple[Path, dict]:
    out = run.parent / "eval_synthetic"
    result = cclgs("eval", "synthetic", run, "--out", out)
    assert "protocol: heldout" in result.output
    return out, json.loads((out / "report.json").read_text())


def world_classes(world: Path) -> dict[str, int]:
    return {entry["query"]: entry["id"] for entry in json.loads((world / "classes.json").read_text())["classes"]}


def write_colmap_copy(world: Path, scene_dir: Path, upscale: int = 1) -> list:
    """The world's views as a COLMAP text model with JPEG images, ``upscale`` times their size;
    returns the world's frames."""
    from nerfstudio.data.utils import colmap_parsing_utils as colmap

    frames = load_scene(world).frames
    camera = frames[0].camera.scaled(upscale)
    cameras = {
        1: colmap.Camera(
            1, "PINHOLE", camera.width, camera.height, np.array([camera.fx, camera.fy, camera.cx, camera.cy])
        )
    }
    images = {}
    (scene_dir / "images").mkdir(parents=True)
    for index, frame in enumerate(frames, start=1):
        name = f"{frame.name}.jpg"
        image = Image.fromarray(frame.load_image())
        image.resize((camera.width, camera.height), Image.Resampling.NEAREST).save(
            scene_dir / "images" / name, quality=95
        )
        world_to_camera = frame.camera.world_to_camera
        images[index] = colmap.Image(
            index,
            colmap.rotmat2qvec(world_to_camera[:3, :3]),
            world_to_camera[:3, 3],
            1,
            name,
            np.zeros((0, 2)),
            np.zeros(0, dtype=int),
        )
    (scene_dir / "sparse" / "0").mkdir(parents=True)
    colmap.write_model(cameras, images, {}, str(scene_dir / "sparse" / "0"), ext=".txt")
    return frames


def write_lerf_fixture(world: Path, root: Path) -> Path:
    """LERF-OVS layout: images/frame_XXXXX.jpg, sparse/0, ../label/<scene>/frame_XXXXX.json with the
    real files' quirks (CRLF line endings, ``"iscrowd": false``)."""
    scene_dir = root / "lerf_ovs" / "tiny"
    for frame in write_colmap_copy(world, scene_dir):
        if "objects" in frame.ground_truth:
            text = Path(frame.ground_truth["objects"]).read_text().replace('"iscrowd": 0', '"iscrowd": false')
            label = root / "lerf_ovs" / "label" / "tiny" / f"{frame.name}.json"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_bytes(text.replace("\n", "\r\n").encode())
    return scene_dir


def write_3dovs_fixture(
    world: Path, root: Path, upscale: int = 1, grey_edge: int = 0, absent_classes: tuple[str, ...] = ()
) -> Path:
    """3D-OVS layout: segmentations/classes.txt and segmentations/<NN>/<class>.png of the world's
    test views, ``upscale`` times the world's size; with ``grey_edge``, each mask has a band of
    that many pixels of grey 200 around its class (anti-aliasing, which the authors' 255 rule reads
    as background). ``absent_classes`` are listed too, with empty masks in every view."""
    from scipy.ndimage import binary_dilation

    scene_dir = root / "3dovs" / "tiny"
    frames = write_colmap_copy(world, scene_dir, upscale)
    classes = {**world_classes(world), **{name: None for name in absent_classes}}
    (scene_dir / "segmentations").mkdir()
    (scene_dir / "segmentations" / "classes.txt").write_text("\n".join(classes) + "\n")
    for position, frame in enumerate(frames):  # frames are sorted by image name, like 3D-OVS's images
        if frame.split == "test":
            folder = scene_dir / "segmentations" / f"{position:02d}"
            folder.mkdir()
            class_map = np.kron(read_label_map(frame.ground_truth["class"]), np.ones((upscale, upscale), dtype=int))
            for name, class_id in classes.items():
                mask = class_map == class_id if class_id is not None else np.zeros(class_map.shape, bool)
                edge = binary_dilation(mask, iterations=grey_edge) & ~mask if grey_edge else np.zeros_like(mask)
                Image.fromarray(np.where(mask, 255, np.where(edge, 200, 0)).astype(np.uint8)).save(
                    folder / f"{name}.png"
                )
    return scene_dir


# -- train records the run -------------------------------------------------------------------------


def test_train_records_scene_protocol_and_frames(world, run):
    info = json.loads((run / "run.json").read_text())
    test_frames = [frame.name for frame in load_scene(world).split("test")]
    assert info["scene"] == str(world.resolve()) and info["downscale"] == 1 and info["protocol"] == "heldout"
    assert info["evaluation_frames"] == test_frames and not set(test_frames) & set(info["trained_frames"])
    assert len(info["trained_frames"]) == 10 and (run / info["field"]).is_file()
    assert info["field_backend"]["name"] == "cached" and info["field_backend"]["options"]["top_k"] == 64


def test_train_output_not_on_a_terminal_shows_each_stage_as_lines(trained):
    lines = trained[1].splitlines()
    for stage, total in [("masks and features", 10), ("track labels", 1), ("compression", 1), ("semantic field", 100)]:
        assert any(line.startswith(f"{stage}: {total}/{total} (100%), ") for line in lines), stage


# -- synthetic -------------------------------------------------------------------------------------


def test_synthetic_eval_reports_learned_held_out_segmentation(world, synthetic_report):
    out, report = synthetic_report
    assert report["benchmark"] == "synthetic" and "simulation" in report["benchmark_description"]
    assert report["protocol"] == "heldout" and report["protocol_description"].endswith("not trained on")
    (scene,) = report["scenes"]
    assert scene["frames"] == 2 and scene["trained_on"] == 0
    categories = {query["category"] for query in scene["queries"]}
    assert categories <= set(world_classes(world)) and len(scene["queries"]) >= 6
    # Learning happened: held-out masks overlap the truth (after 1 iteration instead of 100 the mIoU is 0.0).
    assert report["miou"] == scene["miou"] > 0.35 and scene["localization"] >= 0.5
    markdown = (out / "report.md").read_text()
    assert "**Protocol: heldout**" in markdown and "a simulation" in markdown
    for query in scene["queries"]:
        assert f"]({query['picture']})" in markdown
        with Image.open(out / query["picture"]) as picture:
            assert picture.size[0] > 3 * picture.size[1]  # image | truth | relevance | mask


# -- LERF-OVS ----------------------------------------------------------------------------------------


def test_lerf_fixture_through_cclgs_eval_lerf(world, run, synthetic_report, tmp_path):
    scene_dir = write_lerf_fixture(world, tmp_path)
    scene = load_scene(scene_dir)
    assert [frame.name for frame in scene.split("test")] == [frame.name for frame in load_scene(world).split("test")]
    out = tmp_path / "eval_lerf"
    result = cclgs("eval", "lerf", run, "--scene", scene_dir, "--out", out)
    assert "lerf — protocol: heldout" in result.output
    report = json.loads((out / "report.json").read_text())
    assert (
        report["benchmark"] == "lerf"
        and report["protocol"] == "heldout"
        and "LangSplat" in report["benchmark_description"]
    )
    (scene_report,) = report["scenes"]
    assert scene_report["name"] == "tiny" and scene_report["frames"] == 2 and scene_report["trained_on"] == 0
    # Same cameras, same polygons: the COLMAP copy scores exactly what the world scores.
    expected = {(q["frame"], q["category"]): q["iou"] for q in synthetic_report[1]["scenes"][0]["queries"]}
    assert {(q["frame"], q["category"]): q["iou"] for q in scene_report["queries"]} == pytest.approx(expected)
    with pytest.raises(DataError, match="not a synthetic world"):
        cclgs("eval", "synthetic", run, "--scene", scene_dir, "--out", tmp_path / "wrong")


def test_langsplat_protocol_trains_on_the_evaluation_frames(world, run, langsplat_run, tmp_path):
    langsplat = langsplat_run
    info = json.loads((langsplat / "run.json").read_text())
    assert info["protocol"] == "langsplat" and set(info["evaluation_frames"]) <= set(info["trained_frames"])
    assert len(info["trained_frames"]) == 12
    out = tmp_path / "eval"
    cclgs("eval", "synthetic", langsplat, "--out", out)
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "langsplat" and report["scenes"][0]["trained_on"] == 2
    assert "**Protocol: langsplat**" in (out / "report.md").read_text()
    with pytest.raises(ConfigError, match="different protocols"):
        cclgs("eval", "synthetic", run, langsplat, "--out", tmp_path / "mixed")
    with pytest.raises(ConfigError, match="unknown evaluation protocol"):
        cclgs("train", world, "--run", tmp_path / "bad", "--protocol", "lenient")


# -- 3D-OVS ------------------------------------------------------------------------------------------


def test_3dovs_fixture_through_cclgs_eval_3dovs(world, run, tmp_path):
    scene_dir = write_3dovs_fixture(world, tmp_path)
    scene = load_scene(scene_dir)
    assert scene.class_names == tuple(sorted(world_classes(world)))
    assert [frame.name for frame in scene.split("test")] == [frame.name for frame in load_scene(world).split("test")]
    with pytest.raises(DataError, match=r"3dovs-original protocol scores runs trained on every view.*--protocol cclgs"):
        cclgs("eval", "3dovs", run, "--scene", scene_dir, "--out", tmp_path / "refused")
    out = tmp_path / "eval_3dovs"
    result = cclgs("eval", "3dovs", run, "--scene", scene_dir, "--out", out, "--protocol", "cclgs")
    assert "3dovs — protocol: heldout" in result.output and "accuracy %" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["benchmark"] == "3dovs" and report["protocol"] == "heldout" and report["localization"] is None
    assert (
        "a class absent from both the truth and the prediction of a view is skipped" in report["protocol_description"]
    )
    (scene_report,) = report["scenes"]
    assert scene_report["frames"] == 2 and set(scene_report["per_category"]) <= set(scene.class_names)
    assert all(query["localized"] is None for query in scene_report["queries"])
    assert scene_report["miou"] > 0.35 and report["accuracy"] == scene_report["accuracy"] > 0.5

    (scene_dir / "segmentations" / "00").mkdir(exist_ok=True)
    with pytest.raises(DataError, match=r"00: no mask .*\.png"):
        load_scene(scene_dir)


def test_3dovs_original_scores_grey_edged_and_clean_masks_alike(world, langsplat_run, tmp_path):
    """The authors' protocol on the released layout (8x the world's size, evaluated at 1/8): grey
    mask edges change nothing, absent classes count 0, and the numbers relate to the project's
    scoring of the same views exactly."""
    from cclgs_core.datasets.three_d_ovs import read_class_masks

    clean = write_3dovs_fixture(world, tmp_path / "clean", upscale=8, absent_classes=("teapot",))
    edged = write_3dovs_fixture(world, tmp_path / "edged", upscale=8, grey_edge=6, absent_classes=("teapot",))
    classes = list(load_scene(clean).class_names)
    labelled = [frame for frame in load_scene(clean, downscale=8).frames if frame.split == "test"]

    def read_at_least_128(path: Path) -> np.ndarray:
        """(48, 48) bool: the mask at 1/8 under the rule cclgs had before, grey >= 128 is the class."""
        with Image.open(path) as image:
            return np.asarray(image.resize((48, 48), Image.Resampling.NEAREST)) >= 128

    # The edges reach pixels that 1/8 sampling reads: a ">= 128" rule would read more class there.
    for frame in labelled:
        folder = edged / "segmentations" / Path(frame.ground_truth["class_masks"]).name
        assert (frame.camera.width, frame.camera.height) == (48, 48)
        wide = np.stack([read_at_least_128(folder / f"{name}.png") for name in classes])
        assert not np.array_equal(wide, read_class_masks(folder, classes, (48, 48)))

    reports = {}
    for name, scene_dir in (("clean", clean), ("edged", edged)):
        out = tmp_path / f"eval_{name}"
        result = cclgs("eval", "3dovs", langsplat_run, "--scene", scene_dir, "--out", out)
        assert "3dovs — protocol: 3dovs-original" in result.output
        reports[name] = json.loads((out / "report.json").read_text())
    scores = {
        name: [(q["frame"], q["category"], q["iou"]) for q in report["scenes"][0]["queries"]]
        for name, report in reports.items()
    }
    assert scores["clean"] == scores["edged"]
    assert (
        reports["clean"]["miou"] == reports["edged"]["miou"]
        and reports["clean"]["accuracy"] == reports["edged"]["accuracy"]
    )
    report = reports["clean"]
    assert report["protocol"] == "3dovs-original" and "int(W / 8)" in report["protocol_description"]
    assert "**Protocol: 3dovs-original**" in (tmp_path / "eval_clean" / "report.md").read_text()
    (scene_report,) = report["scenes"]
    assert scene_report["frames"] == 2 and scene_report["trained_on"] == 2 and len(scores["clean"]) == 2 * len(classes)

    # The project's scoring of the same views at the same size keeps the same IoUs but skips the
    # classes absent from a view's truth and prediction: the authors' mean counts them as 0.
    out = tmp_path / "eval_project"
    cclgs("eval", "3dovs", langsplat_run, "--scene", clean, "--out", out, "--protocol", "cclgs", "--downscale", "8")
    project = json.loads((out / "report.json").read_text())
    kept = {(q["frame"], q["category"]): q["iou"] for q in project["scenes"][0]["queries"]}
    absent = [(frame, category) for frame, category, iou in scores["clean"] if (frame, category) not in kept]
    assert absent and all(iou == 0.0 for frame, category, iou in scores["clean"] if (frame, category) in absent)
    assert {(frame, category): iou for frame, category, iou in scores["clean"] if (frame, category) in kept} == kept
    assert report["miou"] == pytest.approx(sum(kept.values()) / (2 * len(classes)))
    assert project["miou"] == pytest.approx(sum(kept.values()) / len(kept))
    assert project["miou"] > report["miou"]
    assert project["accuracy"] == report["accuracy"]
    # Learning happened: the relevance argmax labels most pixels right (chance: 1 / len(classes)).
    assert report["accuracy"] > 0.6

    with pytest.raises(ConfigError, match=r"evaluates at 1/8 .* drop --downscale 4"):
        cclgs("eval", "3dovs", langsplat_run, "--scene", clean, "--out", tmp_path / "refused", "--downscale", "4")


# -- query -------------------------------------------------------------------------------------------


def test_query_writes_heatmaps_and_masks_that_find_the_object(world, run, tmp_path):
    out = tmp_path / "queries"
    result = cclgs("query", run, "--text", "ramen bowl", "--text", "desk lamp", "--all", "--out", out)
    assert "level" in result.output and "querying views: 2/2 (100%)" in result.output
    summary = json.loads((out / "query.json").read_text())
    frames = load_scene(world).split("test")
    assert len(summary["answers"]) == 2 * len(frames) and summary["threshold"] == 0.5
    class_id = world_classes(world)["ramen bowl"]
    for answer in summary["answers"]:
        with Image.open(out / answer["relevance_png"]) as heatmap, Image.open(out / answer["mask_png"]) as mask_image:
            assert heatmap.size == (48, 48) and heatmap.mode == "RGB" and mask_image.size == (48, 48)
            mask = np.asarray(mask_image)
        assert set(np.unique(mask)) <= {0, 255} and answer["level"] in ("sp", "wp")
        if answer["text"] == "ramen bowl":
            frame = next(frame for frame in frames if frame.name == answer["frame"])
            truth = read_label_map(frame.ground_truth["class"]) == class_id
            selected = mask == 255
            assert (selected & truth).sum() / max(selected.sum(), 1) > 0.6  # what is selected is mostly the bowl

    view = cclgs(
        "query", run, "--text", "ramen bowl", "--view", frames[0].name, "--split", "train", "--out", tmp_path / "one"
    )
    assert view.output.count("level") == 1
    with pytest.raises(DataError, match="no frame named 'nope'"):
        cclgs("query", run, "--text", "ramen bowl", "--view", "nope", "--out", tmp_path / "none")


def test_query_exports_the_selected_gaussians_as_a_standard_ply(world, run, tmp_path):
    from cclgs_core.plumbing.registry import get_registry
    from cclgs_core.scene.ply import read_gaussians

    path = tmp_path / "bowl.ply"
    cclgs("query", run, "--text", "ramen bowl", "--export-ply", path)
    selected, everything = read_gaussians(path), read_gaussians(world / "gaussians.ply")
    assert 0 < len(selected) < len(everything) and selected.sh.shape[1:] == everything.sh.shape[1:]
    # Rendered from the held-out views, the exported Gaussians cover the bowl, and where they are
    # not hidden behind other objects (depth of the whole scene) they are mostly the bowl.
    backend = get_registry().create("field_backend", "torch")
    for frame in load_scene(world).split("test"):
        alone = backend.render(selected, selected.means.new_zeros(len(selected), 1), frame.camera)
        scene = backend.render(everything, everything.means.new_zeros(len(everything), 1), frame.camera)
        covered = alone.alpha.numpy() > 0.5
        visible = covered & (alone.depth.numpy() <= 1.02 * scene.depth.numpy())
        truth = read_label_map(frame.ground_truth["class"]) == world_classes(world)["ramen bowl"]
        assert (covered & truth).sum() / truth.sum() > 0.8 and (visible & truth).sum() / visible.sum() > 0.6
    with pytest.raises(ConfigError, match="single --text"):
        cclgs("query", run, "--text", "a", "--text", "b", "--export-ply", path)


def test_train_gaussians_reach_the_reprojection_tracker_and_config_lists_the_option(world, tmp_path):
    """A scene that names no Gaussians, trained with --gaussians: the reprojection tracker uses them."""
    import shutil

    scene = tmp_path / "scene"
    shutil.copytree(world, scene, ignore=shutil.ignore_patterns("cclgs", "gaussians.ply"))
    meta = json.loads((scene / "transforms.json").read_text())
    del meta["gaussians_file_path"]
    (scene / "transforms.json").write_text(json.dumps(meta))
    assert load_scene(scene).gaussians_path is None
    overrides = ["--set", "tracker.name=reprojection", "--set", "train.iterations=5"]
    args = ("train", scene, "--config", world.parent / "run.toml", *overrides, "--run", tmp_path / "run")
    with pytest.raises(DataError, match="names no Gaussians; pass --gaussians"):
        cclgs(*args)
    cclgs(*args, "--gaussians", world / "gaussians.ply")
    labels = np.load(next((tmp_path / "run" / "cache" / "labels").glob("*/wp.npz")))
    assert max(int(labels[name].max()) for name in labels.files) >= 0  # the tracker linked masks across views
    shown = cclgs("config", "--set", "tracker.name=reprojection").output
    assert "[tracker]" in shown and "# gaussians = ...  (unset)" in shown


def test_query_and_eval_name_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="no run.json"):
        cclgs("query", tmp_path, "--text", "mug")
    with pytest.raises(DataError, match="no such run directory or field file"):
        cclgs("query", tmp_path / "absent.pt", "--text", "mug")
    with pytest.raises(DataError, match="no run.json"):
        cclgs("eval", "lerf", tmp_path, "--out", tmp_path / "out")


# -- pieces --------------------------------------------------------------------------------------------


def test_latent_relevance_in_chunks_equals_the_direct_computation():
    import torch

    from cclgs_core.plumbing.registry import get_registry
    from cclgs_core.stages.query import level_relevance
    from cclgs_core.stages.relevance import relevance
    from cclgs_core.stages.semantic_field import SemanticField

    rng = np.random.default_rng(0)
    features = rng.standard_normal((20, 512)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    compressors = {}
    for level in ("sp", "wp"):
        compressors[level] = get_registry().create("compressor", "autoencoder", {"steps": 3})
        compressors[level].fit([features], [np.full(20, -1)], seed=0)
    field = SemanticField(70_000, compressors)
    rendered = torch.randn(70_000, 16)  # more rows than one chunk of 65536
    queries, canonical = (torch.nn.functional.normalize(torch.randn(n, 512), dim=1) for n in (2, 4))
    chunked = level_relevance(field, rendered, "wp", queries, canonical)
    with torch.no_grad():
        direct = relevance(compressors["wp"].decode(field.outputs(rendered, "wp")), queries, canonical)
    assert chunked.shape == (2, 70_000) and torch.allclose(chunked, direct, atol=1e-6)


def test_pictures_and_names():
    from cclgs_core.evaluation.visualize import colormap, heatmap_overlay, panel_row, slug

    assert slug("  Red mug! (left) ") == "red_mug_left" and slug("???") == "query"
    ends = colormap(np.array([[0.0, 1.0, 2.0]]))
    assert tuple(ends[0, 0]) == (20, 20, 90) and tuple(ends[0, 1]) == tuple(ends[0, 2]) == (220, 30, 20)
    image = np.full((4, 5, 3), 100, np.uint8)
    overlay = heatmap_overlay(image, np.array([[0.5] * 5, [1.0] * 5, [0.2] * 5, [0.75] * 5]), 0.5, 1.0)
    assert (overlay[0] == 100).all() and (overlay[2] == 100).all() and (overlay[1] != 100).any()
    row = panel_row([image, image], min_height=8, gap=3)
    assert row.shape == (8, 2 * 10 + 3, 3) and (row[:, 10:13] == 255).all()


def test_query_views_default_to_the_test_split_else_every_8th_training_view():
    from dataclasses import replace

    from cclgs_core.stages.query import choose_frames
    from cclgs_core.types import Camera, Frame, Scene

    camera = Camera(np.eye(4), 10.0, 10.0, 4.0, 4.0, 8, 8)
    frames = [Frame(index, f"v{index:02d}", Path(f"v{index:02d}.png"), camera) for index in range(20)]
    scene = Scene(root=Path("scene"), frames=frames)
    chosen, how = choose_frames(scene)
    assert [frame.name for frame in chosen] == ["v00", "v08", "v16"] and "no test split" in how
    assert len(choose_frames(scene, all_views=True)[0]) == 20
    scene.frames = [replace(frame, split="test") if frame.index in (5, 11) else frame for frame in frames]
    assert [frame.name for frame in choose_frames(scene)[0]] == ["v05"]
    assert [frame.name for frame in choose_frames(scene, all_views=True)[0]] == ["v05", "v11"]
    assert [frame.name for frame in choose_frames(scene, split="train")[0]] == ["v00"]
    with pytest.raises(ConfigError, match="auto, train or test"):
        choose_frames(scene, split="val")


def test_a_query_by_example_finds_its_object_in_the_held_out_views(world, run, tmp_path):
    """An example region of the bowl in one training view, through the CLI; scored against the bowl's
    ground truth in the held-out views. Chance level: a mask of the whole view, whose IoU is the bowl's
    share of the view."""
    scene = load_scene(world)
    bowl = world_classes(world)["ramen bowl"]
    example = max(scene.split("train"), key=lambda frame: (read_label_map(frame.ground_truth["class"]) == bowl).sum())
    region = read_label_map(example.ground_truth["class"]) == bowl  # (H, W)
    mask_path = tmp_path / "bowl.png"
    Image.fromarray(region.astype(np.uint8) * 255).save(mask_path)
    out = tmp_path / "by_example"
    result = cclgs("query", run, "--exemplar-view", example.name, "--exemplar-mask", mask_path, "--all", "--out", out)
    assert f"example: mask bowl.png in {example.name}" in result.output
    answers = json.loads((out / "query.json").read_text())["answers"]
    held_out = {frame.name: frame for frame in scene.split("test")}
    assert [answer["frame"] for answer in answers] == list(held_out)
    scores, chance = [], []
    for answer in answers:
        truth = read_label_map(held_out[answer["frame"]].ground_truth["class"]) == bowl
        with Image.open(out / answer["mask_png"]) as mask_image:
            selected = np.asarray(mask_image) == 255
        scores.append((selected & truth).sum() / (selected | truth).sum())
        chance.append(truth.mean())
    assert np.mean(scores) > max(0.5, 2 * np.mean(chance)), (scores, chance)

    rows, cols = np.nonzero(region)
    box = f"{cols.min()},{rows.min()},{cols.max() + 1},{rows.max() + 1}"
    centre = f"{int(np.median(cols))},{int(np.median(rows))}"
    for option, value in (("--exemplar-box", box), ("--exemplar-point", centre)):
        other = tmp_path / option.strip("-")
        cclgs("query", run, "--exemplar-view", example.name, option, value, "--all", "--out", other)
        assert len(json.loads((other / "query.json").read_text())["answers"]) == len(held_out)
    with pytest.raises(ConfigError, match="either --text"):
        cclgs("query", run, "--text", "bowl", "--exemplar-view", example.name, "--exemplar-box", box)
