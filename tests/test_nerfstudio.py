"""The nerfstudio method ``ccl-lgs``: registration, a CPU run of nerfstudio's real trainer, and reload.

The scene is built here: three coloured blobs of Gaussians (red, green, blue) rendered by the
reference renderer from 12 orbit cameras at 32x32, written in nerfstudio's format with the blob
centres as sparse points. Masks and features come from a test-only plugin installed as a
distribution (so the ``ns-train`` subprocess discovers it like any plugin): each mask is the
pixels of one colour (``sp``) or of red+green and blue (``wp``), and a mask's feature is the
pixel-weighted mix of fixed colour embeddings. The compressor is the real plain codebook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import make_distribution

NERFSTUDIO_ENV = {"TORCHDYNAMO_DISABLE": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}

PALETTE_PLUGIN = '''
"""Test-only masks and features keyed to the colours of the test scene."""
import numpy as np

from cclgs_core import hookimpl
from cclgs_core.types import FrameMasks, SegmentMap

PALETTE = np.array([[230.0, 30.0, 30.0], [30.0, 230.0, 30.0], [30.0, 30.0, 230.0]])
VOCABULARY = ("red", "green", "blue", "object", "things", "stuff", "texture")


def colour_classes(image):
    """(H, W, 3) uint8 -> (H, W) palette index, -1 for pixels far from every palette colour."""
    distance = np.linalg.norm(image[..., None, :].astype(np.float64) - PALETTE, axis=-1)
    classes = distance.argmin(axis=-1)
    classes[distance.min(axis=-1) > 150.0] = -1
    return classes


def segment_map(classes, groups):
    segments = np.full(classes.shape, -1, dtype=np.int32)
    count = 0
    for group in groups:
        mask = np.isin(classes, group)
        if mask.sum() >= 2:
            segments[mask] = count
            count += 1
    return SegmentMap(segments, count, np.ones(count, dtype=np.float32))


class PaletteMasks:
    def generate(self, image, frame):
        classes = colour_classes(image)
        return FrameMasks(sp=segment_map(classes, [(0,), (1,), (2,)]), wp=segment_map(classes, [(0, 1), (2,)]))


class PaletteFeatures:
    dim = 8
    canonical_phrases = ("object", "things", "stuff", "texture")

    def encode_masks(self, image, segment_map, frame):
        classes = colour_classes(image)
        rows = []
        for mask_id in range(segment_map.num_masks):
            inside = classes[(segment_map.segments == mask_id) & (classes >= 0)]
            vector = np.zeros(self.dim)
            vector[:3] = np.bincount(inside, minlength=3)
            rows.append(vector / np.linalg.norm(vector))
        return np.asarray(rows, dtype=np.float32).reshape(-1, self.dim)

    def encode_texts(self, texts):
        return np.eye(self.dim, dtype=np.float32)[[VOCABULARY.index(text) for text in texts]]


@hookimpl
def cclgs_register_mask_generator(register):
    register("palette", PaletteMasks)


@hookimpl
def cclgs_register_feature_extractor(register):
    register("palette", PaletteFeatures)
'''

RUN_CONFIG = """
seed = 0

[mask_generator]
name = "palette"

[tracker]
name = "none"

[feature_extractor]
name = "palette"

