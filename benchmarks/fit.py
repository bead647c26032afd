"""Geometry-fitting benchmark: fit RGB Gaussians on the CPU, report held-out PSNR, time and size.

    python benchmarks/fit.py SCENE_DIR            # a transforms.json scene with sparse points
    python benchmarks/fit.py --toy                # a toy world built (and rendered) by this script

The issue's target: at least 25 dB PSNR on held-out views at 128 x 128 within 5 minutes on two
cores (``--max-seconds 300``, the default). Prints a table and writes JSON to
``benchmarks/results/fit.json`` (``fit_toy.json`` with ``--toy``).

The toy world is a stand-in until the synthetic benchmark world exists: a textured ground plane
with six coloured ellipsoids made of Gaussians, 30 training and 8 test views on an orbit at
128 x 128 over a white background, 1000 sparse points sampled from the Gaussian centres. Its
images are rendered by the ``torch`` backend (equal to the dense reference to 1e-6).
"""

from __future__ import annotations

import os

# Threads that sleep instead of spinning while they wait: on a machine shared with other jobs,
# spinning OpenMP threads slow torch down several times. Must be set before torch starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from cclgs_core.plumbing.registry import get_registry
from cclgs_core.scene.gaussians import Gaussians, rgb_to_sh_dc
from cclgs_core.stages.geometry_fit import FitConfig, evaluate, fit_geometry
from cclgs_core.testing.backends import look_at
from cclgs_core.types import Camera, Frame, Scene

RESULTS = Path(__file__).parent / "results"


