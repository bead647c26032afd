"""LangSplat's autoencoder as a feature compressor (docs/design.md, "Contrastive codebook", the alternative).

The scene's mask embeddings are compressed to a 3-d unit latent by an MLP autoencoder
(D -> 256 -> 128 -> 64 -> 32 -> 3 with BatchNorm and ReLU, and the mirror image back to D, where
D comes from the data). The field regresses the latent of each pixel; a query decodes the
rendered latent back to embedding space.

Training, following LangSplat where it says something:

- loss: mean squared error between the reconstruction and the embedding plus
  ``cosine_weight`` (LangSplat: 0.001) times (1 - mean row cosine); LangSplat's reference code
  takes that cosine along the batch axis, here it is the cosine of each embedding with its
  reconstruction, which is what the term is meant to measure;
- Adam, lr 7e-4 (the value in LangSplat's process script);
- ``steps`` = 3000 batches of ``batch_size`` = 256 features drawn uniformly without
  replacement from all views. LangSplat runs 100 epochs at batch 64; on a level of 30,000
  masks 3000 x 256 is about 26 epochs, and a fit takes about a minute on one busy CPU core
  (a step about 25 ms). On clustered test features the reconstruction cosine levels off
  within a few hundred steps;
- track labels are not used.

Head for the field: field_dim -> ``head_hidden`` (64) -> ReLU -> latent size; the field's loss
is the mean L1 distance to the latent of each covered pixel (callers pass only pixels covered
by a mask). Training runs on the CPU in float32 and is deterministic for a given seed.

torch is imported inside the functions that use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from cclgs_core import ConfigError, DataError, PluginError

if TYPE_CHECKING:
    import torch

    from cclgs_autoencoder.network import LatentAutoencoder


class AutoencoderCompressor:
    """LangSplat's scene autoencoder; the field regresses its unit latent.

    encoder_dims:  widths of the encoder's layers, the last being the latent size
    steps:         optimisation steps
    batch_size:    features per step
    lr:            Adam learning rate
    cosine_weight: weight of the cosine term next to the squared error
    head_hidden:   hidden width of the field's decoder head
    """

    target_kind: Literal["index", "latent"] = "latent"

    def __init__(
        self,
        encoder_dims: tuple[int, ...] = (256, 128, 64, 32, 3),
        steps: int = 3000,
        batch_size: int = 256,
        lr: float = 7e-4,
        cosine_weight: float = 1e-3,
        head_hidden: int = 64,
    ):
        checks = [
            (
                len(encoder_dims) >= 1 and all(width >= 1 for width in encoder_dims),
                "encoder_dims must be positive widths",
            ),
            (steps >= 1, "steps must be >= 1"),
            (batch_size >= 2, "batch_size must be >= 2 (BatchNorm needs two samples)"),
            (lr > 0, "lr must be > 0"),
            (cosine_weight >= 0, "cosine_weight must be >= 0"),
            (head_hidden >= 1, "head_hidden must be >= 1"),
        ]
        for valid, message in checks:
            if not valid:
                raise ConfigError(f"compressor 'autoencoder': {message}")
        self.encoder_dims = tuple(encoder_dims)
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.cosine_weight = cosine_weight
        self.head_hidden = head_hidden
        self._network: "LatentAutoencoder | None" = None

    @property
    def output_size(self) -> int:
        """L, the latent size."""
        return self.encoder_dims[-1]

    @property
    def network(self) -> "LatentAutoencoder":
        if self._network is None:
            raise PluginError("AutoencoderCompressor has no trained network yet: call fit() or load_state_dict() first")
        return self._network

    def fit(self, features: Sequence[np.ndarray], labels: Sequence[np.ndarray], seed: int) -> dict[str, list[float]]:
        """features: per view (M_t, D) unit rows; labels are ignored.
        Returns per-step loss curves "total", "l2", "cos"."""
        import torch
        import torch.nn.functional as F

        from cclgs_autoencoder.network import LatentAutoencoder
        from cclgs_core import repeatable_initialisation

        stacked = torch.from_numpy(_stack_views(features))  # (n, D)
        with repeatable_initialisation(seed):
            network = LatentAutoencoder(stacked.shape[1], self.encoder_dims)
        optimizer = torch.optim.Adam(network.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(seed)
        curves: dict[str, list[float]] = {"total": [], "l2": [], "cos": []}
        network.train()
        for _ in range(self.steps):
            batch = stacked[torch.randperm(len(stacked), generator=generator)[: self.batch_size]]  # (B, D)
            reconstruction = network.decode(network.encode(batch))  # (B, D)
            l2 = ((reconstruction - batch) ** 2).mean()
            cos = 1.0 - F.cosine_similarity(reconstruction, batch, dim=1).mean()
            total = l2 + self.cosine_weight * cos
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            for key, value in (("total", total), ("l2", l2), ("cos", cos)):
                curves[key].append(float(value.detach()))
        self._network = network.eval()
        return curves

    def targets(self, features: np.ndarray) -> np.ndarray:
        """features: (M, D). Returns (M, L) float32 unit latents."""
        import torch

        network = self.network.cpu()
        features = np.asarray(features, dtype=np.float32)
        dim = network.encoder[0].in_features
        if features.ndim != 2 or features.shape[1] != dim:
            raise DataError(
                f"features of shape {features.shape} do not match the autoencoder's dimension {dim}; the feature "
                "stage and the compressor disagree"
            )
        if len(features) == 0:
            return np.zeros((0, self.output_size), dtype=np.float32)
        with torch.no_grad():
            return network.encode(torch.from_numpy(features)).numpy()

    def make_head(self, field_dim: int) -> "torch.nn.Module":
        """(P, field_dim) rendered features -> (P, L) latents."""
        from torch import nn

        return nn.Sequential(
            nn.Linear(field_dim, self.head_hidden), nn.ReLU(), nn.Linear(self.head_hidden, self.output_size)
        )

    def loss(self, outputs: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        """outputs, targets: (P, L) latents. Mean L1 distance, a scalar."""
        return (outputs - targets).abs().mean()

    def decode(self, outputs: "torch.Tensor") -> "torch.Tensor":
        """outputs: (P, L) latents -> (P, D) unit embeddings."""
        import torch

        network = self.network.to(outputs.device)
        with torch.no_grad():
            return network.decode(outputs)

    def state_dict(self) -> dict[str, "torch.Tensor"]:
        """The network's parameters and BatchNorm statistics, keys prefixed "network."."""
        return {f"network.{key}": value.detach().cpu().clone() for key, value in self.network.state_dict().items()}

    def load_state_dict(self, state: dict[str, "torch.Tensor"]) -> None:
        """state: as returned by ``state_dict``; D is read from the first layer's weight."""
        from cclgs_autoencoder.network import LatentAutoencoder

        first = state.get("network.encoder.0.weight")
        if first is None or first.ndim != 2:
            raise PluginError("AutoencoderCompressor.load_state_dict: the cached state is not an autoencoder")
        network = LatentAutoencoder(int(first.shape[1]), self.encoder_dims)
        prefix = "network."
        try:
            network.load_state_dict(
                {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            )
        except RuntimeError as error:
            raise PluginError(
                "AutoencoderCompressor.load_state_dict: the cached network does not fit "
                f"encoder_dims={self.encoder_dims} "
                f"({error}); use the options it was trained with or re-run the compressor stage"
            ) from error
        self._network = network.eval()


def _stack_views(features: Sequence[np.ndarray]) -> np.ndarray:
    """Per-view (M_t, D) features -> (n, D) float32 unit rows, n >= 2."""
    dims = {np.shape(view)[1] for view in features if np.ndim(view) == 2}
    if len(dims) != 1:
        raise DataError("autoencoder fit needs per-view (M, D) features of one D; re-run the feature stage")
    stacked = np.concatenate([np.asarray(view, dtype=np.float32) for view in features])
    if len(stacked) < 2:
        raise DataError(f"autoencoder fit needs at least 2 features, got {len(stacked)}; check the mask stage")
    norms = np.linalg.norm(stacked, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise DataError("features contain zero or non-finite rows; re-run the feature stage")
    return stacked / norms
