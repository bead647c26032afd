"""Bad inputs end to end through `cclgs`, and determinism.

An input the user can fix ends the command with exit code 2 and one message naming the file or
plugin and the fix, no traceback, and no partial item in the run's cache. Inputs that are poor
but usable (a view without masks, masks without tracks) complete. A tiny synthetic world keeps
every run to a few seconds. Failures run `cclgs` in a subprocess (exit code and stderr as a user
sees them); runs that must succeed run in-process, which saves the imports.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import NOISE_FREE_SYNTHETIC_CONFIG, make_distribution, run_cli
from typer.testing import CliRunner

from cclgs_cli.app import app
from cclgs_core.datasets import load_scene
from cclgs_core.errors import DataError
from cclgs_core.evaluation.labelmaps import write_label_map
from cclgs_core.stages.field_training import FieldView, fit_field_to_views
from cclgs_core.testing.scenes import tiny_gaussians

CONFIG = (
    NOISE_FREE_SYNTHETIC_CONFIG
    + """
[field_backend]
name = "cached"
top_k = 128

[train]
iterations = 6
pixels_per_step = 500
"""
)

#: A third-party distribution: good components, and copies of them that break their interface.
PLUGINS = '''
import numpy as np

from cclgs_core import hookimpl
from cclgs_core.types import FrameMasks, SegmentMap


def grid(height, width, cells):
    """(H, W) int32 ids of a cells x cells grid of blocks."""
    rows = np.arange(height)[:, None] * cells // height
    columns = np.arange(width)[None, :] * cells // width
    return (rows * cells + columns).astype(np.int32)


class Grid:
    """Blocks as masks: 4 x 4 at sp, 2 x 2 at wp."""

    def generate(self, image, frame):
        height, width = image.shape[:2]
        return FrameMasks(SegmentMap(grid(height, width, 4), 16), SegmentMap(grid(height, width, 2), 4))


class WrongShape(Grid):
    """sp segments of half the image's height."""

    def generate(self, image, frame):
        masks = super().generate(image, frame)
        return FrameMasks(SegmentMap(masks.sp.segments[::2], 16), masks.wp)


class Raising(Grid):
    """Fails on the second training view."""

    def generate(self, image, frame):
        if frame.name == "frame_00002":
            raise RuntimeError("the model ran out of patience")
        return super().generate(image, frame)


class MeanColour:
    """A mask's mean colour and a constant, normalised, as its embedding."""

    dim = 4
    canonical_phrases = ("object",)

    def encode_masks(self, image, segment_map, frame):
        rows = [np.append(image[segment_map.mask(i)].mean(axis=0), 128.0) for i in range(segment_map.num_masks)]
        features = np.array(rows, dtype=np.float32).reshape(-1, self.dim)
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    def encode_texts(self, texts):
        return np.full((len(texts), self.dim), 0.5, dtype=np.float32)


class Float64(MeanColour):
    """Embeddings as float64."""

    def encode_masks(self, image, segment_map, frame):
        return super().encode_masks(image, segment_map, frame).astype(np.float64)


@hookimpl
def cclgs_register_mask_generator(register):
    register("grid", Grid)
    register("wrong-shape", WrongShape)
    register("raising", Raising)


@hookimpl
def cclgs_register_feature_extractor(register):
    register("mean-colour", MeanColour)
    register("float64", Float64)
