"""The nerfstudio method ``ccl-lgs``: registration, a CPU run of nerfstudio's real trainer, and reload.

The scene is a small synthetic world (``cclgs_synthetic``: a table with three objects, 10
training and 2 held-out views at 32x32, in nerfstudio's format with sparse points). Its masks
and features are the noise-free simulation (ground-truth parts and wholes; class embeddings
without noise or confusion), so the targets agree across views; the compressor is the plain
codebook. All of it is a simulation.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import NERFSTUDIO_ENV, NOISE_FREE_SYNTHETIC_CONFIG, nerfstudio_environment, ns_train_command

from cclgs_core.datasets.splatfacto import load_pipeline_state

#: The class queried in the tests; the world of seed 0 with three objects holds one ramen bowl.
QUERY = "ramen bowl"


def write_world(root: Path) -> Path:
    """A synthetic world of 12 views at 32x32 (2 held out) with 300 sparse points."""
    from cclgs_synthetic.world import generate_world

    return generate_world(
        root,
        seed=0,
        objects=3,
        width=32,
        height=32,
        train_views=10,
        test_views=2,
        density=250.0,
        sparse_points=300,
        renderer="torch",
    )


def train_command(root: Path, scene: Path, device: str) -> list[str]:
    """``ns-train ccl-lgs`` on the world: 100 iterations at full resolution on a white background.
    Refinement runs every 10 steps after a warm-up of 10; gsplat's strategy pauses it until step
    20 (training views + refine_every), so the Gaussians are split, duplicated and pruned
    every 10 steps from step 20 on. The semantic learning rates are raised from 1e-3 so that
    100 steps suffice to learn the classes."""
    return ns_train_command(
        scene,
        root / "outputs",
        "world",
        device,
        root / "run.toml",
        root / "cclgs",
        "--pipeline.model.num-downscales",
        "0",
        "--pipeline.model.warmup-length",
        "10",
        "--pipeline.model.refine-every",
        "10",
        "--pipeline.model.backend-densify-grad-thresh",
        "0.001",
        "--pipeline.model.sh-degree",
        "1",
        "--pipeline.model.background-color",
        "white",
        "--optimizers.semantic-features.optimizer.lr",
        "0.02",
        "--optimizers.semantic-heads.optimizer.lr",
        "0.01",
    )


def train_and_save_field(root: Path, device: str) -> dict:
    """Write the world and the run config under ``root``, then train."""
    scene = write_world(root / "world")
    (root / "run.toml").write_text(NOISE_FREE_SYNTHETIC_CONFIG)
    result = subprocess.run(
        train_command(root, scene, device), capture_output=True, text=True, env=nerfstudio_environment(), timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    config_path = root / "outputs" / "world" / "ccl-lgs" / "run" / "config.yml"
    return {"root": root, "scene": scene, "config": config_path, "log": result.stdout + result.stderr}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One CPU training run of ``ns-train ccl-lgs`` (see ``train_command``)."""
    return train_and_save_field(tmp_path_factory.mktemp("ccl_lgs"), "cpu")


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_renders_with_gsplat_and_keeps_semantics_through_densification(tmp_path):
    run = train_and_save_field(tmp_path, "cuda")
    state = load_pipeline_state(next((run["config"].parent / "nerfstudio_models").glob("*.ckpt")))
    count = state["_model.gauss_params.means"].shape[0]
    assert "GSs split" in run["log"]
    assert state["_model.gauss_params.semantic_features"].shape == (count, 16)


@pytest.fixture(scope="module")
def reloaded(trained_run):
    """The trained run reloaded in this process by nerfstudio's ``eval_setup`` (as ns-eval, ns-render
    and the viewer do), plus the run's preprocessing read back from the cache."""
    from cclgs_core.datasets import load_scene
    from cclgs_core.plumbing.config import load_config
    from cclgs_core.stages.pipeline import prepare_field_targets

    with pytest.MonkeyPatch.context() as patch:
        for name, value in NERFSTUDIO_ENV.items():
            patch.setenv(name, value)
        from nerfstudio.utils.eval_utils import eval_setup

        _, pipeline, checkpoint, _ = eval_setup(trained_run["config"], test_mode="test")
        root = trained_run["root"]
        scene = load_scene(trained_run["scene"])
        prepared = prepare_field_targets(scene, load_config(root / "run.toml"), root / "cclgs")
        yield {
            "pipeline": pipeline,
            "checkpoint": checkpoint,
            "prepared": prepared,
            "frames": scene.frames,
            **trained_run,
        }


@pytest.mark.slow
def test_method_is_listed_by_nerfstudio(reloaded):
    from nerfstudio.configs.method_configs import all_descriptions, all_methods

    assert "ccl-lgs" in all_methods
    assert "language field" in all_descriptions["ccl-lgs"]
    assert type(all_methods["ccl-lgs"].pipeline.model).__name__ == "CclgsModelConfig"


