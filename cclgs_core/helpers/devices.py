"""One device policy (docs/design.md, "Devices").

A run names its device once, ``device`` in the run config (``cclgs fit --device``): "auto"
(CUDA when torch sees a GPU, else the CPU), "cpu", "cuda" or "cuda:N". ``resolve_device`` is
the one function that turns the name into a ``torch.device``. Every stage puts its modules,
parameters and targets there, and field backends return their outputs on the device of the
features they are given. Data goes to the host only for reports and pictures, through
``to_host``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from cclgs_core.errors import ConfigError

if TYPE_CHECKING:
    import torch

_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(name: str) -> str:
    """``name`` when it is a device name this toolkit accepts (available or not); ConfigError otherwise."""
    if not isinstance(name, str) or not _DEVICE_NAME.fullmatch(name):
        raise ConfigError(f"device {name!r}: use auto, cpu, cuda or cuda:N")
    return name


def resolve_device(name: str = "auto") -> "torch.device":
    """The torch device a run uses: "auto" is CUDA when available, else the CPU. ConfigError for
    a CUDA device this machine does not have."""
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: torch sees no CUDA device on this machine; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def to_host(tensor: "torch.Tensor") -> np.ndarray:
    """A tensor's values as a numpy array on the host (for reports, pictures and files)."""
    return tensor.detach().cpu().numpy()
