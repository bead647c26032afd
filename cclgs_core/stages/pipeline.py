"""The stages of a run, each cached on disk: scene -> masks -> features (-> labels -> ...).

A run directory holds the resolved config and a ``cache/`` (see ``cclgs_core.plumbing.cache``). Each
stage's artifact is keyed by its inputs' keys plus the component's name, plugin version and
resolved options, so a changed option re-runs that stage and the ones after it, and nothing
else. Items are written per frame, so a killed run resumes at the first missing frame.
Every component output is checked against its interface before it is stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from cclgs_core.errors import CclgsError, DataError, LaunchError, PluginError, storage_error
from cclgs_core.interfaces import KINDS
from cclgs_core.plumbing.cache import Artifact, StageCache, artifact_key, stable_key
from cclgs_core.plumbing.config import RunConfig, options_with_defaults, write_resolved
from cclgs_core.plumbing.ranks import Launch, require_same_run, require_shared_directory
from cclgs_core.plumbing.registry import PluginRegistry, get_registry
from cclgs_core.types import LEVELS, Frame, FrameMasks, Scene, SegmentMap
from cclgs_core.validation import check_embeddings, check_frame_masks, check_targets, check_track_labels

if TYPE_CHECKING:
    from cclgs_core.stages.field_training import FieldView, TrainingLog
    from cclgs_core.stages.semantic_field import SemanticField

#: Progress callback: (stage name, frames done, frames in all).
Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """Progress that shows nothing."""


def scene_fingerprint(frames: Sequence[Frame]) -> str:
    """A digest of the frames' names, image bytes and cameras: the root of every cache key."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(frame.name.encode())
        digest.update(Path(frame.image_path).read_bytes())
        digest.update(np.ascontiguousarray(frame.camera.camera_to_world).tobytes())
        camera = frame.camera
        digest.update(np.array([camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height]).tobytes())
    return digest.hexdigest()[:16]


class StageComponent:
    """A configured component: its identity (which keys its artifacts) and, created on first
    use only, its instance, so a fully cached stage never loads a model."""

    def __init__(self, config: RunConfig, kind: str, registry: PluginRegistry):
        choice = config.components[kind]
        info = registry.get(kind, choice.name)
        options = options_with_defaults(info, choice.options)
        self.kind = kind
        self.identity = {
            "name": choice.name,
            "plugin": f"{info.plugin.distribution} {info.plugin.version}",
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
        }
        self._create = lambda: config.create(kind, registry)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.identity['name']!r} ({self.identity['plugin']})"

    @functools.cached_property
    def instance(self) -> Any:
        return self._create()

    def new_instance(self) -> Any:
        """A separate, fresh instance (one compressor per mask level)."""
        return self._create()

    @contextlib.contextmanager
    def blame(self, doing: str) -> Iterator[None]:
        """Turn an unexpected exception raised while the component is ``doing`` something into a
        PluginError naming it; errors that already speak to the user (CclgsError) pass unchanged."""
        try:
            yield
        except CclgsError:
            raise
        except OSError as error:  # the system refused a file (a full disk, a vanished checkpoint): not a bug
            raise storage_error(error) from error
        except Exception as error:
            raise PluginError(
                f"{self.label} failed in {doing}: {type(error).__name__}: {error}. This is a bug in the plugin: "
                f"report it to its authors (--debug shows the traceback), or choose another [{self.kind}] in the run "
                "config"
            ) from error


def _masks_to_arrays(masks: FrameMasks) -> dict[str, np.ndarray]:
    arrays = {}
    for level in LEVELS:
        segment_map = masks.level(level)
        arrays[f"{level}_segments"] = segment_map.segments.astype(np.int32)
        scores = segment_map.scores if segment_map.scores is not None else np.ones(segment_map.num_masks)
        arrays[f"{level}_scores"] = np.asarray(scores, dtype=np.float32)
    return arrays


def masks_from_arrays(arrays: dict[str, np.ndarray]) -> FrameMasks:
    """Inverse of the stored layout: ``<level>_segments`` (H, W) int32 and ``<level>_scores`` (M,)."""
    levels = {
        level: SegmentMap(arrays[f"{level}_segments"], int(len(arrays[f"{level}_scores"])), arrays[f"{level}_scores"])
        for level in LEVELS
    }
    return FrameMasks(**levels)


