"""Checks of component outputs against their interfaces.

The pipeline runs these on everything a plugin returns, and the contract suites reuse them, so a
plugin returning wrong shapes, dtypes or ranges is named at once instead of failing later.
Each check raises PluginError naming the component and what is wrong.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cclgs_core.errors import PluginError
from cclgs_core.types import LEVELS, FrameMasks, SegmentMap


def _fail(component: str, message: str) -> None:
    raise PluginError(
        f"{component} returned invalid output: {message}. The plugin breaks its interface (cclgs_core.interfaces): "
        "report it to its authors, or choose another component in the run config"
    )


def check_segment_map(segment_map: Any, height: int, width: int, component: str, what: str = "segment map") -> None:
    """segments (H, W) integer in [-1, M) with every id present; scores (M,) when given."""
    if not isinstance(segment_map, SegmentMap):
        _fail(component, f"{what} is {type(segment_map).__name__}, expected SegmentMap")
    segments = segment_map.segments
    if not isinstance(segments, np.ndarray) or not np.issubdtype(segments.dtype, np.integer):
        _fail(
            component,
            f"{what}.segments must be an integer numpy array, got {type(segments).__name__} "
            f"{getattr(segments, 'dtype', '')}",
        )
    if segments.shape != (height, width):
        _fail(component, f"{what}.segments has shape {segments.shape}, expected {(height, width)}")
    count = segment_map.num_masks
    if not isinstance(count, (int, np.integer)) or count < 0:
        _fail(component, f"{what}.num_masks must be a non-negative int, got {count!r}")
    if segments.size and (segments.min() < -1 or segments.max() >= count):
        _fail(
            component, f"{what}.segments values must lie in [-1, {count}), found [{segments.min()}, {segments.max()}]"
        )
    present = np.unique(segments[segments >= 0])
    if len(present) != count:
        _fail(
            component,
            f"{what} declares {count} masks but {len(present)} ids occur in the map (empty masks are not allowed)",
        )
    if segment_map.scores is not None:
        scores = np.asarray(segment_map.scores)
        if scores.shape != (count,) or not np.all(np.isfinite(scores)):
            _fail(component, f"{what}.scores must be ({count},) finite, got shape {scores.shape}")


def check_frame_masks(masks: Any, height: int, width: int, component: str) -> None:
    if not isinstance(masks, FrameMasks):
        _fail(component, f"generate() returned {type(masks).__name__}, expected FrameMasks")
    for level in LEVELS:
        check_segment_map(masks.level(level), height, width, component, f"level {level!r}")


def check_embeddings(embeddings: Any, rows: int, dim: int, component: str, what: str) -> None:
    """(rows, dim) float32, finite, unit rows."""
    if not isinstance(embeddings, np.ndarray) or embeddings.dtype != np.float32:
        _fail(
            component,
            f"{what} must be a float32 numpy array, got {type(embeddings).__name__} {getattr(embeddings, 'dtype', '')}",
        )
    if embeddings.shape != (rows, dim):
        _fail(component, f"{what} has shape {embeddings.shape}, expected {(rows, dim)}")
    if not np.all(np.isfinite(embeddings)):
        _fail(component, f"{what} contains NaN or Inf")
    if rows and not np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-3):
        _fail(component, f"{what} rows must be L2-normalised")


def check_track_labels(labels: Any, segment_maps: Sequence[SegmentMap], component: str) -> None:
    """One (M_t,) int64 array per view, values >= -1."""
    if not isinstance(labels, (list, tuple)) or len(labels) != len(segment_maps):
        _fail(
            component,
            f"track() must return a list of {len(segment_maps)} arrays, got {type(labels).__name__} of length "
            f"{len(labels) if hasattr(labels, '__len__') else '?'}",
        )
    for view, (view_labels, segment_map) in enumerate(zip(labels, segment_maps)):
        if not isinstance(view_labels, np.ndarray) or view_labels.dtype != np.int64:
            _fail(
                component,
                f"labels of view {view} must be an int64 numpy array, got {type(view_labels).__name__} "
                f"{getattr(view_labels, 'dtype', '')}",
            )
        if view_labels.shape != (segment_map.num_masks,):
            _fail(
                component, f"labels of view {view} have shape {view_labels.shape}, expected ({segment_map.num_masks},)"
            )
        if view_labels.size and view_labels.min() < -1:
            _fail(component, f"labels of view {view} contain {view_labels.min()}; only -1 or ids >= 0 are allowed")


def check_targets(targets: Any, rows: int, kind: str, output_size: int, component: str) -> None:
    """(rows,) int64 indices in [0, L) for codebooks, (rows, L) float32 finite latents otherwise."""
    if not isinstance(targets, np.ndarray):
        _fail(component, f"targets() must return a numpy array, got {type(targets).__name__}")
    if kind == "index":
        if targets.dtype != np.int64 or targets.shape != (rows,):
            _fail(component, f"index targets must be ({rows},) int64, got {targets.shape} {targets.dtype}")
        if rows and (targets.min() < 0 or targets.max() >= output_size):
            _fail(component, f"index targets must lie in [0, {output_size})")
    elif kind == "latent":
        if targets.dtype != np.float32 or targets.shape != (rows, output_size):
            _fail(
                component,
                f"latent targets must be ({rows}, {output_size}) float32, got {targets.shape} {targets.dtype}",
            )
        if not np.all(np.isfinite(targets)):
            _fail(component, "latent targets contain NaN or Inf")
    else:
        _fail(component, f"target_kind must be 'index' or 'latent', got {kind!r}")
