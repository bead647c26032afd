"""The ``cached`` field backend: blending weights precomputed for frozen geometry."""

from __future__ import annotations

import hashlib
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from cclgs_core import Camera, ConfigError, RenderOutput

if TYPE_CHECKING:
    import torch

    from cclgs_core.scene.gaussians import Gaussians


@dataclass
class CachedView:
    """The kept blending weights of one camera (P = H * W pixels, row-major).

    matrix:     (P, N) sparse CSR blending weights, at most top_k non-zero per row (int32 indices)
    transposed: (N, P) its transpose, for the backward pass
    alpha:      (H, W) exact accumulated opacity (all contributions, not only the kept ones)
    depth:      (H, W) exact alpha-normalised depth
    uncovered:  (H, W) blending weight left out: alpha - kept weights
    """

    matrix: "torch.Tensor"
    transposed: "torch.Tensor"
    alpha: "torch.Tensor"
    depth: "torch.Tensor"
    uncovered: "torch.Tensor"

    @property
    def nbytes(self) -> int:
        parts = [self.alpha, self.depth, self.uncovered]
        for matrix in (self.matrix, self.transposed):
            parts += [matrix.crow_indices(), matrix.col_indices(), matrix.values()]
        return sum(t.numel() * t.element_size() for t in parts)


