"""Cross-view consistency on the synthetic world (a SIMULATION, see plugins/cclgs_synthetic/SIMULATION.md).

Runs the cached pipeline (``synthetic`` masks, ``simulated`` VLM, ``torch`` renderer) on the
default synthetic world of a seed and measures, per mask level (metrics in
``cclgs_synthetic.consistency``):

1. track-label accuracy of the trackers "none" (the floor) and "reprojection" against each
   mask's dominant ground-truth entity (``sp``: parts, ``wp``: instances): pairwise precision
   and recall over mask pairs of different views, and the share of masks labelled;
2. view consistency of the compressor targets, decoded back to embedding space through the
   compressor's own ``decode`` (every pixel takes its mask's decoded embedding), for "none"
   (the raw mask features, no compression: the 2D baseline), "codebook", "ccl" and
   "autoencoder", all fitted on the "reprojection" tracker's labels (only "ccl" uses them):
   - class: per ground-truth instance, the share of its mask-covered pixels over all training
     views whose embedding is nearest, among the class text embeddings (the simulated VLM's
     ``encode_texts`` of the class queries), to the instance's own class; mean over instances;
   - cos same / cos diff: mean cosine between the embeddings of one instance's pixels in two
     different views (mean over instances), and of two different instances' pixels in two
     different views (mean over instance pairs);
3. a diagnostic row "ccl, GT tracks": ccl fitted on ground-truth tracks (each mask's dominant
   entity as its label) instead of a tracker's, which separates what the tracker costs from
   what the compressor can do;
4. a row "ceiling": every mask decoded to the class text of its dominant instance, the best
   any labelling of whole masks can score. Pixels of one object under a mask dominated by
   another (a merge, a dilation into a neighbour) are wrong whatever the compressor does.

The simulation runs with its fixed default noise settings. ``--seed`` seeds the world, the
mask damage, the simulated VLM and the run (compressor fits). Prints a table and writes
benchmarks/results/consistency.json.

    .venv/bin/python benchmarks/consistency.py [--seed 0] [--world DIR] [--run-dir DIR]

``--world`` reuses (or generates into) a folder; ``--run-dir`` keeps the stage cache, so a
re-run only recomputes what changed. The default run takes about 3 minutes on one busy core.

Reading (class %, sp / wp; the tracker as of this version):

    seed  codebook     ccl          ccl, GT tracks  ceiling      ccl - codebook  room (ceiling - codebook)
    0     76.5 / 76.6  82.0 / 82.9  82.0 / 83.3     84.3 / 85.2  +5.5 / +6.3     7.8 / 8.6
    1     85.6 / 82.8  88.3 / 86.4  88.6 / 86.5     90.8 / 88.9  +2.7 / +3.6     5.2 / 6.1
    2     76.5 / 80.6  79.8 / 86.0  80.3 / 86.1     85.4 / 88.4  +3.3 / +5.4     8.9 / 7.8

Issue 5 expected ccl at least 10 points above codebook. That cannot happen on this simulation:
the ceiling lies only 5 to 9 points above codebook, because the fixed mask damage puts part of
each object's pixels under masks of another object. ccl closes 37 to 73 % of that room. The
tracker is no longer what limits it: ccl on its labels is within 0.5 points of ccl on
ground-truth tracks (precision 96-100 %, recall 63-73 %). With the earlier sequential tracker
(a new track for every unmatched mask; recall 17 %) ccl was only +3.2 / +3.8 on seed 0. What
is left between ccl and the ceiling is confusion. On seed 0, of the masks whose raw feature is
nearest a wrong class (37 sp / 35 wp), ccl decodes 59 / 71 % to the right class, codebook
3 / 6 %; the rest keep a prototype near their distractor class, which L_max holds in place
against the pull (weight 0.25). Clean masks stay right (codebook 100 / 99 %, ccl 99 / 99.5 %). Also
measured on seed 0 with the earlier tracker, not limiting: steps (8000 give the figures of
2000), fewer prototypes (N = 16 / 32 / 64 shrink the gap), a stronger pull (10x collapses
prototypes and loses 5.7 points with ground-truth tracks).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from reporting import write_json

from cclgs_core.datasets import load_scene
from cclgs_core.evaluation.labelmaps import read_label_map
from cclgs_core.plumbing.cache import StageCache
from cclgs_core.plumbing.config import load_config
from cclgs_core.plumbing.registry import get_registry
from cclgs_core.stages.pipeline import masks_from_arrays, prepare_field_targets, run_preprocess, run_tracking
from cclgs_core.stages.semantic_field import decode_mask_targets
from cclgs_core.types import LEVELS
from cclgs_synthetic.consistency import (
    class_agreement,
    cosine_summary,
    cross_view_cosines,
    dominant_entity,
    entity_pixel_counts,
    pairwise_track_scores,
)

RESULTS = Path(__file__).parent / "results" / "consistency.json"
TRACKERS = ("none", "reprojection")
COMPRESSORS = ("none", "codebook", "ccl", "autoencoder")
#: The tracker whose labels the compressors are fitted on.
COMPRESSOR_TRACKER = "reprojection"
#: Row of the diagnostic: ccl fitted on ground-truth tracks instead of a tracker's.
ORACLE = "ccl, GT tracks"
#: Row of the ceiling: every mask decoded to its dominant instance's class text.
CEILING = "ceiling"
#: Ground-truth entity a mask of each level is meant to follow.
TRACK_TRUTH = {"sp": "part", "wp": "instance"}


def base_overrides(seed: int) -> list[str]:
    return [
        f"seed={seed}",
        "mask_generator.name=synthetic",
        f"mask_generator.seed={seed}",
        "feature_extractor.name=simulated",
        f"feature_extractor.seed={seed}",
        "field_backend.name=torch",
    ]


def ground_truth_counts(frames, masks_artifact, name: str, num_entities: int) -> dict[str, np.ndarray]:
    """Per level: (n, I) pixels of each ground-truth entity ``name`` under each mask, all views stacked."""
    per_level = {level: [] for level in LEVELS}
    for frame in frames:
        entities = read_label_map(frame.ground_truth[name])
        masks = masks_from_arrays(masks_artifact.read_arrays(f"{frame.name}.npz"))
        for level in LEVELS:
            segment_map = masks.level(level)
            per_level[level].append(
                entity_pixel_counts(segment_map.segments, entities, segment_map.num_masks, num_entities)
            )
    return {level: np.concatenate(blocks) for level, blocks in per_level.items()}


def mask_views(frames, masks_artifact) -> dict[str, np.ndarray]:
    """Per level: (n,) int64 view index of each mask, all views stacked."""
    views = {level: [] for level in LEVELS}
    for index, frame in enumerate(frames):
        masks = masks_from_arrays(masks_artifact.read_arrays(f"{frame.name}.npz"))
        for level in LEVELS:
            views[level].append(np.full(masks.level(level).num_masks, index, dtype=np.int64))
    return {level: np.concatenate(blocks) for level, blocks in views.items()}


def decoded_embeddings(compressor, targets) -> np.ndarray:
    """targets: per view (M_t,) indices or (M_t, L) latents of ``compressor``. Returns (n, D)
    float32: each mask's target decoded by the compressor, all views stacked."""
    return np.concatenate([decode_mask_targets(compressor, view_targets) for view_targets in targets])


