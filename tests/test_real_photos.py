"""Real photographs as a user has them: instant-ngp's fox (``shared/data/real/fox``), read as
shipped: 50 handheld 1080x1920 photos, an instant-ngp ``transforms.json`` with lens distortion,
``aabb_scale`` and no sparse points. Nothing is converted by hand; every command runs through the
CLI on the shipped folder, at 1/16 resolution with short schedules, writing only into a temporary
run directory:

``cclgs fit`` (random initialisation in the aabb_scale box) -> ``cclgs preprocess`` (classical
masks, OpenCLIP ViT-B-32 at random initialisation: the real model code without its weights) ->
``cclgs train`` (reprojection tracker on the fitted Gaussians, CCL, cached backend) ->
``cclgs query``; then 100 steps of ``ns-train ccl-lgs`` on the same folder (splatfacto from random
points at 1/16 resolution, the same run config, its cache reused, the reprojection tracker given
the fitted .ply through ``--pipeline.model.cclgs-set``).

Random CLIP weights carry no meaning, so what is checked is that every stage runs on real photos
and hands the next one what it needs, and that the geometry fit learned (its PSNR on the photos
it held out, every 8th, rises well above that of its starting point). Semantic learning is
measured on the synthetic world (tests/test_query_eval.py).
"""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import invoke_cli, nerfstudio_environment, ns_train_command, run_cli

from cclgs_core.datasets.splatfacto import load_pipeline_state

FOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "fox"
DOWNSCALE = "16"  # 1080x1920 photos -> about 67x120 after undistortion

CONFIG = """
seed = 0

[mask_generator]
name = "classical"
sp_min_area = 200
wp_min_area = 800

[feature_extractor]
name = "openclip"
model_name = "ViT-B-32"
allow_random_weights = true
device = "cpu"
batch_size = 32

[tracker]
name = "reprojection"

[compressor]
name = "ccl"
num_prototypes = 16
steps = 100

[field_backend]
name = "cached"

[train]
iterations = 100
lr = 0.01
"""

pytestmark = pytest.mark.skipif(not FOX.is_dir(), reason=f"the real photos are not at {FOX}")


def cclgs(*args: object) -> str:
    """The output of the CLI run in-process (``helpers.invoke_cli``)."""
    return invoke_cli(*args).output


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fox")
    (root / "run.toml").write_text(CONFIG)
    return root


@pytest.fixture(scope="module")
def fitted(work) -> Path:
    path = work / "fox.ply"
    output = cclgs(
        "fit", FOX, "--downscale", DOWNSCALE, "--steps", "150", "--random-points", "4000", "--seed", "0", "--out", path
    )
    assert "starting from 4000 random points" in output  # no sparse points: --init auto chose random
    return path


@pytest.fixture(scope="module")
def trained(work, fitted) -> Path:
    run_dir = work / "run"
    common = ("--config", work / "run.toml", "--run", run_dir, "--downscale", DOWNSCALE)
    output = cclgs("preprocess", FOX, *common)
    assert "50 frames: masks computed for 50, features for 50" in output
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cclgs("train", FOX, *common, "--gaussians", fitted)
    assert not [w for w in caught if "cached backend" in str(w.message)]  # adaptive top_k: nothing left out
    return run_dir


def test_the_fox_reads_as_shipped():
    from cclgs_core.datasets import load_scene

    scene = load_scene(FOX, downscale=16)
    assert len(scene.frames) == 50 and scene.points_path is None
    frame = scene.frames[0]
    assert frame.distortion is not None  # k1, k2, p1, p2 in transforms.json
    assert (frame.distortion.source.width, frame.distortion.source.height) == (1080, 1920)
    assert frame.load_image().shape == (frame.camera.height, frame.camera.width, 3)
    # instant-ngp's aabb_scale 4 with its default scale 0.33 and offset 0.5: +-2 / 0.33 in the world
    np.testing.assert_allclose(scene.bounds, [[-2 / 0.33] * 3, [2 / 0.33] * 3])


