"""The SAM2 video tracker: the labelling rule on crafted masks, and the real predictor at random init."""

from __future__ import annotations

import numpy as np
import pytest

from cclgs_core.testing.scenes import make_tiny_scene
from cclgs_core.types import SegmentMap
from cclgs_core.validation import check_track_labels
from cclgs_sam2.tracker import Sam2Tracker, labels_from_propagation


def test_labels_take_the_best_propagated_mask_above_half():
    segments = np.full((4, 6), -1, np.int32)
    segments[:, :3] = 0  # mask 0: left half (12 px)
    segments[:2, 3:] = 1  # mask 1: top right (6 px)
    propagated = np.zeros((3, 4, 6), bool)
    propagated[0, :, :2] = True  # object 10: 8 px inside mask 0 -> IoU 8/12
    propagated[1, :, :3] = True  # object 11: exactly mask 0 -> IoU 1
    propagated[2, :, 3:] = True  # object 12: 12 px, 6 shared with mask 1 -> IoU 0.5, not above
    labels = labels_from_propagation(segments, 2, propagated, [10, 11, 12], threshold=0.5)
    assert labels.tolist() == [11, -1]
    assert labels.dtype == np.int64


def test_no_objects_or_masks():
    segments = np.zeros((2, 2), np.int32)
    assert labels_from_propagation(segments, 1, np.zeros((0, 2, 2), bool), [], 0.5).tolist() == [-1]
    assert labels_from_propagation(np.full((2, 2), -1), 0, np.ones((1, 2, 2), bool), [0], 0.5).tolist() == []


@pytest.mark.slow
def test_real_predictor_at_random_init_on_three_frames(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", frames=3, height=32, width=32)
    maps = []
    for frame in scene.frames:
        segments = np.full((32, 32), -1, np.int32)
        segments[4:14, 4:14] = 0
        segments[18:28, 10:30] = 1
        maps.append(SegmentMap(segments, 2))
    tracker = Sam2Tracker(
        model_config="configs/sam2.1/sam2.1_hiera_t.yaml", allow_random_weights=True, device="cpu", reseed_every=2
    )
    labels = tracker.track(scene, scene.frames, maps)
    check_track_labels(labels, maps, "sam2")
    assert labels[0].tolist() == [0, 1]  # the first frame seeds one object per mask


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from cclgs_core.errors import CclgsError

    scene = make_tiny_scene(tmp_path / "scene", frames=1)
    maps = [SegmentMap(np.zeros((40, 48), np.int32), 1)]
    with pytest.raises(CclgsError, match="tracker 'sam2' needs a checkpoint"):
        Sam2Tracker().track(scene, scene.frames, maps)
    with pytest.raises(CclgsError, match="does not exist"):
        Sam2Tracker(checkpoint=tmp_path / "nope.pt").track(scene, scene.frames, maps)
