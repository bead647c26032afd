"""Where do the CCL field's stray patches on held-out views come from? (a SIMULATION)

In the demo's report pictures, the ccl field's masks carry stray patches (for "glazed donut"
on the table and the bowl) where the autoencoder's are clean. Each candidate cause is one row,
trained and evaluated like the demo (``cclgs_cli.demo_runs``: synthetic world of a seed,
held-out views, LangSplat's protocol with windows scaled to the image), changing one thing
against the paper's ccl:

- the argmax decode (the paper's rule) against ``compressor.decode_rule=expected``;
- too few field steps or Gaussians: 4x the demo's 1500 steps; a world built with twice the
  Gaussians per unit of surface;
- the ``cached`` backend's truncation (its top-k Gaussians per tile) against the exact ``torch``;
- the 128-way cross-entropy with few pixels per prototype: 32 prototypes;

with the autoencoder for reference. Per row: held-out mIoU, and the **stray share**: per query,
the share of the predicted mask's pixels outside the queried object (false positives over
predicted pixels, after the protocol's smoothing and majority filter), mean over the queries
that predict any pixel; and the share of queries whose mask has any stray pixel.

    .venv/bin/python benchmarks/stray_patches.py [--seeds 0] [--work-dir DIR]

Prints a table and writes benchmarks/results/stray_patches.json.
"""

from __future__ import annotations

import argparse
import inspect
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from reporting import write_json

from cclgs_cli.demo_runs import ITERATIONS, run_methods
from cclgs_core.datasets.lerf_ovs import read_ovs_labels
from cclgs_core.evaluation.metrics import evaluate_query, scaled_windows
from cclgs_core.evaluation.visualize import slug
from cclgs_core.stages.runs import open_run
from cclgs_synthetic.world import generate_world

RESULTS = Path(__file__).parent / "results" / "stray_patches.json"
#: The synthetic world's Gaussians per unit of surface area (``generate_world``'s default).
DENSITY: float = inspect.signature(generate_world).parameters["density"].default
#: Row -> (run-config overrides, field steps, world density).
ROWS: dict[str, tuple[list[str], int, float]] = {
    "ccl (paper: argmax decode)": (["compressor.name=ccl"], ITERATIONS, DENSITY),
    "ccl, expected decode": (["compressor.name=ccl", "compressor.decode_rule=expected"], ITERATIONS, DENSITY),
    "ccl, 4x field steps": (["compressor.name=ccl"], 4 * ITERATIONS, DENSITY),
    "ccl, 2x Gaussians": (["compressor.name=ccl"], ITERATIONS, 2 * DENSITY),
    "ccl, torch backend": (["compressor.name=ccl", "field_backend.name=torch"], ITERATIONS, DENSITY),
    "ccl, 32 prototypes": (["compressor.name=ccl", "compressor.num_prototypes=32"], ITERATIONS, DENSITY),
    "autoencoder": (["compressor.name=autoencoder"], ITERATIONS, DENSITY),
}


def stray_figures(run_dir: Path) -> dict:
    """Per query of the run's labelled held-out views: the share of predicted pixels outside the
    truth. Returns the mean share (over queries predicting anything) and the share of such
    queries with any stray pixel."""
    opened = open_run(run_dir)
    shares = []
    for frame in (frame for frame in opened.scene.frames if "objects" in frame.ground_truth):
        labels = read_ovs_labels(frame.ground_truth["objects"], (frame.camera.width, frame.camera.height))
        categories = list(labels.categories)
        if not categories:
            continue
        relevance = opened.engine.view(frame.camera, categories)  # maps (T, levels, H, W)
        windows = scaled_windows(frame.camera.height, frame.camera.width)
        for index, category in enumerate(categories):
            truth = labels.categories[category]
            mask = evaluate_query(frame.name, category, relevance.maps[index], truth.mask, truth.boxes, windows).mask
            if mask.any():
                shares.append(float((mask & ~truth.mask).sum() / mask.sum()))
    return {
        "stray_share": float(np.mean(shares)) if shares else None,
        "queries_with_strays": float(np.mean([share > 0 for share in shares])) if shares else None,
        "queries": len(shares),
    }


def measure(seeds: list[int], work: Path) -> dict:
    rows = {row: [] for row in ROWS}
    seconds = {}
    for seed in seeds:
        for row, (overrides, iterations, density) in ROWS.items():
            start = time.perf_counter()
            out = work / f"seed-{seed}" if density == DENSITY else work / f"seed-{seed}-density-{density:g}"
            world_options = {"density": density}
            (result,) = run_methods(
                out, {row: overrides}, seed=seed, iterations=iterations, world_options=world_options
            )
            figures = stray_figures(out / "runs" / slug(row))
            rows[row].append({"miou": result.miou, **figures})
            seconds[f"seed {seed} {row}"] = round(time.perf_counter() - start, 1)
            print(
                f"seed {seed}: {row}: mIoU {100 * result.miou:.1f} %, stray share {figures['stray_share']}", flush=True
            )
    summary = {
        row: {
            key: float(np.mean([run[key] for run in runs if run[key] is not None]))
            for key in ("miou", "stray_share", "queries_with_strays")
        }
        for row, runs in rows.items()
    }
    return {
        "simulation": "synthetic world, synthetic masks and simulated VLM at their fixed default settings",
        "protocol": "heldout",
        "seeds": seeds,
        "rows": {
            row: {"overrides": ROWS[row][0], "iterations": ROWS[row][1], "density": ROWS[row][2], **summary[row]}
            for row in ROWS
        },
        "per_seed": rows,
        "seconds": seconds,
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }


def print_table(result: dict) -> None:
    seeds = " ".join(map(str, result["seeds"]))
    print(f"\nSIMULATION: synthetic world, held-out views, seeds {seeds} (means over seeds)")
    print(f"{'row':<30}{'steps':>7}{'mIoU %':>9}{'stray share %':>15}{'queries with strays %':>23}")
    for row, entry in result["rows"].items():
        print(
            f"{row:<30}{entry['iterations']:>7}{100 * entry['miou']:>9.1f}{100 * entry['stray_share']:>15.1f}"
            f"{100 * entry['queries_with_strays']:>23.1f}"
        )
    print("\nseconds:", ", ".join(f"{name} {value}" for name, value in result["seconds"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--work-dir", type=Path, help="keeps worlds, caches and runs (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cclgs-stray-") as scratch:
        result = measure(args.seeds, args.work_dir or Path(scratch))
    print_table(result)
    write_json(result, args.output)


if __name__ == "__main__":
    main()