[compressor]
name = "codebook"
num_prototypes = 8
steps = 60
head_hidden = 32
"""

COLOURS = {"red": (0.9, 0.12, 0.12), "green": (0.12, 0.9, 0.12), "blue": (0.12, 0.12, 0.9)}
CENTRES = {"red": (-0.55, 0.0, 0.0), "green": (0.55, 0.0, 0.0), "blue": (0.0, 0.0, 0.55)}


def write_blob_scene(root: Path, views: int = 12, size: int = 32) -> Path:
    """Render three coloured blobs from ``views`` orbit cameras; write images, transforms.json and points3D.ply."""
    from PIL import Image

    from cclgs_core.cameras import orbit_poses
    from cclgs_core.ply import write_points
    from cclgs_core.reference_render import render_dense
    from cclgs_core.types import Camera

    rng = np.random.default_rng(0)
    means, colours = [], []
    for name, centre in CENTRES.items():
        means.append(np.asarray(centre) + rng.normal(scale=0.18, size=(40, 3)))
        colours.append(np.tile(COLOURS[name], (40, 1)))
    means_t = torch.tensor(np.concatenate(means), dtype=torch.float32)  # (N, 3)
    colours_t = torch.tensor(np.concatenate(colours), dtype=torch.float32)  # (N, 3)
    count = len(means_t)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(count, 1)
    scales = torch.full((count, 3), 0.12)
    opacities = torch.full((count,), 0.9)

    (root / "images").mkdir(parents=True)
    focal = size * 1.2
    frames = []
    for index, pose in enumerate(orbit_poses(views, radius=3.2, height=1.2)):
        camera = Camera(pose, fx=focal, fy=focal, cx=size / 2, cy=size / 2, width=size, height=size)
        image = render_dense(means_t, quats, scales, opacities, colours_t, camera).features  # (H, W, 3)
        path = root / "images" / f"frame_{index + 1:05d}.png"
        Image.fromarray((image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(path)
        opengl_pose = pose @ np.diag([1.0, -1.0, -1.0, 1.0])
        frames.append({"file_path": f"images/{path.name}", "transform_matrix": opengl_pose.tolist()})
    write_points(root / "points3D.ply", means_t.numpy(), (colours_t.numpy() * 255).astype(np.uint8))
    transforms = {
        "camera_model": "OPENCV",
        "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2, "w": size, "h": size,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "ply_file_path": "points3D.ply",
        "frames": frames,
    }
    (root / "transforms.json").write_text(json.dumps(transforms, indent=1))
    return root


def nerfstudio_environment(plugin_dir: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(NERFSTUDIO_ENV)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_dir), environment.get("PYTHONPATH")]))
    return environment


def train_command(root: Path, scene: Path, device: str) -> list[str]:
    """``ns-train ccl-lgs`` on the blob scene: 50 iterations at full resolution, refinement every
    10 steps after a warm-up of 10 (gsplat's strategy then pauses until step 21, so the Gaussians
    are split and pruned at steps 30 and 40), and semantic learning rates raised from 1e-3 so
    that 50 steps suffice to learn the three colours."""
    return [
        sys.executable, "-m", "nerfstudio.scripts.train", "ccl-lgs",
        "--data", str(scene),
        "--output-dir", str(root / "outputs"),
        "--experiment-name", "blobs",
        "--timestamp", "run",
        "--machine.device-type", device,
        "--max-num-iterations", "50",
        "--steps-per-save", "50",
        "--vis", "tensorboard",
        "--pipeline.model.cclgs-config", str(root / "run.toml"),
        "--pipeline.model.cclgs-run-dir", str(root / "cclgs"),
        "--pipeline.model.num-downscales", "0",
        "--pipeline.model.warmup-length", "10",
        "--pipeline.model.refine-every", "10",
        "--pipeline.model.sh-degree", "1",
        "--pipeline.model.background-color", "black",
        "--optimizers.semantic-features.optimizer.lr", "0.02",
        "--optimizers.semantic-heads.optimizer.lr", "0.01",
    ]


def run_training(root: Path, device: str) -> dict:
    """Build the scene, the test plugin and the run config under ``root``, then train."""
    scene = write_blob_scene(root / "scene")
    plugin_dir = make_distribution(root / "plugin", "cclgs-test-palette", {"cclgs_test_palette": PALETTE_PLUGIN}, {"palette": "cclgs_test_palette"})
    (root / "run.toml").write_text(RUN_CONFIG)
    result = subprocess.run(
        train_command(root, scene, device), capture_output=True, text=True, env=nerfstudio_environment(plugin_dir), timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    config_path = root / "outputs" / "blobs" / "ccl-lgs" / "run" / "config.yml"
    return {"root": root, "scene": scene, "plugin_dir": plugin_dir, "config": config_path, "log": result.stdout + result.stderr}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One CPU training run of ``ns-train ccl-lgs`` (see ``train_command``)."""
    return run_training(tmp_path_factory.mktemp("ccl_lgs"), "cpu")


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_renders_with_gsplat_and_keeps_semantics_through_densification(tmp_path):
    run = run_training(tmp_path, "cuda")
    saved = torch.load(next((run["config"].parent / "nerfstudio_models").glob("*.ckpt")), map_location="cpu", weights_only=False)
    state = saved["pipeline"]
    count = state["_model.gauss_params.means"].shape[0]
    assert "GSs split" in run["log"]
    assert state["_model.gauss_params.semantic_features"].shape == (count, 16)