@pytest.mark.slow
def test_checkpoint_restores_semantic_parameters_after_densification(reloaded):
    model = reloaded["pipeline"].model
    saved = load_pipeline_state(reloaded["checkpoint"])
    assert "Step 30:" in reloaded["log"] and "GSs split" in reloaded["log"]  # densification ran
    count = saved["_model.gauss_params.means"].shape[0]
    assert count != 300  # the 300 seed points were split and pruned, their features with them
    assert saved["_model.gauss_params.semantic_features"].shape == (count, 16)
    assert model.gauss_params["semantic_features"].shape == (count, 16)
    assert torch.equal(model.gauss_params["semantic_features"], saved["_model.gauss_params.semantic_features"])
    for key, value in saved.items():
        if key.startswith("_model.semantic.heads."):
            assert torch.equal(model.state_dict()[key[len("_model.") :]], value), key
    # The codebooks fitted for training came back from the checkpoint, heads sized to match.
    fitted = reloaded["prepared"].compressors
    for level in ("sp", "wp"):
        assert torch.allclose(model.semantic.compressors[level].prototypes, fitted[level].prototypes)
        assert model.semantic.outputs(torch.zeros(1, 16), level).shape == (1, fitted[level].output_size)


def class_map(reloaded, image_file: Path) -> torch.Tensor:
    """(H, W) ground-truth class ids (-1 none) of the frame whose image is ``image_file``."""
    from cclgs_core.evaluation.labelmaps import read_label_map

    frame = next(frame for frame in reloaded["frames"] if Path(frame.image_path).name == Path(image_file).name)
    return torch.as_tensor(read_label_map(frame.ground_truth["class"]))


def query_class(reloaded) -> int:
    classes = json.loads((reloaded["scene"] / "classes.json").read_text())["classes"]
    return next(entry["id"] for entry in classes if entry["query"] == QUERY)


@pytest.mark.slow
def test_trained_semantics_decode_to_the_targets_and_answer_queries_in_held_out_views(reloaded):
    from cclgs_core.stages.semantic_field import target_accuracy
    from cclgs_nerfstudio.model import view_targets, views_by_image_index

    model = reloaded["pipeline"].model
    datamanager = reloaded["pipeline"].datamanager
    prepared = reloaded["prepared"]
    train_files = datamanager.train_dataparser_outputs.image_filenames
    accuracies = []
    for index, view in views_by_image_index(train_files, prepared.frames, prepared.views, reloaded["scene"]).items():
        camera = datamanager.train_dataset.cameras[index : index + 1]
        outputs = model.get_outputs_for_camera(camera)
        targets = view_targets(view, int(camera.height), int(camera.width))
        accuracies.append(target_accuracy(model.semantic, outputs["semantic"], targets)["wp"])
    assert len(accuracies) == 10
    assert np.mean(accuracies) > 0.8  # a fresh field scores about 1 / (number of prototypes)

    wanted = query_class(reloaded)
    inside, outside = [], []
    eval_dataset = datamanager.eval_dataset
    for index in range(len(eval_dataset)):  # the 2 held-out views
        outputs = model.get_outputs_for_camera(eval_dataset.cameras[index : index + 1])
        relevance = model.relevance_outputs(outputs["semantic"], QUERY)["relevance_wp"][..., 0]  # (H, W)
        classes = class_map(reloaded, eval_dataset.image_filenames[index])
        # Localised (LERF-OVS's criterion: the argmax in the object's box), the box grown by a pixel
        # for the soft rims that the ground truth leaves unlabelled below half opacity.
        rows, cols = torch.nonzero(classes == wanted, as_tuple=True)
        peak_row, peak_col = divmod(int(relevance.argmax()), relevance.shape[1])
        assert rows.min() - 1 <= peak_row <= rows.max() + 1 and cols.min() - 1 <= peak_col <= cols.max() + 1
        inside.append(relevance[classes == wanted])
        outside.append(relevance[classes != wanted])
    assert len(inside) == 2 and sum(len(values) for values in inside) > 0
    assert torch.cat(inside).mean() > 0.65 > 0.35 > torch.cat(outside).mean()


@pytest.mark.slow
def test_viewer_query_box_adds_relevance_outputs(reloaded):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerText

    pipeline = reloaded["pipeline"]
    boxes = [element for _, element in parse_object(pipeline, ViewerText, "Custom Elements")]
    assert boxes == [pipeline.model.query_text]  # what the viewer puts in its panel
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    assert "relevance_sp" not in pipeline.model.get_outputs_for_camera(camera)
    pipeline.model.query_text.value = QUERY
    try:
        outputs = pipeline.model.get_outputs_for_camera(camera)
    finally:
        pipeline.model.query_text.value = ""
    for level in ("sp", "wp"):
        relevance = outputs[f"relevance_{level}"]
        assert relevance.shape == (32, 32, 1)
        assert float(relevance.min()) >= 0.0 and float(relevance.max()) <= 1.0
    assert float(outputs["relevance_wp"].max()) > 0.9


