"""The dense brute-force renderer as a backend: exact, differentiable, O(pixels x Gaussians)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cclgs_core import Camera, RenderOutput

if TYPE_CHECKING:
    import torch

    from cclgs_core.scene.gaussians import Gaussians


class ReferenceBackend:
    """Every pixel against every Gaussian. For small scenes, debugging and checking other backends."""

    differentiable = True

    def __init__(self, pixels_per_chunk: int = 0):
        self.pixels_per_chunk = pixels_per_chunk

    def prepare(self, gaussians: "Gaussians", cameras: Sequence[Camera]) -> None:
        """Nothing to precompute."""

    def render(self, gaussians: "Gaussians", features: "torch.Tensor", camera: Camera) -> RenderOutput:
        """features: (N, C) -> (H, W, C) features, (H, W) alpha, (H, W) depth."""
        from cclgs_core.scene.reference_render import render_dense

        return render_dense(
            gaussians.means,
            gaussians.quats,
            gaussians.scales,
            gaussians.opacities,
            features,
            camera,
            pixels_per_chunk=self.pixels_per_chunk or None,
        )