'''
PLUGIN_LABEL = "(cclgs-badplugins 0.1.0)"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """4 training views (frame_00001, 2, 4, 5) and 1 test view of 32x32; run.toml beside it."""
    from cclgs_synthetic.world import generate_world

    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "run.toml").write_text(CONFIG)
    return generate_world(root / "world", objects=2, width=32, height=32, train_views=4, test_views=1)


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> Path:
    """A sys.path entry holding the third-party distribution ``cclgs-badplugins``."""
    return make_distribution(
        tmp_path_factory.mktemp("site"),
        "cclgs-badplugins",
        {"cclgs_badplugins": PLUGINS},
        {"badplugins": "cclgs_badplugins"},
    )


def config_of(world: Path) -> str:
    return str(world.parent / "run.toml")


def components_config(tmp_path: Path, mask_generator: str, feature_extractor: str) -> str:
    """A run config of these two components with their default options; returns its path."""
    path = tmp_path / "components.toml"
    path.write_text(f'[mask_generator]\nname = "{mask_generator}"\n[feature_extractor]\nname = "{feature_extractor}"\n')
    return str(path)


def copy_world(world: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(world, tmp_path / "world"))


def cclgs(*args: object) -> None:
    """Run the CLI in-process; it must succeed."""
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


def assert_user_error(result, *fragments: str) -> None:
    """Exit code 2, no traceback, one ``error:`` line holding every fragment."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def cache_items(run: Path) -> dict[str, set[str]]:
    """Stage -> items its artifacts' manifests list; fails unless every artifact folder holds exactly
    its listed items besides the manifest (no temporary, half-written or unlisted file)."""
    items: dict[str, set[str]] = {}
    for folder in sorted((run / "cache").glob("*/*")):
        listed = set(json.loads((folder / "manifest.json").read_text())["items"])
        assert {path.name for path in folder.iterdir()} - {"manifest.json"} == listed, folder
        items.setdefault(folder.parent.name, set()).update(listed)
    return items


# --------------------------------------------------------------------------- corrupt image


def test_truncated_image_names_the_file_and_keeps_only_finished_frames(world, tmp_path):
    scene = copy_world(world, tmp_path)
    victim = scene / "images" / "frame_00002.png"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    run = tmp_path / "run"
    result = run_cli("preprocess", str(scene), "-c", config_of(world), "--run", str(run))
    assert_user_error(result, str(victim), "truncated", "replace the file")
    assert cache_items(run) == {"masks": {"frame_00001.npz"}, "features": {"frame_00001.npz"}}


def test_garbage_image_is_refused_before_any_work(world, tmp_path):
    scene = copy_world(world, tmp_path)
    victim = scene / "images" / "frame_00004.png"
    victim.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    run = tmp_path / "run"
    result = run_cli("train", str(scene), "-c", config_of(world), "--run", str(run))
    assert_user_error(result, str(victim), "cannot be read", "replace the file")
    assert not run.exists()


# --------------------------------------------------------------------------- COLMAP without points


def write_colmap_copy(world: Path, root: Path) -> Path:
    """The world's views as a COLMAP text model whose points3D.txt holds no point; returns ``root``."""
    from nerfstudio.data.utils import colmap_parsing_utils as colmap

    frames = load_scene(world).frames
    camera = frames[0].camera
    params = np.array([camera.fx, camera.fy, camera.cx, camera.cy])
    cameras = {1: colmap.Camera(id=1, model="PINHOLE", width=camera.width, height=camera.height, params=params)}
    images = {}
    for index, frame in enumerate(frames, start=1):
        world_to_camera = frame.camera.world_to_camera  # (4, 4)
        images[index] = colmap.Image(
            id=index,
            qvec=colmap.rotmat2qvec(world_to_camera[:3, :3]),
            tvec=world_to_camera[:3, 3],
            camera_id=1,
            name=frame.image_path.name,
            xys=np.zeros((0, 2)),
            point3D_ids=np.zeros(0, dtype=int),
        )
    shutil.copytree(world / "images", root / "images")
    (root / "sparse" / "0").mkdir(parents=True)
    colmap.write_model(cameras, images, {}, str(root / "sparse" / "0"), ext=".txt")
    return root


def test_colmap_scene_without_points(world, plugins, tmp_path):
    scene = write_colmap_copy(world, tmp_path / "colmap")
    assert (scene / "sparse" / "0" / "points3D.txt").is_file()
    # Asked to start from the sparse points (--init auto would start from random points instead).
    fitted = run_cli("fit", str(scene), "--steps", "2", "--init", "points")
    assert_user_error(fitted, str(scene), "no sparse points", "add a point cloud", "--init random")
    assert not (scene / "cclgs").exists()
    # Masks and features do not need points.
    run = tmp_path / "run"
    config = components_config(tmp_path, "grid", "mean-colour")
    preprocessed = run_cli("preprocess", str(scene), "-c", config, "--run", str(run), extra_path=plugins)
    assert preprocessed.returncode == 0, preprocessed.stderr
    assert cache_items(run)["features"] == {f"frame_{index:05d}.npz" for index in range(1, 6)}


# --------------------------------------------------------------------------- views without masks


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def only_artifact(run: Path, stage: str) -> Path:
    (artifact,) = (run / "cache" / stage).iterdir()
    return artifact


def field_tensors(run: Path) -> dict[str, torch.Tensor]:
    """Per-Gaussian features and head weights of a run's trained field."""
    payload = torch.load(run / "field" / "semantic_field.pt", weights_only=True)
    tensors = {"features": payload["features"]}
    for level, state in payload["heads"].items():
        tensors.update({f"{level}.{name}": value for name, value in state.items()})
    return tensors


def test_a_view_without_masks_contributes_nothing(world, tmp_path):
    scene = copy_world(world, tmp_path)
    for kind in ("part", "instance"):  # frame_00002 sees only background: no mask at either level
        write_label_map(scene / "ground_truth" / kind / "frame_00002.png", np.full((32, 32), -1, np.int32))
    run = tmp_path / "run"
    cclgs("train", scene, "-c", config_of(world), "--run", run)
    masks = read_npz(only_artifact(run, "masks") / "frame_00002.npz")
    assert masks["sp_scores"].shape == masks["wp_scores"].shape == (0,) and (masks["sp_segments"] == -1).all()
    assert read_npz(only_artifact(run, "features") / "frame_00002.npz")["sp_features"].shape == (0, 32)

    # The same training with frame_00002 moved to the test split gives the same field.
    meta = json.loads((scene / "transforms.json").read_text())
    meta["train_filenames"].remove("images/frame_00002.png")
    meta["test_filenames"].append("images/frame_00002.png")
    (scene / "without_2.json").write_text(json.dumps(meta))
    reference = tmp_path / "reference"
    cclgs("train", scene / "without_2.json", "-c", config_of(world), "--run", reference)
    expected, actual = field_tensors(reference), field_tensors(run)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0, msg=name)


def test_no_view_with_masks_is_a_clear_error(world, tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        "train", str(world), "-c", config_of(world), "--run", str(run), "--set", "mask_generator.min_area=100000"
    )
    assert_user_error(
        result,
        "mask_generator 'synthetic'",
        "found no mask at level 'sp'",
        str(world / "images"),
        "[mask_generator] options",
    )
    frames = {f"frame_{index:05d}.npz" for index in (1, 2, 4, 5)}
    assert cache_items(run) == {"masks": frames, "features": frames}  # finished (empty) masks stay cached
    assert not (run / "field").exists()


def test_field_training_without_any_covered_pixel_is_a_clear_error():
    from cclgs_codebook.codebook import PlainCodebook

    empty = {level: np.full((4, 4), -1) for level in ("sp", "wp")}
    views = [FieldView(camera=None, segments=empty, mask_targets={level: np.zeros(0, np.int64) for level in empty})]
    compressors = {level: PlainCodebook(num_prototypes=4) for level in empty}
    with pytest.raises(DataError, match="no training view has a pixel covered by a mask"):
        fit_field_to_views(tiny_gaussians(10), views, compressors, backend=None, iterations=1)


# --------------------------------------------------------------------------- no tracks (K = 0)


def compressor_outputs(artifact: Path) -> dict[str, np.ndarray]:
    """Per level the prototypes (L, D) and every frame's (M,) targets of a compressor artifact."""
    outputs = {}
    for level in ("sp", "wp"):
        state = torch.load(io.BytesIO((artifact / f"{level}_state.pt").read_bytes()), weights_only=True)
        outputs[f"{level}.prototypes"] = state["prototypes"].numpy()
        outputs.update(
            {f"{level}.{frame}": targets for frame, targets in read_npz(artifact / f"{level}_targets.npz").items()}
        )
    return outputs


def test_ccl_without_tracks_is_the_plain_codebook(world, tmp_path):
    run = tmp_path / "run"
    for compressor in ("ccl", "codebook"):
        cclgs(
            "train",
            world,
            "-c",
            config_of(world),
            "--run",
            run,
            "--set",
            f"compressor.name={compressor}",
            "--set",
            "train.iterations=1",
        )
    labels = read_npz(only_artifact(run, "labels") / "sp.npz")
    assert all((view == -1).all() for view in labels.values()) and sum(map(len, labels.values())) > 0  # K = 0
    artifacts = {}
    for artifact in (run / "cache" / "compressor").iterdir():
        artifacts[json.loads((artifact / "manifest.json").read_text())["description"]["compressor"]["name"]] = artifact
    ccl, codebook = compressor_outputs(artifacts["ccl"]), compressor_outputs(artifacts["codebook"])
    assert ccl.keys() == codebook.keys()
    for name in ccl:
        np.testing.assert_array_equal(ccl[name], codebook[name], err_msg=name)


# --------------------------------------------------------------------------- third-party plugins


@pytest.mark.parametrize(
    "components, fragments, expected_items",
    [
        (
            ("wrong-shape", "simulated"),
            [
                f"mask_generator 'wrong-shape' {PLUGIN_LABEL} returned invalid output",
                "shape (16, 32), expected (32, 32)",
                "report it to its authors",
            ],
            {},
        ),
        (
            ("synthetic", "float64"),
            [
                f"feature_extractor 'float64' {PLUGIN_LABEL} returned invalid output",
                "float32",
                "report it to its authors",
            ],
            {"masks": {"frame_00001.npz"}},
        ),
        (
            ("raising", "simulated"),
            [
                f"mask_generator 'raising' {PLUGIN_LABEL} failed in generate()",
                "frame_00002.png",
                "RuntimeError: the model ran out of patience",
                "report it to its authors",
            ],
            {"masks": {"frame_00001.npz"}, "features": {"frame_00001.npz"}},
        ),
    ],
    ids=["wrong-shape", "wrong-dtype", "raises"],
)
def test_broken_third_party_plugin_is_named(world, plugins, tmp_path, components, fragments, expected_items):
    run = tmp_path / "run"
    config = components_config(tmp_path, *components)
    result = run_cli("preprocess", str(world), "-c", config, "--run", str(run), extra_path=plugins)
    assert_user_error(result, *fragments)
    assert cache_items(run) == expected_items


def test_debug_shows_the_plugin_traceback(world, plugins, tmp_path):
    config = components_config(tmp_path, "raising", "simulated")
    result = run_cli(
        "--debug", "preprocess", str(world), "-c", config, "--run", str(tmp_path / "run"), extra_path=plugins
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr and 'raise RuntimeError("the model ran out of patience")' in result.stderr


# --------------------------------------------------------------------------- determinism


def stage_contents(run: Path) -> dict[str, object]:
    """Every cached item of a run, by artifact and name: arrays of .npz, tensors of .pt, values of .json."""
    contents: dict[str, object] = {}
    for path in sorted((run / "cache").glob("*/*/*")):
        key = path.relative_to(run / "cache").as_posix()
        if path.suffix == ".npz":
            contents[key] = read_npz(path)
        elif path.suffix == ".pt":
            contents[key] = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
        elif path.suffix == ".json" and path.name != "manifest.json":
            contents[key] = json.loads(path.read_text())
    return contents


def test_same_seed_and_config_give_identical_artifacts_and_metrics(world, tmp_path):
    runs, reports = [], []
    for name in ("first", "second"):
        run = tmp_path / name
        trained = run_cli("train", str(world), "-c", config_of(world), "--run", str(run))  # a fresh process each
        assert trained.returncode == 0, trained.stderr
        cclgs("eval", "synthetic", run, "--out", tmp_path / f"eval_{name}")
        report = json.loads((tmp_path / f"eval_{name}" / "report.json").read_text())
        for scene in report["scenes"]:
            del scene["run"]  # the run directory's path, the one thing that differs
        runs.append(stage_contents(run))
        reports.append(report)
    first, second = runs
    assert first.keys() == second.keys()
    assert {key.split("/")[0] for key in first} == {"masks", "features", "labels", "compressor"}
    for key in first:
        _assert_equal(first[key], second[key], key)
    for name, tensor in field_tensors(tmp_path / "first").items():
        torch.testing.assert_close(field_tensors(tmp_path / "second")[name], tensor, rtol=0, atol=0, msg=name)
    assert reports[0]["scenes"][0]["queries"] and reports[0] == reports[1]


def _assert_equal(first: object, second: object, where: str) -> None:
    """Exact equality of nested dicts of arrays, tensors and JSON values."""
    if isinstance(first, dict):
        assert isinstance(second, dict) and first.keys() == second.keys(), where
        for key in first:
            _assert_equal(first[key], second[key], f"{where}:{key}")
    elif isinstance(first, torch.Tensor):
        assert torch.equal(first, second), where
    elif isinstance(first, np.ndarray):
        np.testing.assert_array_equal(first, second, err_msg=where)
    else:
        assert first == second, where


# --------------------------------------------------------------------------- checkpoints and run configs


@pytest.mark.parametrize(
    "checkpoint, fragments",
    [
        ("absent.pth", ("absent.pth", "does not exist", "Download the official checkpoint")),
        ("junk.pth", ("junk.pth", "could not be loaded", "Set model_type")),
    ],
)
def test_a_missing_or_foreign_checkpoint_is_named_with_the_fix(world, tmp_path, checkpoint, fragments):
    (tmp_path / "junk.pth").write_text("not a checkpoint\n")
    config = tmp_path / "sam.toml"
    config.write_text(
        f'[mask_generator]\nname = "sam"\ncheckpoint = "{tmp_path / checkpoint}"\nmodel_type = "vit_b"\ndevice = '
        '"cpu"\n'
        '[feature_extractor]\nname = "simulated"\n'
    )
    run = tmp_path / "run"
    assert_user_error(run_cli("preprocess", str(world), "-c", str(config), "--run", str(run)), *fragments)
    assert cache_items(run) == {}


@pytest.mark.parametrize(
    "text, fragments",
    [
        (
            '[mask_generator]\nname = "synthetic"\nsplit_probability = 0.1\n',
            ("has no option 'split_probability'", "split_prob (default 0.15)"),
        ),
        ('[mask_generator]\nname = "synthetic"\nsplit_prob = "high"\n', ("option 'split_prob'", "expected a number")),
        ("[train]\nlearning_rate = 0.1\n", ("[train] has no key 'learning_rate'", "lr")),
    ],
)
def test_a_config_with_unknown_keys_or_wrong_types_stops_before_any_work(world, tmp_path, text, fragments):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    run = tmp_path / "run"
    result = run_cli("train", str(world), "-c", str(config), "--run", str(run))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {config}"), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert not (run / "cache").exists()


# --------------------------------------------------------------------------- transforms.json


def _drop_focal(transforms: dict) -> None:
    del transforms["fl_x"]


def _nan_pose(transforms: dict) -> None:
    transforms["frames"][1]["transform_matrix"][0][3] = float("nan")


def _wrong_size(transforms: dict) -> None:
    transforms["w"] = 48


def _duplicate_frame(transforms: dict) -> None:
    transforms["frames"].append(dict(transforms["frames"][0]))


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (_drop_focal, ("fl_x",)),
        (_nan_pose, ("frame_00002", "transform_matrix")),
        (_wrong_size, ("frame_00001", "48")),
        (_duplicate_frame, ("frame_00001",)),
    ],
    ids=["missing field", "NaN matrix", "size disagrees with intrinsics", "duplicated frame"],
)
def test_a_damaged_transforms_json_is_named_before_any_work(world, tmp_path, damage, fragments):
    scene = copy_world(world, tmp_path)
    transforms = json.loads((scene / "transforms.json").read_text())
    damage(transforms)
    (scene / "transforms.json").write_text(json.dumps(transforms))
    run = tmp_path / "run"
    result = run_cli("preprocess", str(scene), "-c", config_of(world), "--run", str(run))
    assert_user_error(result, *fragments)
    assert "transforms.json" in result.stderr or "frame_00001.png" in result.stderr, result.stderr
    assert not run.exists()
