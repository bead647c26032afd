"""Scores of one view against 3D-OVS class masks, as the benchmark's authors compute them
(``renderer.py``: scikit-learn's ``jaccard_score(truth, prediction, average=None)`` and
``accuracy_score`` on the (pixels, classes) label matrices).

The prediction gives every pixel exactly one class; the truth gives a pixel any number of
classes (masks may overlap or leave pixels unlabelled). Per class, the IoU of its predicted and
true pixels; the accuracy is the share of pixels whose whole row of class labels is right, so
a pixel with two true classes, or none, never counts as right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ViewScore:
    """ious: (C,) float64 IoU per class, NaN where the class is in neither the truth nor the
    prediction (the authors count that as 0, cclgs's own scoring skips it); accuracy: exact-row
    pixel accuracy."""

    ious: np.ndarray
    accuracy: float


def _one_hot(predicted: np.ndarray, classes: int) -> np.ndarray:
    """(C, H, W) bool from an (H, W) map of class indices."""
    return predicted[None] == np.arange(classes)[:, None, None]


def score_view(truth: np.ndarray, predicted: np.ndarray) -> ViewScore:
    """truth: (C, H, W) bool masks; predicted: (H, W) int class index of each pixel."""
    if predicted.shape != truth.shape[1:]:
        raise ValueError(f"prediction {predicted.shape} and masks {truth.shape[1:]} differ in size")
    predicted_masks = _one_hot(predicted, truth.shape[0])  # (C, H, W)
    intersection = (truth & predicted_masks).sum(axis=(1, 2))  # (C,)
    union = (truth | predicted_masks).sum(axis=(1, 2))  # (C,)
    ious = np.full(len(union), np.nan)
    np.divide(intersection, union, out=ious, where=union > 0)
    accuracy = float((truth == predicted_masks).all(axis=0).mean())
    return ViewScore(ious=ious, accuracy=accuracy)