@dataclass
class PreprocessResult:
    """Where the two stage-1 artifacts live, and how many frames were computed rather than read
    (by every rank together, in a launch of several)."""

    masks: Artifact
    features: Artifact
    frames: list[Frame]
    computed_masks: int
    computed_features: int


def run_preprocess(
    scene: Scene,
    config: RunConfig,
    run_dir: Path,
    registry: PluginRegistry | None = None,
    progress: Progress = no_progress,
    preview_count: int = 3,
    launch: Launch | None = None,
) -> PreprocessResult:
    """Two-level masks and per-mask features for every training frame, cached per frame.

    launch: this process's place among ranks started together by torchrun. Each rank then computes
    its shard of the frames into the shared cache; once all are done, rank 0 checks that every frame
    is there and marks the artifacts complete. The result equals a single process's."""
    registry = registry or get_registry()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.validate(registry)
    cache = StageCache(run_dir / "cache")
    frames = scene.split("train")
    generator = StageComponent(config, "mask_generator", registry)
    extractor = StageComponent(config, "feature_extractor", registry)
    fingerprint = scene_fingerprint(frames)
    masks_inputs = {"scene": fingerprint, "mask_generator": generator.identity}
    features_inputs = {"masks": artifact_key("masks", masks_inputs), "feature_extractor": extractor.identity}
    if launch is not None:
        resolved = json.loads(json.dumps(config.resolved(registry), default=str))
        require_same_run(launch, {**resolved, "scene": fingerprint, "training frames": [f.name for f in frames]})
        require_shared_directory(launch, run_dir)
    if launch is None or launch.coordinator:
        write_resolved(config, run_dir, registry)
    writer = launch.writer if launch is not None else None
    masks_artifact = cache.artifact("masks", masks_inputs, writer)
    features_artifact = cache.artifact("features", features_inputs, writer)
    own_frames = launch.shard(frames) if launch is not None else frames
    stage_name = "masks and features" if launch is None else f"masks and features, rank {launch.rank}'s share"
    computed_masks = computed_features = 0
    try:
        for done, frame in enumerate(own_frames):
            computed_mask, computed_feature = _masks_and_features(
                frame, masks_artifact, features_artifact, generator, extractor
            )
            computed_masks += computed_mask
            computed_features += computed_feature
            progress(stage_name, done + 1, len(own_frames))
    except KeyboardInterrupt as stop:  # say what a resumed run starts from
        finished = sum(features_artifact.has(f"{frame.name}.npz") for frame in own_frames)
        stop.add_note(f"masks and features of {finished} of {len(own_frames)} images in {cache.root}")
        raise
    if launch is not None:
        launch.barrier("waiting for every rank to finish its frames")
        counts = launch.gather((computed_masks, computed_features), "adding up the frames computed")
        computed_masks, computed_features = (sum(column) for column in zip(*counts))
        verdict = None
        if launch.coordinator:
            try:
                _complete_preprocess(cache, masks_inputs, features_inputs, frames)
            except CclgsError as error:
                verdict = str(error)
        verdict = launch.broadcast(verdict, "waiting for rank 0 to check every frame")
        if verdict is not None:
            raise LaunchError(verdict, every_rank=True)
        masks_artifact, features_artifact = (
            cache.artifact("masks", masks_inputs),
            cache.artifact("features", features_inputs),
        )
    else:
        masks_artifact.mark_complete()
        features_artifact.mark_complete()
    if preview_count and (launch is None or launch.coordinator):
        write_mask_previews(masks_artifact, frames[:preview_count], run_dir / "previews" / "masks")
    return PreprocessResult(masks_artifact, features_artifact, frames, computed_masks, computed_features)


