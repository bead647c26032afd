"""A trained run and the record that queries and evaluation read: ``RUN/run.json``.

``cclgs train SCENE`` writes, next to ``field/semantic_field.pt``::

    {"format": 1, "scene": "/abs/scene", "downscale": 2, "protocol": "heldout",
     "field": "field/semantic_field.pt", "gaussians": "/abs/scene.ply",
     "field_backend": {"name": "cached", "options": {...}},
     "trained_frames": [...], "evaluation_frames": [...]}

so that ``cclgs query RUN`` and ``cclgs eval ... RUN`` find the field, the scene's cameras and
images at the same resolution, and know which frames were trained on.

Evaluation protocols (docs/design.md, "Evaluation"). A scene's evaluation frames are those carrying
benchmark labels (``EVALUATION_KINDS``: LERF-OVS polygons or 3D-OVS class masks):

- ``heldout``: evaluation frames are never trained on (the honest number; the default);
- ``langsplat``: evaluation frames are trained on too, as LangSplat's LERF-OVS code does
  (and 3D-OVS's own code, which trains on every view).

The protocol decides the training split before preprocessing, so it is fixed per run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cclgs_core.datasets.common import EVALUATION_KINDS
from cclgs_core.errors import ConfigError, DataError
from cclgs_core.plumbing.cache import atomic_write_text
from cclgs_core.types import Frame, Scene

if TYPE_CHECKING:
    from cclgs_core.plumbing.config import RunConfig
    from cclgs_core.stages.pipeline import Progress, TrainResult

RUN_FILE = "run.json"
FORMAT_VERSION = 1
FIELD_FILE = "field/semantic_field.pt"

#: Protocol name -> what it means, as written in reports.
PROTOCOLS: dict[str, str] = {
    "heldout": "held out: evaluation frames were not trained on",
    "langsplat": "LangSplat's protocol: evaluation frames were also trained on",
}


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return protocol


def evaluation_frames(scene: Scene) -> list[Frame]:
    """The frames that carry benchmark labels (any split)."""
    return [frame for frame in scene.frames if any(kind in frame.ground_truth for kind in EVALUATION_KINDS)]


def apply_protocol(scene: Scene, protocol: str) -> Scene:
    """The scene with its splits set by ``protocol``: evaluation frames go to "test" (heldout) or
    "train" (langsplat); other frames keep their split."""
    split = {"heldout": "test", "langsplat": "train"}[check_protocol(protocol)]
    labelled = {frame.name for frame in evaluation_frames(scene)}
    frames = [replace(frame, split=split) if frame.name in labelled else frame for frame in scene.frames]
    return replace(scene, frames=frames)


@dataclass
class RunInfo:
    """The contents of run.json (paths absolute, except ``field``, relative to the run directory)."""

    scene: str
    downscale: int
    protocol: str
    gaussians: str
    field_backend: dict[str, Any]
    trained_frames: list[str] = field(default_factory=list)
    evaluation_frames: list[str] = field(default_factory=list)
    field: str = FIELD_FILE
    #: The run config's device name; queries and evaluations of the run use it too.
    device: str = "auto"
    format: int = FORMAT_VERSION


def write_run_info(run_dir: Path, info: RunInfo) -> Path:
    path = Path(run_dir) / RUN_FILE
    atomic_write_text(path, json.dumps(asdict(info), indent=2))
    return path


def read_run_info(run_dir: Path) -> RunInfo:
    """run.json of a run directory; DataError when it is missing or not ours."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise DataError(
            f"{run_dir} is not a cclgs run: it has no {RUN_FILE}; train one with `cclgs train SCENE --run {run_dir}`"
        )
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if content.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {content.get('format')!r}")
        return RunInfo(**content)
    except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as error:
        raise DataError(
            f"{path}: not a cclgs run record of format {FORMAT_VERSION} ({error}); re-run `cclgs train`"
        ) from None