def test_the_fox_posed_by_an_llff_file_keeps_its_geometry(tmp_path):
    """The fox's poses written as LLFF's imgs2poses writes them, read back as a 3D-OVS scene as
    released: every camera sees every other where it did, at the authors' scale 1 / (0.75 near)."""
    from PIL import Image

    from cclgs_core.datasets import load_scene

    fox = sorted(load_scene(FOX).frames, key=lambda frame: frame.image_path.name)
    scene_dir = tmp_path / "fox_3dovs"
    (scene_dir / "images").mkdir(parents=True)
    (scene_dir / "segmentations" / "00").mkdir(parents=True)
    (scene_dir / "segmentations" / "classes.txt").write_text("fox\n")
    Image.new("L", (1080, 1920)).save(scene_dir / "segmentations" / "00" / "fox.png")
    rows = []
    for frame in fox:
        (scene_dir / "images" / frame.image_path.name).symlink_to(frame.image_path.resolve())
        right, down, forward, centre = frame.camera.camera_to_world[:3].T  # OpenCV axes
        matrix = np.stack([down, right, -forward, centre, [1920.0, 1080.0, 1375.0]], axis=1)  # LLFF's 3x5
        rows.append([*matrix.reshape(-1), 2.0, 30.0])
    np.save(scene_dir / "poses_bounds.npy", np.array(rows))

    scene = load_scene(scene_dir, downscale=8)
    assert [frame.name for frame in scene.frames] == [frame.image_path.stem for frame in fox]
    assert {(frame.camera.width, frame.camera.height) for frame in scene.frames} == {(135, 240)}
    assert scene.frames[0].load_image().shape == (240, 135, 3)
    scale = 1 / (0.75 * 2.0)
    first, first_fox = scene.frames[0].camera.camera_to_world, fox[0].camera.camera_to_world
    for frame, fox_frame in zip(scene.frames, fox):
        pose, fox_pose = frame.camera.camera_to_world, fox_frame.camera.camera_to_world
        assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0, abs=1e-4)  # a rotation, not the authors' mirror image
        # Pose relative to the first camera: the same rotation, the translation scaled.
        np.testing.assert_allclose(first[:3, :3].T @ pose[:3, :3], first_fox[:3, :3].T @ fox_pose[:3, :3], atol=1e-9)
        np.testing.assert_allclose(
            first[:3, :3].T @ (pose[:3, 3] - first[:3, 3]),
            scale * first_fox[:3, :3].T @ (fox_pose[:3, 3] - first_fox[:3, 3]),
            atol=1e-9,
        )


def test_fit_raises_heldout_psnr_on_the_photos(fitted):
    """``cclgs fit`` held out every 8th photo and measured them before and after its 150 steps."""
    report = json.loads(fitted.with_name("fox_fit.json").read_text())
    assert len(report["heldout_views"]) == 7 and report["train_views"] == 43  # views 0, 8, ..., 48 of 50
    start, final = report["heldout"][0], report["heldout"][-1]
    assert start["step"] == 0 and final["step"] == report["steps"] == 150
    assert final["heldout_psnr_db"] > start["heldout_psnr_db"] + 3.0, report["heldout"]  # dB on unseen photos


def test_the_cached_backend_covers_the_fitted_fox_and_warns_once(fitted):
    from cclgs_core.datasets import load_scene
    from cclgs_core.plumbing.registry import get_registry
    from cclgs_core.scene.ply import read_gaussians

    cameras = [frame.camera for frame in load_scene(FOX, downscale=16).frames[::5]]
    gaussians = read_gaussians(fitted)  # fuzzy after 150 steps from random points: dozens of Gaussians per pixel
    adaptive = get_registry().create("field_backend", "cached")  # the defaults
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adaptive.prepare(gaussians, cameras)
    assert adaptive.stats["max_uncovered"] <= adaptive.tolerance + 1e-5 < adaptive.warn_uncovered  # float32 sums
    former_default = get_registry().create("field_backend", "cached", {"top_k": 16, "tolerance": 0.0})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        former_default.prepare(gaussians, cameras)
    assert former_default.stats["views_over_warning"] == len(cameras) == 10  # every view leaves too much out ...
    assert len([w for w in caught if "cached backend" in str(w.message)]) == 1  # ... and one warning says so


