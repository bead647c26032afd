"""``cclgs query``: open-vocabulary queries against a trained field, as PNGs and a 3DGS .ply."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def query(
    run: Path = typer.Argument(..., help="Run directory of `cclgs train` (default SCENE/cclgs) or a semantic_field.pt."),
    text: list[str] = typer.Option(..., "--text", "-t", help="Text query, repeatable."),
    view: list[str] = typer.Option([], "--view", help="Frame name to render (e.g. frame_00003), repeatable."),
    all_views: bool = typer.Option(False, "--all", help="Every frame of --split."),
    split: str = typer.Option("test", help="Split the views are taken from: train or test."),
    threshold: float = typer.Option(0.5, help="Relevance above which a pixel (or Gaussian) is selected; 0.5 = no better than 'object'."),
    export_ply: Optional[Path] = typer.Option(None, "--export-ply", help="Write the Gaussians the (single) query selects as a 3DGS .ply."),
    out: Optional[Path] = typer.Option(None, help="Output folder for the PNGs (default: RUN/queries)."),
    scene: Optional[Path] = typer.Option(None, help="Scene to render (default: the run's, from run.json)."),
    backend: Optional[str] = typer.Option(None, help="Field backend to render with (default: the run's)."),
) -> None:
    """Relevance heatmaps and masks of text queries in chosen views (the level with the highest peak), and
    optionally the selected Gaussians as a .ply any 3DGS viewer opens."""
    import json

    from cclgs_core.errors import ConfigError, DataError
    from cclgs_core.query import answer_in_views, export_selection
    from cclgs_core.runs import open_run

    if split not in ("train", "test"):
        raise ConfigError(f"--split must be train or test, got {split!r}")
    if export_ply is not None and len(text) != 1:
        raise ConfigError("--export-ply selects the Gaussians of one query; pass a single --text")
    opened = open_run(run, scene_path=scene, backend=backend)
    wants_views = bool(view) or all_views or export_ply is None
    if wants_views:
        if opened.scene is None:
            raise DataError(f"{run} is a field file outside a run; pass --scene SCENE to render views")
        frames = _choose_frames(opened.scene, view, all_views, split)
        out_dir = out or (run if run.is_dir() else run.parent) / "queries"
        answers = answer_in_views(opened.engine, frames, text, out_dir, threshold)
        (out_dir / "query.json").write_text(json.dumps({"threshold": threshold, "answers": [a.__dict__ for a in answers]}, indent=2))
        for answer in answers:
            typer.echo(
                f"{answer.frame}  {answer.text!r}: level {answer.level}, peak {answer.peak:.3f}, "
                f"mask {answer.coverage:.1%} of the view -> {out_dir / answer.relevance_png}"
            )
    if export_ply is not None:
        count, level = export_selection(opened.engine, text[0], export_ply, threshold)
        typer.echo(f"{count} of {len(opened.engine.gaussians)} Gaussians selected for {text[0]!r} (level {level}) -> {export_ply}")


def _choose_frames(scene, names: list[str], all_views: bool, split: str) -> list:
    """The frames named (any split), every frame of ``split``, or the first frame of ``split``."""
    from cclgs_core.errors import DataError

    if names:
        by_name = {frame.name: frame for frame in scene.frames}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            sample = ", ".join(sorted(by_name)[:5])
            raise DataError(f"{scene.root}: no frame named {unknown[0]!r}; frame names look like {sample}")
        return [by_name[name] for name in names]
    frames = scene.split(split)
    if not frames:
        other = "train" if split == "test" else "test"
        raise DataError(f"{scene.root}: the scene has no {split} frames; pass --split {other} or --view NAME")
    return frames if all_views else frames[:1]
