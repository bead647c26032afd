"""The ``gsplat`` field backend: gsplat's CUDA rasteriser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cclgs_core import Camera, ConfigError, PluginError, RenderOutput, check_device_name

if TYPE_CHECKING:
    import torch

    from cclgs_core.scene.gaussians import Gaussians

#: Feature channels per ``rasterization`` call. gsplat's backward kernel keeps about
#: 16 * 16 * (28 + 4 * width) bytes of shared memory per block for ``width`` channels (the
#: features plus the depth of render_mode "RGB+ED"): 33 fit in the 48 KiB every CUDA GPU has,
#: 65 already fail on common cards and 129 on all. The forward kernel does not depend on width.
MAX_CHUNK = 32
#: Feature widths gsplat's kernels take without padding once the depth channel is appended
#: (kernel widths 1-5, 8, 9, 16, 17, 32, 33).
_NATIVE_FEATURE_CHANNELS = (1, 2, 3, 4, 7, 8, 15, 16, 31, 32)


def padded_channels(channels: int) -> int:
    """The smallest feature width >= ``channels`` (1..MAX_CHUNK) the kernels take with depth appended."""
    return next(width for width in _NATIVE_FEATURE_CHANNELS if width >= channels)


class GsplatBackend:
    """``gsplat.rasterization`` (CUDA, differentiable like ``torch``) with any channel count.

    Features are rendered in chunks of at most ``MAX_CHUNK`` channels, each zero-padded to a
    width the kernels support, with render_mode "RGB+ED" so the expected depth comes out of the
    same pass. Inputs are moved to ``device`` (differentiably) and the outputs come back on the
    device of the features given. ``RenderOutput.extras`` holds gsplat's packed "means2d",
    "gaussian_ids" and "radii" of the first chunk.

    The constructor checks for CUDA and for gsplat's compiled extension (``extension.py``),
    without importing the module that would start building it.

    Differences from the reference: gsplat 1.4 bins each Gaussian to tiles within 3 standard
    deviations of its mean (the reference keeps every alpha >= 1/255, which reaches further
    for opacities above ~0.35) and compiles with fast math; agreement with the ``torch``
    backend is therefore to about 1e-2, not 1e-4.
    """

    differentiable = True

    def __init__(self, tile_size: int = 16, device: str = "cuda"):
        if tile_size < 1:
            raise ConfigError(f"field backend 'gsplat' option tile_size={tile_size}: must be at least 1")
        self.tile_size = tile_size
        self.device = check_device_name(device)
        self._ready = False

    def load(self) -> None:
        """Check that torch sees a GPU and gsplat's compiled extension is there (first use calls this)."""
        if self._ready:
            return
        import torch

        from cclgs_gsplat.extension import extension_status

        if not torch.cuda.is_available():
            raise PluginError(
                "field backend 'gsplat' needs CUDA, and torch sees no CUDA device on this machine. "
                "Use field_backend 'torch' (CPU) or 'cached' (frozen geometry) instead."
            )
        extension = extension_status()
        if not extension.ready:
            raise PluginError(f"field backend 'gsplat': {extension.detail}")
        self._ready = True

    def prepare(self, gaussians: "Gaussians", cameras: Sequence[Camera]) -> None:
        """Nothing to precompute; checks that this machine can run gsplat."""
        self.load()

    def render(self, gaussians: "Gaussians", features: "torch.Tensor", camera: Camera) -> RenderOutput:
        """features: (N, C) -> (H, W, C) features, (H, W) alpha, (H, W) depth, on the features' device."""
        import torch
        from gsplat import rasterization

        from cclgs_core.scene.reference_render import EPS_2D, FAR_PLANE, NEAR_PLANE

        self.load()
        if features.ndim != 2 or features.shape[0] != len(gaussians):
            raise ValueError(f"features must be (N, C) with N = {len(gaussians)}, got {tuple(features.shape)}")
        device, output_device = torch.device(self.device), features.device
        means = gaussians.means.to(device)
        quats = gaussians.quats.to(device)
        scales = gaussians.scales.to(device)
        opacities = gaussians.opacities.to(device)
        features = features.to(device=device, dtype=means.dtype)
        view = torch.as_tensor(camera.world_to_camera, dtype=means.dtype, device=device)[None]  # (1, 4, 4)
        intrinsics = torch.as_tensor(camera.intrinsics, dtype=means.dtype, device=device)[None]  # (1, 3, 3)
        channels = features.shape[1]
        rendered, alpha, depth, extras = [], None, None, {}
        for start in range(0, max(channels, 1), MAX_CHUNK):
            chunk = features[:, start : start + MAX_CHUNK]
            width = padded_channels(max(chunk.shape[1], 1))
            colours = torch.cat([chunk, chunk.new_zeros(chunk.shape[0], width - chunk.shape[1])], dim=1)
            image, alphas, meta = rasterization(
                means,
                quats,
                scales,
                opacities,
                colours,
                view,
                intrinsics,
                camera.width,
                camera.height,
                near_plane=NEAR_PLANE,
                far_plane=FAR_PLANE,
                eps2d=EPS_2D,
                packed=True,
                tile_size=self.tile_size,
                render_mode="RGB+ED",
                rasterize_mode="classic",
                channel_chunk=width + 1,
            )  # image (1, H, W, width + 1), alphas (1, H, W, 1)
            rendered.append(image[0, ..., : chunk.shape[1]])
            if alpha is None:
                alpha, depth = alphas[0, ..., 0], image[0, ..., -1]
                extras = {"means2d": meta["means2d"], "gaussian_ids": meta["gaussian_ids"], "radii": meta["radii"]}
        return RenderOutput(
            features=torch.cat(rendered, dim=-1).to(output_device),
            alpha=alpha.to(output_device),
            depth=depth.to(output_device),
            extras=extras,
        )