def train_and_record_run(
    scene_path: Path,
    config: "RunConfig",
    run_dir: Path,
    downscale: int = 1,
    protocol: str = "heldout",
    gaussians_path: Path | None = None,
    registry: Any = None,
    progress: "Progress | None" = None,
) -> tuple["TrainResult", RunInfo]:
    """Load the scene, split it by ``protocol``, train the field (``pipeline.train_and_save_field``) and
    write run.json. Returns the TrainResult and the RunInfo."""
    from cclgs_core.datasets import load_scene
    from cclgs_core.plumbing.registry import get_registry
    from cclgs_core.stages.pipeline import StageComponent, train_and_save_field

    registry = registry or get_registry()
    check_protocol(protocol)
    scene = apply_protocol(load_scene(scene_path, downscale=downscale), protocol)
    if not scene.split("train"):
        raise DataError(
            f"{scene_path}: no training frames are left under the {protocol!r} protocol; every frame is labelled"
        )
    kwargs = {"progress": progress} if progress is not None else {}
    result = train_and_save_field(scene, config, run_dir, gaussians_path, registry, **kwargs)
    info = RunInfo(
        scene=str(Path(scene_path).resolve()),
        downscale=downscale,
        protocol=protocol,
        gaussians=str(Path(result.gaussians_path).resolve()),
        field_backend={
            key: value
            for key, value in StageComponent(config, "field_backend", registry).identity.items()
            if key != "plugin"
        },
        trained_frames=[frame.name for frame in scene.split("train")],
        evaluation_frames=[frame.name for frame in evaluation_frames(scene)],
        field=Path(result.field_path).resolve().relative_to(Path(run_dir).resolve()).as_posix(),
        device=config.device,
    )
    write_run_info(run_dir, info)
    return result, info


@dataclass
class OpenedRun:
    """A field ready to query, with the run's record and scene when there is one."""

    engine: Any  # cclgs_core.stages.query.QueryEngine
    field_path: Path
    info: RunInfo | None
    scene: Scene | None
    #: The run directory when the field belongs to one.
    run_dir: Path | None = None

    @property
    def output_dir(self) -> Path:
        """Where results of this field go by default: the run directory, else the field file's folder."""
        return self.run_dir if self.run_dir is not None else self.field_path.parent


def open_run(
    path: Path,
    scene_path: Path | None = None,
    downscale: int | None = None,
    backend: str | None = None,
    registry: Any = None,
    device: str | None = None,
) -> OpenedRun:
    """Open a run directory (with run.json) or a field file.

    A field file inside a run (``RUN/field/semantic_field.pt``) uses that run's record. The
    scene is the run's unless ``scene_path`` is given; without either there is no scene (3D
    queries still work). The field backend and the device are the run's unless ``backend`` or
    ``device`` name others.
    """
    from cclgs_core.datasets import load_scene
    from cclgs_core.stages.query import load_query_engine

    path = Path(path)
    info, run_dir = None, None
    if path.is_dir():
        info, run_dir = read_run_info(path), path
        field_path = path / info.field
    elif path.is_file():
        field_path = path
        parent = path.parent.parent
        if (parent / RUN_FILE).is_file():
            candidate = read_run_info(parent)
            if (parent / candidate.field).resolve() == path.resolve():
                info, run_dir = candidate, parent
    else:
        raise DataError(
            f"{path}: no such run directory or field file; pass the run folder of `cclgs train` (default SCENE/cclgs)"
        )
    if backend is not None:
        backend_name, backend_options = backend, {}
    elif info is not None:
        backend_name, backend_options = info.field_backend["name"], info.field_backend.get("options", {})
    else:
        backend_name, backend_options = "torch", {}
    device_name = device or (info.device if info is not None else "auto")
    engine = load_query_engine(field_path, backend_name, registry, backend_options, device_name)
    scene = None
    if scene_path is not None:
        scene = load_scene(scene_path, downscale=downscale or 1)
    elif info is not None:
        scene = apply_protocol(load_scene(Path(info.scene), downscale=downscale or info.downscale), info.protocol)
    return OpenedRun(engine, field_path, info, scene, run_dir)
