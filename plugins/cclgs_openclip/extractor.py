"""OpenCLIP feature extractor (docs/design.md, "Mask features").

A mask's feature is the image embedding of its masked crop (``cclgs_core.helpers.masked_crops``),
normalised with the model's mean and standard deviation. Crops are encoded in batches (fp16
autocast on CUDA) and the embeddings L2-normalised. A mask with no pixels gets the embedding
of an all-black input, so that every row is still a unit vector; no pixel ever takes that
feature.

Weights: ``pretrained`` is a local checkpoint file or an OpenCLIP pretrained tag. A tag is first
looked up in the Hugging Face cache. Only when it is not cached is the download source probed
with one HEAD request (``HUB_PROBE_TIMEOUT_S``, honouring proxy variables and
``HF_HUB_OFFLINE``): on a machine without internet the user gets one PluginError at once
instead of huggingface_hub's minute of retries. ``allow_random_weights=True`` builds the
architecture at random initialisation for tests and smoke runs (the same weights in every
process, ``cclgs_core.helpers.seeding``); its features are meaningless.

torch and open_clip are imported inside the functions that use them.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from cclgs_core import (
    ConfigError,
    DataError,
    Frame,
    PluginError,
    SegmentMap,
    check_device_name,
    encode_masked_crops,
    repeatable_initialisation,
    resolve_device,
    unit_rows,
)

if TYPE_CHECKING:
    import torch

COMPONENT = "feature extractor 'openclip'"
#: Seconds to wait for the weight server before declaring it unreachable.
HUB_PROBE_TIMEOUT_S = 5.0
#: File names that mark ``pretrained`` as a path rather than a tag.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")
#: File names open_clip looks for in a Hugging Face repository named without a file.
HF_DEFAULT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class OpenClipExtractor:
    """OpenCLIP image and text encoder; one embedding per mask.

    model_name:           an OpenCLIP architecture (``open_clip.list_models()``)
    pretrained:           an OpenCLIP pretrained tag of that model, or a local checkpoint file
    allow_random_weights: build the architecture with random weights and ignore ``pretrained``
                          (tests and smoke runs only: the features mean nothing)
    device:               "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"
    batch_size:           crops or texts per forward pass
    canonical_phrases:    phrases a query is compared against (LERF's defaults)
    """

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        pretrained: str = "laion2b_s34b_b88k",
        allow_random_weights: bool = False,
        device: str = "auto",
        batch_size: int = 64,
        canonical_phrases: tuple[str, ...] = ("object", "things", "stuff", "texture"),
    ):
        open_clip = _import_open_clip()

        if batch_size < 1:
            raise ConfigError(f"{COMPONENT} option batch_size must be >= 1, got {batch_size}")
        config = open_clip.get_model_config(model_name)
        if config is None:
            raise ConfigError(
                f"{COMPONENT}: unknown model_name {model_name!r}. "
                f"Pick one of open_clip.list_models(), for example ViT-B-16 or ViT-L-14."
            )
        self.model_name = model_name
        self.pretrained = None if allow_random_weights else pretrained
        self.batch_size = batch_size
        self.canonical_phrases = tuple(canonical_phrases)
        self.device_name = check_device_name(device)
        self.device: torch.device | None = None
        #: D, the joint embedding size of the model.
        self.dim = int(config["embed_dim"])
        self._model = None
        if allow_random_weights:
            warnings.warn(
                f"OpenCLIP {model_name} runs with random weights (allow_random_weights=true): "
                "its features carry no meaning.",
                stacklevel=2,
            )

    def load(self) -> None:
        """Find the weights (cache, download or file), build the model and its tokenizer (once;
        first use calls this)."""
        if self._model is not None:
            return
        import torch

        open_clip = _import_open_clip()

        device = resolve_device(self.device_name)
        if self.pretrained is None:
            with repeatable_initialisation():  # on the CPU, then moved: the same network in every process
                model = open_clip.create_model(self.model_name, pretrained=None).to(device)
        else:
            checkpoint, pretrained_cfg = resolve_checkpoint(self.model_name, self.pretrained)
            model = load_model(self.model_name, checkpoint, pretrained_cfg, device)
        preprocess = model.visual.preprocess_cfg
        self._input_size = _pair(preprocess["size"])  # (S_h, S_w)
        self._mean = torch.tensor(preprocess["mean"], dtype=torch.float32).view(3, 1, 1)  # (3, 1, 1)
        self._std = torch.tensor(preprocess["std"], dtype=torch.float32).view(3, 1, 1)  # (3, 1, 1)
        try:
            self._tokenizer = open_clip.get_tokenizer(self.model_name)
        except Exception as error:  # tokenizers of HF-text models are downloaded
            raise PluginError(
                f"{COMPONENT}: the tokenizer of {self.model_name} could not be loaded "
                f"({type(error).__name__}: {error}). Use a model whose tokenizer ships with open_clip, "
                "such as ViT-B-16, or fill the Hugging Face cache on a machine with internet."
            ) from error
        self.device = device
        self._model = model.eval()

    def encode_masks(self, image: np.ndarray, segment_map: SegmentMap, frame: Frame) -> np.ndarray:
        """image: (H, W, 3) uint8; segment_map.segments: (H, W). Returns (M, D) float32 unit rows."""
        self.load()
        return encode_masked_crops(
            image, segment_map, frame, self._input_size, self.batch_size, self.dim, self._encode_images
        )

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Returns (T, D) float32 unit rows."""
        import torch

        self.load()
        texts = list(texts)
        embeddings = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            tokens = self._tokenizer(texts[start : start + self.batch_size]).to(self.device)  # (t, context)
            with torch.inference_mode(), self._autocast():
                encoded = self._model.encode_text(tokens)  # (t, D)
            embeddings[start : start + len(tokens)] = unit_rows(encoded)
        return embeddings

    def _encode_images(self, crops: "torch.Tensor") -> np.ndarray:
        """crops: (B, 3, S_h, S_w) float32 in [0, 1]. Returns (B, D) float32 unit rows."""
        import torch

        pixels = ((crops - self._mean) / self._std).to(self.device)
        with torch.inference_mode(), self._autocast():
            encoded = self._model.encode_image(pixels)  # (B, D)
        return unit_rows(encoded)

    def _autocast(self):
        import torch

        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda")


def _import_open_clip():
    """open_clip, imported without the FutureWarning its own modules trigger (torch.jit.script)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
        import open_clip
    return open_clip


def resolve_checkpoint(model_name: str, pretrained: str) -> tuple[Path, dict[str, Any]]:
    """A local file for ``pretrained`` (a path, or a tag found in the cache or downloaded) and
    the tag's open_clip pretrained config ({} for a plain path)."""
    open_clip = _import_open_clip()

    path = Path(pretrained).expanduser()
    if path.is_file():
        return path, {}
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        if os.sep in pretrained or "/" in pretrained or path.suffix in CHECKPOINT_SUFFIXES:
            raise DataError(
                f"OpenCLIP checkpoint {path} does not exist or is not a file. Pass pretrained = the path of an "
                "existing "
                f"{model_name} checkpoint file, or one of its tags: {', '.join(tags) or 'none'}."
            )
        raise ConfigError(
            f"{COMPONENT}: {pretrained!r} is neither a file nor a pretrained tag of "
            f"{model_name}. Tags: {', '.join(tags) or 'none'}; or pass a local checkpoint file path."
        )
    pretrained_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    cached = _cached_checkpoint(pretrained_cfg)
    if cached is not None:
        return cached, pretrained_cfg
    source = _download_source(pretrained_cfg)
    _require_reachable(source, model_name, pretrained)
    try:
        downloaded = open_clip.download_pretrained(pretrained_cfg)
    except Exception as error:
        raise PluginError(
            _download_advice(model_name, pretrained, source, f"{type(error).__name__}: {error}")
        ) from error
    if not downloaded:
        raise PluginError(_download_advice(model_name, pretrained, source, "open_clip returned no file"))
    return Path(downloaded), pretrained_cfg


def load_model(model_name: str, checkpoint: Path, pretrained_cfg: dict[str, Any], device: "torch.device"):
    """Build ``model_name`` with the weights of ``checkpoint`` and the tag's preprocessing."""
    open_clip = _import_open_clip()

    preprocess = {
        key: pretrained_cfg[key] for key in ("mean", "std", "interpolation", "resize_mode") if key in pretrained_cfg
    }
    try:
        return open_clip.create_model(
            model_name,
            pretrained=str(checkpoint),
            device=device,
            force_quick_gelu=bool(pretrained_cfg.get("quick_gelu", False)),
            force_preprocess_cfg=preprocess,
        )
    except Exception as error:
        raise DataError(
            f"OpenCLIP checkpoint {checkpoint} could not be loaded into {model_name} "
            f"({type(error).__name__}: {error}). Check that the file holds {model_name} weights, "
            "or set model_name to the architecture it was trained with."
        ) from error


def _cached_checkpoint(pretrained_cfg: dict[str, Any]) -> Path | None:
    """The tag's file in the Hugging Face cache, without touching the network."""
    hub_id = pretrained_cfg.get("hf_hub", "")
    if not hub_id:
        return None
    import huggingface_hub

    repo_id, filename = os.path.split(hub_id)
    for candidate in (filename,) if filename else HF_DEFAULT_FILES:
        found = huggingface_hub.try_to_load_from_cache(repo_id, candidate)
        if isinstance(found, str):
            return Path(found)
    return None


def _download_source(pretrained_cfg: dict[str, Any]) -> str:
    """The URL the tag's weights would be downloaded from (open_clip prefers the hub)."""
    hub_id = pretrained_cfg.get("hf_hub", "")
    if hub_id:
        import huggingface_hub.constants

        return f"{huggingface_hub.constants.ENDPOINT}/{hub_id.rstrip('/')}"
    return pretrained_cfg.get("url", "")


def _require_reachable(source: str, model_name: str, pretrained: str) -> None:
    """One short HEAD request to the source's server; PluginError when offline or unreachable."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    if offline:
        raise PluginError(_download_advice(model_name, pretrained, source, "HF_HUB_OFFLINE is set"))
    parts = urllib.parse.urlsplit(source)
    server = f"{parts.scheme}://{parts.netloc}/"
    try:
        urllib.request.urlopen(urllib.request.Request(server, method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # the server answered
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise PluginError(
            _download_advice(model_name, pretrained, source, f"{server} is unreachable: {reason}")
        ) from None


def _download_advice(model_name: str, pretrained: str, source: str, reason: str) -> str:
    return (
        f"OpenCLIP weights {model_name} / {pretrained} are not in the local cache and could not be "
        f"downloaded ({reason}). Download them from {source} on a machine with internet and pass the "
        'file\'s path: pretrained = "/path/to/open_clip_pytorch_model.bin" '
        "(or allow_random_weights = true for a smoke run without meaningful features)."
    )


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)
