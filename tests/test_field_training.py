"""The standalone semantic-field trainer on a synthetic world with noise-free masks and features:
the loss falls, decoded indices match the targets on training and held-out views, and a
resumed run ends exactly where an uninterrupted one does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cclgs_core.datasets import load_scene
from cclgs_core.errors import DataError
from cclgs_core.plumbing.config import load_config
from cclgs_core.plumbing.registry import get_registry
from cclgs_core.scene.ply import read_gaussians
from cclgs_core.stages.field_training import FieldView, fit_field_to_views, views_accuracy
from cclgs_core.stages.pipeline import prepare_field_targets
from cclgs_core.types import LEVELS

#: The simulation with every source of noise switched off: targets agree across views.
NOISE_FREE = [
    "mask_generator.name=synthetic",
    "mask_generator.merge_prob=0.0",
    "mask_generator.split_prob=0.0",
    "mask_generator.boundary_prob=0.0",
    "mask_generator.drop_prob=0.0",
    "feature_extractor.name=simulated",
    "feature_extractor.noise=0.0",
    "feature_extractor.confusion_base=0.0",
    "feature_extractor.confusion_occlusion=0.0",
    "tracker.name=none",
    "compressor.name=codebook",
    "field_backend.name=cached",
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from cclgs_synthetic.world import generate_world

    root = tmp_path_factory.mktemp("field")
    world = generate_world(root / "world", objects=4, width=64, height=64, train_views=10, test_views=3)
    scene = load_scene(world)
    config = load_config(None, NOISE_FREE)
    return scene, config, prepare_field_targets(scene, config, root / "run"), root


def _held_out_views(scene, config, compressors) -> list[FieldView]:
    """Targets of the test views, computed the way training targets are (noise-free, so exact)."""
    generator = config.create("mask_generator")
    extractor = config.create("feature_extractor")
    views = []
    for frame in scene.split("test"):
        image = frame.load_image()
        masks = generator.generate(image, frame)
        segments, targets = {}, {}
        for level in LEVELS:
            segment_map = masks.level(level)
            segments[level] = segment_map.segments
            targets[level] = compressors[level].targets(extractor.encode_masks(image, segment_map, frame))
        views.append(FieldView(frame.camera, segments, targets))
    return views


def test_field_learns_noise_free_targets(prepared):
    scene, config, run, _ = prepared
    gaussians = read_gaussians(scene.gaussians_path)
    backend = get_registry().create("field_backend", "cached")
    field, log = fit_field_to_views(gaussians, run.views, run.compressors, backend, iterations=600, log_every=20)
    start, end = np.mean(log.losses[:2]), np.mean(log.losses[-3:])
    assert end < 0.25 * start, (start, end)
    assert views_accuracy(field, gaussians, backend, run.views) >= 0.90
    assert views_accuracy(field, gaussians, backend, _held_out_views(scene, config, run.compressors)) >= 0.90


def test_resumed_training_matches_uninterrupted(prepared, tmp_path):
    scene, _, run, _ = prepared
    gaussians = read_gaussians(scene.gaussians_path)
    backend = get_registry().create("field_backend", "cached")
    common = dict(compressors=run.compressors, backend=backend, pixels_per_step=500, checkpoint_every=10)
    whole, _ = fit_field_to_views(gaussians, run.views, iterations=30, checkpoint_path=tmp_path / "a.pt", **common)
    fit_field_to_views(
        gaussians, run.views, iterations=20, checkpoint_path=tmp_path / "b.pt", **common
    )  # "killed" at 20
    resumed, _ = fit_field_to_views(gaussians, run.views, iterations=30, checkpoint_path=tmp_path / "b.pt", **common)
    torch.testing.assert_close(resumed.features, whole.features, rtol=0, atol=0)
    for level in whole.levels:
        for a, b in zip(whole.heads[level].parameters(), resumed.heads[level].parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_target_previews_colour_each_prototype_alike_in_every_view(prepared):
    from PIL import Image

    from cclgs_core.evaluation.visualize import target_picture

    scene, config, run, root = prepared
    previews = sorted((root / "run" / "previews" / "targets").glob("*.png"))
    assert [path.stem for path in previews] == sorted(frame.name for frame in run.frames[:3])
    first = run.views[0]
    picture = np.asarray(Image.open(root / "run" / "previews" / "targets" / f"{run.frames[0].name}.png"))
    width = first.segments["sp"].shape[1]
    assert picture.shape == (first.segments["sp"].shape[0], 3 * width, 3)
    # Pixels of one prototype share a colour across views; pixels without a mask are black.
    colours = {}
    for view in run.views[:3]:
        segments, targets = view.segments["wp"], view.mask_targets["wp"]
        drawn = target_picture(segments, targets, run.compressors["wp"].output_size)  # (H, W, 3)
        assert (drawn[segments < 0] == 0).all()
        for mask_id, prototype in enumerate(targets):
            colour = tuple(drawn[segments == mask_id][0])
            assert colours.setdefault(int(prototype), colour) == colour
    np.testing.assert_array_equal(
        picture[:, 2 * width :],
        target_picture(first.segments["wp"], first.mask_targets["wp"], run.compressors["wp"].output_size),
    )


def test_latent_targets_are_drawn_from_their_first_three_dimensions():
    from cclgs_core.evaluation.visualize import target_picture

    segments = np.array([[0, 0, 1], [-1, 2, 2]])
    latents = np.array([[0.0, 1.0, 5.0], [1.0, 0.0, 5.0], [0.5, 0.5, 5.0]], dtype=np.float32)  # (3, 3)
    drawn = target_picture(segments, latents, 3)  # (2, 3, 3)
    np.testing.assert_array_equal(drawn[0, 0], [40, 255, 40])  # lowest, highest, constant
    np.testing.assert_array_equal(drawn[0, 2], [255, 40, 40])
    np.testing.assert_array_equal(drawn[1, 0], [0, 0, 0])


class _TouchOnUnpickle:
    """Unpickling this object creates ``path``: a stand-in for code planted in a checkpoint."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_checkpoint_holding_a_pickled_object_is_refused_not_run(prepared, tmp_path):
    scene, _, run, _ = prepared
    gaussians = read_gaussians(scene.gaussians_path)
    backend = get_registry().create("field_backend", "cached")
    planted, marker = tmp_path / "checkpoint.pt", tmp_path / "code-ran"
    torch.save({"step": 5, "field": {}, "optimizer": {}, "log": _TouchOnUnpickle(marker)}, planted)
    with pytest.raises(DataError, match="holds Python objects other than tensors and plain values"):
        fit_field_to_views(gaussians, run.views, run.compressors, backend, iterations=10, checkpoint_path=planted)
    assert not marker.exists(), "the checkpoint's object was unpickled"
    planted.write_bytes(planted.read_bytes()[:100])  # truncated
    with pytest.raises(DataError, match="is not a readable training checkpoint"):
        fit_field_to_views(gaussians, run.views, run.compressors, backend, iterations=10, checkpoint_path=planted)
