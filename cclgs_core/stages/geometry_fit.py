"""Fit RGB 3D Gaussians to posed images (3DGS optimisation), on the CPU by default.

Starting from a sparse point cloud, the Gaussians' means, log-scales, quaternions, opacity logits
and SH colours are optimised with Adam (the per-parameter learning rates of 3DGS, the means' rate
scaled by the scene extent and decayed exponentially) against ``(1 - w) L1 + w (1 - SSIM)``,
rendering one training view per step through a field backend chosen by name (default
``torch``). SH degrees are switched on one at a time. Views may be rendered coarse to fine
(``FitConfig.resolution_schedule``, ``COARSE_TO_FINE`` in ``cclgs fit``): a step costs about the
pixels the Gaussians cover, so early steps at a quarter of the resolution are many times cheaper.
The scene's test frames (``hold_out_every`` makes every 8th one a test frame) are evaluated as the
fit goes.

Densification is gsplat's ``DefaultStrategy`` (clone small / split large Gaussians with large
screen-space gradients, prune transparent ones, optional opacity resets). It is pure torch: its
parameter surgery and bookkeeping run on the CPU, and it touches no CUDA code (its
``torch.cuda.empty_cache()`` is a no-op without CUDA). It needs the backend's 2D means with their
gradients, which the ``torch`` and ``gsplat`` backends expose in ``RenderOutput.extras`` in
gsplat's packed layout. Steps are counted from 1 because the strategy resets opacities whenever
``step % reset_every == 0``.

Nothing is written to disk: ``fit_geometry`` returns the Gaussians and a per-step log.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cclgs_core.errors import ConfigError, DataError
from cclgs_core.helpers.devices import resolve_device
from cclgs_core.scene.gaussians import Gaussians, rgb_to_sh_dc
from cclgs_core.types import Camera, Frame, Scene


@dataclass
class FitConfig:
    """Options of ``fit_geometry`` (defaults sized for a 128 x 128 scene on two CPU cores)."""

    steps: int = 3000
    #: Time budget in seconds: no step starts that would end after it, judging by the last step (0: no limit).
    max_seconds: float = 0.0
    backend: str = "torch"
    backend_options: dict[str, Any] = field(default_factory=dict)
    sh_degree: int = 3
    #: One more SH degree every this many steps (0: the full degree from the start).
    sh_degree_interval: int = 500
    #: Learning rate of the means, times the scene extent, decayed exponentially to ``lr_means_final``.
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_sh_rest: float = 2.5e-3 / 20
    ssim_weight: float = 0.2
    #: RGB in [0, 1] composited behind the Gaussians (the images' background).
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    initial_opacity: float = 0.1
    densify: bool = True
    refine_start: int = 100
    refine_every: int = 100
    #: Last step of densification (0: 60 % of ``steps``).
    refine_stop: int = 0
    #: Opacity reset period (0: never; 3DGS uses 3000 of 30000 steps).
    reset_every: int = 0
    grow_grad2d: float = 2e-4
    prune_opacity: float = 5e-3
    #: Densification stops growing once there are this many Gaussians.
    max_gaussians: int = 200_000
    seed: int = 0
    #: "auto", "cpu", "cuda" or "cuda:N" (``devices.resolve_device``).
    device: str = "auto"
    #: Held-out PSNR every this many seconds of fitting, besides at the start and the end (0: only those).
    heldout_every_seconds: float = 60.0
    #: Coarse to fine: (progress, scale) pairs, progress in [0, 1) rising from 0. From each progress
    #: (the fraction of ``max_seconds`` elapsed when it is set, else of ``steps`` done) the training
    #: views are rendered at ``scale`` times their resolution. ((0.0, 1.0),): full resolution throughout.
    resolution_schedule: tuple[tuple[float, float], ...] = ((0.0, 1.0),)


@dataclass
class FitResult:
    """The fitted Gaussians (detached), one log entry per step (step, loss, l1, psnr of the
    training view, gaussians, seconds, sh_degree) and the held-out evaluations (step, seconds,
    heldout_psnr_db: the mean over the scene's test frames; empty without test frames)."""

    gaussians: Gaussians
    log: list[dict[str, float]]
    heldout: list[dict[str, float]] = field(default_factory=list)

    @property
    def heldout_psnr_db(self) -> float | None:
        """The final held-out PSNR (None without test frames)."""
        return self.heldout[-1]["heldout_psnr_db"] if self.heldout else None


#: nerfstudio's "interval" evaluation mode holds out every 8th view.
HOLDOUT_INTERVAL = 8


def hold_out_every(scene: Scene, interval: int = HOLDOUT_INTERVAL) -> Scene:
    """``scene`` with frames 0, interval, 2 * interval, ... (in frame order) moved to "test",
    as nerfstudio holds out views; unchanged when it already has test frames or ``interval`` is 0."""
    if interval <= 0 or scene.split("test"):
        return scene
    frames = [
        replace(frame, split="test") if position % interval == 0 else frame
        for position, frame in enumerate(scene.frames)
    ]
    return replace(scene, frames=frames)


def fit_geometry(
    scene: Scene,
    points: np.ndarray,
    colors: np.ndarray | None = None,
    config: FitConfig | None = None,
    registry: Any = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
    on_heldout: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Fit Gaussians to the training frames of ``scene``; its test frames are evaluated (mean PSNR)
    at the start, every ``config.heldout_every_seconds`` and at the end.

    points: (M, 3) float initial means (a sparse point cloud, M >= 1)
    colors: (M, 3) uint8 or float in [0, 1] initial colours (grey when None)
    registry: a ``PluginRegistry`` to take the backend from (the process-wide one by default)
    on_step: called with each log entry (progress display)
    on_heldout: called with each held-out evaluation
    """
    config = config or FitConfig()
    frames = scene.split("train")
    if not frames:
        raise DataError(f"{scene.root}: the scene has no training frames to fit; check the split of its frames")
    if config.steps < 1:
        raise ConfigError(f"geometry fit: steps must be >= 1, got {config.steps}")
    backend = _backend(config, registry)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    generator = np.random.default_rng(config.seed)
    schedule = _check_schedule(config.resolution_schedule)
    images = [torch.from_numpy(frame.load_image()).to(device).float() / 255.0 for frame in frames]  # each (H, W, 3)
    views_at = {scale: _views_at_scale(frames, images, scale) for _, scale in schedule}  # scale -> [(camera, image)]
    background = torch.tensor(config.background, dtype=torch.float32, device=device)
    extent = scene_extent([frame.camera for frame in frames])
    params = initial_parameters(points, colors, config.sh_degree, config.initial_opacity)
    params = {name: torch.nn.Parameter(value.detach().to(device)) for name, value in params.items()}
    optimizers = _optimizers(params, config, extent)
    strategy, strategy_state = _strategy(config, params, optimizers, extent)
    decay = (config.lr_means_final / config.lr_means) ** (1.0 / max(config.steps, 1))

    heldout_frames = scene.split("test")
    heldout: list[dict[str, float]] = []

    def evaluate_heldout(step: int, seconds: float) -> None:
        if not heldout_frames:
            return
        with torch.no_grad():
            current = gaussians_from_parameters(params, active_sh_degree(max(step, 1), config))
            scores = evaluate(backend, current, heldout_frames, config.background)
        entry = {"step": step, "seconds": seconds, "heldout_psnr_db": float(np.mean(scores))}
        heldout.append(entry)
        if on_heldout is not None:
            on_heldout(entry)

    log: list[dict[str, float]] = []
    order: list[int] = []
    previous_seconds = 0.0
    start = time.perf_counter()
    evaluate_heldout(0, 0.0)
    next_evaluation = config.heldout_every_seconds
    for step in range(1, config.steps + 1):
        if not order:
            order = list(generator.permutation(len(frames)))
        view = order.pop()
        progress = (previous_seconds / config.max_seconds) if config.max_seconds else (step - 1) / config.steps
        scale = [scale for start_at, scale in schedule if progress >= start_at][-1]
        camera, target = views_at[scale][view]
        degree = active_sh_degree(step, config)
        gaussians = gaussians_from_parameters(params, degree)
        output = backend.render(gaussians, gaussians.colors(camera), camera)
        image = output.features + (1.0 - output.alpha)[..., None] * background  # (H, W, 3)
        l1 = (image - target).abs().mean()
        loss = l1
        if config.ssim_weight > 0:
            loss = (1.0 - config.ssim_weight) * l1 + config.ssim_weight * (1.0 - ssim(image, target))
        info = _strategy_info(output, camera) if strategy is not None else None
        if strategy is not None:
            strategy.step_pre_backward(params, optimizers, strategy_state, step, info)
        if loss.requires_grad:
            loss.backward()
            for optimizer in optimizers.values():
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if strategy is not None and info["means2d"].grad is not None:
                if len(params["means"]) >= config.max_gaussians:
                    strategy.refine_stop_iter = min(strategy.refine_stop_iter, step)
                strategy.step_post_backward(params, optimizers, strategy_state, step, info, packed=True)
        for group in optimizers["means"].param_groups:
            group["lr"] *= decay
        entry = {
            "step": step,
            "loss": float(loss.detach()),
            "l1": float(l1.detach()),
            "psnr": psnr(image.detach(), target),
            "gaussians": len(params["means"]),
            "seconds": time.perf_counter() - start,
            "sh_degree": degree,
        }
        log.append(entry)
        if on_step is not None:
            on_step(entry)
        if config.max_seconds and 2 * entry["seconds"] - previous_seconds > config.max_seconds:
            break  # another step as long as this one would exceed the time budget
        if config.heldout_every_seconds > 0 and entry["seconds"] >= next_evaluation and step < config.steps:
            evaluate_heldout(step, entry["seconds"])
            next_evaluation += config.heldout_every_seconds
        previous_seconds = time.perf_counter() - start
    with torch.no_grad():
        fitted = gaussians_from_parameters(params, config.sh_degree)
        fitted = Gaussians(
            *(
                t.detach().clone()
                for t in (fitted.means, fitted.quats, fitted.log_scales, fitted.opacity_logits, fitted.sh)
            )
        )
    evaluate_heldout(log[-1]["step"], time.perf_counter() - start)
    return FitResult(gaussians=fitted, log=log, heldout=heldout)


# -- parameters ------------------------------------------------------------------------------


#: splatfacto's random initialisation: points in a cube of side 10 in nerfstudio's normalised
#: coordinates, where the camera centres, taken about their mean, reach at most 1 on any axis.
RANDOM_CUBE_SIDE = 10.0


def random_initialisation(scene: Scene, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Initial points for a scene without sparse points, as splatfacto makes them.

    Uniform in ``scene.bounds`` when the scene states a box (instant-ngp's ``aabb_scale``), else in
    splatfacto's cube: centred on the mean camera centre, of side ``RANDOM_CUBE_SIDE`` times the
    largest distance, along any axis, of a camera centre from that mean. Colours are uniform.

    Returns (count, 3) float64 points and (count, 3) float64 colours in [0, 1].
    """
    if count < 1:
        raise ConfigError(f"random initialisation needs at least 1 point, got {count}")
    if scene.bounds is not None:
        low, high = np.asarray(scene.bounds, dtype=np.float64)
    else:
        centres = np.stack([frame.camera.center for frame in scene.frames])  # (F, 3)
        middle = centres.mean(axis=0)
        reach = float(np.abs(centres - middle).max()) or 1.0
        low, high = middle - RANDOM_CUBE_SIDE / 2 * reach, middle + RANDOM_CUBE_SIDE / 2 * reach
    generator = np.random.default_rng(seed)
    points = low + generator.random((count, 3)) * (high - low)
    return points, generator.random((count, 3))


def starting_points(
    scene: Scene, init: str = "auto", random_points: int = 50_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Where a fit starts: the scene's sparse points ("points"), splatfacto's random points
    ("random", ``random_initialisation``), or "auto": points when the scene has them, else random.

    Returns (M, 3) points and (M, 3) colours (uint8 or float in [0, 1])."""
    from cclgs_core.datasets import load_points

    if init not in ("auto", "points", "random"):
        raise ConfigError(f"geometry fit: init must be auto, points or random, got {init!r}")
    if init == "points" or (init == "auto" and scene.points_path is not None):
        return load_points(scene)
    return random_initialisation(scene, random_points, seed)


def initial_parameters(
    points: np.ndarray, colors: np.ndarray | None, sh_degree: int, initial_opacity: float
) -> dict[str, torch.nn.Parameter]:
    """3DGS initialisation from points (M, 3) and colours (M, 3): isotropic scales from the mean
    squared distance to the three nearest neighbours, identity rotations, uniform opacity.

    Returns parameters "means" (M, 3), "scales" (M, 3) log, "quats" (M, 4), "opacities" (M,)
    logits, "sh0" (M, 1, 3) and, for sh_degree > 0, "shN" (M, K - 1, 3).
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise DataError(f"initial points must be a non-empty (M, 3) array, got shape {points.shape}")
    if colors is None:
        rgb = np.full(points.shape, 0.5)
    else:
        rgb = np.asarray(colors, dtype=np.float64)
        rgb = rgb / 255.0 if np.asarray(colors).dtype == np.uint8 else rgb
        if rgb.shape != points.shape:
            raise DataError(f"point colours must be (M, 3) like the points {points.shape}, got {rgb.shape}")
    neighbours = min(4, len(points))
    distances, _ = cKDTree(points).query(points, k=neighbours)
    distances = np.asarray(distances).reshape(len(points), -1)[:, 1:]
    mean_square = (distances**2).mean(axis=1) if distances.shape[1] else np.ones(len(points))
    log_scale = np.log(np.sqrt(np.clip(mean_square, 1e-14, None)))
    count = len(points)
    opacity = min(max(initial_opacity, 1e-4), 1 - 1e-4)
    params = {
        "means": torch.tensor(points, dtype=torch.float32),
        "scales": torch.tensor(np.repeat(log_scale[:, None], 3, axis=1), dtype=torch.float32),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(count, 1),
        "opacities": torch.full((count,), math.log(opacity / (1 - opacity))),
        "sh0": torch.tensor(rgb_to_sh_dc(rgb), dtype=torch.float32)[:, None, :],
    }
    if sh_degree > 0:
        params["shN"] = torch.zeros(count, (sh_degree + 1) ** 2 - 1, 3)
    return {name: torch.nn.Parameter(value) for name, value in params.items()}


def gaussians_from_parameters(params: dict[str, torch.Tensor], sh_degree: int) -> Gaussians:
    """The Gaussians of the optimiser's parameters, with SH up to ``sh_degree``."""
    coefficients = (sh_degree + 1) ** 2
    sh = params["sh0"] if coefficients == 1 else torch.cat([params["sh0"], params["shN"][:, : coefficients - 1]], dim=1)
    return Gaussians(
        means=params["means"],
        quats=params["quats"],
        log_scales=params["scales"],
        opacity_logits=params["opacities"],
        sh=sh,
    )


#: The coarse-to-fine schedule ``cclgs fit`` uses: a quarter of the resolution for the first 30 %
#: of the budget, half until 65 %, then full. A step costs about the pixels the Gaussians cover,
#: so early steps are up to 16 times cheaper while the coarse layout forms.
COARSE_TO_FINE: tuple[tuple[float, float], ...] = ((0.0, 0.25), (0.3, 0.5), (0.65, 1.0))
#: Coarse levels whose images would be shorter than this many pixels are skipped.
COARSE_MIN_SIDE = 64


def coarse_to_fine_schedule(
    frames: Sequence[Frame], minimum_side: int = COARSE_MIN_SIDE
) -> tuple[tuple[float, float], ...]:
    """``COARSE_TO_FINE`` without the levels that would make the smallest view's shorter side
    fall below ``minimum_side`` pixels (full resolution throughout for small images)."""
    shortest = min(min(frame.camera.width, frame.camera.height) for frame in frames)
    kept = [(start_at, scale) for start_at, scale in COARSE_TO_FINE if scale == 1.0 or shortest * scale >= minimum_side]
    return ((0.0, kept[0][1]), *kept[1:])


def _check_schedule(schedule: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The resolution schedule as a list, after checking it starts at 0, rises, and scales in (0, 1]."""
    pairs = [(float(start_at), float(scale)) for start_at, scale in schedule]
    starts = [start_at for start_at, _ in pairs]
    if not pairs or starts[0] != 0.0 or any(b <= a for a, b in zip(starts, starts[1:])) or starts[-1] >= 1.0:
        raise ConfigError(
            f"geometry fit: resolution_schedule must start at progress 0 and rise below 1, got {schedule}"
        )
    if any(not 0.0 < scale <= 1.0 for _, scale in pairs):
        raise ConfigError(f"geometry fit: resolution_schedule scales must lie in (0, 1], got {schedule}")
    return pairs


def _views_at_scale(
    frames: Sequence[Frame], images: Sequence[torch.Tensor], scale: float
) -> list[tuple[Camera, torch.Tensor]]:
    """Each frame's camera and (h, w, 3) image at ``scale`` times the resolution (area-averaged)."""
    views = []
    for frame, image in zip(frames, images):
        camera = frame.camera if scale == 1.0 else frame.camera.scaled(scale)
        if (camera.height, camera.width) != tuple(image.shape[:2]):
            channels_first = image.permute(2, 0, 1)[None]  # (1, 3, H, W)
            resized = torch.nn.functional.interpolate(channels_first, size=(camera.height, camera.width), mode="area")
            image = resized[0].permute(1, 2, 0).contiguous()  # (h, w, 3)
        views.append((camera, image))
    return views


def active_sh_degree(step: int, config: FitConfig) -> int:
    if config.sh_degree_interval <= 0:
        return config.sh_degree
    return min(config.sh_degree, (step - 1) // config.sh_degree_interval)


def scene_extent(cameras: Sequence[Camera]) -> float:
    """3DGS's scene scale: 1.1 x the largest distance of a camera centre from their mean (1 for one camera)."""
    centres = np.stack([camera.center for camera in cameras])
    radius = float(np.linalg.norm(centres - centres.mean(axis=0), axis=1).max()) * 1.1
    return radius if radius > 0 else 1.0


def _optimizers(params: dict[str, torch.nn.Parameter], config: FitConfig, extent: float) -> dict[str, torch.optim.Adam]:
    rates = {
        "means": config.lr_means * extent,
        "scales": config.lr_scales,
        "quats": config.lr_quats,
        "opacities": config.lr_opacities,
        "sh0": config.lr_sh0,
        "shN": config.lr_sh_rest,
    }
    # one optimiser per parameter, as gsplat's strategies expect; eps as in 3DGS
    return {name: torch.optim.Adam([param], lr=rates[name], eps=1e-15) for name, param in params.items()}


def _backend(config: FitConfig, registry: Any):
    if registry is None:
        from cclgs_core.plumbing.registry import get_registry

        registry = get_registry()
    backend = registry.create("field_backend", config.backend, config.backend_options)
    if not backend.differentiable:
        raise ConfigError(
            f"geometry fit needs a field backend differentiable with respect to geometry; {config.backend!r} is not "
            "(use 'torch' on the CPU or 'gsplat' on CUDA)"
        )
    return backend


def _strategy(config: FitConfig, params, optimizers, extent: float):
    if not config.densify:
        return None, None
    from gsplat.strategy import DefaultStrategy

    strategy = DefaultStrategy(
        prune_opa=config.prune_opacity,
        grow_grad2d=config.grow_grad2d,
        refine_start_iter=config.refine_start,
        refine_stop_iter=config.refine_stop or int(0.6 * config.steps),
        refine_every=config.refine_every,
        reset_every=config.reset_every or config.steps + 1,
    )
    strategy.check_sanity(params, optimizers)
    return strategy, strategy.initialize_state(scene_scale=extent)


def _strategy_info(output, camera: Camera) -> dict[str, Any]:
    missing = {"means2d", "gaussian_ids", "radii"} - set(output.extras)
    if missing:
        raise ConfigError(
            f"densification needs the backend's {', '.join(sorted(missing))} in RenderOutput.extras; "
            "this backend does not provide them: set densify to false or use the 'torch' backend"
        )
    return {
        "means2d": output.extras["means2d"],
        "gaussian_ids": output.extras["gaussian_ids"],
        "radii": output.extras["radii"],
        "width": camera.width,
        "height": camera.height,
        "n_cameras": 1,
    }


# -- losses and metrics ----------------------------------------------------------------------


def ssim(image: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two (H, W, 3) images in [0, 1], Gaussian window as in 3DGS
    (zero padding at the borders)."""
    coordinates = torch.arange(window, dtype=image.dtype, device=image.device) - (window - 1) / 2
    kernel = torch.exp(-(coordinates**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x, y = image.permute(2, 0, 1), target.permute(2, 0, 1)  # (3, H, W)
    stack = torch.cat([x, y, x * x, y * y, x * y])[None]  # (1, 15, H, W)
    # the 2D Gaussian window is separable: blur rows, then columns
    blurred = torch.nn.functional.conv2d(stack, kernel.expand(15, 1, 1, window), padding=(0, window // 2), groups=15)
    blurred = torch.nn.functional.conv2d(
        blurred, kernel[:, None].expand(15, 1, window, 1), padding=(window // 2, 0), groups=15
    )
    mean_x, mean_y, square_x, square_y, product = blurred[0].split(3)
    var_x = square_x - mean_x**2
    var_y = square_y - mean_y**2
    covariance = product - mean_x * mean_y
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return value.mean()


def psnr(image: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (any equal shapes)."""
    mse = float(((image.clamp(0, 1) - target) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def render_rgb(
    backend: Any, gaussians: Gaussians, camera: Camera, background: Sequence[float] = (0.0, 0.0, 0.0)
) -> torch.Tensor:
    """(H, W, 3) colour image of ``gaussians`` over ``background``, without gradients."""
    with torch.no_grad():
        output = backend.render(gaussians, gaussians.colors(camera), camera)
        fill = torch.tensor(tuple(background), dtype=output.features.dtype, device=output.features.device)
        return output.features + (1.0 - output.alpha)[..., None] * fill


def evaluate(
    backend: Any, gaussians: Gaussians, frames: Sequence[Frame], background: Sequence[float] = (0.0, 0.0, 0.0)
) -> list[float]:
    """PSNR in dB of ``gaussians`` against each frame's image."""
    scores = []
    for frame in frames:
        target = torch.from_numpy(frame.load_image()).to(gaussians.means.device).float() / 255.0
        scores.append(psnr(render_rgb(backend, gaussians, frame.camera, background), target))
    return scores


def fit_report(result: FitResult, config: FitConfig, scene: Scene) -> dict[str, Any]:
    """What a fit reached and how: the final held-out PSNR, time, size, views, the held-out curve
    and the settings (JSON-ready)."""
    last = result.log[-1]
    final = result.heldout_psnr_db
    return {
        "heldout_psnr_db": None if final is None else round(final, 3),
        "seconds": round(last["seconds"], 1),
        "steps": int(last["step"]),
        "gaussians": len(result.gaussians),
        "train_views": len(scene.split("train")),
        "heldout_views": [frame.name for frame in scene.split("test")],
        "resolution": f"{scene.frames[0].camera.width}x{scene.frames[0].camera.height}",
        "heldout": [{key: round(float(value), 3) for key, value in entry.items()} for entry in result.heldout],
        "settings": asdict(config),
    }


def write_fit_report(path: Path, result: FitResult, config: FitConfig, scene: Scene) -> Path:
    """``fit_report`` as JSON beside the fitted .ply."""
    from cclgs_core.plumbing.cache import atomic_write_text

    atomic_write_text(path, json.dumps(fit_report(result, config, scene), indent=2) + "\n")
    return path
