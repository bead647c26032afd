"""The 3D semantic field: a feature per Gaussian per level, rendered and decoded per pixel.

Every Gaussian carries ``field_dim`` (d_f = 8) features per mask level; both levels are stored
side by side in one (N, levels * d_f) tensor so that one rasterisation renders them together.
Per level, the compressor's head maps a rendered d_f vector to its outputs (prototype logits
or a latent), trained with the compressor's loss against the per-pixel targets; pixels that no
mask covers are ignored. Shared by ``cclgs train`` and the nerfstudio method.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from cclgs_core.helpers.seeding import repeatable_initialisation
from cclgs_core.types import UNLABELED


def pixel_targets(segments: np.ndarray, mask_targets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel targets of one view and level.

    segments:     (H, W) int mask id per pixel, -1 where no mask
    mask_targets: (M,) int64 indices or (M, L) float32 latents
    returns:      valid (H, W) bool and targets of the valid pixels, (P,) or (P, L)
    """
    segments_tensor = torch.as_tensor(segments, dtype=torch.long)
    valid = segments_tensor != UNLABELED
    return valid, torch.as_tensor(mask_targets)[segments_tensor[valid]]


def decode_mask_targets(compressor: Any, mask_targets: np.ndarray) -> np.ndarray:
    """The embeddings a compressor's per-mask targets stand for.

    mask_targets: (M,) int64 indices or (M, L) float32 latents of ``compressor``
    returns:      (M, D) float32 unit embeddings, through ``compressor.decode``
    """
    outputs = torch.as_tensor(np.asarray(mask_targets))
    if compressor.target_kind == "index":
        # Logits of 0 at the target and -inf elsewhere: the target prototype under any decode rule.
        indices = outputs
        outputs = torch.full((len(indices), compressor.output_size), float("-inf"))  # (M, L)
        outputs[torch.arange(len(indices)), indices] = 0.0
    with torch.inference_mode():  # as the core always calls decode
        return compressor.decode(outputs.float()).cpu().numpy()


class SemanticField(torch.nn.Module):
    """Per-Gaussian features (N, levels * field_dim) plus one decoder head per level."""

    def __init__(self, num_gaussians: int, compressors: Mapping[str, Any], field_dim: int = 8, seed: int = 0):
        super().__init__()
        self.levels = list(compressors)
        self.field_dim = field_dim
        self.compressors = dict(compressors)
        generator = torch.Generator().manual_seed(seed)
        initial = 0.1 * torch.randn(num_gaussians, len(self.levels) * field_dim, generator=generator)
        self.features = torch.nn.Parameter(initial)  # (N, levels * d_f)
        with repeatable_initialisation(seed):  # seeded heads, built on the CPU, leaving the global RNG alone
            self.heads = torch.nn.ModuleDict({level: compressors[level].make_head(field_dim) for level in self.levels})

    @property
    def channels(self) -> int:
        return len(self.levels) * self.field_dim

    def level_features(self, rendered: torch.Tensor, level: str) -> torch.Tensor:
        """rendered: (..., levels * d_f) -> (..., d_f) of one level."""
        index = self.levels.index(level)
        return rendered[..., index * self.field_dim : (index + 1) * self.field_dim]

    def outputs(self, rendered: torch.Tensor, level: str) -> torch.Tensor:
        """rendered: (P, levels * d_f) -> (P, L) head outputs of one level."""
        return self.heads[level](self.level_features(rendered, level))

    def loss(
        self, rendered: torch.Tensor, targets: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum over levels of the compressor losses on the pixels that carry a target.

        rendered: (H, W, levels * d_f); targets: level -> (valid (H, W) bool, (P,) or (P, L)).
        Returns the total loss and the per-level values.
        """
        total = rendered.new_zeros(())
        per_level = {}
        for level in self.levels:
            valid, level_targets = targets[level]
            if not bool(valid.any()):
                continue
            level_loss = self.compressors[level].loss(self.outputs(rendered[valid], level), level_targets)
            total = total + level_loss
            per_level[level] = float(level_loss.detach())
        return total, per_level

    @torch.no_grad()
    @torch.inference_mode()
    def decode(self, rendered: torch.Tensor, level: str) -> torch.Tensor:
        """rendered: (P, levels * d_f) -> (P, D) unit embeddings, without autograd (decode need not be
        differentiable)."""
        return self.compressors[level].decode(self.outputs(rendered, level))

    @torch.no_grad()
    def predicted_targets(self, rendered: torch.Tensor, level: str) -> torch.Tensor:
        """rendered: (P, levels * d_f) -> (P,) argmax index (codebooks) or (P, L) latent (autoencoder)."""
        outputs = self.outputs(rendered, level)
        return outputs.argmax(dim=-1) if self.compressors[level].target_kind == "index" else outputs


def target_accuracy(
    field: SemanticField, rendered: torch.Tensor, targets: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, float]:
    """Share of target pixels whose predicted index equals the target (codebook levels only).

    rendered: (H, W, levels * d_f); targets as in ``SemanticField.loss``.
    """
    result = {}
    for level in field.levels:
        valid, level_targets = targets[level]
        if field.compressors[level].target_kind != "index" or not bool(valid.any()):
            continue
        predicted = field.predicted_targets(rendered[valid], level)
        result[level] = float((predicted == level_targets).float().mean())
    return result
