"""``cclgs fit``: fit RGB 3D Gaussians to posed images on the CPU (or any device the backend uses)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from cclgs_core.errors import STARTS_OVER


class InitialPoints(str, Enum):
    """Where ``cclgs fit`` starts its Gaussians."""

    auto = "auto"
    points = "points"
    random = "random"


def fit(
    scene: Path = typer.Argument(
        ..., help="Scene folder with posed images (transforms files or COLMAP), with or without sparse points."
    ),
    out: Optional[Path] = typer.Option(
        None, help="Where to write the fitted 3DGS .ply [default: SCENE/cclgs/fitted_gaussians.ply]."
    ),
    steps: int = typer.Option(3000, help="Optimisation steps."),
    max_seconds: float = typer.Option(0.0, help="Time budget in seconds (0: none)."),
    backend: str = typer.Option("torch", help="Differentiable field backend that renders the views."),
    background: str = typer.Option("0,0,0", help="Background colour behind the Gaussians as r,g,b in [0, 1]."),
    downscale: int = typer.Option(1, help="Divide image resolution by this factor."),
    seed: int = typer.Option(0, help="Random seed."),
    init: InitialPoints = typer.Option(
        InitialPoints.auto,
        help="Where the Gaussians start: the scene's sparse points, random points (splatfacto's random "
        "initialisation, inside the scene's aabb_scale box when it states one), or auto: points when the scene "
        "has them, else random.",
    ),
    random_points: int = typer.Option(50_000, help="How many random points --init random starts from."),
    device: str = typer.Option("auto", help="Device: auto (CUDA when available, else the CPU), cpu, cuda or cuda:N."),
    holdout_every: int = typer.Option(
        8,
        help="When the scene has no test views, hold out every Nth view (frames 0, N, 2N, ...), as nerfstudio "
        "does, and report their PSNR as the fit goes (0: fit on every view).",
    ),
    heldout_every_seconds: float = typer.Option(60.0, help="Evaluate the held-out views every this many seconds."),
    coarse_to_fine: bool = typer.Option(
        True,
        help="Train at 1/4 of the resolution for the first 30% of the budget (--max-seconds, else --steps), 1/2 "
        "until 65%, then full; levels shorter than 64 px are skipped.",
    ),
) -> None:
    """Fit RGB 3DGS from posed images, starting from the scene's sparse points or random points, with
    densification."""
    from cclgs_cli.progress import progress_bar
    from cclgs_core.datasets import load_scene
    from cclgs_core.errors import ConfigError
    from cclgs_core.scene.ply import write_gaussians
    from cclgs_core.stages.geometry_fit import (
        FitConfig,
        coarse_to_fine_schedule,
        fit_geometry,
        hold_out_every,
        starting_points,
        write_fit_report,
    )

    try:
        colour = tuple(float(value) for value in background.split(","))
    except ValueError:
        colour = ()
    if len(colour) != 3 or not all(0.0 <= value <= 1.0 for value in colour):
        raise ConfigError(f"--background {background!r}: give r,g,b in [0, 1], e.g. 1,1,1 for white")
    loaded = hold_out_every(load_scene(scene, downscale=downscale), holdout_every)
    points, colours = starting_points(loaded, init.value, random_points, seed)
    if init is InitialPoints.random or loaded.points_path is None:  # (init points without points raised)
        typer.echo(f"starting from {random_points} random points (no sparse points used)")
    config = FitConfig(
        steps=steps,
        max_seconds=max_seconds,
        backend=backend,
        background=colour,
        seed=seed,
        device=device,
        heldout_every_seconds=heldout_every_seconds,
        resolution_schedule=coarse_to_fine_schedule(loaded.split("train")) if coarse_to_fine else ((0.0, 1.0),),
    )
    heldout_views = len(loaded.split("test"))
    latest_heldout = ""
    with progress_bar() as progress:

        def on_step(entry: dict[str, float]) -> None:
            status = f"PSNR {entry['psnr']:.1f} dB{latest_heldout}, {int(entry['gaussians'])} Gaussians"
            progress("fitting", int(entry["step"]), steps, status)

        def on_heldout(entry: dict[str, float]) -> None:
            nonlocal latest_heldout
            latest_heldout = f" (held-out {entry['heldout_psnr_db']:.1f} dB)"

        try:
            result = fit_geometry(loaded, points, colours, config, on_step=on_step, on_heldout=on_heldout)
        except KeyboardInterrupt as stop:
            stop.add_note(f"nothing: `cclgs fit` keeps no checkpoint, so it {STARTS_OVER}")
            raise
    destination = out or scene / "cclgs" / "fitted_gaussians.ply"
    destination.parent.mkdir(parents=True, exist_ok=True)
    write_gaussians(destination, result.gaussians)
    report = write_fit_report(destination.with_name(destination.stem + "_fit.json"), result, config, loaded)
    typer.echo(f"{len(result.gaussians)} Gaussians written to {destination}; report: {report}")
    if result.heldout:
        curve = ", ".join(f"{entry['seconds']:.0f} s: {entry['heldout_psnr_db']:.2f} dB" for entry in result.heldout)
        typer.echo(f"held-out PSNR over {heldout_views} views: {curve}")
