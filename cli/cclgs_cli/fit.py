"""``cclgs fit``: fit RGB 3D Gaussians to posed images on the CPU (or any device the backend uses)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer


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
) -> None:
    """Fit RGB 3DGS from posed images, starting from the scene's sparse points or random points, with
    densification."""
    from cclgs_cli.progress import progress_bar
    from cclgs_core.datasets import load_points, load_scene
    from cclgs_core.errors import ConfigError
    from cclgs_core.plumbing.registry import get_registry
    from cclgs_core.scene.ply import write_gaussians
    from cclgs_core.stages.geometry_fit import FitConfig, evaluate, fit_geometry, random_initialisation

    try:
        colour = tuple(float(value) for value in background.split(","))
    except ValueError:
        colour = ()
    if len(colour) != 3 or not all(0.0 <= value <= 1.0 for value in colour):
        raise ConfigError(f"--background {background!r}: give r,g,b in [0, 1], e.g. 1,1,1 for white")
    loaded = load_scene(scene, downscale=downscale)
    if init is InitialPoints.points or (init is InitialPoints.auto and loaded.points_path is not None):
        points, colours = load_points(loaded)
    else:
        points, colours = random_initialisation(loaded, random_points, seed)
        typer.echo(f"starting from {random_points} random points (no sparse points used)")
    config = FitConfig(
        steps=steps, max_seconds=max_seconds, backend=backend, background=colour, seed=seed, device=device
    )
    with progress_bar() as progress:

        def on_step(entry: dict[str, float]) -> None:
            status = f"PSNR {entry['psnr']:.1f} dB, {int(entry['gaussians'])} Gaussians"
            progress("fitting", int(entry["step"]), steps, status)

        result = fit_geometry(loaded, points, colours, config, on_step=on_step)
    destination = out or scene / "cclgs" / "fitted_gaussians.ply"
    destination.parent.mkdir(parents=True, exist_ok=True)
    write_gaussians(destination, result.gaussians)
    typer.echo(f"{len(result.gaussians)} Gaussians written to {destination}")
    if loaded.split("test"):
        renderer = get_registry().create("field_backend", backend)
        scores = evaluate(renderer, result.gaussians, loaded.split("test"), colour)
        typer.echo(
            f"held-out PSNR: mean {sum(scores) / len(scores):.2f} dB, min {min(scores):.2f} dB over {len(scores)} "
            "test views"
        )
