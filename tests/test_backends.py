"""Field backends against the dense reference (the contract), plus backend-specific behaviour."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cclgs_core.errors import PluginError
from cclgs_core.plumbing.registry import PluginRegistry
from cclgs_core.testing.backends import (
    FieldBackendContract,
    contract_camera,
    contract_scene,
    reference_render,
)

_registry = PluginRegistry()


class TestReferenceBackend(FieldBackendContract):
    @pytest.fixture
    def backend(self):
        return _registry.create("field_backend", "reference")


class TestTorchBackend(FieldBackendContract):
    @pytest.fixture(params=[8, 16], ids=["tile8", "tile16"])
    def backend(self, request):
        # a small batch budget so that several tile batches (and their gradients) are combined
        return _registry.create("field_backend", "torch", {"tile_size": request.param, "batch_elements": 20_000})


class TestTorchBackendRecomputingWeights(FieldBackendContract):
    """The bounded-memory path of large views: backward recomputes the blending weights."""

    @pytest.fixture
    def backend(self):
        return _registry.create("field_backend", "torch", {"batch_elements": 20_000, "keep_weights_up_to": 0})


class TestCachedBackend(FieldBackendContract):
    @pytest.fixture
    def backend(self):
        # top_k above the contract scenes' Gaussian counts and no tolerance: every weight is kept
        return _registry.create("field_backend", "cached", {"top_k": 64, "tolerance": 0.0})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
class TestGsplatBackend(FieldBackendContract):
    # gsplat cuts each Gaussian at 3 standard deviations, where alpha is still up to 0.011 (see
    # GsplatBackend): tolerances for that, not for rounding
    forward_atol = 5e-2
    gradient_rtol = 1e-1

    @pytest.fixture
    def backend(self):
        return _registry.create("field_backend", "gsplat")

    @pytest.fixture
    def device(self):
        return "cuda"


def test_cached_reports_truncation():
    camera = contract_camera()
    gaussians = contract_scene("opaque_stack")
    backend = _registry.create("field_backend", "cached", {"top_k": 2, "warn_uncovered": 0.01})
    with pytest.warns(UserWarning, match="top_k=2"):
        backend.prepare(gaussians, [camera])
    ones = torch.ones(len(gaussians), 1)
    kept = backend.render(gaussians, ones, camera).features[..., 0]  # (H, W) sum of kept weights
    expected = reference_render(gaussians, ones, camera)
    uncovered = expected.alpha - kept
    report = backend.truncation(gaussians, camera)
    assert report["max_uncovered"] == pytest.approx(uncovered.max().item(), abs=1e-5)
    assert report["mean_uncovered"] == pytest.approx(uncovered.mean().item(), abs=1e-5)
    assert report["max_uncovered"] > 0.01  # two of up to sixty Gaussians per pixel: truncated
    features = torch.randn(len(gaussians), 3)
    error = (
        backend.render(gaussians, features, camera).features - reference_render(gaussians, features, camera).features
    ).abs()
    assert (error <= uncovered[..., None] * features.abs().max() + 1e-5).all()
    assert backend.stats["views"] == 1 and backend.stats["max_uncovered"] == report["max_uncovered"]


def test_cached_keeps_as_few_weights_as_the_tolerance_allows():
    camera = contract_camera()
    gaussians = contract_scene("opaque_stack")  # up to sixty Gaussians on a pixel
    features = torch.randn(len(gaussians), 3)
    expected = reference_render(gaussians, features, camera).features
    exact = _registry.create("field_backend", "cached", {"tolerance": 0.0})
    adaptive = _registry.create("field_backend", "cached", {"tolerance": 0.02})
    assert torch.allclose(exact.render(gaussians, features, camera).features, expected, atol=1e-5)
    error = (adaptive.render(gaussians, features, camera).features - expected).abs()
    report = adaptive.truncation(gaussians, camera)
    assert 0 < report["max_uncovered"] <= 0.02  # the tolerance, reached on some pixel
    assert (error <= report["max_uncovered"] * features.abs().max() + 1e-5).all()
    assert adaptive.stats["weights_per_pixel"] < 0.5 * exact.stats["weights_per_pixel"]


def test_cached_warns_once_per_backend_and_counts_the_rest():
    gaussians = contract_scene("opaque_stack")
    backend = _registry.create("field_backend", "cached", {"top_k": 2, "warn_uncovered": 0.01})
    cameras = [contract_camera(width=20 + i, height=18) for i in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend.prepare(gaussians, cameras)
    assert [str(w.message) for w in caught if "cached backend" in str(w.message)] == [
        "cached backend: top_k=2 leaves up to "
        f"{backend.truncation(gaussians, cameras[0])['max_uncovered']:.3f} of a pixel's blending weight uncovered in "
        "a 20x18 view (warn_uncovered=0.01); raise top_k for exact features. Warned once per run: later views are "
        "not reported."
    ]
    assert backend.stats["views_over_warning"] == 3


def test_cached_is_differentiable_for_features_only():
    camera = contract_camera()
    gaussians = contract_scene("random")
    gaussians.means.requires_grad_(True)
    features = torch.randn(len(gaussians), 4, requires_grad=True)
    backend = _registry.create("field_backend", "cached")
    assert backend.differentiable is False
    output = backend.render(gaussians, features, camera)
    geometry_grad, feature_grad = torch.autograd.grad(
        output.features.sum(), [gaussians.means, features], allow_unused=True
    )
    assert geometry_grad is None and feature_grad.abs().sum() > 0


def test_cached_memory_is_bounded():
    gaussians = contract_scene("random")
    features = torch.randn(len(gaussians), 2)
    backend = _registry.create("field_backend", "cached", {"max_cache_mb": 0.001, "tolerance": 0.0})
    cameras = [contract_camera(width=20 + i, height=18) for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every weight kept: no truncation warning
        backend.prepare(gaussians, cameras)
    assert backend.stats["views"] == 1  # the budget holds one view; older ones were evicted
    for camera in cameras:
        expected = reference_render(gaussians, features, camera).features
        assert torch.allclose(backend.render(gaussians, features, camera).features, expected, atol=1e-4)


def test_torch_backend_exposes_screen_space_means():
    camera = contract_camera()
    gaussians = contract_scene("behind_camera")
    gaussians.means.requires_grad_(True)
    output = _registry.create("field_backend", "torch").render(gaussians, torch.ones(len(gaussians), 3), camera)
    means2d, ids, radii = output.extras["means2d"], output.extras["gaussian_ids"], output.extras["radii"]
    assert means2d.shape == (len(ids), 2) and radii.shape == (len(ids),) and (radii > 0).all()
    assert 0 < len(ids) < len(gaussians) and len(set(ids.tolist())) == len(ids)
    means2d.retain_grad()
    output.features.sum().backward()
    assert means2d.grad is not None and means2d.grad.abs().sum() > 0


def test_composite_gradients_match_finite_differences():
    from cclgs_cpu_backends.tiles import _CompositeTiles, pixel_monomials

    generator = torch.Generator().manual_seed(3)
    gaussians, channels = 7, 3
    table = torch.cat(
        [
            torch.rand(gaussians, 2, generator=generator, dtype=torch.float64) * 8,  # means2d
            torch.tensor([[0.4, 0.1, 0.3]], dtype=torch.float64).repeat(gaussians, 1),  # conics
            0.3 + 0.6 * torch.rand(gaussians, 1, generator=generator, dtype=torch.float64),  # opacities
            torch.randn(gaussians, channels, generator=generator, dtype=torch.float64),
        ],
        dim=1,
    )
    table = torch.cat([table, torch.zeros(1, table.shape[1], dtype=torch.float64)]).requires_grad_(True)
    slots = torch.tensor([[0, 1, 2, 3, 7], [4, 5, 6, 7, 7]])  # two 4 x 4 tiles; row 7 is padding
    origins = torch.tensor([[0.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    monomials = pixel_monomials(4, torch.float64, torch.device("cpu"))
    for keep_weights in (True, False):  # kept from the forward pass, or recomputed in backward
        composite = lambda t, keep=keep_weights: _CompositeTiles.apply(t, slots, origins, monomials, keep)  # noqa: E731
        assert torch.autograd.gradcheck(composite, (table,), atol=1e-6)


def test_gsplat_channel_padding():
    from cclgs_gsplat.gsplat_backend import MAX_CHUNK, padded_channels

    supported = {1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33}  # gsplat 1.4's kernel widths up to 33
    for channels in range(1, MAX_CHUNK + 1):
        width = padded_channels(channels)
        assert width >= channels and width + 1 in supported  # + 1: the depth channel of RGB+ED
        assert all(w + 1 not in supported for w in range(channels, width))


class _RecordingRasterization:
    """A stand-in for ``gsplat.rasterization`` that records the channel width of every call, forward
    and backward. Every pixel shows Gaussian 0's colours (and depth 1), so chunk order can be checked."""

    def __init__(self):
        self.widths: dict[str, list[int]] = {"forward": [], "backward": []}

    def __call__(self, means, quats, scales, opacities, colors, viewmats, Ks, width, height, render_mode, **options):
        assert render_mode == "RGB+ED" and options["channel_chunk"] == colors.shape[-1] + 1
        widths = self.widths

        class Rasterize(torch.autograd.Function):
            @staticmethod
            def forward(ctx, colours):
                image = torch.cat([colours[0], colours.new_ones(1)])  # (width + 1,): features and depth
                widths["forward"].append(image.shape[0])
                return image.expand(1, height, width, -1).clone()

            @staticmethod
            def backward(ctx, grad_image):  # grad_image: (1, H, W, width + 1)
                widths["backward"].append(grad_image.shape[-1])
                grad = torch.zeros(len(means), grad_image.shape[-1] - 1, dtype=grad_image.dtype)
                grad[0] = grad_image[..., :-1].sum(dim=(0, 1, 2))
                return grad

        image = Rasterize.apply(colors)
        meta = {"means2d": means[:, :2], "gaussian_ids": torch.arange(len(means)), "radii": torch.ones(len(means))}
        return image, torch.ones(1, height, width, 1), meta


