"""The field-backend contract: agree with the dense reference renderer on small random scenes.

A backend author subclasses ``FieldBackendContract`` and overrides the ``backend`` fixture
(pandas / fsspec style)::

    import pytest
    from cclgs_core.testing.backends import FieldBackendContract

    class TestMyBackend(FieldBackendContract):
        @pytest.fixture
        def backend(self):
            return MyBackend(option=1)

Overriding ``component`` instead works too (the generic contract runners use that name), and
``device`` selects where the scenes live ("cpu" by default). The suite checks, on every scene
of ``SCENES`` (Gaussians behind the camera and at the near plane, off screen with tails
reaching in, tiny and huge scales, zero and threshold opacities, opaque stacks that stop early):
rendered features, alpha and depth within ``forward_atol`` of ``render_dense``; gradients with
respect to the features always, and with respect to means, quaternions, log-scales and opacity
logits when ``backend.differentiable``, within ``gradient_rtol`` of the largest reference
gradient; an empty scene; re-rendering after the geometry changed (no stale caches); and
cameras of different sizes. Class attributes set the tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cclgs_core.scene.gaussians import Gaussians
from cclgs_core.scene.reference_render import render_dense
from cclgs_core.testing.contracts import check_deepcopy, check_plugin_lookups
from cclgs_core.types import Camera, RenderOutput

#: Scene kinds of the contract (see ``contract_scene``).
SCENES: tuple[str, ...] = (
    "random",
    "behind_camera",
    "off_screen",
    "tiny_scales",
    "huge_scales",
    "zero_opacity",
    "opaque_stack",
)

#: Feature channels rendered by the contract.
CHANNELS = 5


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, -1.0, 0.0])) -> np.ndarray:
    """(4, 4) OpenCV camera-to-world matrix of a camera at ``eye`` looking at ``target``."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, down, forward, eye
    return matrix


def contract_camera(width: int = 37, height: int = 29) -> Camera:
    """A small camera 3 units from the origin, looking at it, with an off-centre principal point
    and an image size that is not a multiple of common tile sizes."""
    pose = look_at(np.array([0.4, -0.3, -3.0]), np.zeros(3))
    return Camera(pose, fx=1.1 * width, fy=1.05 * width, cx=0.47 * width, cy=0.53 * height, width=width, height=height)


