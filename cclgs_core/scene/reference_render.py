"""Dense brute-force Gaussian splatting: every pixel against every Gaussian.

This is the definition every field backend is checked against. It follows the rasterisation
rules of 3DGS as gsplat implements them, minus gsplat's tile-bound culling:

- Gaussians with camera depth outside [NEAR_PLANE, FAR_PLANE] are dropped.
- EWA projection with the Jacobian evaluated at the mean, the view-space position clamped to
  1.3x the field of view (as 3DGS does), then EPS_2D added to the 2D covariance.
- Pixel centres at (x + 0.5, y + 0.5). alpha = min(ALPHA_MAX, opacity * exp(-0.5 d^T S^-1 d));
  contributions below ALPHA_MIN are skipped.
- Front-to-back compositing in order of camera depth; a pixel stops before the Gaussian that
  would bring its transmittance to TRANSMITTANCE_MIN or below.

It is exact and differentiable (autograd) but costs O(pixels x Gaussians): use it for small
scenes and tests; the ``torch`` and ``cached`` backends are the fast equivalents.
"""

from __future__ import annotations

import torch

from cclgs_core.types import Camera, RenderOutput

NEAR_PLANE = 0.01
FAR_PLANE = 1e10
EPS_2D = 0.3
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4


def quaternion_to_rotation(quats: torch.Tensor) -> torch.Tensor:
    """quats: (N, 4) wxyz, any norm -> (N, 3, 3) rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


def project_gaussians(
    means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, camera: Camera
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project 3D Gaussians to the image plane.

    means (N, 3), quats (N, 4) wxyz, scales (N, 3) standard deviations.
    Returns means2d (N, 2) in pixels, conics (N, 2, 2) inverse 2D covariances (blur included),
    depths (N,) camera z, valid (N,) bool (inside the depth range with a positive-definite
    2D covariance). Invalid rows hold finite placeholder values.
    """
    dtype, device = means.dtype, means.device
    view = torch.as_tensor(camera.world_to_camera, dtype=dtype, device=device)  # (4, 4)
    rotation_view, translation_view = view[:3, :3], view[:3, 3]
    points = means @ rotation_view.T + translation_view  # (N, 3) camera space
    depths = points[:, 2]
    in_range = (depths > NEAR_PLANE) & (depths < FAR_PLANE)
    safe_z = torch.where(in_range, depths, torch.ones_like(depths))

    rotations = quaternion_to_rotation(quats)  # (N, 3, 3)
    rs = rotations * scales[:, None, :]
    covariance_world = rs @ rs.transpose(1, 2)  # (N, 3, 3)
    covariance_camera = rotation_view @ covariance_world @ rotation_view.T

    tan_half_x = 0.5 * camera.width / camera.fx
    tan_half_y = 0.5 * camera.height / camera.fy
    limit_x_pos = (camera.width - camera.cx) / camera.fx + 0.3 * tan_half_x
    limit_x_neg = camera.cx / camera.fx + 0.3 * tan_half_x
    limit_y_pos = (camera.height - camera.cy) / camera.fy + 0.3 * tan_half_y
    limit_y_neg = camera.cy / camera.fy + 0.3 * tan_half_y
    tx = safe_z * torch.clamp(points[:, 0] / safe_z, -limit_x_neg, limit_x_pos)
    ty = safe_z * torch.clamp(points[:, 1] / safe_z, -limit_y_neg, limit_y_pos)
    zeros = torch.zeros_like(safe_z)
    jacobian = torch.stack(
        [
            camera.fx / safe_z,
            zeros,
            -camera.fx * tx / safe_z**2,
            zeros,
            camera.fy / safe_z,
            -camera.fy * ty / safe_z**2,
        ],
        dim=-1,
    ).reshape(-1, 2, 3)
    covariance_2d = jacobian @ covariance_camera @ jacobian.transpose(1, 2)  # (N, 2, 2)
    covariance_2d = covariance_2d + EPS_2D * torch.eye(2, dtype=dtype, device=device)

    a, b, c = covariance_2d[:, 0, 0], covariance_2d[:, 0, 1], covariance_2d[:, 1, 1]
    determinant = a * c - b * b
    valid = in_range & (determinant > 0)
    safe_det = torch.where(valid, determinant, torch.ones_like(determinant))
    conics = torch.stack([c, -b, -b, a], dim=-1).reshape(-1, 2, 2) / safe_det[:, None, None]
    means2d = torch.stack(
        [camera.fx * points[:, 0] / safe_z + camera.cx, camera.fy * points[:, 1] / safe_z + camera.cy], dim=-1
    )
    return means2d, conics, depths, valid


