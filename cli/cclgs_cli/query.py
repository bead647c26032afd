"""``cclgs query``: open-vocabulary queries against a trained field, as PNGs and a 3DGS .ply."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def query(
    run: Path = typer.Argument(
        ..., help="Run directory of `cclgs train` (default SCENE/cclgs) or a semantic_field.pt."
    ),
    text: list[str] = typer.Option([], "--text", "-t", help="Text query, repeatable."),
    exemplar_view: Optional[str] = typer.Option(
        None, help="Query by example: the frame the example region is in (with one of the three below)."
    ),
    exemplar_box: Optional[str] = typer.Option(None, help="Example region as a box x0,y0,x1,y1 in pixels."),
    exemplar_point: Optional[str] = typer.Option(
        None, help="Example region picked by a point x,y: the pixels the field decodes like it."
    ),
    exemplar_mask: Optional[Path] = typer.Option(
        None, help="Example region as a mask image of the view's size (non-zero pixels)."
    ),
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
    """Relevance heatmaps and masks of text queries, or of one query by example (a region of one view), in
    chosen views (the level with the highest peak), and optionally the Gaussians a text selects as a .ply any
    3DGS viewer opens."""
    from cclgs_cli.progress import progress_bar
    from cclgs_core.errors import ConfigError, DataError
    from cclgs_core.stages.query import answer_in_views, choose_frames, export_selection
    from cclgs_core.stages.runs import open_run

    exemplar_options = [exemplar_box, exemplar_point, exemplar_mask]
    asked_exemplar = exemplar_view is not None or any(option is not None for option in exemplar_options)
    if bool(text) == asked_exemplar:
        raise ConfigError("pass either --text (repeatable) or one query by example (--exemplar-view and a region)")
    if export_ply is not None and len(text) != 1:
        raise ConfigError("--export-ply selects the Gaussians of one text query; pass a single --text")
    opened = open_run(run, scene_path=scene, backend=backend)
    queries = None
    if asked_exemplar:
        label, queries = _exemplar(opened, exemplar_view, exemplar_box, exemplar_point, exemplar_mask)
        text = [label]
    if view or all_views or export_ply is None:
        if opened.scene is None:
            raise DataError(f"{run} is a field file outside a run; pass --scene SCENE to render views")
        frames, chosen = choose_frames(opened.scene, view, all_views, split)
        typer.echo(f"querying {chosen}: {', '.join(frame.name for frame in frames)}")
        out_dir = out or opened.output_dir / "queries"
        with progress_bar() as progress:
            answers = answer_in_views(opened.engine, frames, text, out_dir, threshold, progress, queries)
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


def _exemplar(opened, view: Optional[str], box: Optional[str], point: Optional[str], mask: Optional[Path]):
    """(label, per-level query embeddings) of the query by example the options describe."""
    import numpy as np

    from cclgs_core.errors import ConfigError, DataError
    from cclgs_core.stages.query import choose_frames

    given = [name for name, value in (("box", box), ("point", point), ("mask", mask)) if value is not None]
    if view is None or len(given) != 1:
        raise ConfigError(
            "a query by example needs --exemplar-view NAME and exactly one of --exemplar-box, --exemplar-point, "
            "--exemplar-mask"
        )
    if opened.scene is None:
        raise DataError("a query by example needs the run's scene; pass --scene SCENE")
    frame = choose_frames(opened.scene, [view])[0][0]
    width, height = frame.camera.width, frame.camera.height
    if point is not None:
        x, y = _integers(point, 2, "--exemplar-point", "x,y")
        return f"example: point {x},{y} in {view}", opened.engine.exemplar_query(frame.camera, point=(x, y))
    if box is not None:
        x0, y0, x1, y1 = _integers(box, 4, "--exemplar-box", "x0,y0,x1,y1")
        region = np.zeros((height, width), dtype=bool)
        region[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
        label = f"example: box {x0},{y0},{x1},{y1} in {view}"
    else:
        region = _mask_file(mask, width, height)
        label = f"example: mask {mask.name} in {view}"
    return label, opened.engine.exemplar_query(frame.camera, region=region)


def _integers(text: str, count: int, option: str, form: str) -> list[int]:
    from cclgs_core.errors import ConfigError

    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise ConfigError(f"{option} {text!r}: give {form} in pixels")
    return values


def _mask_file(path: Path, width: int, height: int):
    """(H, W) bool: the non-zero pixels of a mask image, which must have the view's size."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from cclgs_core.errors import DataError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"))
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"{path}: not a readable mask image ({error}); give a PNG of the view's size") from None
    if pixels.shape != (height, width):
        raise DataError(f"{path}: mask of {pixels.shape[1]}x{pixels.shape[0]} pixels, the view is {width}x{height}")
    return pixels > 0