def contract_scene(kind: str, device: str = "cpu", seed: int = 0) -> Gaussians:
    """A small scene of one ``kind`` of ``SCENES`` around the origin, seen by ``contract_camera``."""
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    count = 60 if kind == "opaque_stack" else 24
    means = normal(count, 3) * 0.6
    log_scales = normal(count, 3) * 0.4 + np.log(0.12)
    opacity_logits = normal(count) * 1.5
    if kind == "behind_camera":
        eye = torch.tensor([0.4, -0.3, -3.0])
        forward = -eye / eye.norm()
        behind = torch.arange(count) % 3 == 0
        means[behind] = (
            eye
            + forward * (-0.5 - torch.rand(int(behind.sum()), 1, generator=generator))
            + 0.2 * normal(int(behind.sum()), 3)
        )
        at_near = torch.arange(count) % 3 == 1
        means[at_near] = eye + forward * torch.tensor([0.005, 0.02, 0.3])[torch.arange(int(at_near.sum())) % 3][:, None]
    elif kind == "off_screen":
        means[:, 0] = torch.where(torch.arange(count) % 2 == 0, 2.2, -2.4) + 0.3 * normal(count)
        log_scales[: count // 2] = np.log(0.5)  # tails that reach into the image
        opacity_logits = opacity_logits.abs() + 2.0
    elif kind == "tiny_scales":
        log_scales = normal(count, 3) * 0.5 + np.log(1e-4)
    elif kind == "huge_scales":
        log_scales[::4] = normal(len(log_scales[::4]), 3) * 0.3 + np.log(30.0)
        opacity_logits[::4] = -3.0
    elif kind == "zero_opacity":
        opacity_logits[::3] = -40.0  # sigmoid underflows to ~0
        threshold_logit = float(np.log((1.0 / 255.0) / (1.0 - 1.0 / 255.0)))
        opacity_logits[1::3] = threshold_logit + normal(len(opacity_logits[1::3])) * 0.05
    elif kind == "opaque_stack":
        means[:, :2] *= 0.3  # many Gaussians over the same pixels
        log_scales = normal(count, 3) * 0.2 + np.log(0.3)
        opacity_logits = 6.0 + normal(count)  # alpha clamps at 0.999: transmittance stops early
    elif kind != "random":
        raise ValueError(f"unknown contract scene {kind!r}; kinds are {SCENES}")
    return Gaussians(
        means=means.to(device),
        quats=normal(count, 4).to(device),
        log_scales=log_scales.to(device),
        opacity_logits=opacity_logits.to(device),
        sh=torch.zeros(count, 1, 3, device=device),
    )


def empty_scene(device: str = "cpu") -> Gaussians:
    """A scene without Gaussians."""
    return Gaussians(
        means=torch.zeros(0, 3, device=device),
        quats=torch.zeros(0, 4, device=device),
        log_scales=torch.zeros(0, 3, device=device),
        opacity_logits=torch.zeros(0, device=device),
        sh=torch.zeros(0, 1, 3, device=device),
    )


def reference_render(gaussians: Gaussians, features: torch.Tensor, camera: Camera) -> RenderOutput:
    """The definition of correct rendering (``render_dense``) for a Gaussians object."""
    return render_dense(gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, features, camera)


def _geometry(gaussians: Gaussians) -> list[torch.Tensor]:
    return [gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits]


def _with_gradients(gaussians: Gaussians) -> Gaussians:
    return Gaussians(*[t.detach().clone().requires_grad_(True) for t in _geometry(gaussians)], sh=gaussians.sh)


def _features(count: int, device: str, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, CHANNELS, generator=generator).to(device)


def _probe_loss(output: RenderOutput, seed: int = 2) -> torch.Tensor:
    """A fixed random linear function of every output, so every gradient path is exercised."""
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros((), device=output.features.device)
    for tensor in (output.features, output.alpha, output.depth):
        weights = torch.randn(tensor.shape, generator=generator).to(tensor.device)
        total = total + (tensor.float() * weights).sum()
    return total


class FieldBackendContract:
    """Every field backend renders what ``render_dense`` renders."""

    #: Largest allowed absolute difference of features, alpha and depth.
    forward_atol: float = 1e-4
    #: Largest allowed gradient difference, relative to the largest reference gradient of a tensor.
    gradient_rtol: float = 1e-3

    @pytest.fixture
    def component(self):
        pytest.fail("override the `backend` (or `component`) fixture to return the field backend under test")

    @pytest.fixture
    def backend(self, component):
        return component

    @pytest.fixture
    def device(self) -> str:
        return "cpu"

    @pytest.fixture
    def camera(self) -> Camera:
        return contract_camera()

    # -- helpers -----------------------------------------------------------------------------

    def assert_close(self, actual: RenderOutput, expected: RenderOutput, camera: Camera, channels: int) -> None:
        shapes = {
            "features": (camera.height, camera.width, channels),
            "alpha": (camera.height, camera.width),
            "depth": (camera.height, camera.width),
        }
        for name, shape in shapes.items():
            value, wanted = getattr(actual, name), getattr(expected, name)
            assert tuple(value.shape) == shape, f"{name} has shape {tuple(value.shape)}, expected {shape}"
            assert value.is_floating_point(), f"{name} has dtype {value.dtype}"
            difference = (
                (value.detach().float().cpu() - wanted.detach().float().cpu()).abs().max().item()
                if value.numel()
                else 0.0
            )
            assert difference <= self.forward_atol, (
                f"{name} differs from the reference by {difference:.3g} > {self.forward_atol}"
            )

    def assert_gradients_close(self, actual: torch.Tensor | None, expected: torch.Tensor, name: str) -> None:
        assert actual is not None, f"no gradient reached {name}"
        assert torch.isfinite(actual).all(), f"non-finite gradient for {name}"
        scale = expected.abs().max().item() if expected.numel() else 0.0
        difference = (actual.float().cpu() - expected.float().cpu()).abs().max().item() if expected.numel() else 0.0
        assert difference <= self.gradient_rtol * scale + 1e-6, (
            f"gradient of {name} differs from the reference by {difference:.3g} (largest reference gradient "
            f"{scale:.3g})"
        )

    # -- the contract --------------------------------------------------------------------------

    def test_survives_deepcopy(self, backend):
        check_deepcopy(backend)

    def test_uses_other_plugins_only_through_the_registry(self, backend):
        check_plugin_lookups(backend)

    def test_has_interface(self, backend):
        assert isinstance(backend.differentiable, bool)
        assert callable(backend.prepare) and callable(backend.render)

    @pytest.mark.parametrize("kind", SCENES)
    def test_forward_matches_reference(self, backend, device, camera, kind):
        gaussians = contract_scene(kind, device)
        features = _features(len(gaussians), device)
        backend.prepare(gaussians, [camera])
        with torch.no_grad():
            output = backend.render(gaussians, features, camera)
            expected = reference_render(gaussians, features, camera)
        self.assert_close(output, expected, camera, CHANNELS)

    @pytest.mark.parametrize("kind", SCENES)
    def test_feature_gradients(self, backend, device, camera, kind):
        gaussians = contract_scene(kind, device)
        features = _features(len(gaussians), device).requires_grad_(True)
        backend.prepare(gaussians, [camera])
        (actual,) = torch.autograd.grad(_probe_loss(backend.render(gaussians, features, camera)), [features])
        (expected,) = torch.autograd.grad(_probe_loss(reference_render(gaussians, features, camera)), [features])
        self.assert_gradients_close(actual, expected, "features")

    @pytest.mark.parametrize("kind", SCENES)
    def test_geometry_gradients(self, backend, device, camera, kind):
        if not backend.differentiable:
            pytest.skip("backend is not differentiable with respect to geometry")
        gaussians = _with_gradients(contract_scene(kind, device))
        features = _features(len(gaussians), device).requires_grad_(True)
        inputs = _geometry(gaussians) + [features]
        actual = torch.autograd.grad(
            _probe_loss(backend.render(gaussians, features, camera)), inputs, allow_unused=True
        )
        expected = torch.autograd.grad(
            _probe_loss(reference_render(gaussians, features, camera)), inputs, allow_unused=True
        )
        names = ("means", "quats", "log_scales", "opacity_logits", "features")
        for name, tensor, got, wanted in zip(names, inputs, actual, expected):
            got = torch.zeros_like(tensor) if got is None else got  # unused: no Gaussian is drawn
            wanted = torch.zeros_like(tensor) if wanted is None else wanted
            self.assert_gradients_close(got, wanted, name)

    def test_empty_scene(self, backend, device, camera):
        gaussians = empty_scene(device)
        features = torch.zeros(0, CHANNELS, device=device)
        backend.prepare(gaussians, [camera])
        output = backend.render(gaussians, features, camera)
        self.assert_close(output, reference_render(gaussians, features, camera), camera, CHANNELS)
        assert output.alpha.abs().max().item() == 0.0

    def test_geometry_change_is_seen(self, backend, device, camera):
        """Re-rendering after the Gaussians moved gives the new image (no stale precomputation)."""
        gaussians = contract_scene("random", device)
        features = _features(len(gaussians), device)
        backend.prepare(gaussians, [camera])
        with torch.no_grad():
            backend.render(gaussians, features, camera)
            moved = Gaussians(
                means=gaussians.means + torch.tensor([0.3, -0.2, 0.1], device=device),
                quats=gaussians.quats,
                log_scales=gaussians.log_scales,
                opacity_logits=gaussians.opacity_logits,
                sh=gaussians.sh,
            )
            output = backend.render(moved, features, camera)
            self.assert_close(output, reference_render(moved, features, camera), camera, CHANNELS)
            gaussians.means.add_(0.25)  # edited in place
            output = backend.render(gaussians, features, camera)
            self.assert_close(output, reference_render(gaussians, features, camera), camera, CHANNELS)

    def test_several_cameras(self, backend, device):
        gaussians = contract_scene("random", device)
        features = _features(len(gaussians), device)
        cameras = [contract_camera(), contract_camera(width=20, height=33)]
        cameras.append(Camera(look_at(np.array([2.5, 0.5, -1.5]), np.zeros(3)), 30.0, 30.0, 12.0, 9.0, 24, 18))
        backend.prepare(gaussians, cameras)
        with torch.no_grad():
            for camera in reversed(cameras):
                output = backend.render(gaussians, features, camera)
                self.assert_close(output, reference_render(gaussians, features, camera), camera, CHANNELS)