def raw_features(frames, features_artifact, level: str) -> np.ndarray:
    """(n, D) float32 uncompressed mask features, all views stacked."""
    return np.concatenate([features_artifact.read_arrays(f"{f.name}.npz")[f"{level}_features"] for f in frames])


def embedding_scores(embeddings, views, instance_counts, texts, instance_class, world: Path) -> dict:
    """Per level: class agreement (mean over instances, pixel-weighted, per instance) and the
    cross-view cosines of one instance vs different instances.

    embeddings, views, instance_counts: per level (n, D), (n,), (n, I); texts: (classes, D)."""
    scores = {}
    for level in LEVELS:
        counts = instance_counts[level]
        per_instance = class_agreement(counts, embeddings[level], texts, instance_class)
        cos_same, cos_diff = cosine_summary(cross_view_cosines(views[level], counts, embeddings[level]))
        scores[level] = {
            "class_agreement": float(np.nanmean(per_instance)),
            "class_agreement_pixels": float(np.nansum(per_instance * counts.sum(axis=0)) / counts.sum()),
            "class_agreement_per_instance": {
                name: None if np.isnan(value) else float(value)
                for name, value in zip(_instance_names(world), per_instance)
            },
            "cos_same": cos_same,
            "cos_diff": cos_diff,
            "cos_gap": cos_same - cos_diff,
        }
    return scores


