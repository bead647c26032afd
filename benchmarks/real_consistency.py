"""Label-free cross-view consistency on real photos, for none / codebook / ccl / autoencoder.

Does the contrastive codebook make real features agree across views? On a real scene without
labels (by default instant-ngp's fox, ../shared/data/real/fox), the geometry says which pixels
of two views show one surface point, and ``cclgs_core.evaluation.consistency`` measures how far
their embeddings agree (the module docstring defines the figures):

- cos: mean cosine of corresponding pixels, and the gap to shuffled (non-corresponding) partners;
- agree: share of corresponding pixels with one label (argmax prototype for codebook and ccl,
  nearest of 32 k-means anchors for none and the autoencoder), with the shuffled share as chance;
- exemplar IoU: a query by example from one view's mask, evaluated in the neighbouring views,
  against that mask carried through the geometry.

Pipeline, fixed before comparing (``SETTINGS``): ``cclgs fit`` at 1/8 resolution for 240 s from
20 000 random points (every 8th view held out), then at 1/12 resolution (90 x 160) classical
masks, EfficientNet-Lite0 features (the one real pretrained network available offline), the
reprojection tracker on the fitted geometry and, for each compressor and seed, a field trained
for 600 steps on the 43 training views with the ``cached`` backend. The compressors fit for half
their default steps (``COMPRESSOR_STEPS``), which keeps three seeds under 30 minutes on two
cores. Measured on two sources per compressor:

- 2D targets: every mask pixel carries its mask's decoded target (for none, its raw feature),
  over pairs of neighbouring training views: what the field is trained to reproduce;
- field: the trained field rendered and decoded per pixel, over pairs of neighbouring views of
  which at least one is held out (the field never saw it).

Every compressor sees the same masks, features, tracks and geometry; seeds vary the
compressor's fit and the field's initialisation and pixel order. Mean ± sample std over seeds.
Prints a table per level and writes benchmarks/results/real_consistency.json.

    .venv/bin/python benchmarks/real_consistency.py [SCENE] [--seeds 0 1 2] [--work-dir DIR]

``--work-dir`` keeps the fitted geometry and the stage caches, so a rerun skips what is done.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from reporting import write_json

from cclgs_core.datasets import load_scene
from cclgs_core.evaluation.consistency import (
    FieldEmbeddings,
    MaskEmbeddings,
    measure_consistency,
    render_field,
    unit,
)
from cclgs_core.plumbing.config import load_config
from cclgs_core.plumbing.registry import get_registry
from cclgs_core.scene.correspondence import ViewGeometry, neighbouring_view_pairs, render_geometry
from cclgs_core.scene.ply import read_gaussians
from cclgs_core.stages.geometry_fit import hold_out_every
from cclgs_core.stages.pipeline import train_and_save_field
from cclgs_core.stages.semantic_field import decode_mask_targets
from cclgs_core.types import LEVELS

FOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "fox"
RESULTS = Path(__file__).parent / "results" / "real_consistency.json"
COMPRESSORS = ("none", "codebook", "ccl", "autoencoder")
SOURCES = ("2D targets", "field")
FIGURES = ("cos_corresponding", "cos_gap", "label_agreement", "label_agreement_shuffled", "exemplar_iou")
SETTINGS = {
    "fit_downscale": 8,
    "fit_seconds": 240,
    "fit_random_points": 20000,
    "holdout_every": 8,
    "downscale": 12,
    "field_iterations": 600,
    "field_lr": 1e-2,
    "neighbours": 3,
    "max_pixels": 3000,
    "exemplar_min_share": 0.01,
    "exemplar_max_share": 0.5,
    "exemplars_per_view": 2,
}
#: Half of each compressor's default steps (codebooks 2000, autoencoder 3000): the fox has a few
#: hundred masks per level, and the final losses are recorded beside the figures.
COMPRESSOR_STEPS = {"codebook": 1000, "ccl": 1000, "autoencoder": 1500}
CONFIG = [
    "mask_generator.name=classical",
    "mask_generator.sp_min_area=200",
    "mask_generator.wp_min_area=600",
    "feature_extractor.name=efficientnet",
    "tracker.name=reprojection",
    "field_backend.name=cached",
    f"train.iterations={SETTINGS['field_iterations']}",
    f"train.lr={SETTINGS['field_lr']}",
]


def fit_geometry(scene_dir: Path, work: Path) -> Path:
    """The scene's Gaussians from ``cclgs fit`` with the fixed settings (kept in ``work``)."""
    path = work / "geometry.ply"
    if not path.is_file():
        cclgs = Path(sys.executable).parent / "cclgs"
        command = [str(cclgs), "fit", str(scene_dir), "--out", str(path), "--seed", "0", "--steps", "1000000"]
        command += ["--downscale", str(SETTINGS["fit_downscale"]), "--max-seconds", str(SETTINGS["fit_seconds"])]
        command += ["--random-points", str(SETTINGS["fit_random_points"])]
        command += ["--holdout-every", str(SETTINGS["holdout_every"])]
        subprocess.run(command, check=True)
    return path


