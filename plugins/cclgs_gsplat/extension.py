"""Whether gsplat's compiled CUDA extension is present, found without importing it.

gsplat 1.4 loads its CUDA code in ``gsplat.cuda._backend``: the module ``gsplat.csrc`` when the
wheel was built with it, otherwise a JIT build that torch keeps under its extensions folder.
Importing ``_backend`` when neither exists starts that build (about half an hour, with ten
parallel compile jobs of up to 3.5 GB each unless ``MAX_JOBS`` says otherwise), and without
``nvcc`` on PATH it leaves the extension ``None``, so that the first render fails deep inside
gsplat. cclgs therefore only looks for the files; ``make gpu-setup`` builds them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

#: The name gsplat gives its JIT-built extension.
EXTENSION_NAME = "gsplat_cuda"
#: What to run when the extension is missing.
SETUP_ADVICE = "run `make gpu-setup` on the GPU machine (it builds gsplat's CUDA extension once)"


@dataclass
class ExtensionStatus:
    """ready: gsplat can load its CUDA code; detail: where it is, or what is missing."""

    ready: bool
    detail: str


def jit_build_directory() -> Path:
    """The folder torch's ``cpp_extension.load`` builds gsplat's extension in (the rule of
    ``torch.utils.cpp_extension._get_build_directory``, without creating it)."""
    import torch

    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root is None:
        from torch import _appdirs

        if torch.version.hip is not None:
            accelerator = f"rocm{torch.version.hip.replace('.', '')}"
        elif torch.version.cuda is not None:
            accelerator = f"cu{torch.version.cuda.replace('.', '')}"
        else:
            accelerator = "cpu"
        python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
        root = os.path.join(
            os.path.realpath(_appdirs.user_cache_dir(appname="torch_extensions")), f"{python}_{accelerator}"
        )
    return Path(root) / EXTENSION_NAME


def extension_status() -> ExtensionStatus:
    """Whether gsplat's CUDA extension is built and loadable, judged from files alone."""
    if importlib.util.find_spec("gsplat") is None:
        return ExtensionStatus(False, "gsplat is not installed; `make setup` installs it")
    if importlib.util.find_spec("gsplat.csrc") is not None:
        return ExtensionStatus(True, "compiled into the gsplat package (gsplat.csrc)")
    library = jit_build_directory() / f"{EXTENSION_NAME}.so"
    if not library.is_file():
        return ExtensionStatus(
            False, f"gsplat's CUDA extension is not built (no gsplat.csrc, no {library}); {SETUP_ADVICE}"
        )
    if shutil.which("nvcc") is None:
        return ExtensionStatus(
            False,
            f"gsplat's CUDA extension is built ({library}), but gsplat loads it only when nvcc is on PATH; "
            "put the CUDA toolkit's bin folder on PATH",
        )
    return ExtensionStatus(True, f"built at {library}")