class CachedBackend:
    """Frozen geometry: per camera and pixel, the largest (Gaussian, blending weight) pairs are
    computed once (with the same rasterisation rules as the ``torch`` backend); a render is then
    the sparse product ``sum_k weight_k * features[index_k]``.

    Gradients: the rendered features are differentiable with respect to ``features`` only.
    The geometry (means, quaternions, scales, opacities) is treated as constant: no gradient
    reaches it, which is why ``differentiable`` is False (that flag means "differentiable with
    respect to geometry and features").

    Exactness: alpha and depth are exact. Each pixel keeps its largest weights, as few as leave
    at most ``tolerance`` of its blending weight out, and never more than ``top_k``: the number
    kept adapts to the scene and the pixel (one or two on a sharp surface, dozens in fuzzy
    regions of a fit from random points). A rendered feature misses at most
    ``uncovered * max |feature|`` per channel, where ``uncovered = alpha - sum(kept weights)``
    stays under ``tolerance`` wherever ``top_k`` is not reached. ``truncation(gaussians,
    camera)`` gives a view's max and mean uncovered weight, ``stats`` those of all cached views.
    When a view leaves more than ``warn_uncovered`` out somewhere, one warning says so, once per
    backend (that is, once per run): later views are counted in ``stats`` instead.

    Cache: one entry per (camera pose, intrinsics and size, geometry content) — the key hashes
    the camera matrix and intrinsics and the bytes of means, quaternions, log-scales and
    opacity logits, so edited or replaced geometry is never served stale weights (the hash is
    computed once per state of those tensors: object, storage and in-place version). An entry
    takes 16 bytes per kept weight (a float32 weight and an int32 index, in the matrix and its
    transpose), 16 bytes per pixel (row pointers, alpha, depth and uncovered maps) and 4 bytes
    per Gaussian; at most ``H * W * (16 * top_k + 16) + 4 * N`` bytes. ``stats`` reports the
    memory and the mean number of weights kept per covered pixel. Least recently used entries
    are evicted beyond ``max_cache_mb``.
    """

    differentiable = False

    def __init__(
        self,
        top_k: int = 256,
        tolerance: float = 0.01,
        tile_size: int = 8,
        batch_elements: int = 2_000_000,
        max_cache_mb: float = 2048.0,
        warn_uncovered: float = 0.05,
    ):
        if top_k < 1 or tile_size < 1 or batch_elements < 1 or max_cache_mb <= 0:
            raise ConfigError(
                "cached backend: top_k, tile_size, batch_elements and max_cache_mb must be positive, got "
                f"{top_k}, {tile_size}, {batch_elements}, {max_cache_mb}"
            )
        if not 0 <= tolerance < 1:
            raise ConfigError(f"cached backend: tolerance must be in [0, 1), got {tolerance}")
        self.top_k = top_k
        self.tolerance = tolerance
        self.tile_size = tile_size
        self.batch_elements = batch_elements
        self.max_cache_mb = max_cache_mb
        self.warn_uncovered = warn_uncovered
        self._warned = False
        self._views: OrderedDict[str, CachedView] = OrderedDict()
        self._fingerprints: OrderedDict[tuple, tuple[list[weakref.ref], str]] = OrderedDict()

    # -- FieldBackend ------------------------------------------------------------------------

    def prepare(self, gaussians: "Gaussians", cameras: Sequence[Camera]) -> None:
        """Compute the weights of every camera now (otherwise each is computed on first render)."""
        geometry = self._geometry_key(gaussians)
        for camera in cameras:
            self._view(gaussians, camera, geometry)

    def render(self, gaussians: "Gaussians", features: "torch.Tensor", camera: Camera) -> RenderOutput:
        """features: (N, C) -> (H, W, C) features (differentiable w.r.t. features only),
        (H, W) alpha, (H, W) depth."""
        from cclgs_cpu_backends.tiles import SparseBlend

        if features.ndim != 2 or features.shape[0] != len(gaussians):
            raise ValueError(f"features must be (N, C) with N = {len(gaussians)}, got {tuple(features.shape)}")
        view = self._view(gaussians, camera, self._geometry_key(gaussians))
        height, width = view.alpha.shape
        rendered = SparseBlend.apply(features.to(view.alpha.dtype), view.matrix, view.transposed)  # (H * W, C)
        return RenderOutput(features=rendered.reshape(height, width, -1), alpha=view.alpha, depth=view.depth)

    # -- truncation report -------------------------------------------------------------------

    def truncation(self, gaussians: "Gaussians", camera: Camera) -> dict[str, float]:
        """Blending weight the top-K truncation leaves out in one view: its max and mean over pixels."""
        view = self._view(gaussians, camera, self._geometry_key(gaussians))
        return {"max_uncovered": float(view.uncovered.max()), "mean_uncovered": float(view.uncovered.mean())}

    @property
    def stats(self) -> dict[str, Any]:
        """Cached views, their memory, the worst and average uncovered weight over them, the views
        whose worst exceeds ``warn_uncovered``, and the mean number of weights kept per covered
        pixel."""
        views = list(self._views.values())
        covered_pixels = sum(int((v.alpha > 0).sum()) for v in views)
        return {
            "views": len(views),
            "cache_mb": sum(v.nbytes for v in views) / 2**20,
            "max_uncovered": max((float(v.uncovered.max()) for v in views), default=0.0),
            "mean_uncovered": float(np.mean([float(v.uncovered.mean()) for v in views])) if views else 0.0,
            "views_over_warning": sum(float(v.uncovered.max()) > self.warn_uncovered for v in views),
            "weights_per_pixel": sum(v.matrix.values().numel() for v in views) / max(covered_pixels, 1),
        }

    def clear(self) -> None:
        """Forget every cached view."""
        self._views.clear()

    # -- cache -------------------------------------------------------------------------------

    def _geometry_key(self, gaussians: "Gaussians") -> str:
        """``geometry_fingerprint``, hashed once per state of the geometry tensors: it is reused
        while the very same tensor objects (held weakly, so their ids cannot be recycled) keep
        their storage and in-place version counters."""
        tensors = (gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits)
        state = tuple((id(t), t.data_ptr(), t._version, tuple(t.shape)) for t in tensors)
        known = self._fingerprints.get(state)
        if known is not None and all(ref() is t for ref, t in zip(known[0], tensors)):
            self._fingerprints.move_to_end(state)
            return known[1]
        fingerprint = geometry_fingerprint(gaussians)
        self._fingerprints[state] = ([weakref.ref(t) for t in tensors], fingerprint)
        while len(self._fingerprints) > 8:
            self._fingerprints.popitem(last=False)
        return fingerprint

    def _view(self, gaussians: "Gaussians", camera: Camera, geometry: str) -> CachedView:
        key = f"{geometry}:{camera_fingerprint(camera)}"
        if key in self._views:
            self._views.move_to_end(key)
            return self._views[key]
        view = self._compute(gaussians, camera)
        worst = float(view.uncovered.max()) if view.uncovered.numel() else 0.0
        if worst > self.warn_uncovered and not self._warned:
            self._warned = True
            warnings.warn(
                f"cached backend: top_k={self.top_k} leaves up to {worst:.3f} of a pixel's blending weight "
                f"uncovered in a {camera.width}x{camera.height} view (warn_uncovered={self.warn_uncovered}); "
                "raise top_k for exact features. Warned once per run: later views are not reported.",
                stacklevel=3,
            )
        self._views[key] = view
        budget = self.max_cache_mb * 2**20
        while len(self._views) > 1 and sum(v.nbytes for v in self._views.values()) > budget:
            self._views.popitem(last=False)
        return view

    def _compute(self, gaussians: "Gaussians", camera: Camera) -> CachedView:
        import torch

        from cclgs_cpu_backends.tiles import blend_matrices, kept_weights, project_splats

        with torch.no_grad():
            splats = project_splats(
                gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, camera, self.tile_size
            )
            kept = kept_weights(splats, camera, self.tile_size, self.batch_elements, self.top_k, self.tolerance)
            matrix, transposed = blend_matrices(kept, len(gaussians))
        return CachedView(
            matrix=matrix, transposed=transposed, alpha=kept.alpha, depth=kept.depth, uncovered=kept.uncovered()
        )


def geometry_fingerprint(gaussians: "Gaussians") -> str:
    """Hash of the geometry (means, quaternions, log-scales, opacity logits: values, dtype, device)."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in (gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits):
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}{tensor.device}".encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def camera_fingerprint(camera: Camera) -> str:
    """Hash of the camera pose (camera_to_world bytes), intrinsics and image size."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(camera.camera_to_world, dtype=np.float64).tobytes())
    digest.update(np.array([camera.fx, camera.fy, camera.cx, camera.cy], dtype=np.float64).tobytes())
    digest.update(np.array([camera.width, camera.height], dtype=np.int64).tobytes())
    return digest.hexdigest()
