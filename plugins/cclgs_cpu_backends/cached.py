"""The ``cached`` field backend: blending weights precomputed for frozen geometry."""

from __future__ import annotations

import hashlib
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from cclgs_core.errors import ConfigError
from cclgs_core.types import Camera, RenderOutput

if TYPE_CHECKING:
    import torch

    from cclgs_core.gaussians import Gaussians


@dataclass
class CachedView:
    """The top-K blending weights of one camera (P = H * W pixels, row-major).

    matrix:     (P, N) sparse CSR blending weights, at most K non-zero per row (int32 indices)
    transposed: (N, P) its transpose, for the backward pass
    alpha:      (H, W) exact accumulated opacity (all contributions, not only the kept ones)
    depth:      (H, W) exact alpha-normalised depth
    uncovered:  (H, W) blending weight left out by the truncation: alpha - kept weights
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
    """Frozen geometry: per camera and pixel, the ``top_k`` largest (Gaussian, blending weight)
    pairs are computed once (with the same rasterisation rules as the ``torch`` backend); a
    render is then the sparse product ``sum_k weight_k * features[index_k]``.

    Gradients: the rendered features are differentiable with respect to ``features`` only.
    The geometry (means, quaternions, scales, opacities) is treated as constant: no gradient
    reaches it, which is why ``differentiable`` is False (that flag means "differentiable with
    respect to geometry and features").

    Exactness: alpha and depth are exact. Features are exact wherever a pixel has at most
    ``top_k`` contributing Gaussians; otherwise the smallest weights are dropped and the
    rendered feature misses ``uncovered = alpha - sum(kept weights)`` of blending mass (at
    most ``uncovered * max |feature|`` per channel). ``truncation(gaussians, camera)`` gives a
    view's max and mean uncovered weight, ``stats`` those of all cached views; a view whose max
    exceeds ``warn_uncovered`` raises a warning when it is computed. The product is a sparse
    (pixels x N) CSR matrix times the features, and its transpose for the gradient.

    Cache: one entry per (camera pose, intrinsics and size, geometry content) — the key hashes
    the camera matrix and intrinsics and the bytes of means, quaternions, log-scales and
    opacity logits, so edited or replaced geometry is never served stale weights (the hash is
    computed once per state of those tensors: object, storage and in-place version). An entry
    takes at most H * W * (16 * top_k + 16) + 4 * N bytes (the weights and int32 indices of the
    matrix and of its transpose, alpha, depth and uncovered maps in float32), e.g. 4.5 MB at
    128 x 128 with top_k 16; least recently used entries are evicted beyond ``max_cache_mb``.
    """

    differentiable = False

    def __init__(
        self,
        top_k: int = 16,
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
        self.top_k = top_k
        self.tile_size = tile_size
        self.batch_elements = batch_elements
        self.max_cache_mb = max_cache_mb
        self.warn_uncovered = warn_uncovered
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
        """Cached views, their memory, and the worst and average uncovered weight over them."""
        views = list(self._views.values())
        return {
            "views": len(views),
            "cache_mb": sum(v.nbytes for v in views) / 2**20,
            "max_uncovered": max((float(v.uncovered.max()) for v in views), default=0.0),
            "mean_uncovered": float(np.mean([float(v.uncovered.mean()) for v in views])) if views else 0.0,
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
        if worst > self.warn_uncovered:
            warnings.warn(
                f"cached backend: top_k={self.top_k} leaves up to {worst:.3f} of a pixel's blending weight "
                f"uncovered in a {camera.width}x{camera.height} view (warn_uncovered={self.warn_uncovered}); "
                "raise top_k for exact features",
                stacklevel=3,
            )
        self._views[key] = view
        budget = self.max_cache_mb * 2**20
        while len(self._views) > 1 and sum(v.nbytes for v in self._views.values()) > budget:
            self._views.popitem(last=False)
        return view

    def _compute(self, gaussians: "Gaussians", camera: Camera) -> CachedView:
        import torch

        from cclgs_cpu_backends.tiles import blend_matrices, project_splats, top_weights

        with torch.no_grad():
            splats = project_splats(
                gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, camera, self.tile_size
            )
            indices, weights, alpha, depth = top_weights(
                splats, camera, self.tile_size, self.batch_elements, self.top_k
            )
            matrix, transposed = blend_matrices(indices, weights, len(gaussians))
        uncovered = torch.clamp_min(alpha - weights.sum(dim=-1), 0.0)
        return CachedView(matrix=matrix, transposed=transposed, alpha=alpha, depth=depth, uncovered=uncovered)


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
