"""Building a SAM2 model from a config name and a local checkpoint (shared by the SAM2 components).

Config names are those shipped inside the sam2 package, as ``sam2.build_sam.build_sam2`` takes
them, e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``. torch and sam2 are imported when called.
"""

from __future__ import annotations

from pathlib import Path

from cclgs_core import ConfigError, load_weights_into, repeatable_initialisation

CHECKPOINT_HINT = (
    "Download the checkpoint that matches the config (e.g. sam2.1_hiera_large.pt for "
    "configs/sam2.1/sam2.1_hiera_l.yaml, from https://dl.fbaipublicfiles.com/segment_anything_2/092824/, "
    "listed at https://github.com/facebookresearch/sam2#download-checkpoints) and set the option "
    "checkpoint to its path"
)


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


def check_model_config(component: str, model_config: str) -> str:
    """``model_config`` when the installed sam2 ships it; ConfigError listing the shipped ones otherwise."""
    configs = available_configs()
    if model_config not in configs:
        raise ConfigError(
            f"{component} option model_config={model_config!r} is not a sam2 config; use one of {', '.join(configs)}"
        )
    return model_config


def build_sam2_model(model_config: str, checkpoint: Path | None, device: str, video: bool = False):
    """A SAM2 model in eval mode on ``device``; random initialisation when ``checkpoint`` is None.

    ``video`` builds the video predictor (memory attention, post-processing) instead of the image model."""
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    builder = build_sam2_video_predictor if video else build_sam2
    with repeatable_initialisation():  # random weights: the same network in every process
        model = builder(model_config, ckpt_path=None, device="cpu")
    if checkpoint is not None:
        fix = f"Set model_config to the checkpoint's architecture or: {CHECKPOINT_HINT}"
        load_weights_into(model, checkpoint, f"weights of the SAM2 config {model_config}", fix, entry="model")
    return model.to(device).eval()
