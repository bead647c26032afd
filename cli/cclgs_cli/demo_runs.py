"""The end-to-end demo on the synthetic benchmark (a simulation), sized for a CPU.

Generate a synthetic world, preprocess it with simulated noisy masks and the simulated VLM
(their fixed noise settings, plugins/cclgs_synthetic/SIMULATION.md), track masks through the
scene's depth, then train and evaluate the semantic field on held-out views three times: with
the contrastive codebook (CCL), the plain codebook (the paper's "codebook only") and LangSplat's
autoencoder, each in its own run directory. The runs share one stage cache, so masks, features
and tracks are computed once. ``run_methods`` does the same for any list of compared settings
(benchmarks/ablation.py uses it).

The field trains for ``ITERATIONS`` steps at ``LR`` 1e-2 rather than the paper's 30,000 steps at
1e-3: a schedule that fits a CPU demo. Everything else follows the method.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cclgs_core.plumbing.cache import atomic_write_text

#: The compared compressors: name shown -> run-config overrides.
METHODS: dict[str, list[str]] = {
    "ccl": ["compressor.name=ccl"],
    "codebook": ["compressor.name=codebook"],
    "autoencoder": ["compressor.name=autoencoder"],
}

PIPELINE = [
    "mask_generator.name=synthetic",
    "feature_extractor.name=simulated",
    "tracker.name=reprojection",
    "field_backend.name=cached",
]

#: The demo's CPU schedule of the field: steps and learning rate.
ITERATIONS = 1500
LR = 1e-2


@dataclass
class DemoResult:
    method: str
    miou: float
    localization: float | None
    report: Path
    #: wall time of training and evaluating (the first method also pays for the shared stages)
    seconds: float


def run_demo(
    out: Path,
    seed: int = 0,
    size: int = 96,
    train_views: int = 24,
    test_views: int = 6,
    iterations: int = ITERATIONS,
    lr: float = LR,
    progress: Callable[[str, int, int], None] | None = None,
    methods: Mapping[str, Sequence[str]] = METHODS,
) -> tuple[list[DemoResult], Path]:
    """Run the demo into ``out`` for ``methods`` (name shown -> run-config overrides); returns one
    result per method and the summary markdown's path."""
    results = run_methods(out, methods, seed, size, train_views, test_views, iterations, lr, progress)
    summary = write_summary(results, out, seed, iterations, lr)
    return results, summary


def run_methods(
    out: Path,
    methods: Mapping[str, Sequence[str]],
    seed: int = 0,
    size: int = 96,
    train_views: int = 24,
    test_views: int = 6,
    iterations: int = ITERATIONS,
    lr: float = LR,
    progress: Callable[[str, int, int], None] | None = None,
    world_options: Mapping[str, Any] | None = None,
) -> list[DemoResult]:
    """Train and evaluate one field per method (name shown -> run-config overrides) on the world
    ``out/world`` (generated if missing, with ``generate_world``'s further ``world_options``), in
    ``out/runs/<slug>`` with its report in ``out/reports/<slug>`` (``visualize.slug`` of the
    name); all runs share the stage cache ``out/cache``. ``seed`` seeds the world, the simulated
    masks and VLM, and the training."""
    from cclgs_core.evaluation.benchmarks import Report, evaluate_run, write_report
    from cclgs_core.evaluation.visualize import slug
    from cclgs_core.plumbing.config import load_config
    from cclgs_core.stages.runs import train_and_record_run
    from cclgs_synthetic.world import generate_world

    out = Path(out)
    world = out / "world"
    if not (world / "transforms.json").is_file():
        generate_world(
            world,
            seed=seed,
            width=size,
            height=size,
            train_views=train_views,
            test_views=test_views,
            **(world_options or {}),
        )
    seeds = [f"seed={seed}", f"mask_generator.seed={seed}", f"feature_extractor.seed={seed}"]
    results = []
    for method, overrides in methods.items():
        start = time.perf_counter()
        config = load_config(None, [*PIPELINE, *overrides, *seeds, f"train.iterations={iterations}", f"train.lr={lr}"])
        run_dir = shared_cache_run_dir(out, slug(method))
        kwargs = {"progress": progress} if progress is not None else {}
        train_and_record_run(world, config, run_dir, protocol="heldout", **kwargs)
        report_dir = out / "reports" / slug(method)
        scene_report, protocol = evaluate_run(run_dir, "synthetic", report_dir, name=slug(method))
        report = Report("synthetic", protocol, [scene_report], scene_report.miou, scene_report.localization)
        _, markdown = write_report(report, report_dir)
        results.append(
            DemoResult(method, scene_report.miou, scene_report.localization, markdown, time.perf_counter() - start)
        )
    return results


def shared_cache_run_dir(out: Path, name: str) -> Path:
    """``out/runs/<name>``, whose ``cache`` links to ``out/cache``: the stage cache keys every
    artifact by its inputs and options, so runs of one world can share it (run one at a time).
    A run directory that already has a cache of its own (an older demo's layout) keeps it."""
    shared = out / "cache"
    shared.mkdir(parents=True, exist_ok=True)
    run_dir = out / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    link = run_dir / "cache"
    if not link.exists():
        link.symlink_to(Path("..", "..", "cache"), target_is_directory=True)
    return run_dir


def write_summary(results: list[DemoResult], out: Path, seed: int, iterations: int, lr: float) -> Path:
    """``demo.md`` and ``demo.json`` in ``out``: the comparison table with links to each report."""
    lines = [
        "# cclgs demo — synthetic benchmark (a simulation)",
        "",
        "Held-out views, LangSplat's LERF-OVS protocol with its windows scaled to the image (metrics.py); seed "
        f"{seed}; field trained {iterations} steps at lr {lr}.",
        "",
        "| method | mIoU % | localization % | report |",
        "| --- | --- | --- | --- |",
    ]
    for result in results:
        localization = f"{100 * result.localization:.1f}" if result.localization is not None else "n/a"
        lines.append(
            f"| {result.method} | {100 * result.miou:.1f} | {localization} | "
            f"[{result.method}]({result.report.relative_to(out).as_posix()}) |"
        )
    summary = out / "demo.md"
    atomic_write_text(summary, "\n".join(lines) + "\n")
    atomic_write_text(
        out / "demo.json",
        json.dumps(
            {
                "simulation": True,
                "protocol": "heldout",
                "seed": seed,
                "iterations": iterations,
                "lr": lr,
                "results": [{"method": r.method, "miou": r.miou, "localization": r.localization} for r in results],
            },
            indent=1,
        ),
    )
    return summary