@pytest.fixture
def gsplat_without_a_gpu(monkeypatch):
    """The gsplat backend constructed on the CPU: CUDA and the compiled extension pretended present."""
    import gsplat

    import cclgs_gsplat.extension
    from cclgs_gsplat.extension import ExtensionStatus

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cclgs_gsplat.extension, "extension_status", lambda: ExtensionStatus(True, "pretended"))
    recorder = _RecordingRasterization()
    monkeypatch.setattr(gsplat, "rasterization", recorder)
    return _registry.create("field_backend", "gsplat", {"device": "cpu"}), recorder


def test_gsplat_calls_rasterization_with_at_most_33_channels_both_ways(gsplat_without_a_gpu):
    import sys

    backend, recorder = gsplat_without_a_gpu
    camera = contract_camera(width=6, height=5)
    gaussians = contract_scene("random")
    features = torch.randn(len(gaussians), 100, requires_grad=True)  # e.g. 2 levels x 50 channels
    output = backend.render(gaussians, features, camera)
    assert output.features.shape == (5, 6, 100) and torch.equal(output.features[2, 3], features[0].detach())
    output.features.sum().backward()
    assert recorder.widths["forward"] == [33, 33, 33, 5]  # 32 + 32 + 32 + 4 channels, each with depth
    assert sorted(recorder.widths["backward"]) == [5, 33, 33, 33]
    assert torch.equal(features.grad[0], torch.full((100,), 30.0)) and not features.grad[1:].any()
    assert "gsplat.cuda._backend" not in sys.modules  # nothing loaded or built gsplat's CUDA code


