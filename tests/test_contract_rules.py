"""Each rule CONTRIBUTING.md states beyond the method signatures has a contract test that fails a
component breaking it. Every test runs the contract's own test method on a deliberately broken
component (expecting a failure) and on the unbroken one it was made from (expecting a pass).

The broken compressors subclass the built-in 'codebook' compressor, whose class they get from
the registry: this test module imports no plugin, as the last rule requires of plugins.
"""

from __future__ import annotations

import copy
import sys
import threading

import numpy as np
import pytest
import torch

from cclgs_core.errors import PluginError
from cclgs_core.plumbing.registry import get_registry
from cclgs_core.stages.semantic_field import pixel_targets
from cclgs_core.testing import CompressorContract, MaskGeneratorContract
from cclgs_core.testing.contracts import clustered_features
from cclgs_core.testing.scenes import make_tiny_scene
from cclgs_core.types import FrameMasks, SegmentMap

CONTRACT_FAILURES = (AssertionError, PluginError, pytest.fail.Exception)


def codebook():
    """A fresh built-in 'codebook' compressor (plain k-means prototypes), small and fast."""
    return get_registry().create("compressor", "codebook", {"num_prototypes": 4, "steps": 100})


Codebook = type(codebook())


@pytest.fixture
def scene(tmp_path):
    return make_tiny_scene(tmp_path / "scene")


# ----------------------------------------------------------------------------- mask ids