def test_preprocess_train_and_query_run_on_the_photos(trained, fitted, work):
    record = json.loads((trained / "run.json").read_text())
    assert record["scene"] == str(FOX) and record["gaussians"] == str(fitted.resolve())
    assert len(record["trained_frames"]) == 50
    labels = np.load(next((trained / "cache" / "labels").glob("*/wp.npz")))
    linked = sum(int((labels[name] >= 0).sum()) for name in labels.files)
    assert linked > 0  # the reprojection tracker matched masks across the photos through the fitted geometry
    assert (trained / "field" / "semantic_field.pt").is_file()

    # The fox has no test split: the query goes to every 8th training view, as nerfstudio holds out.
    output = cclgs("query", trained, "--text", "a fox", "--out", work / "query")
    every_8th = ["0001", "0012", "0027", "0042", "0073", "0089", "0110"]  # frames 0, 8, ..., 48 by name
    assert f"querying every 8th training view (the scene has no test split): {', '.join(every_8th)}" in output
    answers = json.loads((work / "query" / "query.json").read_text())["answers"]
    assert [answer["frame"] for answer in answers] == every_8th
    for answer in answers:
        assert (work / "query" / answer["relevance_png"]).is_file() and (work / "query" / answer["mask_png"]).is_file()

    # The same query again, in another process: the same files, byte for byte.
    again = run_cli("query", str(trained), "--text", "a fox", "--out", str(work / "query_again"))
    assert again.returncode == 0, again.stderr[-3000:]
    first = {path.relative_to(work / "query"): path.read_bytes() for path in (work / "query").rglob("*.*")}
    second = {path.relative_to(work / "query_again"): path.read_bytes() for path in (work / "query_again").rglob("*.*")}
    assert len(first) == 1 + 2 * len(every_8th) and first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_preprocess_with_efficientnet_features_on_the_photos(trained, work):
    """Real pretrained features (EfficientNet-Lite0 with its ImageNet weights) for the fox's masks;
    the masks come from the cache of the run above (same mask generator), the features are new."""
    config = work / "efficientnet.toml"
    openclip = 'name = "openclip"\nmodel_name = "ViT-B-32"\nallow_random_weights = true'
    config.write_text(CONFIG.replace(openclip, 'name = "efficientnet"'))
    output = cclgs("preprocess", FOX, "--config", config, "--run", trained, "--downscale", DOWNSCALE)
    assert "50 frames: masks computed for 0, features for 50" in output
    frames = [np.load(path) for path in (trained / "cache" / "features").glob("*/0001.npz")]
    efficientnet = [frame for frame in frames if frame["sp_features"].shape[1] == 1280]  # beside OpenCLIP's 512
    assert len(efficientnet) == 1
    rows = np.concatenate([efficientnet[0][name] for name in efficientnet[0].files])  # every mask, both levels
    assert len(rows) > 0 and np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_ns_train_ccl_lgs_runs_100_steps_on_the_photos(trained, fitted, work):
    command = ns_train_command(
        FOX,
        work / "outputs",
        "fox",
        "cpu",
        work / "run.toml",
        trained,
        "--pipeline.model.cclgs-downscale",
        DOWNSCALE,
        "--pipeline.model.cclgs-set",
        f"tracker.gaussians={fitted}",
        "--pipeline.model.num-downscales",
        "4",  # splatfacto trains at 1/16 resolution for its first 3000 steps
        "--pipeline.model.num-random",
        "4000",
    )
    result = subprocess.run(command, capture_output=True, text=True, env=nerfstudio_environment(), timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert "semantic targets for 45 of 45 training images" in " ".join(log.split())  # nerfstudio holds out 5
    checkpoint = next((work / "outputs" / "fox" / "ccl-lgs" / "run" / "nerfstudio_models").glob("step-*.ckpt"))
    state = load_pipeline_state(checkpoint)
    features = state["_model.gauss_params.semantic_features"]  # (N, levels * d_f)
    assert features.shape[0] == state["_model.gauss_params.means"].shape[0] and torch.isfinite(features).all()