def test_gsplat_without_its_compiled_extension_names_make_gpu_setup(monkeypatch, tmp_path):
    from cclgs_gsplat.extension import extension_status

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    with pytest.raises(PluginError, match=r"gsplat's CUDA extension is not built .* run `make gpu-setup`"):
        _registry.create("field_backend", "gsplat").load()
    (tmp_path / "gsplat_cuda").mkdir()
    (tmp_path / "gsplat_cuda" / "gsplat_cuda.so").write_bytes(b"")  # what a JIT build leaves
    monkeypatch.setenv("PATH", str(tmp_path / "no_bin"))
    assert not extension_status().ready and "only when nvcc is on PATH" in extension_status().detail
    (tmp_path / "no_bin").mkdir()
    (tmp_path / "no_bin" / "nvcc").write_text("#!/bin/sh\n")
    (tmp_path / "no_bin" / "nvcc").chmod(0o755)
    assert extension_status().ready


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_gsplat_needs_cuda():
    with pytest.raises(PluginError, match="needs CUDA"):
        _registry.create("field_backend", "gsplat").load()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("channels", [3, 8, 600])
def test_gsplat_matches_torch(channels):
    camera = contract_camera(width=64, height=48)
    gaussians = contract_scene("random")
    features = torch.randn(len(gaussians), channels)
    expected = _registry.create("field_backend", "torch").render(gaussians, features, camera)
    output = _registry.create("field_backend", "gsplat").render(gaussians.to("cuda"), features.cuda(), camera)
    for name in ("features", "alpha", "depth"):
        difference = (getattr(output, name).cpu() - getattr(expected, name)).abs()
        assert np.quantile(difference.numpy(), 0.99) < 5e-2, name