def _masks_and_features(
    frame: Frame,
    masks_artifact: Artifact,
    features_artifact: Artifact,
    generator: StageComponent,
    extractor: StageComponent,
) -> tuple[bool, bool]:
    """Compute and store the frame's masks and features where they are missing; whether each was computed."""
    item = f"{frame.name}.npz"
    image = None
    computed_masks = not masks_artifact.has(item)
    if computed_masks:
        image = frame.load_image()
        with generator.blame(f"generate() on {frame.image_path}"):
            masks = generator.instance.generate(image, frame)
        check_frame_masks(masks, image.shape[0], image.shape[1], generator.label)
        masks_artifact.write_arrays(item, **_masks_to_arrays(masks))
    computed_features = not features_artifact.has(item)
    if computed_features:
        image = frame.load_image() if image is None else image
        masks = masks_from_arrays(masks_artifact.read_arrays(item))
        arrays = {}
        for level in LEVELS:
            segment_map = masks.level(level)
            with extractor.blame(f"encode_masks() on {frame.image_path}, level {level}"):
                features = extractor.instance.encode_masks(image, segment_map, frame)
            check_embeddings(
                features,
                segment_map.num_masks,
                extractor.instance.dim,
                extractor.label,
                f"features of {frame.name} level {level}",
            )
            arrays[f"{level}_features"] = features
        features_artifact.write_arrays(item, **arrays)
    return computed_masks, computed_features


def _complete_preprocess(
    cache: StageCache, masks_inputs: dict[str, Any], features_inputs: dict[str, Any], frames: Sequence[Frame]
) -> None:
    """Mark the masks and features artifacts complete once every rank finished; DataError naming
    the frames that none of them left in the run directory."""
    for stage, inputs in (("masks", masks_inputs), ("features", features_inputs)):
        artifact = cache.artifact(stage, inputs)
        missing = [frame.name for frame in frames if not artifact.has(f"{frame.name}.npz")]
        if missing:
            raise DataError(
                f"{len(missing)} of {len(frames)} frames have no {stage} in {artifact.path} after every rank "
                f"finished ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): a rank's files did not "
                "reach the shared run directory. Rerun the same command to compute them"
            )
        artifact.mark_complete()


def write_mask_previews(artifact: Artifact, frames: Sequence[Frame], directory: Path) -> list[Path]:
    """PNG per frame: image | sp masks | wp masks, each mask a fixed colour (``visualize.target_picture``
    of the mask ids) over the image, no-mask pixels dark."""
    from cclgs_core.evaluation.visualize import save_png, target_picture

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for frame in frames:
        masks = masks_from_arrays(artifact.read_arrays(f"{frame.name}.npz"))
        image = frame.load_image()
        panels = [image]
        for level in LEVELS:
            segment_map = masks.level(level)
            coloured = target_picture(segment_map.segments, np.arange(segment_map.num_masks), segment_map.num_masks)
            panels.append((0.35 * image + 0.65 * coloured).astype(np.uint8))
        written.append(save_png(directory / f"{frame.name}.png", np.concatenate(panels, axis=1)))
    return written


def run_tracking(
    scene: Scene, config: RunConfig, preprocessed: PreprocessResult, cache: StageCache, registry: PluginRegistry
) -> Artifact:
    """Track labels per level for every training frame: ``<level>.npz`` holds one (M_t,) int64 array per frame."""
    from cclgs_core.stages.field_io import file_digest

    tracker = StageComponent(config, "tracker", registry)
    # The scene's Gaussians are in the key: a geometric tracker's labels depend on them.
    geometry = file_digest(scene.gaussians_path) if scene.gaussians_path is not None else None
    artifact = cache.artifact(
        "labels", {"masks": preprocessed.masks.path.name, "tracker": tracker.identity, "gaussians": geometry}
    )
    frames = preprocessed.frames
    for level in LEVELS:
        item = f"{level}.npz"
        if artifact.has(item):
            continue
        segment_maps = [masks_from_arrays(preprocessed.masks.read_arrays(f"{f.name}.npz")).level(level) for f in frames]
        _require_masks(level, segment_maps, preprocessed, cache.root.parent, config)
        with tracker.blame(f"track() at level {level}"):
            labels = tracker.instance.track(scene, frames, segment_maps)
        check_track_labels(labels, segment_maps, tracker.label)
        artifact.write_arrays(item, **{frame.name: view_labels for frame, view_labels in zip(frames, labels)})
    artifact.mark_complete()
    return artifact


