"""Benchmark evaluation of trained runs (docs/design.md, "Evaluation"), with JSON and markdown reports.

Benchmarks:

- ``lerf``: LERF-OVS polygons (ISAT JSON per labelled frame), LangSplat's protocol of
  ``cclgs_core.evaluation.metrics`` per (frame, category): mIoU and localisation accuracy.
- ``synthetic``: the synthetic world's labelled test views (the same ISAT format, written by
  the generator) through the same evaluator. A simulation, and reported as one.
- ``3dovs``: 3D-OVS class masks. Per labelled view, every class of the scene's list is
  scored; each class uses the mask level whose relevance map peaks highest (LangSplat's rule),
  and each pixel takes the class of highest relevance (within a level, relevance is monotone
  in the cosine similarity to the class text, so this is 3D-OVS's argmax of similarity). IoU
  per (view, class) and exact-row pixel accuracy (``cclgs_core.evaluation.class_masks``),
  scored by one of ``SCORINGS``: the authors' (``3dovs-original``) or the project's.

Every report names its protocol: for the project's scoring the run's training protocol
(``cclgs_core.stages.runs.PROTOCOLS``: whether the evaluation frames were trained on), for the
3D-OVS authors' scoring ``3dovs-original``, which fixes training, resolution and averaging. A
scene's number is the mean over its queries; the benchmark's number is the mean over scenes, as
the papers report them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cclgs_core.errors import ConfigError, DataError
from cclgs_core.evaluation.metrics import summarize
from cclgs_core.plumbing.cache import atomic_write_text
from cclgs_core.stages.runs import PROTOCOLS, OpenedRun, open_run, read_run_info

#: Benchmark name -> what it measures, as written in reports.
BENCHMARKS: dict[str, str] = {
    "lerf": (
        "LERF-OVS: per (frame, category), LangSplat's evaluation (relevance blended with its 30x30 box filter, "
        "min-max rescaled, threshold 0.4, 7x7 majority filter; both windows scaled with the image's long side, "
        "relative to LERF-OVS's 985 px); mIoU and localization accuracy (LangSplat's rule: a "
        "hit when any pixel tying for the peak of the box-filtered relevance lies in a box of the category, so a flat "
        "map counts as a hit)"
    ),
    "synthetic": (
        "synthetic world (a simulation, not real data): its labelled held-out views through the LERF-OVS evaluator "
        "(LangSplat's smoothing, threshold and localization rule, windows scaled to the image: 3x3 and 1x1 at 96 px); "
        "mIoU and localization accuracy"
    ),
    "3dovs": (
        "3D-OVS: per labelled view, each pixel takes the class of highest relevance among the scene's class list; "
        "mIoU over (view, class) and pixel accuracy (the share of pixels whose whole row of class labels is right), "
        "a mask pixel being its class only where it is 255"
    ),
}

#: The 3D-OVS authors' protocol, as their renderer.py scores.
THREE_D_OVS_ORIGINAL = "3dovs-original"
#: The resolution divisor the 3D-OVS authors evaluate at (their --downsample_test).
THREE_D_OVS_TEST_DOWNSCALE = 8

#: How ``cclgs eval 3dovs`` scores (its --protocol; the other benchmarks score one way, "cclgs")
#: -> what that means, as written in reports.
SCORINGS: dict[str, str] = {
    "cclgs": (
        "the project's: at the run's resolution (or --downscale), on held-out or trained-on views as the run was "
        "trained; a class absent from both the truth and the prediction of a view is skipped"
    ),
    THREE_D_OVS_ORIGINAL: (
        "the 3D-OVS authors' protocol (their renderer.py): every view trained on; scored at 1/8 of the released "
        "resolution with sizes truncated (int(W / 8)); a class absent from both the truth and the prediction of a "
        "view scores IoU 0; mIoU the mean over views x classes, accuracy the mean over views"
    ),
}
_LABEL_KIND = {"lerf": "objects", "synthetic": "objects", "3dovs": "class_masks"}

#: (scene name, frames done, frames in all)
Progress = Callable[[str, int, int], None]


@dataclass
class QueryRecord:
    """One evaluated (frame, category): IoU, whether it was localised (LERF-style only), the level used, its picture."""

    frame: str
    category: str
    iou: float
    localized: bool | None
    level: str
    picture: str | None = None


@dataclass
class SceneReport:
    """One run evaluated on its scene. ``trained_on`` counts evaluation frames that were training frames."""

    name: str
    run: str
    frames: int
    trained_on: int
    miou: float
    localization: float | None
    per_category: dict[str, float]
    queries: list[QueryRecord] = field(default_factory=list)
    #: Exact-row pixel accuracy, mean over views (3D-OVS only).
    accuracy: float | None = None


@dataclass
class Report:
    """A benchmark over one or more runs of one protocol; ``miou``/``localization``/``accuracy``
    are means over scenes."""

    benchmark: str
    protocol: str
    scenes: list[SceneReport]
    miou: float
    localization: float | None
    accuracy: float | None = None

    @property
    def benchmark_description(self) -> str:
        return BENCHMARKS[self.benchmark]

    @property
    def protocol_description(self) -> str:
        if self.protocol == THREE_D_OVS_ORIGINAL:
            return SCORINGS[THREE_D_OVS_ORIGINAL]
        if self.benchmark == "3dovs":
            return f"{PROTOCOLS[self.protocol]}; scoring: {SCORINGS['cclgs']}"
        return PROTOCOLS[self.protocol]

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "benchmark_description": self.benchmark_description,
            "protocol": self.protocol,
            "protocol_description": self.protocol_description,
            "miou": self.miou,
            "localization": self.localization,
            "accuracy": self.accuracy,
            "scenes": [asdict(scene) for scene in self.scenes],
        }


def check_benchmark(benchmark: str, scoring: str = "cclgs") -> str:
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    if scoring not in SCORINGS:
        raise ConfigError(f"unknown scoring protocol {scoring!r}; choose one of {', '.join(SCORINGS)}")
    if scoring == THREE_D_OVS_ORIGINAL and benchmark != "3dovs":
        raise ConfigError(f"the {THREE_D_OVS_ORIGINAL} protocol scores 3D-OVS only, not {benchmark}")
    return benchmark


def _original_downscale(downscale: int | None) -> int:
    """The authors' test resolution divisor; ConfigError when another is asked for."""
    if downscale not in (None, THREE_D_OVS_TEST_DOWNSCALE):
        raise ConfigError(
            f"the {THREE_D_OVS_ORIGINAL} protocol evaluates at 1/{THREE_D_OVS_TEST_DOWNSCALE} of the released "
            f"resolution, as the 3D-OVS authors do; drop --downscale {downscale}, or score with --protocol cclgs"
        )
    return THREE_D_OVS_TEST_DOWNSCALE


