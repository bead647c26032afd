"""The "none" tracker: every mask unlabeled (the paper's "codebook only" ablation)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cclgs_core import UNLABELED, Frame, Scene, SegmentMap, hookimpl


class NoTracker:
    """Labels every mask -1, so a contrastive codebook gets no pull or push pairs."""

    def track(self, scene: Scene, frames: Sequence[Frame], segment_maps: Sequence[SegmentMap]) -> list[np.ndarray]:
        """Returns per view an (M_t,) int64 array of -1."""
        return [np.full(segment_map.num_masks, UNLABELED, dtype=np.int64) for segment_map in segment_maps]


@hookimpl
def cclgs_register_tracker(register):
    register("none", NoTracker)
