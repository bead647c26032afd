"""Building a SAM2 model from a config name and a local checkpoint (shared by the SAM2 components).

Config names are those shipped inside the sam2 package, as ``sam2.build_sam.build_sam2`` takes
them, e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``. torch and sam2 are imported when called.
"""

from __future__ import annotations

from pathlib import Path

from cclgs_core.errors import ConfigError, DataError, error_summary
from cclgs_core.helpers.seeding import repeatable_initialisation

CHECKPOINT_HINT = (
    "Download the checkpoint that matches the config (e.g. sam2.1_hiera_large.pt for "
    "configs/sam2.1/sam2.1_hiera_l.yaml, from https://dl.fbaipublicfiles.com/segment_anything_2/092824/, "
    "listed at https://github.com/facebookresearch/sam2#download-checkpoints) and set the option "
    "checkpoint to its path"
)


def check_checkpoint(component: str, checkpoint: Path | None, allow_random_weights: bool) -> Path | None:
    """The checkpoint path, after checking it exists or that random weights were asked for."""
    if checkpoint is None:
        if not allow_random_weights:
            raise ConfigError(
                f"{component} needs a SAM2 checkpoint. {CHECKPOINT_HINT} "
                "(or set allow_random_weights = true for a smoke run)."
            )
        return None
    if not Path(checkpoint).is_file():
        raise DataError(f"SAM2 checkpoint {checkpoint} does not exist. {CHECKPOINT_HINT}.")
    return Path(checkpoint)


def available_configs() -> list[str]:
    """Config names shipped with the installed sam2 package."""
    from importlib.resources import files

    root = files("sam2")
    return sorted(
        f"configs/{folder.name}/{config.name}"
        for folder in (root / "configs").iterdir()
        if folder.is_dir()
        for config in folder.iterdir()
        if config.name.endswith(".yaml")
    )


def resolve_device(component: str, device: str) -> str:
    """ "auto" -> "cuda" when available else "cpu"; "cuda" without a GPU is a ConfigError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{component} option device='cuda': no CUDA device is available; use 'cpu' or 'auto'")
    return device


def build_sam2_model(component: str, model_config: str, checkpoint: Path | None, device: str, video: bool = False):
    """A SAM2 model in eval mode on ``device``; random initialisation when ``checkpoint`` is None.

    ``video`` builds the video predictor (memory attention, post-processing) instead of the image model."""
    import torch
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    configs = available_configs()
    if model_config not in configs:
        raise ConfigError(
            f"{component} option model_config={model_config!r} is not a sam2 config; use one of {', '.join(configs)}"
        )
    builder = build_sam2_video_predictor if video else build_sam2
    with repeatable_initialisation():  # random weights: the same network in every process
        model = builder(model_config, ckpt_path=None, device="cpu")
    if checkpoint is not None:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
            model.load_state_dict(state)
        except Exception as error:  # unreadable file, no "model" entry, or another architecture
            raise DataError(
                f"SAM2 checkpoint {checkpoint} could not be loaded with config {model_config} "
                f"({error_summary(error)}). "
                f"Set model_config to the checkpoint's architecture or: {CHECKPOINT_HINT}."
            ) from error
    return model.to(device).eval()