def evaluate_run(
    run_dir: Path,
    benchmark: str,
    out_dir: Path | None = None,
    name: str | None = None,
    backend: str | None = None,
    registry: Any = None,
    progress: Progress | None = None,
    scene_path: Path | None = None,
    downscale: int | None = None,
    scoring: str = "cclgs",
) -> tuple[SceneReport, str]:
    """Evaluate one run on its scene's labelled frames. Returns the scene report and its protocol
    (the run's, or ``3dovs-original``).

    ``scene_path`` evaluates against another copy of the scene instead (same cameras, frames of
    the same names: e.g. the LERF-OVS layout of a scene trained from its nerfstudio version);
    ``downscale`` its resolution (default: the run's for its own scene, else 1; 8 under
    ``3dovs-original``). ``scoring``: a key of ``SCORINGS``. With ``out_dir``, a picture per
    query (image | truth | relevance | mask) is written to ``out_dir/pictures/<name>/``
    (``name`` defaults to the scene folder's name).
    """
    check_benchmark(benchmark, scoring)
    original = scoring == THREE_D_OVS_ORIGINAL
    if original:
        downscale = _original_downscale(downscale)
    opened = open_run(Path(run_dir), scene_path=scene_path, downscale=downscale, backend=backend, registry=registry)
    info, scene = opened.info, opened.scene
    if info is None or scene is None:
        raise DataError(f"{run_dir}: evaluation needs a run directory with run.json (written by `cclgs train`)")
    source = Path(scene_path) if scene_path is not None else Path(info.scene)
    if benchmark == "synthetic" and not (scene.root / "world.json").is_file():
        raise DataError(f"{source} is not a synthetic world (no world.json); evaluate it with `cclgs eval lerf`")
    kind = _LABEL_KIND[benchmark]
    frames = [frame for frame in scene.frames if kind in frame.ground_truth]
    if not frames:
        expected = (
            "3D-OVS segmentations/<NN>/<class>.png masks" if kind == "class_masks" else "LERF-OVS label JSON files"
        )
        raise DataError(f"{source}: no frame carries {expected}; is this the right benchmark for the run {run_dir}?")
    trained = set(info.trained_frames)
    trained_on = sum(frame.name in trained for frame in frames)
    if trained_on != {"heldout": 0, "langsplat": len(frames)}[info.protocol]:
        raise DataError(
            f"{run_dir} was trained under the {info.protocol!r} protocol, yet {trained_on} of the {len(frames)} "
            f"labelled frames of {source} were training frames; its numbers would follow neither protocol. Evaluate it "
            "on the scene it was trained on, or re-train with `cclgs train --protocol`"
        )
    untrained = [frame.name for frame in scene.frames if frame.name not in trained]
    if original and untrained:
        raise DataError(
            f"{run_dir}: the {THREE_D_OVS_ORIGINAL} protocol scores runs trained on every view, as the 3D-OVS "
            f"authors train, but {len(untrained)} of the {len(scene.frames)} views of {source} were not trained on "
            f"(first: {untrained[0]}); re-train with `cclgs train SCENE --protocol langsplat`, or score this run with "
            "--protocol cclgs"
        )
    name = name or source.name
    pictures = Path(out_dir) / "pictures" / name if out_dir is not None else None
    step = (lambda done: progress(name, done, len(frames))) if progress is not None else (lambda done: None)
    accuracy = None
    if benchmark == "3dovs":
        records, accuracies = _evaluate_class_masks(
            opened, frames, list(scene.class_names), pictures, step, absent_scores_zero=original
        )
        accuracy = float(np.mean(accuracies))
    else:
        records = _evaluate_polygons(opened, frames, pictures, step)
    if pictures is not None:
        for record in records:
            record.picture = (pictures / record.picture).relative_to(out_dir).as_posix()
    summary = summarize(records)
    report = SceneReport(
        name=name,
        run=str(Path(run_dir)),
        frames=len(frames),
        trained_on=trained_on,
        miou=summary.miou,
        localization=summary.localization,
        per_category=summary.per_category,
        queries=records,
        accuracy=accuracy,
    )
    return report, THREE_D_OVS_ORIGINAL if original else info.protocol


