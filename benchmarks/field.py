"""Semantic-field training speed: the `cached` and `torch` backends on the synthetic world.

For each backend, in a fresh process (so peak memory is its own): generate (or reuse) the
default synthetic world (30 training views, 128x128), run the cached preprocessing with the
demo's run config, then train the field in segments, measuring after each segment the target
accuracy over every masked pixel of every training view. Reports the time per step, the peak
resident memory, the accuracy curve, and the training time until 95% of the final accuracy
(target: under 2 minutes on 2 CPU cores). Prints a table and writes
benchmarks/results/field.json.

    python benchmarks/field.py [--iterations 3000] [--segment 150] [--torch-steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reporting import write_json

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).resolve().parent / "results" / "field.json"

#: The demo's components: simulated masks and features with their fixed noise, reprojection tracking, CCL.
RUN_CONFIG = [
    "mask_generator.name=synthetic",
    "feature_extractor.name=simulated",
    "tracker.name=reprojection",
    "compressor.name=ccl",
]


def worker(backend_name: str, world: Path, run_dir: Path, iterations: int, segment: int) -> dict:
    """Train with one backend; returns timings, the accuracy curve and peak memory."""
    from cclgs_core.datasets import load_scene
    from cclgs_core.plumbing.config import load_config
    from cclgs_core.plumbing.registry import get_registry
    from cclgs_core.scene.ply import read_gaussians
    from cclgs_core.stages.field_training import fit_field_to_views, views_accuracy
    from cclgs_core.stages.pipeline import prepare_field_targets

    scene = load_scene(world)
    config = load_config(None, RUN_CONFIG)
    prepared = prepare_field_targets(scene, config, run_dir)
    gaussians = read_gaussians(scene.gaussians_path)
    backend = get_registry().create("field_backend", backend_name)
    checkpoint = run_dir / f"bench_{backend_name}.pt"
    checkpoint.unlink(missing_ok=True)
    started = time.perf_counter()
    backend.prepare(gaussians, [view.camera for view in prepared.views])
    prepare_seconds = time.perf_counter() - started
    curve, training_seconds = [], 0.0
    for stop in range(segment, iterations + 1, segment):
        started = time.perf_counter()
        field, _ = fit_field_to_views(
            gaussians,
            prepared.views,
            prepared.compressors,
            backend,
            iterations=stop,
            seed=config.seed,
            checkpoint_path=checkpoint,
            checkpoint_every=segment,
        )
        training_seconds += time.perf_counter() - started
        curve.append(
            {
                "step": stop,
                "seconds": training_seconds,
                "accuracy": views_accuracy(field, gaussians, backend, prepared.views),
            }
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "backend": backend_name,
        "gaussians": len(gaussians),
        "views": len(prepared.views),
        "prepare_seconds": prepare_seconds,
        "seconds_per_step": training_seconds / curve[-1]["step"],
        "peak_memory_mb": peak_mb,
        "curve": curve,
    }


def time_to_fraction(curve: list[dict], fraction: float = 0.95) -> float | None:
    """Training seconds until the accuracy first reaches ``fraction`` of its final value."""
    final = curve[-1]["accuracy"]
    return next((point["seconds"] for point in curve if point["accuracy"] >= fraction * final), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, help="an existing synthetic world (default: generate one)")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--segment", type=int, default=150)
    parser.add_argument("--torch-steps", type=int, default=30, help="steps timed with the torch backend")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        name, world, run_dir, iterations, segment = arguments.worker
        print(json.dumps(worker(name, Path(world), Path(run_dir), int(iterations), int(segment))))
        return

    with tempfile.TemporaryDirectory(prefix="cclgs-field-bench-") as scratch:
        world = arguments.world
        if world is None:
            from cclgs_synthetic.world import generate_world

            world = generate_world(Path(scratch) / "world")
        run_dir = Path(scratch) / "run"
        results = []
        for name, iterations, segment in (
            ("cached", arguments.iterations, arguments.segment),
            ("torch", arguments.torch_steps, arguments.torch_steps),
        ):
            command = [
                sys.executable,
                __file__,
                "--worker",
                name,
                str(world),
                str(run_dir),
                str(iterations),
                str(segment),
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))

    cached, torch_result = results
    reach = time_to_fraction(cached["curve"])
    print(f"{'backend':8} {'steps':>6} {'s/step':>8} {'peak MB':>8} {'prepare s':>9} {'final acc':>9}")
    for result in results:
        print(
            f"{result['backend']:8} {result['curve'][-1]['step']:6d} {result['seconds_per_step']:8.4f} "
            f"{result['peak_memory_mb']:8.0f} {result['prepare_seconds']:9.2f} {result['curve'][-1]['accuracy']:9.3f}"
        )
    speedup = torch_result["seconds_per_step"] / cached["seconds_per_step"]
    print(f"cached is {speedup:.1f}x faster per step than torch")
    verdict = "meets" if reach is not None and reach < 120 else "misses"
    print(
        f"cached reaches 95% of its final accuracy ({cached['curve'][-1]['accuracy']:.3f}) after {reach} s of "
        f"training: {verdict} the 2-minute target"
    )
    write_json({"results": results, "cached_speedup": speedup, "seconds_to_95_percent": reach}, RESULTS)


if __name__ == "__main__":
    main()
