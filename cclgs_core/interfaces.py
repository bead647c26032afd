"""One ``typing.Protocol`` per component kind.

A plugin is a small class whose constructor keywords are its options (all with defaults, so a
run config may name it with no options). It satisfies one of these protocols; nothing has to
be inherited. Shapes follow the legend in ``cclgs_core.types``:

- ``H, W`` image size, ``M`` masks of one image at one level, ``D`` embedding dimension,
  ``N`` Gaussians, ``C`` rendered channels, ``P`` pixels, ``T`` texts, ``L`` compressor outputs.

Data flows scene -> masks -> features -> labels -> compressor -> targets -> field -> queries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from cclgs_core.types import Camera, Frame, FrameMasks, RenderOutput, Scene, SegmentMap

if TYPE_CHECKING:
    import torch

    from cclgs_core.scene.gaussians import Gaussians

#: The component kinds, in pipeline order. Each has a hook ``cclgs_register_<kind>``.
KINDS: tuple[str, ...] = ("mask_generator", "tracker", "feature_extractor", "compressor", "field_backend")


@runtime_checkable
class MaskGenerator(Protocol):
    """Image -> two-level masks (``sp`` = subpart + part, ``wp`` = whole + part)."""

    def generate(self, image: np.ndarray, frame: Frame) -> FrameMasks:
        """image: (H, W, 3) uint8 RGB of ``frame``. Returns both levels, each (H, W) segments."""
        ...


@runtime_checkable
class Tracker(Protocol):
    """Masks of many views -> one track label per mask, consistent across views."""

    def track(self, scene: Scene, frames: Sequence[Frame], segment_maps: Sequence[SegmentMap]) -> list[np.ndarray]:
        """Label the masks of one level.

        frames:       the F views, in the order the pipeline processes them
        segment_maps: F segment maps of one level, aligned with ``frames``
        returns:      F arrays, the t-th of shape (M_t,) int64: a track id >= 0, or -1 when
                      the mask belongs to no track. Equal ids in two views mean one object.
        """
        ...


@runtime_checkable
class FeatureExtractor(Protocol):
    """Image + masks -> one embedding per mask; texts -> embeddings in the same space.

    An image-only extractor (no text encoder) sets the class attribute ``encodes_text = False``:
    its ``encode_texts`` raises a PluginError saying so, and its ``canonical_phrases`` may be
    empty. Without the attribute an extractor is taken to encode text.
    """

    #: D, the embedding dimension.
    dim: int
    #: Phrases a query is compared against (LERF: "object", "things", "stuff", "texture").
    canonical_phrases: tuple[str, ...]

    def encode_masks(self, image: np.ndarray, segment_map: SegmentMap, frame: Frame) -> np.ndarray:
        """image: (H, W, 3) uint8. Returns (M, D) float32, rows L2-normalised (M may be 0)."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Returns (T, D) float32, rows L2-normalised."""
        ...


@runtime_checkable
class FeatureCompressor(Protocol):
    """Embeddings (+ track labels) -> per-mask training targets for the field, a decoder head
    that maps rendered field features to the compressor's output space, a loss, and the way
    back to embedding space.

    A codebook's targets are prototype indices (``target_kind == "index"``, L = prototypes);
    the autoencoder's are latent vectors (``target_kind == "latent"``, L = latent size). The core
    fits one instance per mask level, so fitted state lives on the instance.
    """

    target_kind: Literal["index", "latent"]

    def fit(self, features: Sequence[np.ndarray], labels: Sequence[np.ndarray], seed: int) -> dict[str, list[float]]:
        """Learn from every view of one level.

        features: per view (M_t, D) float32 unit embeddings
        labels:   per view (M_t,) int64 track labels, -1 for none (a view, or a whole level,
                  may have only -1)
        returns:  loss curves by name (for reports and tests)
        """
        ...

    @property
    def output_size(self) -> int:
        """L, the number of head outputs."""
        ...

    def targets(self, features: np.ndarray) -> np.ndarray:
        """features: (M, D). Returns (M,) int64 indices or (M, L) float32 latents."""
        ...

    def make_head(self, field_dim: int) -> "torch.nn.Module":
        """A fresh decoder: (P, field_dim) rendered field features -> (P, L) outputs."""
        ...

    def loss(self, outputs: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        """outputs: (P, L) head outputs; targets: (P,) int64 or (P, L) float32, as ``targets``
        returned them for pixels inside a mask (never -1). Returns a scalar."""
        ...

    def decode(self, outputs: "torch.Tensor") -> "torch.Tensor":
        """outputs: (P, L) head outputs -> (P, D) unit embeddings. Called under
        ``torch.inference_mode()``: it need not be differentiable."""
        ...

    def state_dict(self) -> dict[str, "torch.Tensor"]:
        """What ``fit`` learned, enough to rebuild targets and decode."""
        ...

    def load_state_dict(self, state: dict[str, "torch.Tensor"]) -> None: ...


@runtime_checkable
class FieldBackend(Protocol):
    """Gaussians + per-Gaussian features + camera -> rendered feature map, alpha and depth."""

    #: True when gradients flow to the Gaussians' geometry and to the features.
    differentiable: bool

    def prepare(self, gaussians: "Gaussians", cameras: Sequence[Camera]) -> None:
        """Precompute what depends only on frozen geometry (a no-op for most backends)."""
        ...

    def render(self, gaussians: "Gaussians", features: "torch.Tensor", camera: Camera) -> RenderOutput:
        """features: (N, C). Returns (H, W, C) features, (H, W) alpha and (H, W) depth."""
        ...


PROTOCOLS: dict[str, type] = {
    "mask_generator": MaskGenerator,
    "tracker": Tracker,
    "feature_extractor": FeatureExtractor,
    "compressor": FeatureCompressor,
    "field_backend": FieldBackend,
}
