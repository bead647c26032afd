"""``cclgs eval lerf|3dovs|synthetic RUN...``: benchmark reports on screen, in JSON and markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

eval_app = typer.Typer(
    help="Evaluate trained runs on a benchmark; the report (screen, report.json, report.md with pictures) "
    "names its protocol.",
    no_args_is_help=True,
)

_RUNS = typer.Argument(..., help="Run directories of `cclgs train` (one per scene).")
_OUT = typer.Option(None, help="Report folder (default: cclgs_eval/<benchmark>_<protocol>).")
_BACKEND = typer.Option(None, help="Field backend to render with (default: each run's).")
_SCENE = typer.Option(
    [],
    "--scene",
    help="Evaluate against this copy of the scene instead of the run's (same cameras and frame names), one per run.",
)
_DOWNSCALE = typer.Option(
    None,
    help="Resolution divisor of --scene (default: the run's own downscale for its scene, else 1; 8 under "
    "3dovs-original).",
)
_PROTOCOL = typer.Option(
    "3dovs-original",
    help="3dovs-original: score as the 3D-OVS authors do (runs trained on every view, `cclgs train --protocol "
    "langsplat`; at 1/8; a class absent from truth and prediction scores 0). cclgs: the project's scoring (held-out "
    "runs too; at the run's resolution; absent classes skipped).",
)


#: Benchmark name -> the help of its command (the reports describe each protocol in full).
BENCHMARK_HELP = {
    "lerf": "LERF-OVS: mIoU and localization accuracy per scene and mean (LangSplat's evaluation; the protocol, "
    "held out or LangSplat's, is the one each run was trained with: `cclgs train --protocol`).",
    "3dovs": "3D-OVS: mIoU and pixel accuracy over each scene's class list, per scene and mean (the CCL-LGS paper "
    "leaves out 'room'); --protocol picks the authors' scoring or the project's.",
    "synthetic": "The synthetic world (a simulation): held-out views through the LERF-OVS evaluator.",
}


def _benchmark_command(benchmark: str):
    """The ``cclgs eval BENCHMARK`` command: every benchmark takes the same arguments, 3dovs also --protocol."""

    def evaluate(
        runs: list[Path] = _RUNS,
        out: Optional[Path] = _OUT,
        backend: Optional[str] = _BACKEND,
        scene: list[Path] = _SCENE,
        downscale: Optional[int] = _DOWNSCALE,
    ) -> None:
        _evaluate(benchmark, runs, out, backend, scene, downscale, "cclgs")

    def evaluate_3dovs(
        runs: list[Path] = _RUNS,
        out: Optional[Path] = _OUT,
        backend: Optional[str] = _BACKEND,
        scene: list[Path] = _SCENE,
        downscale: Optional[int] = _DOWNSCALE,
        protocol: str = _PROTOCOL,
    ) -> None:
        _evaluate(benchmark, runs, out, backend, scene, downscale, protocol)

    return evaluate_3dovs if benchmark == "3dovs" else evaluate


for _name, _help in BENCHMARK_HELP.items():
    eval_app.command(_name, help=_help)(_benchmark_command(_name))


def _evaluate(
    benchmark: str,
    runs: list[Path],
    out: Optional[Path],
    backend: Optional[str],
    scenes: list[Path],
    downscale: Optional[int],
    scoring: str,
) -> None:
    import shutil

    from cclgs_cli.progress import progress_bar
    from cclgs_core.evaluation.benchmarks import (
        check_benchmark,
        default_output_dir,
        evaluate_runs,
        report_protocol,
        write_report,
    )

    check_benchmark(benchmark, scoring)
    out_dir = out or default_output_dir(benchmark, report_protocol(runs, scoring))
    if (out_dir / "pictures").exists():
        shutil.rmtree(out_dir / "pictures")
    with progress_bar() as progress:
        report = evaluate_runs(
            runs,
            benchmark,
            out_dir,
            backend,
            progress=progress,
            scene_paths=scenes,
            downscale=downscale,
            scoring=scoring,
        )
    json_path, markdown_path = write_report(report, out_dir)
    _print_table(report)
    typer.echo(f"report: {markdown_path}\njson:   {json_path}")


def _print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    from cclgs_core.evaluation.benchmarks import extra_columns, percent

    extra = extra_columns(report)
    table = Table(title=f"{report.benchmark} — protocol: {report.protocol}", caption=report.protocol_description)
    for column in ("scene", "frames", "trained on", "mIoU %", *(f"{name} %" for name in extra)):
        table.add_column(column, justify="left" if column == "scene" else "right")
    for scene in report.scenes:
        row = [scene.name, str(scene.frames), str(scene.trained_on), percent(scene.miou)]
        table.add_row(*row, *(percent(getattr(scene, name)) for name in extra))
    table.add_row(
        "mean", "", "", percent(report.miou), *(percent(getattr(report, name)) for name in extra), style="bold"
    )
    Console(width=max(100, Console().width)).print(table)
