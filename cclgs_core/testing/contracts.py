"""Contract test suites, one base class per component kind.

A plugin author subclasses the class of their kind and overrides the ``component`` fixture::

    from cclgs_core.testing import TrackerContract

    class TestMyTracker(TrackerContract):
        @pytest.fixture
        def component(self):
            return MyTracker(threshold=0.5)

The ``scene`` fixture (a tiny posed scene on disk) may be overridden too, for components that
need more than images (ground truth, Gaussians). ``cclgs plugins check NAME`` runs the same
classes against an installed plugin. The field-backend suite is in ``backends.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from cclgs_core.errors import PluginError
from cclgs_core.testing.imports import imports_of_other_plugins
from cclgs_core.testing.scenes import make_tiny_scene
from cclgs_core.types import LEVELS, SegmentMap
from cclgs_core.validation import (
    check_embeddings,
    check_frame_masks,
    check_targets,
    check_track_labels,
)


class _ContractBase:
    """Rules every kind shares: a component survives ``copy.deepcopy`` before first use, and it
    reaches other plugins only through the registry."""

    @pytest.fixture
    def component(self):
        pytest.fail("override the `component` fixture to return the component under test")

    def test_survives_deepcopy(self, component):
        check_deepcopy(component)

    def test_uses_other_plugins_only_through_the_registry(self, component):
        check_plugin_lookups(component)

    @pytest.fixture
    def scene(self, tmp_path):
        return make_tiny_scene(tmp_path / "scene")

    @staticmethod
    def name_of(component) -> str:
        return type(component).__name__


def check_deepcopy(component) -> None:
    """A fresh component must survive ``copy.deepcopy`` (keep models, files and locks out of the
    constructor: load them in ``load()`` on first use)."""
    try:
        copy.deepcopy(component)
    except Exception as error:
        pytest.fail(
            f"{type(component).__name__} does not survive copy.deepcopy before first use "
            f"({type(error).__name__}: {error}); create models, files and locks in load(), not in the constructor"
        )


def check_plugin_lookups(component) -> None:
    """The component's package imports no other cclgs plugin: it asks the registry instead."""
    offending = imports_of_other_plugins(component)
    assert not offending, (
        "plugins reach each other only through get_registry().create(kind, name, options), never by import:\n"
        + "\n".join(offending)
    )


class MaskGeneratorContract(_ContractBase):
    """Two valid levels per image; deterministic; a featureless image is handled."""

    def test_two_valid_levels(self, component, scene):
        for frame in scene.frames[:2]:
            image = frame.load_image()
            masks = component.generate(image, frame)
            check_frame_masks(masks, *image.shape[:2], self.name_of(component))

    def test_deterministic(self, component, scene):
        frame = scene.frames[0]
        image = frame.load_image()
        first, second = component.generate(image, frame), component.generate(image, frame)
        for level in LEVELS:
            np.testing.assert_array_equal(first.level(level).segments, second.level(level).segments)

    def test_flat_image(self, component, scene):
        frame = scene.frames[0]
        image = np.full_like(frame.load_image(), 128)
        masks = component.generate(image, frame)
        check_frame_masks(masks, *image.shape[:2], self.name_of(component))


