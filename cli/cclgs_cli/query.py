"""``cclgs query``: open-vocabulary queries against a trained field, as PNGs and a 3DGS .ply."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def query(
    run: Path = typer.Argument(
        ..., help="Run directory of `cclgs train` (default SCENE/cclgs) or a semantic_field.pt."
    ),
    text: list[str] = typer.Option(..., "--text", "-t", help="Text query, repeatable."),
    view: list[str] = typer.Option([], "--view", help="Frame name to render (e.g. frame_00003), repeatable."),
    all_views: bool = typer.Option(False, "--all", help="Every frame of --split."),
    split: str = typer.Option(
        "auto",
        help="Split the views are taken from: train, test, or auto: the first test view, or, when the scene has "
        "no test split, every 8th training view (the views nerfstudio holds out).",
    ),
    threshold: float = typer.Option(
        0.5, help="Relevance above which a pixel (or Gaussian) is selected; 0.5 = no better than 'object'."
    ),
    export_ply: Optional[Path] = typer.Option(
        None, "--export-ply", help="Write the Gaussians the (single) query selects as a 3DGS .ply."
    ),
    out: Optional[Path] = typer.Option(None, help="Output folder for the PNGs (default: RUN/queries)."),
    scene: Optional[Path] = typer.Option(None, help="Scene to render (default: the run's, from run.json)."),
    backend: Optional[str] = typer.Option(None, help="Field backend to render with (default: the run's)."),
) -> None:
    """Relevance heatmaps and masks of text queries in chosen views (the level with the highest peak), and
    optionally the selected Gaussians as a .ply any 3DGS viewer opens."""
    from cclgs_cli.progress import progress_bar
    from cclgs_core.errors import ConfigError, DataError
    from cclgs_core.query import answer_in_views, choose_frames, export_selection
    from cclgs_core.runs import open_run

    if export_ply is not None and len(text) != 1:
        raise ConfigError("--export-ply selects the Gaussians of one query; pass a single --text")
    opened = open_run(run, scene_path=scene, backend=backend)
    if view or all_views or export_ply is None:
        if opened.scene is None:
            raise DataError(f"{run} is a field file outside a run; pass --scene SCENE to render views")
        frames, chosen = choose_frames(opened.scene, view, all_views, split)
        typer.echo(f"querying {chosen}: {', '.join(frame.name for frame in frames)}")
        out_dir = out or opened.output_dir / "queries"
        with progress_bar() as progress:
            answers = answer_in_views(opened.engine, frames, text, out_dir, threshold, progress)
        for answer in answers:
            typer.echo(
                f"{answer.frame}  {answer.text!r}: level {answer.level}, peak {answer.peak:.3f}, "
                f"mask {answer.coverage:.1%} of the view -> {out_dir / answer.relevance_png}"
            )
    if export_ply is not None:
        count, level = export_selection(opened.engine, text[0], export_ply, threshold)
        typer.echo(
            f"{count} of {len(opened.engine.gaussians)} Gaussians selected for {text[0]!r} (level {level}) -> "
            f"{export_ply}"
        )
