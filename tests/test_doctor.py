"""`cclgs doctor`: what this machine and a run config need, without building anything."""

from __future__ import annotations

import pytest
import torch
from helpers import run_cli
from typer.testing import CliRunner

from cclgs_cli.app import app

LIGHT_CONFIG = """
[mask_generator]
name = "classical"

[tracker]
name = "none"

[feature_extractor]
name = "simulated"
"""


def doctor(*args: object):
    return CliRunner().invoke(app, ["doctor", *map(str, args)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what doctor says on a machine without a GPU")
def test_this_machine_is_ready_for_the_cpu_path_and_a_gsplat_config_is_not(tmp_path):
    # As a user runs it, with TORCH_CUDA_ARCH_LIST set: importing gsplat's CUDA module would now start a
    # half-hour build in TORCH_EXTENSIONS_DIR (at one job, should it ever happen, not the ten that exhaust memory).
    environment = {
        "TORCH_CUDA_ARCH_LIST": "9.0",
        "TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions"),
        "MAX_JOBS": "1",
    }
    ready = run_cli("doctor", env=environment)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert ready.stdout.rstrip().endswith("ready") and "device a run uses: " in ready.stdout
    gsplat_config = tmp_path / "gsplat.toml"
    gsplat_config.write_text(LIGHT_CONFIG + '\n[field_backend]\nname = "gsplat"\n')
    not_ready = run_cli("doctor", "-c", str(gsplat_config), env=environment)
    assert not_ready.returncode == 2
    assert "[field_backend] gsplat: does not load" in not_ready.stdout and "not ready: 1 problem(s)" in not_ready.stdout
    assert not (tmp_path / "extensions").exists()  # nothing was built or prepared for a build
    cuda_config = tmp_path / "cuda.toml"
    cuda_config.write_text('device = "cuda"\n' + LIGHT_CONFIG)
    no_gpu = doctor("-c", cuda_config)
    assert no_gpu.exit_code == 2 and "- device 'cuda': torch sees no CUDA device on this machine" in no_gpu.output


@pytest.fixture
def pretend_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Test GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0))


def test_a_gpu_without_gsplats_extension_is_told_to_run_make_gpu_setup(pretend_a_gpu, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    config = tmp_path / "gsplat.toml"
    config.write_text(LIGHT_CONFIG + '\n[field_backend]\nname = "gsplat"\n')
    result = doctor("-c", config)
    assert result.exit_code == 2
    assert "devices: cuda:0 Test GPU (compute 9.0)" in result.output
    assert "device a run uses: cuda (device = auto)" in result.output
    assert "gsplat extension: gsplat's CUDA extension is not built" in result.output
    assert "- [field_backend] field backend 'gsplat': gsplat's CUDA extension is not built" in result.output
    assert "run `make gpu-setup`" in result.output.split("to fix:")[1]


def test_checkpoints_are_checked_for_existing_and_loading(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    missing = tmp_path / "sam_vit_b.pth"
    config = tmp_path / "run.toml"
    config.write_text(
        f"""
[mask_generator]
name = "sam"
model_type = "vit_b"
checkpoint = "{missing}"

[tracker]
name = "sam2"
model_config = "configs/sam2.1/sam2.1_hiera_t.yaml"
checkpoint = "{garbage}"

[feature_extractor]
name = "simulated"
"""
    )
    result = doctor("-c", config)
    assert result.exit_code == 2 and "not ready: 2 problem(s)" in result.output
    assert "[mask_generator] sam: does not load" in result.output
    assert f"- [mask_generator] mask generator 'sam': checkpoint {missing} does not exist." in result.output
    assert "[tracker] sam2: does not load" in result.output
    assert f"- [tracker] {garbage} could not be loaded as weights of the SAM2 config" in result.output
    assert "[feature_extractor] simulated: ready" in result.output

    # Random weights: the real hiera-tiny video predictor is built, so the config is ready.
    config.write_text(
        LIGHT_CONFIG.replace(
            'name = "none"',
            'name = "sam2"\nmodel_config = "configs/sam2.1/sam2.1_hiera_t.yaml"\nallow_random_weights = true',
        )
    )
    result = doctor("-c", config)
    assert result.exit_code == 0, result.output
    assert "[tracker] sam2: ready" in result.output
