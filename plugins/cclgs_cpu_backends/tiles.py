"""Tiled front-to-back Gaussian compositing in plain torch (runs on the CPU).

The rules are those of ``cclgs_core.scene.reference_render`` (the definition of correct rendering):
the same projection (``project_gaussians``, identical to gsplat's ``_fully_fused_projection``),
the same alpha threshold, clamp and early stop. What makes it fast is culling and binning:

1. A Gaussian contributes to a pixel only where ``opacity * exp(-sigma) >= 1/255``, i.e. inside
   the ellipse ``d^T Q d <= 2 ln(255 opacity)`` (Q the conic). The ellipse's bounding box has
   half-extents ``sqrt(t * S_xx)`` and ``sqrt(t * S_yy)`` (S = Q^-1 the 2D covariance,
   t = 2 ln(255 opacity)); each is at most ``sqrt(t * lambda_max(S))``. Gaussians whose box
   misses the image, behind the near plane, or with opacity < 1/255 are dropped.
2. Every remaining Gaussian is listed in the tiles (``tile_size`` x ``tile_size`` pixels) its box
   touches, in depth order.
3. Tiles are processed in batches of similar Gaussian counts, padded to the batch's largest
   count; each tile's pixels are blended against its own Gaussians only, with a hand-written
   backward pass (``_CompositeTiles``) that keeps two (B, P, G) tensors per batch. Gaussian
   exponents and the backward's pixel sums are products with the (P, 6) matrix of pixel
   monomials, so the (B, P, G) work is a dozen or two passes over memory each way.

Shapes: N Gaussians, V of them visible, B tiles in a batch, P = tile_size**2 pixels per tile,
G Gaussian slots per tile of the batch, C' blended channels.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterator

import torch

from cclgs_core import Camera
from cclgs_core.scene.reference_render import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN, project_gaussians

#: Relative and absolute widening of the culling box, so rounding never drops a contributing pixel.
_BOX_RELATIVE_MARGIN = 1e-4
_BOX_PIXEL_MARGIN = 1e-3


@dataclass
class Splats:
    """The Gaussians one camera sees, sorted front to back.

    ids:         (V,) int64 indices into the N Gaussians
    means2d:     (V, 2) pixel positions (differentiable)
    conics:      (V, 3) a, b, c of the inverse 2D covariance [[a, b], [b, c]] (differentiable)
    depths:      (V,) camera z (differentiable)
    opacities:   (V,) in [1/255, 1] (differentiable)
    tile_boxes:  (V, 4) int64 first and last tile column, first and last tile row (inclusive)
    radii:       (V,) float pixel half-extent of the culling box (larger of x and y)
    """

    ids: torch.Tensor
    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    opacities: torch.Tensor
    tile_boxes: torch.Tensor
    radii: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]


def project_splats(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    camera: Camera,
    tile_size: int,
) -> Splats:
    """Project and cull. means (N, 3), quats (N, 4) wxyz, scales (N, 3), opacities (N,)."""
    means2d, conics, depths, valid = project_gaussians(means, quats, scales, camera)
    with torch.no_grad():
        a = conics[:, 0, 0].double()
        b = conics[:, 0, 1].double()
        c = conics[:, 1, 1].double()
        opacity = opacities.detach().double()
        reaches_threshold = opacity * (1 + _BOX_RELATIVE_MARGIN) >= ALPHA_MIN
        level = 2.0 * torch.log(torch.clamp_min(opacity / ALPHA_MIN, 1.0))  # (N,) t = 2 ln(255 o)
        level = level * (1 + _BOX_RELATIVE_MARGIN) + _BOX_RELATIVE_MARGIN
        determinant = torch.where(valid, a * c - b * b, torch.ones_like(a))
        half_x = torch.sqrt(level * c / determinant) + _BOX_PIXEL_MARGIN
        half_y = torch.sqrt(level * a / determinant) + _BOX_PIXEL_MARGIN
        centre_x = means2d[:, 0].detach().double()
        centre_y = means2d[:, 1].detach().double()
        # pixel i (centre i + 0.5) is inside when |i + 0.5 - centre| <= half extent
        first_x = torch.ceil(centre_x - half_x - 0.5)
        last_x = torch.floor(centre_x + half_x - 0.5)
        first_y = torch.ceil(centre_y - half_y - 0.5)
        last_y = torch.floor(centre_y + half_y - 0.5)
        keep = (
            valid
            & reaches_threshold
            & (last_x >= 0)
            & (first_x <= camera.width - 1)
            & (last_y >= 0)
            & (first_y <= camera.height - 1)
            & (first_x <= last_x)
            & (first_y <= last_y)
        )
        kept = torch.nonzero(keep).squeeze(1)
        kept = kept[torch.argsort(depths.detach()[kept])]
        boxes = (
            torch.stack(
                [
                    first_x[kept].clamp(0, camera.width - 1),
                    last_x[kept].clamp(0, camera.width - 1),
                    first_y[kept].clamp(0, camera.height - 1),
                    last_y[kept].clamp(0, camera.height - 1),
                ],
                dim=1,
            ).long()
            // tile_size
        )
        radii = torch.maximum(half_x[kept], half_y[kept]).to(means.dtype)
    return Splats(
        ids=kept,
        means2d=means2d[kept],
        conics=torch.stack([conics[kept, 0, 0], conics[kept, 0, 1], conics[kept, 1, 1]], dim=1),
        depths=depths[kept],
        opacities=opacities[kept],
        tile_boxes=boxes,
        radii=radii,
    )


@dataclass
class TileBatch:
    """Tiles blended together.

    tiles:   (B,) int64 tile index (row-major over the tile grid)
    slots:   (B, G) int64 rank of each tile's Gaussians in the Splats (front to back); padding
             slots hold V, the index of an all-zero padding row
    origins: (B, 2) pixel coordinates (x, y) of each tile's top-left corner
    """

    tiles: torch.Tensor
    slots: torch.Tensor
    origins: torch.Tensor


#: A batch is closed when the next tile has fewer Gaussians than this fraction of the batch's
#: first (largest) tile, once it holds 1/32 of the element budget: little padding, few batches.
_BATCH_COUNT_RATIO = 0.7


def tile_batches(splats: Splats, camera: Camera, tile_size: int, max_elements: int) -> Iterator[TileBatch]:
    """Group the non-empty tiles into batches of at most ``max_elements`` = B * P * G (one tile
    may exceed it alone), largest Gaussian counts first, padded to the batch's largest count."""
    device = splats.ids.device
    tiles_x = math.ceil(camera.width / tile_size)
    tiles_y = math.ceil(camera.height / tile_size)
    count = len(splats)
    boxes = splats.tile_boxes
    widths = boxes[:, 1] - boxes[:, 0] + 1
    heights = boxes[:, 3] - boxes[:, 2] + 1
    per_splat = widths * heights  # (V,) tiles each Gaussian touches
    rank = torch.repeat_interleave(torch.arange(count, device=device), per_splat)  # (E,)
    first_pair = torch.cumsum(per_splat, 0) - per_splat
    local = torch.arange(rank.shape[0], device=device) - first_pair[rank]
    column = boxes[rank, 0] + local % widths[rank]
    row = boxes[rank, 2] + local // widths[rank]
    tile = row * tiles_x + column  # (E,)
    # ranks are ascending already, so a stable sort by tile keeps each tile's depth order
    tile, order = torch.sort(tile, stable=True)
    rank = rank[order]
    per_tile = torch.bincount(tile, minlength=tiles_x * tiles_y)  # (tiles,)
    tile_start = torch.cumsum(per_tile, 0) - per_tile
    busy = torch.nonzero(per_tile).squeeze(1)
    busy = busy[torch.argsort(per_tile[busy], descending=True, stable=True)]
    busy_counts = per_tile[busy].tolist()

    pixels_per_tile = tile_size * tile_size
    padding_rank = torch.full((1,), count, device=device, dtype=torch.long)
    last_pair = max(rank.shape[0] - 1, 0)
    start = 0
    while start < len(busy_counts):
        largest = busy_counts[start]
        stop = start + 1
        while (
            stop < len(busy_counts)
            and (stop - start + 1) * pixels_per_tile * largest <= max_elements
            and (
                busy_counts[stop] >= _BATCH_COUNT_RATIO * largest
                or (stop - start) * pixels_per_tile * largest < max_elements // 32
            )
        ):
            stop += 1
        tiles = busy[start:stop]
        slot = torch.arange(largest, device=device)
        filled = slot[None, :] < per_tile[tiles][:, None]  # (B, G)
        position = (tile_start[tiles][:, None] + slot[None, :]).clamp_max(last_pair)
        slots = torch.where(filled, rank[position], padding_rank)
        origins = torch.stack([tiles % tiles_x, tiles // tiles_x], dim=-1) * tile_size  # (B, 2)
        yield TileBatch(tiles=tiles, slots=slots, origins=origins.to(splats.means2d.dtype))
        start = stop


def pixel_monomials(tile_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(P, 6) monomials [1, u, v, u^2, u v, v^2] of the pixel centres (u, v) of a tile, in
    coordinates relative to the tile's corner (small numbers, so the expansions below stay exact
    to float rounding)."""
    v, u = torch.meshgrid(
        torch.arange(tile_size, dtype=dtype, device=device) + 0.5,
        torch.arange(tile_size, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v], dim=1)


#: Columns of the per-Gaussian table blended by ``_CompositeTiles``: x, y, conic a, b, c, opacity, values.
_GEOMETRY_COLUMNS = 6


def _local_geometry(rows: torch.Tensor, origins: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """rows (B, G, 6 + C'), origins (B, 2) -> tile-local mean u, v and conic a, b, c, each (B, G)."""
    mean_u = rows[..., 0] - origins[:, None, 0]
    mean_v = rows[..., 1] - origins[:, None, 1]
    return mean_u, mean_v, rows[..., 2], rows[..., 3], rows[..., 4]


def blend_weights(
    rows: torch.Tensor, origins: torch.Tensor, monomials: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alphas and transmittances of each tile's pixels against its Gaussians, front to back.

    rows (B, G, 6 + C') table rows [x, y, a, b, c, opacity, ...], origins (B, 2) tile corners,
    monomials (P, 6) from ``pixel_monomials``.
    Returns alpha (B, P, G), 0 where below 1/255, and transmittance (B, P, G) before each
    Gaussian, 0 from the Gaussian that would bring it to TRANSMITTANCE_MIN or below; the
    blending weight is their product.

    ``log(opacity) - sigma``, with sigma = 0.5 a du^2 + b du dv + 0.5 c dv^2, is a quadratic
    polynomial in the tile-local pixel position, so one matrix product gives it for all pixels.
    (sigma >= 0 for the positive-definite conics of visible Gaussians, so the reference's
    ``sigma >= 0`` test only ever fires on rounding and is not repeated here.)
    """
    mean_u, mean_v, a, b, c = _local_geometry(rows, origins)
    log_opacity = torch.log(rows[..., 5].clamp_min(1e-30))
    grad_u = a * mean_u + b * mean_v  # (B, G): minus the u coefficient of sigma
    grad_v = b * mean_u + c * mean_v
    constant = 0.5 * (mean_u * grad_u + mean_v * grad_v)  # sigma at the tile corner
    coefficients = torch.stack([log_opacity - constant, grad_u, grad_v, -0.5 * a, -b, -0.5 * c], dim=1)  # (B, 6, G)
    alpha = torch.exp_(torch.matmul(monomials, coefficients)).clamp_max_(ALPHA_MAX)  # (B, P, G)
    alpha = alpha.mul_(alpha >= ALPHA_MIN)
    after = torch.cumprod(1.0 - alpha, dim=2)
    before = torch.cat([torch.ones_like(after[:, :, :1]), after[:, :, :-1]], dim=2)
    return alpha, before.mul_(after > TRANSMITTANCE_MIN)


class _CompositeTiles(torch.autograd.Function):
    """out (B, P, C') = sum over G of alpha * transmittance * values, with an analytic backward.

    Inputs: table (V + 1, 6 + C') rows [x, y, a, b, c, opacity, values] (the last row all zero,
    for padding), slots (B, G) row of each tile's Gaussians, origins (B, 2), monomials (P, 6).

    For weights w_i = alpha_i T_i and a pixel gradient g: dL/dv_i = w_i g,
    dL/dalpha_i = T_i (g . v_i) - (sum_{k>i} w_k g . v_k) / (1 - alpha_i); entries that are
    thresholded, clamped or past the early stop get no gradient (as with autograd on the
    reference). With s = dL/dsigma = -alpha dL/dalpha, the opacity gradient is -sum(s) / opacity
    and the mean and conic gradients need sum(s du^a dv^b) for a + b <= 2, obtained from one
    product of s with the pixel monomials.
    """

    @staticmethod
    def forward(ctx, table, slots, origins, monomials, keep_weights):
        rows = table[slots]  # (B, G, 6 + C')
        alpha, before = blend_weights(rows, origins, monomials)
        ctx.kept_weights = keep_weights
        if keep_weights:
            ctx.save_for_backward(table, slots, origins, monomials, alpha, before)
        else:  # bounded memory: the (B, P, G) weights are recomputed in backward
            ctx.save_for_backward(table, slots, origins, monomials)
        return torch.bmm(alpha * before, rows[..., _GEOMETRY_COLUMNS:])

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.kept_weights:
            table, slots, origins, monomials, alpha, before = ctx.saved_tensors
            rows = table[slots]
        else:
            table, slots, origins, monomials = ctx.saved_tensors
            rows = table[slots]
            alpha, before = blend_weights(rows, origins, monomials)
        values = rows[..., _GEOMETRY_COLUMNS:]
        weights = alpha * before  # (B, P, G)
        grad_values = torch.bmm(weights.transpose(1, 2), grad_out)  # (B, G, C')
        projected = torch.bmm(grad_out, values.transpose(1, 2))  # (B, P, G) g . v_i
        behind = weights.mul_(projected)
        behind = behind.sum(dim=2, keepdim=True) - torch.cumsum(behind, dim=2)  # sum_{k>i} w_k g . v_k
        grad_alpha = before * projected - behind / (1.0 - alpha)
        live = (before > 0) & (alpha < ALPHA_MAX)  # thresholded entries have alpha = 0 below
        grad_sigma = grad_alpha.mul_(live).mul_(alpha)  # minus dL/dsigma, (B, P, G)
        moments = torch.matmul(grad_sigma.transpose(1, 2), monomials).neg_()  # (B, G, 6) sums of s u^a v^b
        s, s_u, s_v, s_uu, s_uv, s_vv = moments.unbind(-1)
        mean_u, mean_v, a, b, c = _local_geometry(rows, origins)
        s_du = s_u - mean_u * s  # sum s (u - mean_u)
        s_dv = s_v - mean_v * s
        s_dudu = s_uu - 2 * mean_u * s_u + mean_u * mean_u * s
        s_dudv = s_uv - mean_u * s_v - mean_v * s_u + mean_u * mean_v * s
        s_dvdv = s_vv - 2 * mean_v * s_v + mean_v * mean_v * s
        grad_rows = torch.cat(
            [
                torch.stack(
                    [
                        -(a * s_du + b * s_dv),
                        -(b * s_du + c * s_dv),
                        0.5 * s_dudu,
                        s_dudv,
                        0.5 * s_dvdv,
                        -s / rows[..., 5].clamp_min(ALPHA_MIN / 2),
                    ],
                    dim=-1,
                ),
                grad_values,
            ],
            dim=-1,
        )  # (B, G, 6 + C')
        grad_table = torch.zeros_like(table).index_add_(0, slots.reshape(-1), grad_rows.reshape(-1, table.shape[1]))
        return grad_table, None, None, None, None


def composite(
    splats: Splats,
    values: torch.Tensor,
    camera: Camera,
    tile_size: int,
    max_elements: int,
    keep_weights_up_to: int | None = None,
) -> torch.Tensor:
    """Blend per-Gaussian values into an image.

    values: (V, C') aligned with ``splats`` (front to back). Returns (H, W, C').
    keep_weights_up_to: when the view's blending weights (tiles x pixels x Gaussians in all) number
    more, backward recomputes them batch by batch instead of keeping them, so memory stays about one
    batch (None: always keep them).
    """
    height, width = camera.height, camera.width
    channels = values.shape[1]
    tiles_x = math.ceil(width / tile_size)
    tiles_y = math.ceil(height / tile_size)
    dtype = splats.means2d.dtype
    table = torch.cat(
        [splats.means2d, splats.conics, splats.opacities[:, None], values.to(dtype)], dim=1
    )  # (V, 6 + C')
    table = torch.cat([table, table.new_zeros(1, table.shape[1])])  # padding row
    monomials = pixel_monomials(tile_size, dtype, table.device)
    batches = list(tile_batches(splats, camera, tile_size, max_elements))
    elements = sum(batch.slots.numel() for batch in batches) * tile_size * tile_size
    keep_weights = keep_weights_up_to is None or elements <= keep_weights_up_to
    tile_ids, tile_outputs = [], []
    for batch in batches:
        tile_outputs.append(_CompositeTiles.apply(table, batch.slots, batch.origins, monomials, keep_weights))
        tile_ids.append(batch.tiles)
    if not tile_outputs:  # nothing visible: an empty sum over Gaussians
        return (values.new_zeros(height * width, 0) @ values[:0]).reshape(height, width, channels)
    canvas = table.new_zeros(tiles_x * tiles_y, tile_size * tile_size, channels)
    canvas = canvas.index_copy(0, torch.cat(tile_ids), torch.cat(tile_outputs))
    canvas = canvas.reshape(tiles_y, tiles_x, tile_size, tile_size, channels).permute(0, 2, 1, 3, 4)
    return canvas.reshape(tiles_y * tile_size, tiles_x * tile_size, channels)[:height, :width]


@dataclass
class KeptWeights:
    """The blending weights a cached view keeps, as (pixel, Gaussian, weight) entries, and the
    exact alpha and depth of the view (E kept entries, P = H * W pixels, row-major).

    rows:    (E,) int64 pixel index
    columns: (E,) int64 Gaussian index into the N Gaussians
    values:  (E,) blending weight, > 0
    alpha:   (H, W) accumulated opacity of all contributions, kept or not
    depth:   (H, W) alpha-normalised depth of all contributions
    """

    rows: torch.Tensor
    columns: torch.Tensor
    values: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor

    def uncovered(self) -> torch.Tensor:
        """(H, W) blending weight left out: alpha minus the sum of the kept weights."""
        kept = torch.zeros(self.alpha.numel(), dtype=self.values.dtype, device=self.values.device)
        kept.index_add_(0, self.rows, self.values)
        return torch.clamp_min(self.alpha - kept.reshape(self.alpha.shape), 0.0)


def kept_weights(
    splats: Splats, camera: Camera, tile_size: int, max_elements: int, top_k: int, tolerance: float
) -> KeptWeights:
    """Every pixel's largest blending weights, without gradients: as few as leave at most
    ``tolerance`` of the pixel's alpha out, and never more than ``top_k``.

    A pixel keeps its weights in decreasing order while what is still left out exceeds
    ``tolerance``; so a pixel with few contributions keeps them all, and a pixel whose alpha is
    at most ``tolerance`` keeps none. Only ``top_k`` can leave more than ``tolerance`` out.
    """
    height, width = camera.height, camera.width
    device, dtype = splats.means2d.device, splats.means2d.dtype
    tiles_x = math.ceil(width / tile_size)
    tiles_y = math.ceil(height / tile_size)
    pixels_per_tile = tile_size * tile_size
    tile_count = tiles_x * tiles_y
    alpha = torch.zeros(tile_count, pixels_per_tile, dtype=dtype, device=device)
    depth_sum = torch.zeros(tile_count, pixels_per_tile, dtype=dtype, device=device)
    # (tiles, P) row-major pixel index of each tile pixel, -1 for pixels past the image's edge
    local = torch.arange(pixels_per_tile, device=device)
    local_y, local_x = local // tile_size, local % tile_size
    tile_ids = torch.arange(tile_count, device=device)
    pixel_y = (tile_ids // tiles_x * tile_size)[:, None] + local_y[None, :]
    pixel_x = (tile_ids % tiles_x * tile_size)[:, None] + local_x[None, :]
    pixel_rows = torch.where((pixel_y < height) & (pixel_x < width), pixel_y * width + pixel_x, -1)
    rows, columns, values = [], [], []
    with torch.no_grad():
        ids = torch.cat([splats.ids, splats.ids.new_zeros(1)])
        depths = torch.cat([splats.depths, splats.depths.new_zeros(1)])
        table = torch.cat([splats.means2d, splats.conics, splats.opacities[:, None]], dim=1)  # (V, 6)
        table = torch.cat([table, table.new_zeros(1, _GEOMETRY_COLUMNS)])
        monomials = pixel_monomials(tile_size, dtype, device)
        for batch in tile_batches(splats, camera, tile_size, max_elements):
            slots = batch.slots
            batch_alpha, before = blend_weights(table[slots], batch.origins, monomials)
            blend = batch_alpha * before  # (B, P, G)
            pixel_alpha = blend.sum(dim=2)  # (B, P)
            alpha[batch.tiles] = pixel_alpha
            depth_sum[batch.tiles] = torch.bmm(blend, depths[slots][:, :, None]).squeeze(2)
            top, position = torch.topk(blend, min(top_k, blend.shape[2]), dim=2)  # (B, P, k), decreasing
            left_out_before = pixel_alpha[..., None] - (torch.cumsum(top, dim=2) - top)  # (B, P, k)
            batch_rows = pixel_rows[batch.tiles]  # (B, P)
            keep = (top > 0) & (left_out_before > tolerance) & (batch_rows >= 0)[..., None]
            tile, pixel, rank = torch.nonzero(keep, as_tuple=True)  # (e,) each
            rows.append(batch_rows[tile, pixel])
            columns.append(ids[slots[tile, position[tile, pixel, rank]]])
            values.append(top[tile, pixel, rank])

    def image(tiles: torch.Tensor) -> torch.Tensor:
        shaped = tiles.reshape(tiles_y, tiles_x, tile_size, tile_size).transpose(1, 2)
        return shaped.reshape(tiles_y * tile_size, tiles_x * tile_size)[:height, :width]

    alpha_image = image(alpha)
    depth = torch.where(alpha_image > 0, image(depth_sum) / alpha_image.clamp_min(1e-12), torch.zeros_like(alpha_image))
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return KeptWeights(
        rows=torch.cat(rows) if rows else empty,
        columns=torch.cat(columns) if columns else empty,
        values=torch.cat(values) if values else empty.to(dtype),
        alpha=alpha_image,
        depth=depth,
    )


def blend_matrices(kept: KeptWeights, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (H * W, N) blending matrix of ``kept`` and its transpose (N, H * W), CSR with int32
    indices (N = ``count``)."""
    pixels = kept.alpha.numel()

    def csr(first: torch.Tensor, second: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            matrix = (
                torch.sparse_coo_tensor(torch.stack([first, second]), kept.values, size, check_invariants=True)
                .coalesce()
                .to_sparse_csr()
            )
            return torch.sparse_csr_tensor(
                matrix.crow_indices().int(),
                matrix.col_indices().int(),
                matrix.values(),
                size=size,
                check_invariants=True,
            )

    return csr(kept.rows, kept.columns, (pixels, count)), csr(kept.columns, kept.rows, (count, pixels))


class SparseBlend(torch.autograd.Function):
    """(P, N) blending matrix @ (N, C) features, differentiable w.r.t. the features through the
    precomputed transpose (CSR products both ways)."""

    @staticmethod
    def forward(ctx, features, matrix, transposed):
        ctx.transposed = transposed
        return matrix @ features

    @staticmethod
    def backward(ctx, grad_out):
        return ctx.transposed @ grad_out.contiguous(), None, None