@pytest.mark.slow
def test_ns_eval_and_ns_render_run_on_the_trained_run(reloaded, tmp_path):
    from nerfstudio.scripts.eval import ComputePSNR
    from nerfstudio.scripts.render import RenderInterpolated

    ComputePSNR(load_config=reloaded["config"], output_path=tmp_path / "eval.json").main()
    results = json.loads((tmp_path / "eval.json").read_text())["results"]
    assert 10.0 < results["psnr"] < 60.0
    # ns-render insists on an ffmpeg executable even when it writes images; none is installed here.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "ffmpeg").write_text("#!/bin/sh\necho 'ffmpeg is not available in this test' >&2\nexit 1\n")
    (fake_bin / "ffmpeg").chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
        RenderInterpolated(
            load_config=reloaded["config"],
            output_path=tmp_path / "frames",
            output_format="images",
            pose_source="train",
            interpolation_steps=1,
            rendered_output_names=["rgb"],
        ).main()
    frames = sorted((tmp_path / "frames").glob("*.jpg"))
    assert len(frames) >= 9


def test_opencv_camera_undoes_the_opengl_axes():
    from nerfstudio.cameras.cameras import Cameras

    from cclgs_core.scene.cameras import look_at
    from cclgs_nerfstudio.model import opencv_camera

    pose = look_at(np.array([2.0, -1.0, 1.5]), np.zeros(3))  # (4, 4) OpenCV
    opengl = torch.tensor(pose @ np.diag([1.0, -1.0, -1.0, 1.0]), dtype=torch.float32)[None, :3]  # (1, 3, 4)
    cameras = Cameras(camera_to_worlds=opengl, fx=30.0, fy=31.0, cx=16.0, cy=15.0, width=32, height=30)
    camera = opencv_camera(cameras, cameras.camera_to_worlds)
    assert np.allclose(camera.camera_to_world, pose, atol=1e-6)
    assert (camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height) == (30.0, 31.0, 16.0, 15.0, 32, 30)


def test_targets_are_resampled_to_the_render_size_and_matched_by_file_name(tmp_path):
    from cclgs_core.errors import DataError
    from cclgs_core.stages.field_training import FieldView
    from cclgs_nerfstudio.model import resample_nearest, view_targets, views_by_image_index

    segments = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [-1, -1, 2, 2], [-1, -1, 2, 2]])  # (4, 4)
    assert np.array_equal(resample_nearest(segments, 2, 2), [[0, 1], [-1, 2]])
    assert np.array_equal(resample_nearest(segments, 8, 8)[::2, ::2], segments)

    view = FieldView(camera=None, segments={"sp": segments}, mask_targets={"sp": np.array([5, 6, 7])})
    valid, values = view_targets(view, 2, 2)["sp"]
    assert valid.tolist() == [[True, True], [False, True]] and values.tolist() == [5, 6, 7]

    class Frame:
        def __init__(self, path):
            self.image_path = Path(path)

    frames = [Frame("scene/images/a.png"), Frame("scene/images/b.png")]
    matched = views_by_image_index(
        [Path("images_2/b.jpg"), Path("images_2/c.jpg")], frames, ["view a", "view b"], tmp_path
    )
    assert matched == {0: "view b"}
    with pytest.raises(DataError, match="none of nerfstudio's training images"):
        views_by_image_index([Path("x.png")], frames, ["view a", "view b"], tmp_path)


def test_reprojection_tracker_without_gaussians_ends_ns_train_with_one_message(tmp_path):
    """The scene names no 3DGS .ply and the run config asks for the reprojection tracker: ns-train
    stops before training with the tracker's message and exit status 2, not a traceback."""
    scene = write_world(tmp_path / "world")
    meta = json.loads((scene / "transforms.json").read_text())
    del meta["gaussians_file_path"]
    (scene / "transforms.json").write_text(json.dumps(meta))
    (tmp_path / "run.toml").write_text(NOISE_FREE_SYNTHETIC_CONFIG.replace('name = "none"', 'name = "reprojection"'))
    command = train_command(tmp_path, scene, "cpu")
    result = subprocess.run(command, capture_output=True, text=True, env=nerfstudio_environment(), timeout=600)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "cclgs: " in result.stderr and "the reprojection tracker needs the scene's Gaussians" in result.stderr
    assert "Traceback" not in result.stderr
