"""The CUDA toolkit that builds gsplat's extension: where it is and whether it matches torch.

torch derives ``CUDA_HOME`` from the ``nvcc`` it finds on PATH. Where that ``nvcc`` is a link or
a small wrapper script in a general ``bin`` folder (``/usr/local/bin/nvcc`` running
``/usr/local/cuda-13.0/bin/nvcc``), the derived prefix holds no CUDA headers and the build fails
with ``cuda_runtime.h: No such file or directory``. So the toolkit is looked for by its headers.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Toolkit:
    """home: a CUDA_HOME holding bin/nvcc and include/cuda_runtime.h; version: nvcc's release, e.g. "13.0"."""

    home: Path
    version: str


def nvcc_release(nvcc: Path) -> str | None:
    """The release nvcc reports ("13.0"), or None when it does not run."""
    try:
        result = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"release (\d+\.\d+)", result.stdout)
    return match.group(1) if match else None


#: Where NVIDIA's pip wheels (nvidia-cuda-nvcc, nvidia-cuda-runtime, ...) install into this environment.
PIP_NVIDIA_FOLDER = Path(sysconfig.get_paths()["purelib"]) / "nvidia"


def pip_toolkit_home(major: str) -> Path:
    """Where the pip wheels of CUDA ``major`` put bin/nvcc and include/: ``site-packages/nvidia/cu13``
    for CUDA 13."""
    return PIP_NVIDIA_FOLDER / f"cu{major}"


def _candidate_homes() -> list[Path]:
    """CUDA_HOME and CUDA_PATH, the prefix of the nvcc on PATH, the usual install folders, then
    the pip wheels' folders in this environment."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent.parent))
    candidates += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True), "/opt/cuda"]
    candidates += sorted(str(path) for path in PIP_NVIDIA_FOLDER.glob("cu[0-9]*"))
    unique: list[Path] = []
    for candidate in candidates:
        if candidate and Path(candidate).resolve() not in unique:
            unique.append(Path(candidate).resolve())
    return unique


def find_toolkits() -> list[Toolkit]:
    """Every CUDA toolkit found that has both nvcc and the CUDA headers, in the order looked at."""
    found = []
    for home in _candidate_homes():
        nvcc = home / "bin" / "nvcc"
        if nvcc.is_file() and (home / "include" / "cuda_runtime.h").is_file():
            release = nvcc_release(nvcc)
            if release is not None:
                found.append(Toolkit(home, release))
    return found


def matching_toolkit(torch_cuda: str | None) -> Toolkit | None:
    """The first toolkit whose release equals torch's CUDA version (major.minor), if any."""
    if torch_cuda is None:
        return None
    wanted = ".".join(torch_cuda.split(".")[:2])
    return next((toolkit for toolkit in find_toolkits() if toolkit.version == wanted), None)
