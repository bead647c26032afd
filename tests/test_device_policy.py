"""One device policy: with a CUDA device (emulated on the CPU, cclgs_core.testing.emulated_cuda) a run
keeps its tensors on it, and only reports and pictures go to the host.

The backend here renders on CUDA whatever it is given and returns CUDA outputs, as a CUDA-only
rasteriser does. Every stage (fit, train, query, eval) must therefore have its own tensors on the
device too: any CPU tensor meeting a CUDA one raises, and so does ``.numpy()`` of a CUDA tensor.
"""

from __future__ import annotations

import pytest
import torch
from helpers import NOISE_FREE_SYNTHETIC_CONFIG, invoke_cli

import cclgs_core.plumbing.registry
from cclgs_core import hookimpl
from cclgs_core.testing.emulated_cuda import emulated_cuda


class CudaRenderer:
    """The ``torch`` backend, run on CUDA whatever the inputs' device, with CUDA outputs."""

    differentiable = True

    def __init__(self):
        from cclgs_cpu_backends.torch_backend import TorchBackend

        self.inner = TorchBackend()

    def prepare(self, gaussians, cameras) -> None:
        """Nothing to precompute."""

    def render(self, gaussians, features, camera):
        cuda = torch.device("cuda")
        return self.inner.render(gaussians.to(cuda), features.to(cuda), camera)


class CudaRendererPlugin:
    @hookimpl
    def cclgs_register_field_backend(self, register):
        register("cuda_renderer", CudaRenderer)


@pytest.fixture
def registry(monkeypatch):
    registry = cclgs_core.plumbing.registry.PluginRegistry()
    registry.add_plugin(CudaRendererPlugin(), "cuda_renderer")
    monkeypatch.setattr(cclgs_core.plumbing.registry, "_default_registry", registry)
    return registry


def test_fit_train_query_and_eval_keep_to_one_device(registry, tmp_path):
    from cclgs_synthetic.world import generate_world

    world = generate_world(tmp_path / "world", seed=0, objects=2, width=32, height=32, train_views=4, test_views=2)
    config = tmp_path / "run.toml"
    config.write_text(
        NOISE_FREE_SYNTHETIC_CONFIG.replace(
            '[tracker]\nname = "none"', '[tracker]\nname = "reprojection"\nrenderer = "cuda_renderer"'
        )
        + '\n[field_backend]\nname = "cuda_renderer"\n\n[train]\niterations = 10\n'
    )
    with emulated_cuda():
        fitted = tmp_path / "fitted.ply"
        invoke_cli("fit", world, "--backend", "cuda_renderer", "--steps", "5", "--out", fitted)
        run = tmp_path / "run"
        invoke_cli("train", world, "--config", config, "--run", run, "--gaussians", fitted)
        output = invoke_cli("query", run, "--text", "ramen bowl", "--out", tmp_path / "query").output
        assert "level" in output
        selected = tmp_path / "selected.ply"
        invoke_cli("query", run, "--text", "ramen bowl", "--threshold", "0", "--export-ply", selected)
        invoke_cli("eval", "synthetic", run, "--out", tmp_path / "eval")
    assert selected.is_file() and (tmp_path / "eval" / "report.json").is_file()
