"""Geometry fitting on the CPU: a tiny scene rendered by the reference backend is recovered."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cclgs_core.errors import ConfigError
from cclgs_core.plumbing.registry import PluginRegistry
from cclgs_core.scene.gaussians import Gaussians, rgb_to_sh_dc
from cclgs_core.stages.geometry_fit import (
    FitConfig,
    evaluate,
    fit_geometry,
    gaussians_from_parameters,
    initial_parameters,
    ssim,
)
from cclgs_core.testing.backends import look_at
from cclgs_core.types import Camera, Frame, Scene


def ground_truth_gaussians(count: int = 120, seed: int = 0) -> Gaussians:
    generator = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=1)
    means = directions * (0.3 + 0.5 * torch.rand(count, 1, generator=generator))
    colours = torch.rand(count, 3, generator=generator)
    return Gaussians(
        means=means,
        quats=torch.randn(count, 4, generator=generator),
        log_scales=torch.log(0.06 + 0.1 * torch.rand(count, 3, generator=generator)),
        opacity_logits=torch.full((count,), 1.5),
        sh=rgb_to_sh_dc(colours)[:, None, :],
    )


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    """Six views (36 x 36) around random Gaussians, rendered by the dense reference."""
    root = tmp_path_factory.mktemp("tiny_fit")
    truth = ground_truth_gaussians()
    reference = PluginRegistry().create("field_backend", "reference")
    frames = []
    for index in range(6):
        angle = 2 * np.pi * index / 6
        eye = np.array([3.0 * np.cos(angle), -0.8 + 0.3 * (index % 2), 3.0 * np.sin(angle)])
        camera = Camera(look_at(eye, np.zeros(3)), 40.0, 40.0, 18.0, 18.0, 36, 36)
        with torch.no_grad():
            image = reference.render(truth, truth.colors(camera), camera).features
        path = root / f"frame_{index:03d}.png"
        Image.fromarray((image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(path)
        frames.append(Frame(index=index, name=path.stem, image_path=path, camera=camera))
    return Scene(root=root, frames=frames), truth


def test_fit_raises_psnr_from_noisy_points(tiny_scene):
    scene, truth = tiny_scene
    points = truth.means.numpy() + np.random.default_rng(1).normal(scale=0.1, size=truth.means.shape)
    backend = PluginRegistry().create("field_backend", "torch")
    start = gaussians_from_parameters(initial_parameters(points, None, 0, 0.1), 0)
    before = float(np.mean(evaluate(backend, start, scene.frames)))
    config = FitConfig(steps=240, sh_degree=1, sh_degree_interval=120, refine_start=40, refine_every=40, lr_means=1e-3)
    result = fit_geometry(scene, points, config=config)
    after = float(np.mean(evaluate(backend, result.gaussians, scene.frames)))
    assert after > before + 6.0, (before, after)
    assert len(result.log) == 240 and result.log[-1]["sh_degree"] == 1
    assert len({entry["gaussians"] for entry in result.log}) > 1  # densification changed the count
    assert not any(t.requires_grad for t in (result.gaussians.means, result.gaussians.sh))
    assert "gsplat.cuda._backend" not in sys.modules  # the CPU path never loads gsplat's CUDA code


def test_fit_refuses_a_geometry_frozen_backend(tiny_scene):
    scene, truth = tiny_scene
    with pytest.raises(ConfigError, match="differentiable"):
        fit_geometry(scene, truth.means.numpy(), config=FitConfig(steps=1, backend="cached"))


def test_initial_parameters_from_points():
    points = np.array([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3], [5, 5, 5]])
    colours = np.array([[255, 0, 0]] * 5, dtype=np.uint8)
    params = initial_parameters(points, colours, sh_degree=2, initial_opacity=0.1)
    assert params["shN"].shape == (5, 8, 3) and params["sh0"].shape == (5, 1, 3)
    # scale of the first point: root mean square distance to its three nearest neighbours (1, 2, 3)
    assert params["scales"][0, 0].exp().item() == pytest.approx(np.sqrt((1 + 4 + 9) / 3), rel=1e-5)
    assert torch.sigmoid(params["opacities"]).allclose(torch.tensor(0.1))
    colour = gaussians_from_parameters(params, 0).colors(Camera(np.eye(4), 1, 1, 0, 0, 1, 1))
    assert colour[:, 0].allclose(torch.ones(5)) and colour[:, 1:].abs().max() < 1e-6


def test_ssim_of_identical_and_different_images():
    image = torch.rand(20, 24, 3, generator=torch.Generator().manual_seed(0))
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(image, 1 - image).item() < 0.5


def test_random_initialisation_fills_the_stated_box_or_splatfacto_cube():
    from cclgs_core.stages.geometry_fit import RANDOM_CUBE_SIDE, random_initialisation
    from cclgs_core.testing.backends import look_at
    from cclgs_core.types import Camera, Frame, Scene

    poses = [look_at(np.array(eye, dtype=np.float64), np.zeros(3)) for eye in ([3, 0, 1], [-1, 0, 1])]
    cameras = [Camera(pose, 10.0, 10.0, 4.0, 4.0, 8, 8) for pose in poses]
    frames = [Frame(i, f"f{i}", Path(f"f{i}.png"), camera) for i, camera in enumerate(cameras)]
    scene = Scene(root=Path("."), frames=frames)
    points, colours = random_initialisation(scene, 4000, seed=1)
    assert points.shape == colours.shape == (4000, 3) and (colours >= 0).all() and (colours <= 1).all()
    # centres (3, 0, 1) and (-1, 0, 1): mean (1, 0, 1), reach 2 along x, so a cube of side 10 * 2
    half = RANDOM_CUBE_SIDE / 2 * 2
    np.testing.assert_allclose(points.min(axis=0), [1 - half, -half, 1 - half], atol=0.1)
    np.testing.assert_allclose(points.max(axis=0), [1 + half, half, 1 + half], atol=0.1)
    scene.bounds = np.array([[-1.0, -2.0, -3.0], [1.0, 2.0, 3.0]])
    boxed, _ = random_initialisation(scene, 4000, seed=1)
    assert (boxed >= scene.bounds[0]).all() and (boxed <= scene.bounds[1]).all()
    np.testing.assert_allclose(boxed.max(axis=0) - boxed.min(axis=0), [2, 4, 6], atol=0.05)
    np.testing.assert_array_equal(random_initialisation(scene, 10, seed=1)[0], random_initialisation(scene, 10, 1)[0])


def test_a_coarse_to_fine_schedule_renders_smaller_views_first_and_still_learns(tiny_scene, monkeypatch):
    scene, truth = tiny_scene
    points = truth.means.numpy() + np.random.default_rng(1).normal(scale=0.1, size=truth.means.shape)
    backend = PluginRegistry().create("field_backend", "torch")
    widths = []
    render = type(backend).render

    def recording_render(self, gaussians, features, camera):
        widths.append(camera.width)
        return render(self, gaussians, features, camera)

    monkeypatch.setattr(type(backend), "render", recording_render)
    start = gaussians_from_parameters(initial_parameters(points, None, 0, 0.1), 0)
    before = float(np.mean(evaluate(backend, start, scene.frames)))
    widths.clear()
    schedule = ((0.0, 0.5), (0.5, 1.0))
    config = FitConfig(
        steps=120, sh_degree=0, refine_start=40, refine_every=40, lr_means=1e-3, resolution_schedule=schedule
    )
    result = fit_geometry(scene, points, config=config)
    assert widths == [18] * 60 + [36] * 60  # half resolution for the first half of the steps
    after = float(np.mean(evaluate(backend, result.gaussians, scene.frames)))
    assert after > before + 4.0, (before, after)


@pytest.mark.parametrize(
    "schedule", [(), ((0.2, 0.5),), ((0.0, 0.5), (0.0, 1.0)), ((0.0, 1.5),), ((0.0, 1.0), (1.0, 1.0))]
)
def test_a_malformed_resolution_schedule_is_a_config_error(tiny_scene, schedule):
    scene, truth = tiny_scene
    with pytest.raises(ConfigError, match="resolution_schedule"):
        fit_geometry(scene, truth.means.numpy(), config=FitConfig(steps=1, resolution_schedule=schedule))


def test_the_default_coarse_to_fine_schedule_skips_levels_below_64_pixels(tiny_scene):
    from cclgs_core.stages.geometry_fit import coarse_to_fine_schedule

    scene, _ = tiny_scene  # 36 x 36 views: no coarse level
    assert coarse_to_fine_schedule(scene.frames) == ((0.0, 1.0),)
    fox_quarter = [Frame(0, "f", Path("f.png"), Camera(np.eye(4), 1, 1, 0, 0, 270, 480))]
    assert coarse_to_fine_schedule(fox_quarter) == ((0.0, 0.25), (0.3, 0.5), (0.65, 1.0))
    fox_eighth = [Frame(0, "f", Path("f.png"), Camera(np.eye(4), 1, 1, 0, 0, 135, 240))]
    assert coarse_to_fine_schedule(fox_eighth) == ((0.0, 0.5), (0.65, 1.0))