def _evaluate_polygons(
    opened: OpenedRun, frames: Sequence[Any], pictures: Path | None, step: Callable[[int], None]
) -> list[QueryRecord]:
    """LERF-OVS: LangSplat's protocol per (frame, category)."""
    from cclgs_core.datasets.lerf_ovs import read_ovs_labels
    from cclgs_core.evaluation.metrics import evaluate_query, scaled_windows

    records = []
    for done, frame in enumerate(frames):
        labels = read_ovs_labels(frame.ground_truth["objects"], (frame.camera.width, frame.camera.height))
        categories = list(labels.categories)
        if not categories:
            step(done + 1)
            continue
        relevance = opened.engine.view(frame.camera, categories)  # maps (T, levels, H, W)
        image = frame.load_image() if pictures is not None else None
        windows = scaled_windows(frame.camera.height, frame.camera.width)
        for index, category in enumerate(categories):
            truth = labels.categories[category]
            result = evaluate_query(frame.name, category, relevance.maps[index], truth.mask, truth.boxes, windows)
            picture = None
            if pictures is not None:
                smoothed = result.relevance
                picture = _write_picture(
                    pictures,
                    frame.name,
                    index,
                    category,
                    image,
                    truth.mask,
                    smoothed,
                    float(smoothed.min()),
                    float(smoothed.max()),
                    result.mask,
                )
            records.append(
                QueryRecord(
                    frame.name, category, result.iou, bool(result.localized), relevance.levels[result.level], picture
                )
            )
        step(done + 1)
    return records