def exemplar_regions(segments: list[np.ndarray]) -> list[tuple[int, np.ndarray]]:
    """Per view, its largest masks covering between the minimum and maximum share of the view."""
    regions = []
    for view, segment_map in enumerate(segments):
        ids, areas = np.unique(segment_map[segment_map >= 0], return_counts=True)
        share = areas / segment_map.size
        chosen = ids[(share >= SETTINGS["exemplar_min_share"]) & (share <= SETTINGS["exemplar_max_share"])]
        chosen = sorted(chosen, key=lambda mask: -areas[ids == mask][0])[: SETTINGS["exemplars_per_view"]]
        regions.extend((view, segment_map == mask) for mask in chosen)
    return regions


def target_source(prepared, level: str, compressor_name: str) -> MaskEmbeddings:
    """The 2D targets of the training views at ``level`` (raw mask features for "none")."""
    segments = [view.segments[level] for view in prepared.views]
    if compressor_name == "none":
        features = prepared.preprocessed.features
        rows = [unit(features.read_arrays(f"{frame.name}.npz")[f"{level}_features"]) for frame in prepared.frames]
        return MaskEmbeddings(segments, rows)
    compressor = prepared.compressors[level]
    targets = [view.mask_targets[level] for view in prepared.views]
    labels = targets if compressor.target_kind == "index" else None
    return MaskEmbeddings(segments, [decode_mask_targets(compressor, view) for view in targets], labels)


def stage_printer(seed: int, name: str):
    """A pipeline progress callback printing each stage as it finishes."""

    def update(stage: str, done: int, total: int) -> None:
        if done == total:
            print(f"  seed {seed} {name}: {stage} {done}/{total}", flush=True)

    return update


@dataclass
class Views:
    """What every seed measures on: the fitted Gaussians, every view's rendered geometry, and
    the view pairs of each source (indices into ``geometry``)."""

    gaussians: Any
    geometry: list[ViewGeometry]
    #: indices of the training views, in frame order
    training: list[int]
    #: neighbouring pairs of training views, as indices into the training views
    training_pairs: list[tuple[int, int]]
    #: neighbouring pairs of all views with at least one held-out view
    held_out_pairs: list[tuple[int, int]]


def scene_views(scene, gaussians_path: Path) -> Views:
    """Render the fitted geometry once in every view and choose the measured pairs."""
    frames = scene.frames
    cameras = [frame.camera for frame in frames]
    training = [index for index, frame in enumerate(frames) if frame.split == "train"]
    held_out = {index for index, frame in enumerate(frames) if frame.split != "train"}
    gaussians = read_gaussians(gaussians_path)
    geometry = render_geometry(gaussians, cameras, get_registry().create("field_backend", "torch"))
    return Views(
        gaussians=gaussians,
        geometry=geometry,
        training=training,
        training_pairs=neighbouring_view_pairs([cameras[index] for index in training], SETTINGS["neighbours"]),
        held_out_pairs=[
            pair for pair in neighbouring_view_pairs(cameras, SETTINGS["neighbours"]) if held_out & set(pair)
        ],
    )


