"""``cclgs synth``: generate a synthetic benchmark world (a simulation with exact ground truth)."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Argument(..., help="Directory to write the world into (absent or empty)."),
    seed: int = typer.Option(0, help="Random seed; the same seed and options give identical files."),
    objects: int = typer.Option(6, help="Distinct object classes on the table (half of them have parts)."),
    duplicates: int = typer.Option(1, help="Extra instances of already chosen classes."),
    width: int = typer.Option(128, help="Image width in pixels."),
    height: int = typer.Option(128, help="Image height in pixels."),
    train_views: int = typer.Option(30, help="Training views."),
    test_views: int = typer.Option(8, help="Held-out test views (with LERF-OVS style label files)."),
    cameras: str = typer.Option("orbit", help="Camera path: 'orbit' or 'hemisphere'."),
    fov_degrees: float = typer.Option(45.0, help="Horizontal field of view in degrees."),
    density: float = typer.Option(800.0, help="Gaussians per unit of surface area."),
    renderer: str = typer.Option("torch", help="Field backend (as listed by `cclgs plugins`) that renders the views."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing synthetic world in OUT."),
) -> None:
    """Generate a synthetic world: Gaussians of named objects on a table, posed views, RGB, depth,
    instance/part/class maps, classes.json and LERF-OVS style labels, in nerfstudio format."""
    import json

    from cclgs_cli.progress import progress_bar
    from cclgs_synthetic.world import generate_world

    with progress_bar() as progress:
        root = generate_world(
            out,
            seed=seed,
            objects=objects,
            duplicates=duplicates,
            width=width,
            height=height,
            train_views=train_views,
            test_views=test_views,
            cameras=cameras,
            fov_degrees=fov_degrees,
            density=density,
            renderer=renderer,
            overwrite=overwrite,
            progress=lambda done, total: progress("rendering views", done, total),
        )
    world = json.loads((root / "world.json").read_text())
    classes = json.loads((root / "classes.json").read_text())
    typer.echo(
        f"wrote a synthetic world (a simulation) to {root}: {train_views} train + {test_views} test views, "
        f"{world['gaussians']} Gaussians, {len(classes['instances'])} instances of {len(classes['classes'])} classes"
    )
