"""Field-backend benchmark: render time and peak memory against Gaussian count and resolution.

    python benchmarks/render.py [--quick] [--threads 2]

For every backend available here (``reference`` only at small sizes, ``torch``, ``cached``,
``gsplat`` where CUDA exists) and every (Gaussians, resolution) of the grid, it times

- ``forward``: one render of 8-channel features without gradients;
- ``train step``: render + backward of a loss on the features, alpha and depth — gradients
  reach means, quaternions, scales, opacities and features for the differentiable backends,
  the features only for ``cached`` (frozen geometry);
- ``prepare`` (``cached`` only): computing the view's kept blending weights, once per view;

as the best of ``--repeats`` runs (the least disturbed by other processes on a shared machine),
and the peak memory growth over one train step in a fresh process (Linux peak RSS; CUDA: peak
allocated). ``cached`` runs with top_k = 16 (at most 16 weights per pixel, where its default
of 256 would grow with these volumes); its truncation (the blending weight left out) is listed:
these random semi-transparent volumes are a worst case for it. Then the issue's figure: per
training step with frozen geometry (8 channels, 128 x 128, 20k Gaussians, gradients w.r.t. the
features only), ``cached`` against ``torch`` (target: at least 10x faster).

Prints a table and writes ``benchmarks/results/render.json``.
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
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from reporting import write_json

from cclgs_core.plumbing.registry import get_registry
from cclgs_core.scene.gaussians import Gaussians
from cclgs_core.testing.backends import look_at
from cclgs_core.types import Camera

RESULTS = Path(__file__).parent / "results"
CHANNELS = 8
#: The reference is O(pixels x Gaussians): only run it up to this product.
REFERENCE_LIMIT = 20_000_000


def random_scene(count: int, seed: int = 0) -> Gaussians:
    """``count`` Gaussians filling a cube of side 2 at the origin, sized so that a view is covered
    a few layers deep at any count (like a fitted scene): scale ~ count^(-1/3)."""
    generator = torch.Generator().manual_seed(seed)
    scale = 0.6 * count ** (-1.0 / 3.0)
    return Gaussians(
        means=torch.rand(count, 3, generator=generator) * 2 - 1,
        quats=torch.randn(count, 4, generator=generator),
        log_scales=torch.randn(count, 3, generator=generator) * 0.3 + math.log(scale),
        opacity_logits=torch.randn(count, generator=generator),
        sh=torch.zeros(count, 1, 3),
    )


def camera(resolution: int) -> Camera:
    focal = 0.5 * resolution / math.tan(math.radians(50) / 2)
    pose = look_at(np.array([0.5, -0.8, -3.2]), np.zeros(3))
    return Camera(pose, focal, focal, resolution / 2, resolution / 2, resolution, resolution)


def best_time(function: Callable[[], None], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls, after one warm-up call."""
    function()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def peak_memory_mb(name: str, count: int, resolution: int, threads: int) -> float | None:
    """Peak memory growth in MB over one train step, measured in a fresh process (so that the
    allocator holds no memory from earlier runs): Linux peak RSS, or CUDA peak allocation."""
    command = [sys.executable, __file__, "--probe", name, str(count), str(resolution), "--threads", str(threads)]
    # a fixed mmap threshold makes glibc return every large block on free, so RSS follows live memory
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"memory probe {name} {count} {resolution} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]


def _probe(name: str, count: int, resolution: int) -> None:
    """Print the peak memory growth of one train step of a fresh process as JSON."""
    backend, gaussians, features, view = _setup(name, count, resolution)
    step = train_step(backend, gaussians, features, view, bool(backend.differentiable))
    peak = None
    if gaussians.means.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    elif Path("/proc/self/clear_refs").exists():
        status = Path("/proc/self/status")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
        before = _status_kb(status, "VmRSS")
        step()
        peak = (_status_kb(status, "VmHWM") - before) / 1024
    print(json.dumps({"peak_mb": peak}))