def composite(alphas: torch.Tensor) -> torch.Tensor:
    """Blending weights from per-pixel alphas sorted front to back.

    alphas: (P, G) with contributions already thresholded. Returns (P, G) weights
    alpha_i * prod_{j<i} (1 - alpha_j), zero from the Gaussian whose inclusion would bring the
    transmittance to TRANSMITTANCE_MIN or below.
    """
    transmittance_after = torch.cumprod(1.0 - alphas, dim=1)  # (P, G)
    stopped = torch.cumsum((transmittance_after <= TRANSMITTANCE_MIN).to(torch.int32), dim=1) > 0
    transmittance_before = torch.cat([torch.ones_like(alphas[:, :1]), transmittance_after[:, :-1]], dim=1)
    return torch.where(stopped, torch.zeros_like(alphas), alphas * transmittance_before)


def render_dense(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    camera: Camera,
    pixels_per_chunk: int | None = None,
) -> RenderOutput:
    """Render features by brute force.

    means (N, 3), quats (N, 4) wxyz, scales (N, 3) standard deviations, opacities (N,) in
    [0, 1], features (N, C). Returns (H, W, C) features, (H, W) alpha, (H, W) depth.
    """
    height, width = camera.height, camera.width
    channels = features.shape[1]
    dtype, device = means.dtype, means.device
    means2d, conics, depths, valid = project_gaussians(means, quats, scales, camera)
    order = torch.argsort(depths[valid])
    keep = torch.nonzero(valid).squeeze(1)[order]  # (G,) visible Gaussians, front to back
    means2d, conics, depths = means2d[keep], conics[keep], depths[keep]
    opacities, features = opacities[keep], features[keep]

    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)  # (H*W, 2)
    count = max(len(keep), 1)
    chunk = pixels_per_chunk or max(1, 4_000_000 // count)
    colour_chunks, alpha_chunks, depth_chunks = [], [], []
    for start in range(0, pixels.shape[0], chunk):
        offsets = pixels[start : start + chunk, None, :] - means2d[None]  # (P, G, 2)
        sigma = 0.5 * (
            conics[None, :, 0, 0] * offsets[..., 0] ** 2
            + 2 * conics[None, :, 0, 1] * offsets[..., 0] * offsets[..., 1]
            + conics[None, :, 1, 1] * offsets[..., 1] ** 2
        )
        alphas = torch.clamp_max(opacities[None] * torch.exp(-sigma), ALPHA_MAX)  # (P, G)
        alphas = torch.where((alphas >= ALPHA_MIN) & (sigma >= 0), alphas, torch.zeros_like(alphas))
        weights = composite(alphas)
        colour_chunks.append(weights @ features)
        alpha = weights.sum(dim=1)
        alpha_chunks.append(alpha)
        depth_chunks.append(
            torch.where(alpha > 0, (weights @ depths) / alpha.clamp_min(1e-12), torch.zeros_like(alpha))
        )
    return RenderOutput(
        features=torch.cat(colour_chunks).reshape(height, width, channels),
        alpha=torch.cat(alpha_chunks).reshape(height, width),
        depth=torch.cat(depth_chunks).reshape(height, width),
    )