class GridMasks:
    """A valid mask generator: the image in 2 x 2 blocks (sp) and one whole-image mask (wp)."""

    def generate(self, image: np.ndarray, frame) -> FrameMasks:
        height, width = image.shape[:2]
        rows, cols = np.mgrid[:height, :width]
        blocks = ((rows * 2 // height) * 2 + cols * 2 // width).astype(np.int32)  # (H, W) ids 0..3
        return FrameMasks(sp=SegmentMap(blocks, 4), wp=SegmentMap(np.zeros((height, width), np.int32), 1))


class MaskIdGap(GridMasks):
    """Declares 5 masks but id 4 covers no pixel: an empty mask (a gap in the ids)."""

    def generate(self, image, frame):
        masks = super().generate(image, frame)
        return FrameMasks(sp=SegmentMap(masks.sp.segments, 5), wp=masks.wp)


class MaskIdOutOfRange(GridMasks):
    """Uses id 7 in a map that declares 4 masks."""

    def generate(self, image, frame):
        masks = super().generate(image, frame)
        segments = masks.sp.segments.copy()
        segments[segments == 3] = 7
        return FrameMasks(sp=SegmentMap(segments, 4), wp=masks.wp)


class UnlabeledBelowMinusOne(GridMasks):
    """Marks pixels of no mask with -2 instead of -1."""

    def generate(self, image, frame):
        masks = super().generate(image, frame)
        segments = masks.wp.segments.copy()
        segments[:2] = -2
        return FrameMasks(sp=masks.sp, wp=SegmentMap(segments, 1))


@pytest.mark.parametrize("broken", [MaskIdGap, MaskIdOutOfRange, UnlabeledBelowMinusOne])
def test_mask_ids_must_run_from_0_to_m_minus_1_without_gaps_or_empty_masks(scene, broken):
    MaskGeneratorContract().test_two_valid_levels(GridMasks(), scene)
    with pytest.raises(PluginError, match="returned invalid output"):
        MaskGeneratorContract().test_two_valid_levels(broken(), scene)


# ----------------------------------------------------------------------------- -1 labels


class CountsLabels(Codebook):
    """Counts the tracked objects with np.bincount, which refuses -1 labels."""

    def fit(self, features, labels, seed):
        self.object_sizes = np.bincount(np.concatenate(labels))
        return super().fit(features, labels, seed)


def test_fit_must_take_untracked_labels_even_a_level_with_only_minus_one():
    CompressorContract().test_fit_takes_untracked_labels(codebook())
    with pytest.raises(ValueError, match="negative"):
        CompressorContract().test_fit_takes_untracked_labels(CountsLabels(num_prototypes=4, steps=100))


def test_untracked_pixels_never_reach_the_loss():
    """The core's half of the rule: loss() gets targets of masked pixels only (from targets(),
    which never yields -1); pixels outside every mask are dropped."""
    segments = np.array([[0, -1, 1], [-1, 1, 0]], dtype=np.int32)  # (H, W), -1: no mask
    mask_targets = np.array([5, 2], dtype=np.int64)  # (M,) a codebook index per mask
    valid, targets = pixel_targets(segments, mask_targets)
    assert valid.tolist() == [[True, False, True], [False, True, True]]
    assert targets.tolist() == [5, 2, 2, 5] and (targets >= 0).all()


# ----------------------------------------------------------------------------- one instance per level


class SharedPrototypes(Codebook):
    """Keeps its fitted prototypes on the class, so every instance sees the last fit."""

    def fit(self, features, labels, seed):
        curves = super().fit(features, labels, seed)
        type(self)._prototypes = self.__dict__.pop("_prototypes")
        return curves


def test_each_instance_keeps_its_own_fitted_state():
    CompressorContract().test_instances_keep_their_own_state(codebook())
    with pytest.raises(AssertionError, match="fitting one instance changed another"):
        CompressorContract().test_instances_keep_their_own_state(SharedPrototypes(num_prototypes=4, steps=100))


# ----------------------------------------------------------------------------- decode without autograd


class DecodesByGradientStep(Codebook):
    """Sharpens each decoded embedding with one gradient step: needs autograd in decode."""

    def decode(self, outputs):
        embeddings = super().decode(outputs).detach().requires_grad_()  # (P, D)
        sharpness = (embeddings @ self.prototypes.T).logsumexp(dim=1).sum()
        (step,) = torch.autograd.grad(sharpness, embeddings)
        return torch.nn.functional.normalize(embeddings + 0.01 * step, dim=1)


def test_decode_must_work_without_autograd():
    for component, broken in ((codebook(), False), (DecodesByGradientStep(num_prototypes=4, steps=100), True)):
        features, labels = clustered_features()
        component.fit(features, labels, seed=0)
        if broken:
            assert component.decode(torch.eye(4)).shape == (4, 32)  # it works where autograd is on
            with pytest.raises(RuntimeError, match="does not require grad"):
                CompressorContract().test_head_loss_decode((component, features))
        else:
            CompressorContract().test_head_loss_decode((component, features))


# ----------------------------------------------------------------------------- deepcopy


class HoldsALock(GridMasks):
    """Creates a lock in its constructor: locks cannot be copied."""

    def __init__(self):
        self._lock = threading.Lock()


def test_components_must_survive_deepcopy_before_first_use():
    MaskGeneratorContract().test_survives_deepcopy(GridMasks())
    with pytest.raises(pytest.fail.Exception, match="does not survive copy.deepcopy"):
        MaskGeneratorContract().test_survives_deepcopy(HoldsALock())
    copy.deepcopy(codebook())  # the built-in compressors do


# ----------------------------------------------------------------------------- plugin lookups


ROGUE_PLUGIN = '''
import cclgs_codebook


class ReusesTheCodebook(cclgs_codebook.PlainCodebook):
    """Imports another plugin instead of asking the registry for it."""
'''

POLITE_PLUGIN = '''
from cclgs_core.plumbing.registry import get_registry


class AsksTheRegistry:
    """Builds the codebook it wraps through the registry."""

    def __init__(self):
        self.inner = get_registry().create("compressor", "codebook", {"num_prototypes": 4, "steps": 100})
'''


def test_plugins_reach_each_other_only_through_the_registry(tmp_path, monkeypatch):
    (tmp_path / "rogue_plugin.py").write_text(ROGUE_PLUGIN)
    (tmp_path / "polite_plugin.py").write_text(POLITE_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("rogue_plugin", "polite_plugin"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import polite_plugin
    import rogue_plugin

    CompressorContract().test_uses_other_plugins_only_through_the_registry(polite_plugin.AsksTheRegistry())
    with pytest.raises(AssertionError, match=r"rogue_plugin.py:2 imports cclgs_codebook"):
        CompressorContract().test_uses_other_plugins_only_through_the_registry(rogue_plugin.ReusesTheCodebook())