def load_palette_module(plugin_dir: Path):
    """The test plugin's module, imported from its file (the pytest process does not have it on sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cclgs_test_palette", plugin_dir / "cclgs_test_palette.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reloaded(trained_run):
    """The trained run reloaded in this process by nerfstudio's ``eval_setup`` (as ns-eval, ns-render
    and the viewer do), with a registry that also holds the test plugin, and the run's targets."""
    import cclgs_core.registry as registry_module
    from cclgs_core.config import load_config
    from cclgs_core.datasets import load_scene
    from cclgs_core.pipeline import prepare_field_targets

    registry = registry_module.PluginRegistry()
    registry.add_plugin(load_palette_module(trained_run["plugin_dir"]), "palette")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in NERFSTUDIO_ENV.items():
            patch.setenv(name, value)
        patch.setattr(registry_module, "_default_registry", registry)
        from nerfstudio.utils.eval_utils import eval_setup

        _, pipeline, checkpoint, _ = eval_setup(trained_run["config"], test_mode="test")
        root = trained_run["root"]
        prepared = prepare_field_targets(load_scene(trained_run["scene"]), load_config(root / "run.toml"), root / "cclgs", registry)
        yield {"pipeline": pipeline, "checkpoint": checkpoint, "prepared": prepared, **trained_run}


@pytest.mark.slow
def test_method_is_listed_by_nerfstudio(reloaded):
    from nerfstudio.configs.method_configs import all_descriptions, all_methods

    assert "ccl-lgs" in all_methods
    assert "language field" in all_descriptions["ccl-lgs"]
    assert type(all_methods["ccl-lgs"].pipeline.model).__name__ == "CclgsModelConfig"


@pytest.mark.slow
def test_checkpoint_restores_semantic_parameters_after_densification(reloaded):
    model = reloaded["pipeline"].model
    saved = torch.load(reloaded["checkpoint"], map_location="cpu", weights_only=False)["pipeline"]
    assert "Step 30:" in reloaded["log"] and "GSs split" in reloaded["log"]  # densification ran
    count = saved["_model.gauss_params.means"].shape[0]
    assert count != 120  # the 120 seed points were split and pruned, features and all
    assert saved["_model.gauss_params.semantic_features"].shape == (count, 16)
    assert model.gauss_params["semantic_features"].shape == (count, 16)
    assert torch.equal(model.gauss_params["semantic_features"], saved["_model.gauss_params.semantic_features"])
    for key, value in saved.items():
        if key.startswith("_model.semantic.heads."):
            assert torch.equal(model.state_dict()[key[len("_model.") :]], value), key
    # The codebook fitted in training came back from the checkpoint (3 distinct sp features: 3 prototypes).
    fitted = reloaded["prepared"].compressors
    for level in ("sp", "wp"):
        assert torch.allclose(model.semantic.compressors[level].prototypes, fitted[level].prototypes)
    assert model.semantic.compressors["sp"].output_size == 3