def measure(seed: int, world: Path, run_dir: Path) -> dict:
    from cclgs_synthetic.groundtruth import load_world_tables
    from cclgs_synthetic.world import generate_world

    timings = {}
    start = time.perf_counter()
    if not (world / "world.json").is_file():
        generate_world(world, seed=seed)
    timings["world"] = time.perf_counter() - start
    scene = load_scene(world)
    tables = load_world_tables(world)
    registry = get_registry()
    parts = json.loads((world / "classes.json").read_text())["parts"]

    start = time.perf_counter()
    config = load_config(None, base_overrides(seed) + [f"tracker.name={COMPRESSOR_TRACKER}"])
    preprocessed = run_preprocess(scene, config, run_dir, registry, preview_count=0)
    frames = preprocessed.frames
    timings["masks and features"] = time.perf_counter() - start
    views = mask_views(frames, preprocessed.masks)
    instance_counts = ground_truth_counts(frames, preprocessed.masks, "instance", len(tables.instance_class))
    truth_counts = {
        "instance": instance_counts,
        "part": ground_truth_counts(frames, preprocessed.masks, "part", len(parts)),
    }

    tracking = {}
    for tracker in TRACKERS:
        start = time.perf_counter()
        config = load_config(None, base_overrides(seed) + [f"tracker.name={tracker}"])
        labels = run_tracking(scene, config, preprocessed, StageCache(run_dir / "cache"), registry)
        timings[f"tracker {tracker}"] = time.perf_counter() - start
        tracking[tracker] = {}
        for level in LEVELS:
            level_labels = labels.read_arrays(f"{level}.npz")
            tracks = np.concatenate([level_labels[f.name] for f in frames])
            truth = dominant_entity(truth_counts[TRACK_TRUTH[level]][level])
            tracking[tracker][level] = pairwise_track_scores(views[level], tracks, truth).as_dict()

    extractor = config.create("feature_extractor", registry)
    texts = extractor.encode_texts(list(tables.class_queries))  # (classes, D)
    consistency = {}
    for compressor in COMPRESSORS:
        start = time.perf_counter()
        if compressor == "none":
            embeddings = {level: raw_features(frames, preprocessed.features, level) for level in LEVELS}
        else:
            overrides = base_overrides(seed) + [f"tracker.name={COMPRESSOR_TRACKER}", f"compressor.name={compressor}"]
            prepared = prepare_field_targets(scene, load_config(None, overrides), run_dir, registry)
            embeddings = {
                level: decoded_embeddings(
                    prepared.compressors[level], [view.mask_targets[level] for view in prepared.views]
                )
                for level in LEVELS
            }
        timings[f"compressor {compressor}"] = time.perf_counter() - start
        consistency[compressor] = embedding_scores(
            embeddings, views, instance_counts, texts, tables.instance_class, world
        )

    # Diagnostic: ccl fitted on ground-truth tracks (each mask's dominant entity), which
    # separates what the tracker costs from what the compressor can do.
    start = time.perf_counter()
    overrides = base_overrides(seed) + [f"tracker.name={COMPRESSOR_TRACKER}", "compressor.name=ccl"]
    embeddings = {}
    for level in LEVELS:
        features = [preprocessed.features.read_arrays(f"{f.name}.npz")[f"{level}_features"] for f in frames]
        truth = np.split(
            dominant_entity(truth_counts[TRACK_TRUTH[level]][level]), np.cumsum([len(v) for v in features])[:-1]
        )
        compressor = load_config(None, overrides).create("compressor", registry)
        compressor.fit(features, truth, seed=seed)
        embeddings[level] = decoded_embeddings(compressor, [compressor.targets(view) for view in features])
    timings[ORACLE] = time.perf_counter() - start
    consistency[ORACLE] = embedding_scores(embeddings, views, instance_counts, texts, tables.instance_class, world)

    # Ceiling: each mask's embedding is the class text of its dominant instance, the best any
    # labelling of whole masks can score (pixels of one object under a mask dominated by
    # another object, after a merge or a dilation, are wrong whatever the compressor does).
    # Masks over no object weigh nothing, so the class they get does not matter.
    instance_class = np.asarray(tables.instance_class)
    embeddings = {
        level: texts[instance_class[np.maximum(dominant_entity(instance_counts[level]), 0)]] for level in LEVELS
    }
    consistency[CEILING] = embedding_scores(embeddings, views, instance_counts, texts, tables.instance_class, world)
    return {
        "simulation": "synthetic world, synthetic masks and simulated VLM at their fixed default settings",
        "seed": seed,
        "views": len(frames),
        "masks": {level: int(len(views[level])) for level in LEVELS},
        "compressor_tracker": COMPRESSOR_TRACKER,
        "track_truth": TRACK_TRUTH,
        "tracking": tracking,
        "consistency": consistency,
        "seconds": {name: round(value, 1) for name, value in timings.items()},
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }


