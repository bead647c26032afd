"""``cclgs demo``: the synthetic benchmark end to end on a CPU (CCL vs codebook vs autoencoder)."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("cclgs_demo"), help="Folder for the world, runs and reports."),
    seed: int = typer.Option(0, help="Seed of the world, the simulation and the training."),
    size: int = typer.Option(96, help="Image width and height of the synthetic views."),
    iterations: int = typer.Option(1500, help="Semantic-field training steps per method."),
) -> None:
    """Generate a synthetic world, preprocess, train the field on the CPU with CCL, the plain
    codebook and LangSplat's autoencoder, and compare them on held-out views."""
    from cclgs_cli.demo_runs import run_demo
    from cclgs_cli.progress import progress_bar

    typer.echo("cclgs demo on the synthetic benchmark (a simulation: simulated masks and vision-language features)")
    with progress_bar() as progress:
        results, summary = run_demo(out, seed=seed, size=size, iterations=iterations, progress=progress)
    typer.echo("\nheld-out views (protocol: heldout), a simulation")
    typer.echo(f"{'method':12} {'mIoU %':>7} {'localization %':>15}")
    for result in results:
        localization = f"{100 * result.localization:.1f}" if result.localization is not None else "n/a"
        typer.echo(f"{result.method:12} {100 * result.miou:7.1f} {localization:>15}")
    typer.echo(f"\nsummary: {summary}\nreports and pictures: {out / 'reports'}")
