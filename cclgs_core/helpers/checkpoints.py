"""The one implementation of the checkpoint checks every weight-loading plugin needs.

``require_checkpoint`` decides whether a component may run: a checkpoint file that exists, or
none when random weights were asked for (tests and smoke runs). ``load_weights_into`` reads a
file with ``torch.load(weights_only=True)`` (tensors only, no pickled code) and loads it into a
model; any failure (unreadable file, another architecture's weights, a missing entry) becomes
one DataError naming the file and the fix. Both are called from a component's ``load()``,
never from its constructor (CONTRIBUTING.md, "Constructors and load()").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cclgs_core.errors import ConfigError, DataError, error_summary

if TYPE_CHECKING:
    import torch


def require_checkpoint(component: str, checkpoint: Path | None, allow_random_weights: bool, fix: str) -> Path | None:
    """``checkpoint`` as a Path once it is known to be a file; None when random weights are allowed.

    component: how errors name the component, e.g. "mask generator 'sam'".
    fix:       a sentence saying where to get the file and which option takes its path.
    ConfigError when no checkpoint is given and random weights are not allowed; DataError when
    the file does not exist."""
    if checkpoint is None:
        if not allow_random_weights:
            raise ConfigError(
                f"{component} needs a checkpoint. {fix} (or set allow_random_weights = true for a smoke run)."
            )
        return None
    if not Path(checkpoint).is_file():
        raise DataError(f"{component}: checkpoint {checkpoint} does not exist. {fix}.")
    return Path(checkpoint)


def load_weights_into(model: "torch.nn.Module", path: Path, what: str, fix: str, entry: str | None = None) -> None:
    """Load the state dict in ``path`` (or its ``entry``, e.g. "model") into ``model``.

    what: what the file should be, e.g. "SAM vit_b weights"; fix: what to do when it is not.
    DataError naming the file when it cannot be read or does not fit the model."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state[entry] if entry is not None else state)
    except Exception as error:  # unreadable file, no such entry, or another architecture's weights
        raise DataError(f"{path} could not be loaded as {what} ({error_summary(error)}). {fix}.") from error
