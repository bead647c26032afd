"""Preprocessing throughput with one process and with two torchrun ranks, on real photos.

The same scene (the fox, 50 photos, at 1/4 resolution by default) is preprocessed from scratch,
``classical`` masks and ``efficientnet`` features on the CPU, three ways, one after the other in
this run:

- ``cclgs preprocess``: one process, with torch's default intra-op threads (one per core);
- the same with ``OMP_NUM_THREADS=1``, one thread: what each rank below gets;
- ``torchrun --standalone --nproc_per_node 2 -m cclgs_cli preprocess``: two ranks, each with one
  thread (torchrun sets ``OMP_NUM_THREADS=1`` for several processes per machine).

Per row: wall time of the whole command (process start-up and imports included), images per
second, and the speed-up over the first row. The artifacts are compared with the one-thread
single process: the masks must match byte for byte, and so must the features when each process
uses one thread (oneDNN's convolutions sum in an order that depends on the thread count, so the
default-thread features differ from them in the last bits: the largest difference is reported).

    .venv/bin/python benchmarks/preprocess_scaling.py [SCENE] [--downscale 4] [--work-dir DIR]

Prints a table and writes benchmarks/results/preprocess_scaling.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from reporting import write_json

RESULTS = Path(__file__).parent / "results" / "preprocess_scaling.json"
FOX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "fox"
CONFIG = """
[mask_generator]
name = "classical"
[feature_extractor]
name = "efficientnet"
[tracker]
name = "none"
"""
#: row name -> (command prefix before ``preprocess``, extra environment)
WAYS = {
    "1 process, default threads": ([sys.executable, "-m", "cclgs_cli"], {}),
    "1 process, 1 thread": ([sys.executable, "-m", "cclgs_cli"], {"OMP_NUM_THREADS": "1"}),
    "torchrun, 2 ranks x 1 thread": (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cclgs_cli"],
        {},
    ),
}
#: the row the others' artifacts are compared with
REFERENCE = "1 process, 1 thread"


def preprocess(scene: Path, config: Path, run: Path, downscale: int, way: str) -> dict:
    """Run one way from scratch; its wall time and the frame count it reports."""
    prefix, variables = WAYS[way]
    command = [*prefix, "preprocess", str(scene), "-c", str(config), "--run-dir", str(run)]
    command += ["--downscale", str(downscale)]
    environment = {**os.environ, **variables}
    if "OMP_NUM_THREADS" not in variables:
        environment.pop("OMP_NUM_THREADS", None)
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{way} failed:\n{finished.stderr}")
    frames = int(re.search(r"(\d+) frames: masks computed for (\d+)", finished.stdout).group(2))
    return {"seconds": seconds, "frames": frames, "images_per_second": frames / seconds}


def items(run: Path, stage: str) -> dict[str, bytes]:
    """Every item of the run's artifact of ``stage``: name -> bytes."""
    (artifact,) = (run / "cache" / stage).iterdir()
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["complete"], artifact
    return {name: (artifact / name).read_bytes() for name in manifest["items"]}


def largest_difference(first: dict[str, bytes], second: dict[str, bytes]) -> float:
    """The largest absolute difference between the arrays of two sets of .npz items."""
    largest = 0.0
    for name, data in first.items():
        with np.load(io.BytesIO(data)) as one, np.load(io.BytesIO(second[name])) as other:
            for key in one.files:
                largest = max(largest, float(np.abs(one[key].astype(np.float64) - other[key]).max(initial=0.0)))
    return largest


def measure(scene: Path, downscale: int, work_dir: Path) -> dict:
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "run.toml"
    config.write_text(CONFIG)
    rows = {}
    for index, way in enumerate(WAYS):
        run = work_dir / f"run-{index}"
        if run.exists():
            raise SystemExit(f"{run} exists: give an empty --work-dir, so that every way computes from scratch")
        rows[way] = preprocess(scene, config, run, downscale, way)
        print(f"{way}: {rows[way]['seconds']:.1f} s", flush=True)
    runs = {way: work_dir / f"run-{index}" for index, way in enumerate(WAYS)}
    reference = {stage: items(runs[REFERENCE], stage) for stage in ("masks", "features")}
    baseline = rows[next(iter(WAYS))]["seconds"]
    for way, row in rows.items():
        row["speedup"] = baseline / row["seconds"]
        row["masks_identical"] = items(runs[way], "masks") == reference["masks"]
        features = items(runs[way], "features")
        row["features_identical"] = features == reference["features"]
        row["features_largest_difference"] = largest_difference(features, reference["features"])
    return {
        "scene": str(scene),
        "downscale": downscale,
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        "rows": rows,
    }


def print_table(result: dict) -> None:
    print(
        f"\n{result['scene']} at 1/{result['downscale']}, classical masks + efficientnet features, "
        f"{result['cores']} cores\n"
    )
    print("| way | seconds | images/s | speed-up | masks identical | features identical (largest difference) |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for way, row in result["rows"].items():
        features = f"{'yes' if row['features_identical'] else 'no'} ({row['features_largest_difference']:.1e})"
        print(
            f"| {way} | {row['seconds']:.1f} | {row['images_per_second']:.3f} | {row['speedup']:.2f}x | "
            f"{'yes' if row['masks_identical'] else 'no'} | {features} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scene", type=Path, nargs="?", default=FOX)
    parser.add_argument("--downscale", type=int, default=4)
    parser.add_argument("--work-dir", type=Path, help="keeps the runs (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cclgs-scaling-") as scratch:
        result = measure(args.scene, args.downscale, args.work_dir or Path(scratch))
    print_table(result)
    write_json(result, args.output)


if __name__ == "__main__":
    main()
