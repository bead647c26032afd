"""``make gpu-setup``: build gsplat's CUDA extension once, on the machine with the GPU.

    python -m cclgs_gsplat.build_extension

It compiles for the visible GPUs' architectures (``TORCH_CUDA_ARCH_LIST``, unless set), with as
many parallel jobs as cores and memory allow (``MAX_JOBS``, unless set: one job takes up to
3.5 GB, and gsplat's default of ten exhausts a 24 GiB machine), and with ``CUDA_HOME`` set to a
toolkit that has the CUDA headers and matches torch's CUDA version: a system one when there is
one, else NVIDIA's pip wheels of that version, installed into this environment. Then it imports
``gsplat.cuda._backend`` in a child process, which is what builds the extension, and checks the
result. Exit 0 when the extension is ready, 2 when it cannot be built here.
"""

from __future__ import annotations

import os
import subprocess
import sys

from cclgs_gsplat.extension import extension_status
from cclgs_gsplat.toolkit import Toolkit, matching_toolkit, nvcc_release, pip_toolkit_home

#: Memory one compile job of gsplat's CUDA sources may take.
BYTES_PER_JOB = int(3.5 * 2**30)
#: pip requirement of a CUDA toolkit with nvcc and headers, per torch CUDA version.
PIP_TOOLKITS = {"13.0": "cuda-toolkit[nvcc,cccl]==13.0.3.0"}


class SetupError(Exception):
    """The extension cannot be built here; the message says why and what to do."""


def build_jobs(cores: int, available_bytes: int) -> int:
    """Parallel compile jobs: one per core, as many as the available memory holds, at least one."""
    return max(1, min(cores, available_bytes // BYTES_PER_JOB))


def available_memory() -> int:
    """MemAvailable from /proc/meminfo, in bytes (the total physical memory where that is missing)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def architectures() -> str:
    """TORCH_CUDA_ARCH_LIST of the visible GPUs, e.g. "8.6;9.0"."""
    import torch

    capabilities = {torch.cuda.get_device_capability(index) for index in range(torch.cuda.device_count())}
    return ";".join(f"{major}.{minor}" for major, minor in sorted(capabilities))


def toolkit_for(torch_cuda: str) -> Toolkit:
    """A toolkit matching torch's CUDA: the system's, or NVIDIA's pip wheels installed now."""
    found = matching_toolkit(torch_cuda)
    if found is not None:
        return found
    release = ".".join(torch_cuda.split(".")[:2])
    requirement = PIP_TOOLKITS.get(release)
    if requirement is None:
        raise SetupError(
            f"no CUDA toolkit {release} with headers found (torch is built with CUDA {torch_cuda}); install it "
            "and set CUDA_HOME to its folder (the one holding include/cuda_runtime.h)"
        )
    print(f"no system CUDA toolkit {release} found: installing {requirement} into this environment", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", requirement], check=True)
    home = pip_toolkit_home(release.split(".")[0])
    version = nvcc_release(home / "bin" / "nvcc")
    if version != release or not (home / "include" / "cuda_runtime.h").is_file():
        raise SetupError(f"{requirement} did not give nvcc {release} and the CUDA headers under {home}")
    return Toolkit(home, version)


def main() -> int:
    import torch

    status = extension_status()
    if status.ready:
        print(f"gsplat extension: ready, {status.detail}")
        return 0
    try:
        if torch.version.cuda is None or not torch.cuda.is_available():
            raise SetupError(
                "no CUDA GPU is visible to torch here. gsplat's extension is compiled for the GPU it runs on: run "
                "`make gpu-setup` on the machine with the GPU."
            )
        toolkit = toolkit_for(torch.version.cuda)
        environment = dict(os.environ)
        environment.setdefault("TORCH_CUDA_ARCH_LIST", architectures())
        environment.setdefault("MAX_JOBS", str(build_jobs(os.cpu_count() or 1, available_memory())))
        environment["CUDA_HOME"] = str(toolkit.home)
        environment["PATH"] = os.pathsep.join([str(toolkit.home / "bin"), environment.get("PATH", "")])
        print(
            f"building gsplat's CUDA extension: CUDA_HOME={toolkit.home} (nvcc {toolkit.version}), "
            f"TORCH_CUDA_ARCH_LIST={environment['TORCH_CUDA_ARCH_LIST']}, MAX_JOBS={environment['MAX_JOBS']} "
            "(about half an hour at two jobs)",
            flush=True,
        )
        load = "from gsplat.cuda._backend import _C; assert _C is not None, 'gsplat did not load its extension'"
        if subprocess.run([sys.executable, "-c", load], env=environment).returncode != 0:
            raise SetupError("the build failed; its output is above")
        status = extension_status()
        if not status.ready:
            raise SetupError(f"after the build: {status.detail}")
    except SetupError as error:
        print(f"gpu-setup: {error}", file=sys.stderr)
        return 2
    print(f"gsplat extension: ready, {status.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
