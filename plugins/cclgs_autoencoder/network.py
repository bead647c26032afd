"""The autoencoder network; imports torch at module level, so load it lazily."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LatentAutoencoder(nn.Module):
    """LangSplat's scene autoencoder: (B, D) embeddings <-> (B, latent) unit latents.

    Encoder: Linear layers D -> encoder_dims[0] -> ... -> encoder_dims[-1] (the latent), each
    hidden layer followed by BatchNorm and ReLU. Decoder: the mirror image back to D with ReLU
    between layers. Both ends are L2-normalised, as in LangSplat.
    """

    def __init__(self, dim: int, encoder_dims: tuple[int, ...]):
        super().__init__()
        self.encoder = _stack([dim, *encoder_dims], batch_norm=True)
        self.decoder = _stack([*reversed(encoder_dims), dim], batch_norm=False)

    def encode(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, latent) unit latents."""
        return F.normalize(self.encoder(embeddings), dim=-1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, latent) -> (B, D) unit embeddings."""
        return F.normalize(self.decoder(latents), dim=-1)


def _stack(widths: list[int], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        if index > 0:
            if batch_norm:
                layers.append(nn.BatchNorm1d(width_in))
            layers.append(nn.ReLU())
        layers.append(nn.Linear(width_in, width_out))
    return nn.Sequential(*layers)