def training_views(reloaded):
    """(camera, image index, targets) of every training image at full resolution."""
    from cclgs_nerfstudio.model import view_targets, views_by_image_index

    datamanager = reloaded["pipeline"].datamanager
    prepared = reloaded["prepared"]
    image_files = datamanager.train_dataparser_outputs.image_filenames
    cameras = datamanager.train_dataset.cameras
    for index, view in views_by_image_index(image_files, prepared.frames, prepared.views, reloaded["scene"]).items():
        camera = cameras[index : index + 1]
        yield camera, index, view_targets(view, int(camera.height), int(camera.width))


@pytest.mark.slow
def test_trained_semantics_decode_to_the_targets_and_answer_queries(reloaded):
    from cclgs_core.semantic_field import target_accuracy

    model = reloaded["pipeline"].model
    accuracies, red_relevance, other_relevance = [], [], []
    palette = load_palette_module(reloaded["plugin_dir"])
    datamanager = reloaded["pipeline"].datamanager
    for camera, index, targets in training_views(reloaded):
        outputs = model.get_outputs_for_camera(camera)
        accuracies.append(target_accuracy(model.semantic, outputs["semantic"], targets)["sp"])
        relevance = model.relevance_outputs(outputs["semantic"], "red")["relevance_sp"][..., 0]  # (H, W)
        image = np.asarray(datamanager.train_dataset.get_image_float32(index)[..., :3] * 255)
        classes = torch.as_tensor(palette.colour_classes(image))
        red_relevance.append(relevance[classes == 0])
        other_relevance.append(relevance[classes > 0])
    assert np.mean(accuracies) > 0.8  # chance is about 1/3: three sp prototypes
    assert torch.cat(red_relevance).mean() > 0.9 > 0.6 > torch.cat(other_relevance).mean()


@pytest.mark.slow
def test_viewer_query_box_adds_relevance_outputs(reloaded):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerText

    pipeline = reloaded["pipeline"]
    boxes = [element for _, element in parse_object(pipeline, ViewerText, "Custom Elements")]
    assert boxes == [pipeline.model.query_text]  # what the viewer puts in its panel
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    assert "relevance_sp" not in pipeline.model.get_outputs_for_camera(camera)
    pipeline.model.query_text.value = "blue"
    try:
        outputs = pipeline.model.get_outputs_for_camera(camera)
    finally:
        pipeline.model.query_text.value = ""
    for level in ("sp", "wp"):
        relevance = outputs[f"relevance_{level}"]
        assert relevance.shape == (32, 32, 1)
        assert float(relevance.min()) >= 0.0 and float(relevance.max()) <= 1.0
    assert float(outputs["relevance_sp"].max()) > 0.9


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
    assert len(frames) >= 10


def test_opencv_camera_undoes_the_opengl_axes():
    from nerfstudio.cameras.cameras import Cameras

    from cclgs_core.cameras import look_at
    from cclgs_nerfstudio.model import opencv_camera

    pose = look_at(np.array([2.0, -1.0, 1.5]), np.zeros(3))  # (4, 4) OpenCV
    opengl = torch.tensor(pose @ np.diag([1.0, -1.0, -1.0, 1.0]), dtype=torch.float32)[None, :3]  # (1, 3, 4)
    cameras = Cameras(camera_to_worlds=opengl, fx=30.0, fy=31.0, cx=16.0, cy=15.0, width=32, height=30)
    camera = opencv_camera(cameras, cameras.camera_to_worlds)
    assert np.allclose(camera.camera_to_world, pose, atol=1e-6)
    assert (camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height) == (30.0, 31.0, 16.0, 15.0, 32, 30)


def test_targets_are_resampled_to_the_render_size_and_matched_by_file_name(tmp_path):
    from cclgs_core.errors import DataError
    from cclgs_core.field_training import FieldView
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
    matched = views_by_image_index([Path("images_2/b.jpg"), Path("images_2/c.jpg")], frames, ["view a", "view b"], tmp_path)
    assert matched == {0: "view b"}
    with pytest.raises(DataError, match="none of nerfstudio's training images"):
        views_by_image_index([Path("x.png")], frames, ["view a", "view b"], tmp_path)