def _require_masks(
    level: str, segment_maps: Sequence[SegmentMap], preprocessed: PreprocessResult, run_dir: Path, config: RunConfig
) -> None:
    """DataError naming the mask generator when no training image has a mask at ``level`` (a view
    without masks is fine: it contributes nothing)."""
    if any(segment_map.num_masks for segment_map in segment_maps):
        return
    generator = preprocessed.masks.description["mask_generator"]
    raise DataError(
        f"mask_generator {generator['name']!r} ({generator['plugin']}) found no mask at level {level!r} in any of the "
        f"{len(segment_maps)} training images in {preprocessed.frames[0].image_path.parent}, so there is nothing to "
        f"train on. Check the images and the previews in {run_dir / 'previews' / 'masks'}, or change the "
        f"[mask_generator] options of the run config ({config.source})"
    )


@dataclass
class CompressedLevel:
    """A fitted compressor of one level and its per-mask targets for every training frame.

    targets: frame name -> (M,) int64 indices or (M, L) float32 latents.
    """

    compressor: Any
    targets: dict[str, np.ndarray]
    curves: dict[str, list[float]]


def run_compression(
    config: RunConfig,
    preprocessed: PreprocessResult,
    labels: Artifact,
    cache: StageCache,
    registry: PluginRegistry,
) -> dict[str, CompressedLevel]:
    """Fit one compressor per level on all frames' features and labels; store its state and targets."""
    import torch

    component = StageComponent(config, "compressor", registry)
    artifact = cache.artifact(
        "compressor",
        {
            "features": preprocessed.features.path.name,
            "labels": labels.path.name,
            "compressor": component.identity,
            "seed": config.seed,
        },
    )
    frames = preprocessed.frames
    result = {}
    for level in LEVELS:
        compressor = component.new_instance()
        state_item, targets_item, curves_item = f"{level}_state.pt", f"{level}_targets.npz", f"{level}_curves.json"
        if artifact.has(state_item) and artifact.has(targets_item) and artifact.has(curves_item):
            compressor.load_state_dict(torch.load(io.BytesIO(artifact.read_bytes(state_item)), weights_only=True))
        else:
            features = [preprocessed.features.read_arrays(f"{f.name}.npz")[f"{level}_features"] for f in frames]
            level_labels = labels.read_arrays(f"{level}.npz")
            with component.blame(f"fit() at level {level}"):
                curves = compressor.fit(features, [level_labels[f.name] for f in frames], seed=config.seed)
            targets = {}
            for frame, frame_features in zip(frames, features):
                with component.blame(f"targets() of {frame.name} at level {level}"):
                    targets[frame.name] = compressor.targets(frame_features)
                check_targets(
                    targets[frame.name],
                    len(frame_features),
                    compressor.target_kind,
                    compressor.output_size,
                    component.label,
                )
            buffer = io.BytesIO()
            torch.save(compressor.state_dict(), buffer)
            artifact.write_json(curves_item, {name: [float(v) for v in values] for name, values in curves.items()})
            artifact.write_arrays(targets_item, **targets)
            artifact.write_bytes(state_item, buffer.getvalue())
        result[level] = CompressedLevel(compressor, artifact.read_arrays(targets_item), artifact.read_json(curves_item))
    artifact.mark_complete()
    return result


@dataclass
class PreparedRun:
    """Everything field training needs: per-level fitted compressors and per-view targets."""

    frames: list[Frame]
    compressors: dict[str, Any]
    views: list[FieldView]
    preprocessed: PreprocessResult
    #: level -> the compressor's per-step loss curves from ``fit``
    curves: dict[str, dict[str, list[float]]]


def prepare_field_targets(
    scene: Scene,
    config: RunConfig,
    run_dir: Path,
    registry: PluginRegistry | None = None,
    progress: Progress = no_progress,
    preview_count: int = 3,
) -> PreparedRun:
    """Run (or read from the cache) masks, features, track labels and compression for the
    training frames; PNG previews of the targets of the first ``preview_count`` frames."""
    from cclgs_core.stages.field_training import FieldView

    registry = registry or get_registry()
    preprocessed = run_preprocess(scene, config, run_dir, registry, progress)
    cache = StageCache(Path(run_dir) / "cache")
    progress("track labels", 0, 1)
    labels = run_tracking(scene, config, preprocessed, cache, registry)
    progress("track labels", 1, 1)
    progress("compression", 0, 1)
    levels = run_compression(config, preprocessed, labels, cache, registry)
    progress("compression", 1, 1)
    views = []
    for frame in preprocessed.frames:
        masks = masks_from_arrays(preprocessed.masks.read_arrays(f"{frame.name}.npz"))
        views.append(
            FieldView(
                camera=frame.camera,
                segments={level: masks.level(level).segments for level in LEVELS},
                mask_targets={level: levels[level].targets[frame.name] for level in LEVELS},
            )
        )
    compressors = {level: levels[level].compressor for level in LEVELS}
    if preview_count:
        write_target_previews(
            views[:preview_count], preprocessed.frames, compressors, Path(run_dir) / "previews" / "targets"
        )
    curves = {level: levels[level].curves for level in LEVELS}
    return PreparedRun(preprocessed.frames, compressors, views, preprocessed, curves)