def _segment_maps_from_grid(scene, cells: int = 2) -> list[SegmentMap]:
    """Split each frame into ``cells`` x ``cells`` blocks: simple, valid, one mask per block."""
    result = []
    for frame in scene.frames:
        height, width = frame.camera.height, frame.camera.width
        ys, xs = np.mgrid[0:height, 0:width]
        segments = (ys * cells // height) * cells + xs * cells // width
        result.append(SegmentMap(segments.astype(np.int32), cells * cells))
    return result


class TrackerContract(_ContractBase):
    """One int64 label per mask and view, -1 or an id; empty views and a single view are handled."""

    def test_labels_valid(self, component, scene):
        maps = _segment_maps_from_grid(scene)
        labels = component.track(scene, scene.frames, maps)
        check_track_labels(labels, maps, self.name_of(component))

    def test_views_without_masks(self, component, scene):
        empty = [SegmentMap(np.full((f.camera.height, f.camera.width), -1, np.int32), 0) for f in scene.frames]
        labels = component.track(scene, scene.frames, empty)
        check_track_labels(labels, empty, self.name_of(component))

    def test_single_view(self, component, scene):
        maps = _segment_maps_from_grid(scene)[:1]
        labels = component.track(scene, scene.frames[:1], maps)
        check_track_labels(labels, maps, self.name_of(component))


class FeatureExtractorContract(_ContractBase):
    """Unit (M, D) float32 mask embeddings, (T, D) text embeddings, no masks handled, deterministic."""

    def test_mask_embeddings(self, component, scene):
        frame = scene.frames[0]
        image = frame.load_image()
        segment_map = _segment_maps_from_grid(scene)[0]
        features = component.encode_masks(image, segment_map, frame)
        check_embeddings(features, segment_map.num_masks, component.dim, self.name_of(component), "encode_masks()")
        again = component.encode_masks(image, segment_map, frame)
        np.testing.assert_allclose(features, again, atol=1e-5)

    def test_no_masks(self, component, scene):
        frame = scene.frames[0]
        image = frame.load_image()
        empty = SegmentMap(np.full(image.shape[:2], -1, np.int32), 0)
        features = component.encode_masks(image, empty, frame)
        check_embeddings(features, 0, component.dim, self.name_of(component), "encode_masks() without masks")

    def test_text_embeddings(self, component):
        texts = ["a red mug", "ramen bowl", *component.canonical_phrases]
        if not getattr(component, "encodes_text", True):
            with pytest.raises(PluginError, match="text"):  # an image-only extractor says it has no text encoder
                component.encode_texts(texts)
            return
        embeddings = component.encode_texts(texts)
        check_embeddings(embeddings, len(texts), component.dim, self.name_of(component), "encode_texts()")
        assert not np.allclose(embeddings[0], embeddings[1]), "different texts must not share one embedding"

    def test_canonical_phrases(self, component):
        phrases = component.canonical_phrases
        assert isinstance(phrases, tuple) and all(isinstance(p, str) and p for p in phrases)
        assert phrases or not getattr(component, "encodes_text", True), "a text encoder needs canonical phrases"


def clustered_features(views: int = 6, per_view: int = 12, dim: int = 32, clusters: int = 4, seed: int = 0):
    """Noisy unit features around ``clusters`` centres over several views, with track labels.

    Returns (features, labels): per view (per_view, dim) float32 and (per_view,) int64, where a
    quarter of the labels are -1.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    features, labels = [], []
    for _ in range(views):
        ids = rng.integers(0, clusters, per_view)
        values = centres[ids] + 0.3 * rng.normal(size=(per_view, dim))
        values /= np.linalg.norm(values, axis=1, keepdims=True)
        view_labels = ids.astype(np.int64)
        view_labels[rng.random(per_view) < 0.25] = -1
        features.append(values.astype(np.float32))
        labels.append(view_labels)
    return features, labels


def _same_state(first: dict, second: dict) -> bool:
    """Whether two ``state_dict()`` results hold the same keys and values."""
    import torch

    if first.keys() != second.keys():
        return False
    for key, value in first.items():
        other = second[key]
        if isinstance(value, dict):
            if not isinstance(other, dict) or not _same_state(value, other):
                return False
        elif not torch.equal(torch.as_tensor(value), torch.as_tensor(other)):
            return False
    return True


class CompressorContract(_ContractBase):
    """fit / targets / head / loss / decode agree with each other and survive a state round trip;
    ``fit`` takes untracked (-1) labels, even a level where every label is -1; each instance keeps
    its own state; ``decode`` runs without autograd."""

    @pytest.fixture
    def unfitted_copy(self, component):
        return copy.deepcopy(component)

    @pytest.fixture
    def fitted(self, component, unfitted_copy):
        features, labels = clustered_features()
        curves = component.fit(features, labels, seed=0)
        assert isinstance(curves, dict) and all(len(v) > 0 for v in curves.values()), "fit() must return loss curves"
        return component, features

    def test_targets(self, fitted):
        component, features = fitted
        targets = component.targets(features[0])
        check_targets(targets, len(features[0]), component.target_kind, component.output_size, self.name_of(component))

    def test_head_loss_decode(self, fitted):
        import torch

        component, features = fitted
        head = component.make_head(8)
        field_features = torch.randn(5, 8)
        outputs = head(field_features)
        assert tuple(outputs.shape) == (5, component.output_size)
        targets = torch.as_tensor(component.targets(features[0][:5]))
        loss = component.loss(outputs, targets)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert any(p.grad is not None and torch.any(p.grad != 0) for p in head.parameters()), (
            "the loss must train the head"
        )
        with torch.inference_mode():  # how the core calls decode: it need not be differentiable
            decoded = component.decode(outputs.detach())
        dim = features[0].shape[1]
        assert tuple(decoded.shape) == (5, dim)
        torch.testing.assert_close(decoded.norm(dim=1), torch.ones(5), atol=1e-4, rtol=0)

    def test_state_round_trip(self, fitted, unfitted_copy):
        component, features = fitted
        unfitted_copy.load_state_dict(component.state_dict())
        np.testing.assert_array_equal(component.targets(features[1]), unfitted_copy.targets(features[1]))

    def test_fit_takes_untracked_labels(self, component):
        """-1 labels reach ``fit`` (masks no tracker matched), in some views every label; a level
        where the tracker matched nothing has only -1."""
        features, labels = clustered_features()
        labels[0][:] = -1  # a view where nothing was tracked
        for view_labels in (labels, [np.full_like(view, -1) for view in labels]):
            fresh = copy.deepcopy(component)
            curves = fresh.fit(features, view_labels, seed=0)
            assert isinstance(curves, dict), "fit() must return loss curves"
            targets = fresh.targets(features[0])
            check_targets(targets, len(features[0]), fresh.target_kind, fresh.output_size, self.name_of(fresh))

    def test_instances_keep_their_own_state(self, component):
        """The core fits one instance per mask level: fitting one must not change another."""
        first, second = copy.deepcopy(component), copy.deepcopy(component)
        first.fit(*clustered_features(seed=0), seed=0)
        before = first.state_dict()
        second.fit(*clustered_features(seed=1), seed=1)
        assert not _same_state(before, second.state_dict()), "different data should fit a different state"
        assert _same_state(before, first.state_dict()), (
            "fitting one instance changed another: keep fitted state on the instance, not the class or a module"
        )
