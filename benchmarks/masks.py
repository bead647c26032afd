"""Mask filtering speed: vectorized ``select_masks`` against the O(M^2) reference, plus
preprocessing throughput.

1. Filter: a synthetic SAM-like set of M = 300 masks at 730 x 986 (LERF image size): ellipses
   with areas log-uniform between 0.05 % and 10 % of the image, some nested inside others and
   some near duplicates (shifted copies), random predicted IoU and stability above the
   thresholds. Both filters run from the masks alone (boxes and areas included) and must agree
   exactly; the vectorized one is also timed with boxes and areas given, as the SAM collector
   calls it.
2. Classical mask generator on scikit-image's bundled "coffee" photo resized to 730 x 986.
3. Preprocessing throughput: ``run_preprocess`` (masks and per-mask features, cached per frame
   as in ``cclgs preprocess``) on the training views of the default synthetic world (a
   SIMULATION, 128 x 128), with the "classical" and the "synthetic" mask generator, both with
   the "simulated" VLM (OpenCLIP needs weights and, in practice, a GPU).

Prints a table and writes benchmarks/results/masks.json.

    .venv/bin/python benchmarks/masks.py [--repeats 5] [--reference-repeats 2] [--filter-only]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from reporting import write_json

from cclgs_core.helpers.masks import MaskSelectionOptions, mask_extents, select_masks, select_masks_reference

HEIGHT, WIDTH, NUM_MASKS = 730, 986, 300
RESULTS = Path(__file__).parent / "results" / "masks.json"


def sam_like_masks(rng: np.random.Generator, num_masks: int, height: int, width: int) -> np.ndarray:
    """(M, H, W) bool ellipses: 70 % free, 20 % nested in an earlier mask, 10 % shifted copies."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    masks = np.zeros((num_masks, height, width), dtype=bool)
    centres = np.zeros((num_masks, 2))
    radii = np.zeros((num_masks, 2))
    for m in range(num_masks):
        kind = rng.choice(3, p=[0.7, 0.2, 0.1]) if m else 0
        if kind == 2:
            source = rng.integers(m)
            masks[m] = np.roll(masks[source], tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
            centres[m], radii[m] = centres[source], radii[source]
            continue
        if kind == 1:
            parent = rng.integers(m)
            radii[m] = radii[parent] * rng.uniform(0.3, 0.6, 2)
            centres[m] = centres[parent] + rng.uniform(-0.4, 0.4, 2) * radii[parent]
        else:
            area = np.exp(rng.uniform(np.log(5e-4), np.log(0.1))) * height * width
            aspect = np.exp(rng.uniform(-0.7, 0.7))
            radii[m] = np.sqrt(area / np.pi) * np.array([aspect, 1 / aspect])
            centres[m] = rng.uniform(0, 1, 2) * (height, width)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - centres[m, 0], xx - centres[m, 1]
        u = dy * np.cos(angle) + dx * np.sin(angle)
        v = -dy * np.sin(angle) + dx * np.cos(angle)
        masks[m] = (u / radii[m, 0]) ** 2 + (v / radii[m, 1]) ** 2 < 1
    return masks


def best_time(function, repeats: int) -> float:
    """Fastest of ``repeats`` runs in seconds (the machine may be shared)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_filter(repeats: int, reference_repeats: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    masks = sam_like_masks(rng, NUM_MASKS, HEIGHT, WIDTH)
    pred_iou = rng.uniform(0.7, 1.0, NUM_MASKS).astype(np.float32)
    stability = rng.uniform(0.85, 1.0, NUM_MASKS).astype(np.float32)
    options = MaskSelectionOptions()
    fast = select_masks(masks, pred_iou, stability, options)
    reference = select_masks_reference(masks, pred_iou, stability, options)
    if not (np.array_equal(fast.segments, reference.segments) and np.array_equal(fast.scores, reference.scores)):
        raise AssertionError("vectorized and reference filters disagree")
    extents = mask_extents(masks)
    vectorized = best_time(lambda: select_masks(masks, pred_iou, stability, options), repeats)
    with_extents = best_time(lambda: select_masks(masks, pred_iou, stability, options, extents), repeats)
    straightforward = best_time(lambda: select_masks_reference(masks, pred_iou, stability, options), reference_repeats)
    return {
        "masks": NUM_MASKS,
        "height": HEIGHT,
        "width": WIDTH,
        "mean_masks_per_pixel": float(masks.sum(axis=0).mean()),
        "selected_masks": fast.num_masks,
        "vectorized_s": vectorized,
        "vectorized_given_extents_s": with_extents,
        "reference_s": straightforward,
        "speedup": straightforward / vectorized,
        "speedup_given_extents": straightforward / with_extents,
        "target_speedup": 50.0,
        "load_average_1min": os.getloadavg()[0],
    }


def bench_classical(repeats: int) -> dict:
    from skimage.data import coffee  # a photo bundled with scikit-image
    from skimage.transform import resize

    from cclgs_classical.generator import ClassicalMaskGenerator
    from cclgs_core.types import Camera, Frame

    image = (resize(coffee(), (HEIGHT, WIDTH), anti_aliasing=True) * 255).astype(np.uint8)
    camera = Camera(np.eye(4), 500.0, 500.0, WIDTH / 2, HEIGHT / 2, WIDTH, HEIGHT)
    frame = Frame(0, "bench", Path("bench.png"), camera)
    generator = ClassicalMaskGenerator()
    masks = generator.generate(image, frame)
    seconds = best_time(lambda: generator.generate(image, frame), repeats)
    return {
        "height": HEIGHT,
        "width": WIDTH,
        "max_side": generator.max_side,
        "sp_masks": masks.sp.num_masks,
        "wp_masks": masks.wp.num_masks,
        "seconds_per_image": seconds,
        "images_per_second": 1.0 / seconds,
    }


def bench_preprocess(seed: int, repeats: int) -> dict:
    """Images/s of ``run_preprocess`` per mask generator on the default synthetic world (best of
    ``repeats`` runs, each into a fresh run directory so nothing is read from a cache)."""
    from cclgs_core.datasets import load_scene
    from cclgs_core.plumbing.config import load_config
    from cclgs_core.stages.pipeline import run_preprocess
    from cclgs_synthetic.world import generate_world

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        world = generate_world(Path(tmp) / "world", seed=seed)
        scene = load_scene(world)
        frames = scene.split("train")
        for generator in ("classical", "synthetic"):
            overrides = [f"seed={seed}", f"mask_generator.name={generator}", "feature_extractor.name=simulated"]
            config = load_config(None, overrides)

            def seconds_of_run(run: int) -> float:
                start = time.perf_counter()
                run_preprocess(scene, config, Path(tmp) / f"{generator}-{run}", preview_count=0)
                return time.perf_counter() - start

            seconds = min(seconds_of_run(run) for run in range(repeats))
            results[generator] = {
                "mask_generator": generator,
                "feature_extractor": "simulated",
                "images": len(frames),
                "height": frames[0].camera.height,
                "width": frames[0].camera.width,
                "seconds": seconds,
                "images_per_second": len(frames) / seconds,
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of the filter and the classical generator")
    parser.add_argument("--reference-repeats", type=int, default=2, help="runs of the O(M^2) reference")
    parser.add_argument("--preprocess-repeats", type=int, default=2, help="runs of each preprocessing pipeline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filter-only", action="store_true", help="skip the generator and preprocessing timings")
    args = parser.parse_args()

    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "filter": bench_filter(args.repeats, args.reference_repeats, args.seed),
    }
    if not args.filter_only:
        results["classical"] = bench_classical(args.repeats)
        results["preprocess"] = bench_preprocess(args.seed, args.preprocess_repeats)

    f = results["filter"]
    print(
        f"Mask filtering, M = {f['masks']} at {f['height']}x{f['width']} "
        f"({f['mean_masks_per_pixel']:.1f} masks per pixel on average, {f['selected_masks']} selected)"
    )
    print(f"{'implementation':<28}{'seconds':>10}   (best of the repeats)")
    print(f"{'O(M^2) reference':<28}{f['reference_s']:>10.3f}")
    print(f"{'vectorized select_masks':<28}{f['vectorized_s']:>10.3f}")
    print(f"{'  boxes and areas given':<28}{f['vectorized_given_extents_s']:>10.3f}   (as from the SAM collector)")
    print(f"{'speedup (target >= 50x)':<28}{f['speedup']:>9.1f}x   (load average {f['load_average_1min']:.1f})")
    print(f"{'  boxes and areas given':<28}{f['speedup_given_extents']:>9.1f}x")
    if "classical" in results:
        c = results["classical"]
        print(
            f"\nClassical generator at {c['height']}x{c['width']} (max_side {c['max_side']}): "
            f"{c['seconds_per_image']:.3f} s per image, {c['images_per_second']:.2f} images/s "
            f"({c['sp_masks']} sp and {c['wp_masks']} wp masks)"
        )
    if "preprocess" in results:
        first = next(iter(results["preprocess"].values()))
        print(
            f"\nPreprocessing (masks + simulated VLM features, cached) of {first['images']} views "
            f"at {first['height']}x{first['width']} of the synthetic world (a simulation)"
        )
        print(f"{'mask generator':<28}{'seconds':>10}{'images/s':>10}")
        for p in results["preprocess"].values():
            print(f"{p['mask_generator']:<28}{p['seconds']:>10.2f}{p['images_per_second']:>10.1f}")
    write_json(results, RESULTS)


if __name__ == "__main__":
    main()