def write_target_previews(
    views: Sequence[FieldView], frames: Sequence[Frame], compressors: dict[str, Any], directory: Path
) -> list[Path]:
    """PNG per view: image | sp targets | wp targets, as coloured by ``visualize.target_picture``
    (one colour per prototype, or the first three latent dimensions)."""
    from cclgs_core.evaluation.visualize import save_png, target_picture

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for view, frame in zip(views, frames):
        panels = [frame.load_image()]
        for level in LEVELS:
            panels.append(
                target_picture(view.segments[level], view.mask_targets[level], compressors[level].output_size)
            )
        written.append(save_png(directory / f"{frame.name}.png", np.concatenate(panels, axis=1)))
    return written


@dataclass
class TrainResult:
    field_path: Path
    log: TrainingLog
    gaussians_path: Path
    #: the trained field, as saved at ``field_path``
    field: SemanticField
    #: the compressors and per-view targets it was trained on
    prepared: PreparedRun


def train_and_save_field(
    scene: Scene,
    config: RunConfig,
    run_dir: Path,
    gaussians_path: Path | None = None,
    registry: PluginRegistry | None = None,
    progress: Progress = no_progress,
) -> TrainResult:
    """Preprocess (cached), then train the semantic field on the scene's frozen Gaussians and save it."""
    from cclgs_core.helpers.devices import resolve_device
    from cclgs_core.scene.ply import read_gaussians
    from cclgs_core.stages.field_io import file_digest, save_field
    from cclgs_core.stages.field_training import fit_field_to_views

    registry = registry or get_registry()
    gaussians_path = gaussians_path or scene.gaussians_path
    if gaussians_path is None:
        raise DataError(
            f"{scene.root} names no Gaussians; pass --gaussians PATH.ply (a 3DGS .ply) or fit them first with `cclgs "
            "fit`"
        )
    gaussians = read_gaussians(gaussians_path)
    # The components that need the scene's Gaussians (the reprojection tracker) take these ones.
    scene = dataclasses.replace(scene, gaussians_path=Path(gaussians_path))
    prepared = prepare_field_targets(scene, config, run_dir, registry, progress)
    backend = StageComponent(config, "field_backend", registry)
    settings = config.train
    field_dir = Path(run_dir) / "field"
    # A checkpoint resumes only the training it belongs to: everything that shapes the result is in
    # its name, except the iteration count (a longer run continues a shorter one exactly).
    training_key = stable_key(
        {
            "components": {kind: StageComponent(config, kind, registry).identity for kind in KINDS},
            "train": {
                k: v for k, v in dataclasses.asdict(settings).items() if k not in ("iterations", "checkpoint_every")
            },
            "seed": config.seed,
            "gaussians": file_digest(gaussians_path),
            "frames": [frame.name for frame in prepared.frames],
        }
    )
    field, log = fit_field_to_views(
        gaussians,
        prepared.views,
        prepared.compressors,
        backend.instance,
        iterations=settings.iterations,
        lr=settings.lr,
        field_dim=settings.field_dim,
        pixels_per_step=settings.pixels_per_step,
        seed=config.seed,
        checkpoint_path=field_dir / f"checkpoint-{training_key}.pt",
        checkpoint_every=settings.checkpoint_every,
        progress=progress,
        device=resolve_device(config.device),
    )
    field_path = field_dir / "semantic_field.pt"
    save_field(
        field_path,
        field,
        StageComponent(config, "compressor", registry).identity,
        gaussians_path,
        StageComponent(config, "feature_extractor", registry).identity,
    )
    return TrainResult(field_path, log, Path(gaussians_path), field, prepared)