def _status_kb(status: Path, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", status.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def _setup(name: str, count: int, resolution: int):
    device = "cuda" if name == "gsplat" else "cpu"
    backend = get_registry().create("field_backend", name, {"top_k": 16} if name == "cached" else None)
    gaussians = random_scene(count).to(device)
    features = torch.randn(count, CHANNELS, generator=torch.Generator().manual_seed(2)).to(device)
    view = camera(resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation is reported in the table instead
        backend.prepare(gaussians, [view])
    return backend, gaussians, features, view


def train_step(
    backend, gaussians: Gaussians, features: torch.Tensor, view: Camera, geometry: bool
) -> Callable[[], None]:
    """Render + backward of a fixed linear loss; gradients to the geometry only if ``geometry``."""
    probe = torch.randn(view.height, view.width, features.shape[1], generator=torch.Generator().manual_seed(1))
    probe = probe.to(features.device)
    leaves = [gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits]

    def step() -> None:
        for leaf in leaves:
            leaf.requires_grad_(geometry)
            leaf.grad = None
        trained = features.detach().requires_grad_(True)
        output = backend.render(gaussians, trained, view)
        loss = (output.features * probe).sum()
        if geometry:
            loss = loss + output.alpha.sum() + output.depth.sum()
        loss.backward()
        _synchronize(features.device)

    return step


def forward(backend, gaussians: Gaussians, features: torch.Tensor, view: Camera) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            backend.render(gaussians, features, view)
        _synchronize(features.device)

    return run


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, count: int, resolution: int, repeats: int, threads: int) -> dict:
    start = time.perf_counter()
    backend, gaussians, features, view = _setup(name, count, resolution)
    setup_ms = 1000 * (time.perf_counter() - start)
    row = {"backend": name, "gaussians": count, "resolution": resolution, "device": gaussians.means.device.type}
    if name == "cached":
        row["prepare_ms"] = setup_ms  # includes building the random scene (negligible)
        row.update(backend.truncation(gaussians, view))
    geometry = bool(backend.differentiable)
    row["forward_ms"] = 1000 * best_time(forward(backend, gaussians, features, view), repeats)
    row["train_step_ms"] = 1000 * best_time(train_step(backend, gaussians, features, view, geometry), repeats)
    row["gradients"] = "geometry+features" if geometry else "features"
    row["peak_mb"] = peak_memory_mb(name, count, resolution, threads)
    return row


def frozen_geometry_speedup(repeats: int) -> dict:
    """Per training step, 8 channels, 128 x 128, 20k Gaussians, gradients w.r.t. the features only."""
    gaussians = random_scene(20_000)
    features = torch.randn(20_000, CHANNELS, generator=torch.Generator().manual_seed(2))
    view = camera(128)
    times = {}
    for name in ("torch", "cached"):
        backend = get_registry().create("field_backend", name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            backend.prepare(gaussians, [view])
        times[name] = 1000 * best_time(train_step(backend, gaussians, features, view, geometry=False), repeats)
    return {
        "gaussians": 20_000,
        "resolution": 128,
        "channels": CHANNELS,
        "torch_step_ms": times["torch"],
        "cached_step_ms": times["cached"],
        "speedup": times["torch"] / times["cached"],
        "target": ">= 10x",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller grid")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS / "render.json")
    parser.add_argument("--probe", nargs=3, metavar=("BACKEND", "GAUSSIANS", "RESOLUTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.probe:
        _probe(args.probe[0], int(args.probe[1]), int(args.probe[2]))
        return 0
    counts = (1_000, 20_000) if args.quick else (1_000, 5_000, 20_000, 100_000)
    resolutions = (64, 128) if args.quick else (64, 128, 256, 512)
    backends = ["reference", "torch", "cached"] + (["gsplat"] if torch.cuda.is_available() else [])

    rows = []
    header = (
        f"{'backend':<10} {'gaussians':>9} {'res':>5} {'forward ms':>11} {'step ms':>9} {'peak MB':>8} "
        f"{'prepare ms':>11} {'uncovered max/mean':>19}  gradients"
    )
    print(header)
    print("-" * len(header))
    for count in counts:
        for resolution in resolutions:
            for name in backends:
                if name == "reference" and count * resolution * resolution > REFERENCE_LIMIT:
                    continue
                row = measure(name, count, resolution, args.repeats, args.threads)
                rows.append(row)
                peak = f"{row['peak_mb']:8.1f}" if row["peak_mb"] is not None else f"{'n/a':>8}"
                prepare = f"{row['prepare_ms']:11.1f}" if "prepare_ms" in row else f"{'':>11}"
                uncovered = f"{row['max_uncovered']:.3f}/{row['mean_uncovered']:.4f}" if "max_uncovered" in row else ""
                print(
                    f"{name:<10} {count:>9} {resolution:>5} {row['forward_ms']:11.2f} {row['train_step_ms']:9.2f} "
                    f"{peak} {prepare} {uncovered:>19}  {row['gradients']}",
                    flush=True,
                )
    speedup = frozen_geometry_speedup(args.repeats)
    print(
        f"\nfrozen geometry, {CHANNELS} channels, 128x128, 20k Gaussians, per training step (features only): "
        f"torch {speedup['torch_step_ms']:.1f} ms, cached {speedup['cached_step_ms']:.2f} ms -> "
        f"{speedup['speedup']:.1f}x (target >= 10x)"
    )
    report = {
        "timing": f"best of {args.repeats} after a warm-up",
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "rows": rows,
        "frozen_geometry_speedup": speedup,
    }
    write_json(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
