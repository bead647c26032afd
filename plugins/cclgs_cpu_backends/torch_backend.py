"""The ``torch`` field backend: tiled rasterisation in plain torch, on any device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cclgs_core import Camera, RenderOutput

if TYPE_CHECKING:
    import torch

    from cclgs_core.scene.gaussians import Gaussians


class TorchBackend:
    """CPU (or any torch device) rasteriser, differentiable with respect to means, quaternions,
    log-scales, opacity logits and features.

    Same result as ``cclgs_core.scene.reference_render.render_dense`` (to float rounding) at a cost
    proportional to the pixels each Gaussian actually covers: Gaussians are culled where their
    alpha falls below 1/255, binned to ``tile_size`` tiles, and each tile is blended against its
    own Gaussians, ``batch_elements`` (tiles x pixels x Gaussians) at a time. Backward needs the
    blending weights: a view with at most ``keep_weights_up_to`` of them (8 bytes each) keeps them
    from the forward pass; a larger one recomputes them batch by batch, which bounds memory (a
    1080 x 1920 photo can need over a billion) at the cost of a second blending pass.

    ``RenderOutput.extras`` holds "means2d" (V, 2), "gaussian_ids" (V,) and "radii" (V,) of the
    V Gaussians drawn, front to back, as gsplat's packed mode names them (for densification).
    """

    differentiable = True

    def __init__(self, tile_size: int = 8, batch_elements: int = 2_000_000, keep_weights_up_to: int = 200_000_000):
        if tile_size < 1 or batch_elements < 1 or keep_weights_up_to < 0:
            from cclgs_core import ConfigError

            raise ConfigError(
                f"torch backend: tile_size and batch_elements must be positive and keep_weights_up_to not negative, "
                f"got {tile_size}, {batch_elements}, {keep_weights_up_to}"
            )
        self.tile_size = tile_size
        self.batch_elements = batch_elements
        self.keep_weights_up_to = keep_weights_up_to

    def prepare(self, gaussians: "Gaussians", cameras: Sequence[Camera]) -> None:
        """Nothing to precompute: geometry may change between renders."""

    def render(self, gaussians: "Gaussians", features: "torch.Tensor", camera: Camera) -> RenderOutput:
        """features: (N, C) -> (H, W, C) features, (H, W) alpha, (H, W) depth."""
        import torch

        from cclgs_cpu_backends.tiles import composite, project_splats

        if features.ndim != 2 or features.shape[0] != len(gaussians):
            raise ValueError(f"features must be (N, C) with N = {len(gaussians)}, got {tuple(features.shape)}")
        channels = features.shape[1]
        splats = project_splats(
            gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, camera, self.tile_size
        )
        dtype = splats.means2d.dtype
        values = torch.cat(
            [features[splats.ids].to(dtype), splats.depths[:, None], torch.ones_like(splats.depths)[:, None]], dim=1
        )  # (V, C + 2): features, depth, 1 (whose blend is alpha)
        image = composite(
            splats, values, camera, self.tile_size, self.batch_elements, self.keep_weights_up_to
        )  # (H, W, C + 2)
        alpha = image[..., channels + 1]
        depth = torch.where(alpha > 0, image[..., channels] / alpha.clamp_min(1e-12), torch.zeros_like(alpha))
        return RenderOutput(
            features=image[..., :channels],
            alpha=alpha,
            depth=depth,
            extras={"means2d": splats.means2d, "gaussian_ids": splats.ids, "radii": splats.radii},
        )
