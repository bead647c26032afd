"""`make gpu-setup` on a machine without a GPU, and how it picks a CUDA toolkit and its job count.

The build itself needs a GPU machine (scripts/gpu_smoke.sh runs it there); here nothing is built."""

from __future__ import annotations

from pathlib import Path

from cclgs_gsplat import build_extension
from cclgs_gsplat.toolkit import find_toolkits, matching_toolkit

GiB = 2**30


def fake_nvcc(path: Path, release: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.88'\n")
    path.chmod(0o755)
    return path


def test_jobs_follow_cores_and_memory():
    assert build_extension.build_jobs(cores=2, available_bytes=24 * GiB) == 2
    assert build_extension.build_jobs(cores=16, available_bytes=24 * GiB) == 6  # 3.5 GB a job, not gsplat's 10
    assert build_extension.build_jobs(cores=16, available_bytes=2 * GiB) == 1


def test_the_toolkit_is_found_by_its_headers_not_by_the_nvcc_on_path(monkeypatch, tmp_path):
    # A general bin folder whose nvcc runs the real one elsewhere (as /usr/local/bin/nvcc does): torch would
    # take its parent as CUDA_HOME, which has no headers.
    toolkit = tmp_path / "cuda-13.0"
    fake_nvcc(toolkit / "bin" / "nvcc", "13.0")
    (toolkit / "include").mkdir()
    (toolkit / "include" / "cuda_runtime.h").write_text("")
    wrapper = tmp_path / "general" / "bin" / "nvcc"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\nexec {toolkit / "bin" / "nvcc"} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:/usr/bin:/bin")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.setenv("CUDA_PATH", str(toolkit))
    homes = [found.home for found in find_toolkits()]
    assert toolkit.resolve() in homes and tmp_path / "general" not in homes
    assert matching_toolkit("13.0").home == homes[0] == toolkit.resolve()
    fake_nvcc(toolkit / "bin" / "nvcc", "12.8")
    assert toolkit.resolve() not in [found.home for found in find_toolkits() if found.version == "13.0"]


def test_gpu_setup_without_a_gpu_stops_at_once_and_builds_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    assert build_extension.main() == 2
    assert "no CUDA GPU is visible to torch here" in capsys.readouterr().err
    assert not (tmp_path / "extensions").exists()