def _instance_names(world: Path) -> list[str]:
    instances = json.loads((world / "classes.json").read_text())["instances"]
    return [entry["name"] for entry in sorted(instances, key=lambda entry: entry["id"])]


def _percent(value: float | None) -> str:
    return "   -" if value is None else f"{100 * value:5.1f}"


def print_tables(result: dict) -> None:
    print(
        f"SIMULATION: synthetic world seed {result['seed']}, {result['views']} training views, masks {result['masks']}"
    )
    print("\nTrack-label accuracy (pairs of masks in different views; sp vs parts, wp vs instances), %")
    print(
        f"{'tracker':<14}"
        + "".join(f"{level + ' ' + name:>13}" for level in LEVELS for name in ("precision", "recall", "labelled"))
    )
    for tracker, levels in result["tracking"].items():
        cells = [_percent(levels[level][name]) for level in LEVELS for name in ("precision", "recall", "labelled")]
        print(f"{tracker:<14}" + "".join(f"{cell:>13}" for cell in cells))
    print(f"\nView consistency of decoded embeddings (compressors fitted on '{result['compressor_tracker']}' labels)")
    print(
        f"{'compressor':<16}"
        + "".join(f"{level + ' ' + name:>13}" for level in LEVELS for name in ("class %", "cos same", "cos diff"))
    )
    for compressor, levels in result["consistency"].items():
        cells = []
        for level in LEVELS:
            cells += [
                _percent(levels[level]["class_agreement"]),
                f"{levels[level]['cos_same']:.3f}",
                f"{levels[level]['cos_diff']:.3f}",
            ]
        print(f"{compressor:<16}" + "".join(f"{cell:>13}" for cell in cells))
    print("\nseconds:", ", ".join(f"{name} {value}" for name, value in result["seconds"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", type=Path, help="world folder to reuse or generate into (default: a temporary one)")
    parser.add_argument("--run-dir", type=Path, help="run folder holding the stage cache (default: a temporary one)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: the small fits are fastest single-threaded on a shared machine)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="cclgs-consistency-") as scratch:
        world = args.world or Path(scratch) / "world"
        run_dir = args.run_dir or Path(scratch) / "run"
        result = measure(args.seed, world, run_dir)
    print_tables(result)
    write_json(result, args.output)


if __name__ == "__main__":
    main()