def toy_world(seed: int = 0) -> tuple[Gaussians, list[tuple[Camera, str]]]:
    """Gaussians of a plane and six ellipsoids, and 38 orbit cameras (every fifth a test view)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(-1.0, 1.0, 48)
    xs, ys = np.meshgrid(grid, grid)
    plane = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1) + rng.normal(0, 0.005, (xs.size, 3))
    checker = ((np.floor(xs.ravel() * 4) + np.floor(ys.ravel() * 4)) % 2)[:, None]
    plane_rgb = np.where(checker > 0, [0.75, 0.7, 0.6], [0.45, 0.4, 0.35]) + rng.normal(0, 0.02, (xs.size, 3))
    plane_scales = np.tile([0.03, 0.03, 0.004], (xs.size, 1))
    parts = [(plane, plane_rgb, plane_scales, np.tile([1.0, 0, 0, 0], (xs.size, 1)))]
    for index in range(6):
        angle = 2 * math.pi * index / 6 + rng.uniform(-0.3, 0.3)
        centre = np.array([0.55 * math.cos(angle), 0.55 * math.sin(angle), 0.0])
        radii = rng.uniform(0.12, 0.25, 3)
        centre[2] = radii[2]
        count = 700
        directions = rng.normal(size=(count, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        points = centre + directions * radii
        colour = rng.uniform(0.05, 0.95, 3)
        shade = colour * (0.75 + 0.25 * directions[:, 2:3]) + rng.normal(0, 0.02, (count, 3))
        parts.append((points, shade, np.full((count, 3), 0.035), rng.normal(size=(count, 4))))
    means, colours, scales, quats = (np.concatenate([part[i] for part in parts]) for i in range(4))
    gaussians = Gaussians(
        means=torch.tensor(means, dtype=torch.float32),
        quats=torch.tensor(quats, dtype=torch.float32),
        log_scales=torch.tensor(np.log(scales), dtype=torch.float32),
        opacity_logits=torch.full((len(means),), 4.0),
        sh=rgb_to_sh_dc(torch.tensor(np.clip(colours, 0, 1), dtype=torch.float32))[:, None, :],
    )
    cameras = []
    focal = 0.5 * 128 / math.tan(math.radians(45) / 2)
    for view in range(38):
        angle = 2 * math.pi * view / 38
        eye = np.array([2.6 * math.cos(angle), 2.6 * math.sin(angle), 1.3 + 0.3 * math.sin(3 * angle)])
        pose = look_at(eye, np.array([0.0, 0.0, 0.15]), up=np.array([0.0, 0.0, 1.0]))
        cameras.append((Camera(pose, focal, focal, 64.0, 64.0, 128, 128), "test" if view % 5 == 2 else "train"))
    return gaussians, cameras


def build_toy_scene(directory: Path, seed: int = 0) -> tuple[Scene, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Render the toy world into ``directory``; returns the scene, sparse points (P, 3) and their
    uint8 colours (P, 3), and the background colour."""
    from PIL import Image

    background = (1.0, 1.0, 1.0)
    gaussians, cameras = toy_world(seed)
    backend = get_registry().create("field_backend", "torch")
    frames = []
    for index, (camera, split) in enumerate(cameras):
        with torch.no_grad():
            output = backend.render(gaussians, gaussians.colors(camera), camera)
            image = output.features + (1 - output.alpha)[..., None] * torch.tensor(background)
        path = directory / f"frame_{index:05d}.png"
        Image.fromarray((image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(path)
        frames.append(Frame(index=index, name=path.stem, image_path=path, camera=camera, split=split))
    rng = np.random.default_rng(seed + 1)
    chosen = rng.choice(len(gaussians), size=1000, replace=False)
    colours = gaussians.colors(cameras[0][0])[chosen].clamp(0, 1).numpy()
    points = gaussians.means[chosen].numpy()
    return Scene(root=directory, frames=frames), points, (colours * 255).round().astype(np.uint8), background


def load_scene_and_points(path: Path) -> tuple[Scene, np.ndarray, np.ndarray, tuple[float, float, float] | None]:
    """A nerfstudio scene with its sparse points; the background from a synthetic world's world.json."""
    from cclgs_core.datasets import load_points, load_scene

    scene = load_scene(path)
    points, colours = load_points(scene)
    background = None
    world = Path(path) / "world.json"
    if world.is_file():
        options = json.loads(world.read_text())
        colour = options.get("background", options.get("options", {}).get("background"))
        background = tuple(colour) if colour is not None else None
    return scene, points, colours, background


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scene", nargs="?", type=Path, help="folder with transforms.json (omit with --toy)")
    parser.add_argument("--toy", action="store_true", help="build and use the toy world")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--backend", default="torch")
    parser.add_argument(
        "--background", type=float, nargs=3, default=None, help="RGB in [0, 1] (default: world.json's, else black)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.toy == (args.scene is not None):
        parser.error("give a scene folder or --toy (not both)")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        if args.toy:
            scene, points, colours, background = build_toy_scene(Path(scratch), args.seed)
        else:
            scene, points, colours, background = load_scene_and_points(args.scene)
        background = tuple(args.background) if args.background else (background or (0.0, 0.0, 0.0))
        test_frames = scene.split("test")
        if not test_frames:
            print(f"{scene.root}: no test frames to evaluate", file=sys.stderr)
            return 2
        config = FitConfig(
            steps=args.steps, max_seconds=args.max_seconds, backend=args.backend, background=background, seed=args.seed
        )
        config.refine_stop = int(0.6 * args.steps)
        result = fit_geometry(scene, points, colours, config, on_step=_progress)
        print(file=sys.stderr)
        backend = get_registry().create("field_backend", args.backend)
        test_psnr = evaluate(backend, result.gaussians, test_frames, background)
        train_psnr = evaluate(backend, result.gaussians, scene.split("train")[::5], background)

    last = result.log[-1]
    report = {
        "scene": "toy" if args.toy else str(args.scene),
        "backend": args.backend,
        "threads": args.threads,
        "steps_done": last["step"],
        "seconds": round(last["seconds"], 1),
        "gaussians_initial": int(len(points)),
        "gaussians_final": int(len(result.gaussians)),
        "test_views": len(test_frames),
        "test_psnr_mean": round(float(np.mean(test_psnr)), 2),
        "test_psnr_min": round(float(np.min(test_psnr)), 2),
        "train_psnr_mean": round(float(np.mean(train_psnr)), 2),
        "resolution": f"{test_frames[0].camera.width}x{test_frames[0].camera.height}",
        "target": "test PSNR >= 25 dB within 300 s",
        "met": bool(np.mean(test_psnr) >= 25.0 and last["seconds"] <= 300.0),
        "machine": platform.processor() or platform.machine(),
        "curve": [
            {k: round(float(v), 4) for k, v in entry.items()} for entry in result.log[:: max(1, len(result.log) // 40)]
        ],
    }
    rows = [(k, v) for k, v in report.items() if k != "curve"]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    output = args.output or RESULTS / ("fit_toy.json" if args.toy else "fit.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {output}")
    return 0


def _progress(entry: dict[str, float]) -> None:
    if entry["step"] % 50 == 0:
        print(
            f"\rstep {entry['step']:5d}  {entry['seconds']:6.1f}s  gaussians {entry['gaussians']:6d}  "
            f"train psnr {entry['psnr']:5.2f}",
            end="",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