def run_seed(scene, gaussians_path: Path, views: Views, work: Path, seed: int, timings: dict) -> dict:
    """One seed: source -> level -> compressor -> report dict, and under "training" each
    compressor's first and last losses and the field's last logged accuracy."""
    registry = get_registry()
    backend = registry.create("field_backend", "torch")
    training_geometry = [views.geometry[index] for index in views.training]
    result = {source: {level: {} for level in LEVELS} for source in SOURCES} | {"training": {}}
    for name in COMPRESSORS[1:]:
        start = time.perf_counter()
        overrides = [f"seed={seed}", f"compressor.name={name}", f"compressor.steps={COMPRESSOR_STEPS[name]}"]
        config = load_config(None, CONFIG + overrides)
        trained = train_and_save_field(scene, config, work / "run", gaussians_path, registry, stage_printer(seed, name))
        prepared = trained.prepared
        timings[f"seed {seed} {name} fit and train"] = round(time.perf_counter() - start, 1)
        log = trained.log
        result["training"][name] = {
            "compressor_loss_first_last": {
                level: (curves["total"][0], curves["total"][-1]) for level, curves in prepared.curves.items()
            },
            "first_loss": log.losses[0],
            "last_loss": log.losses[-1],
            "accuracy": log.accuracy[-1],
        }
        start = time.perf_counter()
        # Rendered as `cclgs query` renders: with the exact "torch" backend.
        rendered, covered = render_field(trained.field, views.gaussians, backend, [f.camera for f in scene.frames])
        for level in LEVELS:
            regions = exemplar_regions([view.segments[level] for view in prepared.views])  # in training views
            # The raw features ("none") are the same for every compressor: measured with the first.
            for source_name in ("none", name) if name == COMPRESSORS[1] else (name,):
                source = target_source(prepared, level, source_name)
                report = measure_consistency(
                    source,
                    training_geometry,
                    views.training_pairs,
                    regions,
                    max_pixels=SETTINGS["max_pixels"],
                    seed=seed,
                )
                result["2D targets"][level][source_name] = report.as_dict()
            field_source = FieldEmbeddings(trained.field, rendered, covered, level)
            field_regions = [(views.training[view], region) for view, region in regions]
            report = measure_consistency(
                field_source,
                views.geometry,
                views.held_out_pairs,
                field_regions,
                max_pixels=SETTINGS["max_pixels"],
                seed=seed,
            )
            result["field"][level][name] = report.as_dict()
        timings[f"seed {seed} {name} measure"] = round(time.perf_counter() - start, 1)
        print(f"seed {seed}: {name} measured", flush=True)
    return result


def summary(values: list[float | None]) -> dict:
    """Mean and sample std over seeds (std None for one seed; both None without values)."""
    values = [value for value in values if value is not None]
    if not values:
        return {"mean": None, "std": None, "per_seed": []}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": std, "per_seed": values}


def measure(scene_dir: Path, seeds: list[int], work: Path) -> dict:
    timings = {}
    start = time.perf_counter()
    gaussians_path = fit_geometry(scene_dir, work)
    timings["fit geometry"] = round(time.perf_counter() - start, 1)
    scene = hold_out_every(load_scene(scene_dir, SETTINGS["downscale"]), SETTINGS["holdout_every"])
    scene = replace(scene, gaussians_path=gaussians_path)  # for the reprojection tracker
    views = scene_views(scene, gaussians_path)
    per_seed = [run_seed(scene, gaussians_path, views, work, seed, timings) for seed in seeds]
    rows = {
        source: {
            level: {
                name: {figure: summary([run[source][level][name][figure] for run in per_seed]) for figure in FIGURES}
                | {"label_kind": per_seed[0][source][level][name]["label_kind"]}
                for name in per_seed[0][source][level]
            }
            for level in LEVELS
        }
        for source in SOURCES
    }
    fit_report = json.loads(gaussians_path.with_name(f"{gaussians_path.stem}_fit.json").read_text())
    timings["total"] = round(sum(value for key, value in timings.items()), 1)
    return {
        "scene": str(scene_dir),
        "seeds": seeds,
        "settings": SETTINGS,
        "config": CONFIG,
        "views": {"training": len(scene.split("train")), "held_out": len(scene.split("test"))},
        "geometry_heldout_psnr_db": fit_report.get("heldout_psnr_db"),
        "rows": rows,
        "per_seed": per_seed,
        "seconds": timings,
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }


def _cell(entry: dict) -> str:
    if entry["mean"] is None:
        return "-"
    std = f"{entry['std']:.3f}" if entry["std"] is not None else "-"
    return f"{entry['mean']:.3f} ± {std}"


def print_table(result: dict) -> None:
    seeds = " ".join(map(str, result["seeds"]))
    views = result["views"]
    print(
        f"\n{result['scene']}: {views['training']} training and {views['held_out']} held-out views at 1/"
        f"{result['settings']['downscale']}, geometry held-out PSNR {result['geometry_heldout_psnr_db']:.2f} dB; "
        f"seeds {seeds}, mean ± sample std"
    )
    header = f"{'source':<12}{'level':<6}{'compressor':<13}" + "".join(f"{name:>19}" for name in FIGURES)
    print(header)
    for source, levels in result["rows"].items():
        for level, compressors in levels.items():
            for name, entry in compressors.items():
                cells = "".join(f"{_cell(entry[figure]):>19}" for figure in FIGURES)
                print(f"{source:<12}{level:<6}{name:<13}{cells}")
    print("\nseconds:", ", ".join(f"{name} {value}" for name, value in result["seconds"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scene", type=Path, nargs="?", default=FOX)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work-dir", type=Path, help="keeps the geometry and caches (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cclgs-real-consistency-") as scratch:
        work = args.work_dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        result = measure(args.scene, args.seeds, work)
    print_table(result)
    write_json(result, args.output)


if __name__ == "__main__":
    main()