def _evaluate_class_masks(
    opened: OpenedRun,
    frames: Sequence[Any],
    classes: list[str],
    pictures: Path | None,
    step: Callable[[int], None],
    absent_scores_zero: bool,
) -> tuple[list[QueryRecord], list[float]]:
    """3D-OVS: argmax over the class list per pixel; a record per (view, class) and the accuracy
    of each view. A class absent from a view's truth and prediction scores 0 with
    ``absent_scores_zero`` (the authors' rule), else it has no record."""
    from cclgs_core.datasets.three_d_ovs import read_class_masks
    from cclgs_core.evaluation.class_masks import score_view

    if not classes:
        raise DataError("the 3D-OVS scene has an empty class list (segmentations/classes.txt)")
    records, accuracies = [], []
    for done, frame in enumerate(frames):
        truth = read_class_masks(
            frame.ground_truth["class_masks"], classes, (frame.camera.width, frame.camera.height)
        )  # (C, H, W)
        relevance = opened.engine.view(frame.camera, classes)  # maps (C, levels, H, W)
        levels = [relevance.best_level(index) for index in range(len(classes))]
        chosen = np.stack([relevance.maps[index, level] for index, level in enumerate(levels)])  # (C, H, W)
        predicted = chosen.argmax(axis=0)  # (H, W) class index per pixel
        score = score_view(truth, predicted)
        accuracies.append(score.accuracy)
        image = frame.load_image() if pictures is not None else None
        for index, name in enumerate(classes):
            absent = np.isnan(score.ious[index])
            if absent and not absent_scores_zero:
                continue
            picture = None
            if pictures is not None:
                mask = predicted == index
                picture = _write_picture(
                    pictures, frame.name, index, name, image, truth[index], chosen[index], 0.5, 1.0, mask
                )
            iou = 0.0 if absent else float(score.ious[index])
            records.append(QueryRecord(frame.name, name, iou, None, relevance.levels[levels[index]], picture))
        step(done + 1)
    return records, accuracies


def _write_picture(
    directory: Path,
    frame: str,
    position: int,
    category: str,
    image: np.ndarray,
    truth: np.ndarray,
    relevance: np.ndarray,
    low: float,
    high: float,
    mask: np.ndarray,
) -> str:
    """image | truth | relevance heatmap | predicted mask, as one PNG named by the frame and the
    category (with its position in the frame, as categories differing in case are distinct);
    returns its name in ``directory``.

    image: (H, W, 3) uint8; truth, mask: (H, W) bool; relevance: (H, W) shown from ``low`` to ``high``.
    """
    from cclgs_core.evaluation.visualize import TRUTH_COLOR, heatmap_overlay, mask_overlay, panel_row, save_png, slug

    row = panel_row(
        [
            image,
            mask_overlay(image, truth, TRUTH_COLOR),
            heatmap_overlay(image, relevance, low, high),
            mask_overlay(image, mask),
        ]
    )
    file_name = f"{frame.replace('/', '__')}__{position:02d}_{slug(category)}.png"
    save_png(directory / file_name, row)
    return file_name


def common_protocol(run_dirs: Sequence[Path]) -> str:
    """The protocol all the runs were trained under; ConfigError when they differ or none is given."""
    if not run_dirs:
        raise ConfigError("pass at least one run directory to evaluate")
    protocols = {str(run_dir): read_run_info(Path(run_dir)).protocol for run_dir in run_dirs}
    if len(set(protocols.values())) > 1:
        listed = ", ".join(f"{run} ({protocol})" for run, protocol in protocols.items())
        raise ConfigError(
            f"the runs were trained under different protocols: {listed}; evaluate each protocol separately"
        )
    return next(iter(protocols.values()))


def report_protocol(run_dirs: Sequence[Path], scoring: str = "cclgs") -> str:
    """The protocol a report on these runs names: ``3dovs-original`` for the authors' scoring
    (each run is checked to be trained on every view), else ``common_protocol``."""
    if scoring == THREE_D_OVS_ORIGINAL:
        if not run_dirs:
            raise ConfigError("pass at least one run directory to evaluate")
        return THREE_D_OVS_ORIGINAL
    return common_protocol(run_dirs)


