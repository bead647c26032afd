"""3D Gaussians as torch tensors, in the parameterisation of the standard 3DGS ``.ply``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cclgs_core.types import Camera

# Real spherical-harmonics basis constants (degrees 0-3), as used by 3DGS.
_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


@dataclass
class Gaussians:
    """A set of N Gaussians.

    means:          (N, 3) float32 world positions
    quats:          (N, 4) float32 rotations as wxyz quaternions (need not be normalised)
    log_scales:     (N, 3) float32 log of the per-axis standard deviations
    opacity_logits: (N,)   float32 logit of the opacity
    sh:             (N, K, 3) float32 SH colour coefficients, K = (degree + 1) ** 2;
                    ``sh[:, 0]`` is the ply's f_dc, the rest its f_rest
    extras:         name -> (N, ...) float32 additional per-Gaussian properties, for example
                    the semantic field's features; they survive a ``.ply`` round trip
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    sh: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        count = self.means.shape[0]
        expected = {
            "means": (count, 3),
            "quats": (count, 4),
            "log_scales": (count, 3),
            "opacity_logits": (count,),
        }
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Gaussians.{name} must be {shape}, got {tuple(getattr(self, name).shape)}")
        if self.sh.ndim != 3 or self.sh.shape[0] != count or self.sh.shape[2] != 3:
            raise ValueError(f"Gaussians.sh must be (N, K, 3), got {tuple(self.sh.shape)}")
        degree = int(round(self.sh.shape[1] ** 0.5)) - 1
        if (degree + 1) ** 2 != self.sh.shape[1] or degree > 3:
            raise ValueError(f"Gaussians.sh has {self.sh.shape[1]} coefficients; expected 1, 4, 9 or 16")
        for name, values in self.extras.items():
            if values.shape[0] != count:
                raise ValueError(f"extra property {name!r} has {values.shape[0]} rows, expected {count}")

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(round(self.sh.shape[1] ** 0.5)) - 1

    @property
    def scales(self) -> torch.Tensor:
        """(N, 3) standard deviations."""
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> torch.Tensor:
        """(N,) opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    def to(self, device: torch.device | str) -> "Gaussians":
        return Gaussians(
            means=self.means.to(device),
            quats=self.quats.to(device),
            log_scales=self.log_scales.to(device),
            opacity_logits=self.opacity_logits.to(device),
            sh=self.sh.to(device),
            extras={name: values.to(device) for name, values in self.extras.items()},
        )

    def subset(self, keep: torch.Tensor) -> "Gaussians":
        """The Gaussians selected by a (N,) bool mask or an index tensor."""
        return Gaussians(
            means=self.means[keep],
            quats=self.quats[keep],
            log_scales=self.log_scales[keep],
            opacity_logits=self.opacity_logits[keep],
            sh=self.sh[keep],
            extras={name: values[keep] for name, values in self.extras.items()},
        )

    def colors(self, camera: Camera) -> torch.Tensor:
        """(N, 3) RGB seen from ``camera``: SH evaluated along the view direction, + 0.5, clamped at 0."""
        center = torch.as_tensor(camera.center, dtype=self.means.dtype, device=self.means.device)
        directions = self.means - center
        return torch.clamp_min(evaluate_sh(self.sh, directions) + 0.5, 0.0)


def evaluate_sh(coefficients: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Evaluate real spherical harmonics.

    coefficients: (N, K, 3), K in {1, 4, 9, 16}
    directions:   (N, 3) view directions (normalised here)
    returns:      (N, 3)
    """
    count = coefficients.shape[1]
    result = _SH_C0 * coefficients[:, 0]
    if count == 1:
        return result
    d = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]
    result = (
        result - _SH_C1 * y * coefficients[:, 1] + _SH_C1 * z * coefficients[:, 2] - _SH_C1 * x * coefficients[:, 3]
    )
    if count == 4:
        return result
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    result = (
        result
        + _SH_C2[0] * xy * coefficients[:, 4]
        + _SH_C2[1] * yz * coefficients[:, 5]
        + _SH_C2[2] * (2.0 * zz - xx - yy) * coefficients[:, 6]
        + _SH_C2[3] * xz * coefficients[:, 7]
        + _SH_C2[4] * (xx - yy) * coefficients[:, 8]
    )
    if count == 9:
        return result
    return (
        result
        + _SH_C3[0] * y * (3.0 * xx - yy) * coefficients[:, 9]
        + _SH_C3[1] * xy * z * coefficients[:, 10]
        + _SH_C3[2] * y * (4.0 * zz - xx - yy) * coefficients[:, 11]
        + _SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * coefficients[:, 12]
        + _SH_C3[4] * x * (4.0 * zz - xx - yy) * coefficients[:, 13]
        + _SH_C3[5] * z * (xx - yy) * coefficients[:, 14]
        + _SH_C3[6] * x * (xx - 3.0 * yy) * coefficients[:, 15]
    )


def rgb_to_sh_dc(rgb: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The degree-0 coefficient whose colour is ``rgb`` (any shape, values in [0, 1])."""
    return (rgb - 0.5) / _SH_C0