def evaluate_runs(
    run_dirs: Sequence[Path],
    benchmark: str,
    out_dir: Path | None = None,
    backend: str | None = None,
    registry: Any = None,
    progress: Progress | None = None,
    scene_paths: Sequence[Path] = (),
    downscale: int | None = None,
    scoring: str = "cclgs",
) -> Report:
    """Evaluate several runs (one per scene) of one protocol (``report_protocol``); ``scene_paths``,
    if given, one per run, replace the runs' scenes (see ``evaluate_run``)."""
    check_benchmark(benchmark, scoring)
    protocol = report_protocol(run_dirs, scoring)
    if scene_paths and len(scene_paths) != len(run_dirs):
        raise ConfigError(
            f"{len(scene_paths)} scenes for {len(run_dirs)} runs; pass one scene per run, in the same order"
        )
    scenes, names = [], set()
    for position, run_dir in enumerate(run_dirs):
        scene_path = Path(scene_paths[position]) if scene_paths else None
        base = (scene_path or Path(read_run_info(Path(run_dir)).scene)).name
        name, count = base, 2
        while name in names:
            name, count = f"{base}_{count}", count + 1
        names.add(name)
        report, _ = evaluate_run(
            Path(run_dir), benchmark, out_dir, name, backend, registry, progress, scene_path, downscale, scoring
        )
        scenes.append(report)
    return Report(
        benchmark=benchmark,
        protocol=protocol,
        scenes=scenes,
        miou=float(np.mean([scene.miou for scene in scenes])),
        localization=_mean_of_scored([scene.localization for scene in scenes]),
        accuracy=_mean_of_scored([scene.accuracy for scene in scenes]),
    )


def _mean_of_scored(values: list[float | None]) -> float | None:
    """The mean of the values that were scored (not None); None when none was."""
    scored = [value for value in values if value is not None]
    return float(np.mean(scored)) if scored else None


def default_output_dir(benchmark: str, protocol: str) -> Path:
    return Path("cclgs_eval") / f"{benchmark}_{protocol}"


def write_report(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` (tables plus the per-query pictures) into ``out_dir``."""
    out_dir = Path(out_dir)
    json_path, markdown_path = out_dir / "report.json", out_dir / "report.md"
    atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2))
    atomic_write_text(markdown_path, report_markdown(report))
    return json_path, markdown_path


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|")


def extra_columns(report: Report) -> list[str]:
    """The scored numbers besides mIoU that the report has: "localization" (LERF-style), "accuracy" (3D-OVS)."""
    return [name for name in ("localization", "accuracy") if getattr(report, name) is not None]


def percent(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def report_markdown(report: Report) -> str:
    """The report as markdown: summary table, then per scene its categories and one picture row per query."""
    extra = extra_columns(report)
    lines = [
        f"# Evaluation: {report.benchmark}",
        "",
        f"- **Protocol: {report.protocol}** ({report.protocol_description}).",
        f"- Benchmark: {report.benchmark_description}.",
        "- Numbers are percentages; a scene's number is the mean over its queries, the mean row the mean over scenes.",
        "",
        "| scene | frames | trained on | mIoU |" + "".join(f" {name} |" for name in extra),
        "| --- | ---: | ---: | ---: |" + " ---: |" * len(extra),
    ]
    for scene in report.scenes:
        row = f"| {scene.name} | {scene.frames} | {scene.trained_on} | {percent(scene.miou)} |"
        lines.append(row + "".join(f" {percent(getattr(scene, name))} |" for name in extra))
    mean = f"| **mean** | | | **{percent(report.miou)}** |"
    lines.append(mean + "".join(f" **{percent(getattr(report, name))}** |" for name in extra))
    for scene in report.scenes:
        lines += ["", f"## {scene.name}", "", f"Run: `{scene.run}`", "", "| category | mIoU |", "| --- | ---: |"]
        lines += [f"| {_cell(category)} | {percent(value)} |" for category, value in scene.per_category.items()]
        lines += [
            "",
            "Pictures: image | ground truth (green) | relevance (heatmap) | predicted mask (red).",
            "",
            "| frame | category | IoU | localized | level | picture |",
            "| --- | --- | ---: | --- | --- | --- |",
        ]
        for query in scene.queries:
            localized = "n/a" if query.localized is None else ("yes" if query.localized else "no")
            picture = f"![{_cell(query.category)}]({query.picture})" if query.picture else ""
            lines.append(
                f"| {query.frame} | {_cell(query.category)} | {percent(query.iou)} | {localized} | {query.level} | "
                f"{picture} |"
            )
    return "\n".join(lines) + "\n"
