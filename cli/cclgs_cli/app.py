"""The ``cclgs`` command line. Heavy modules are imported inside the commands that need them."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from cclgs_cli.demo import demo
from cclgs_cli.doctor import doctor
from cclgs_cli.evaluate import eval_app
from cclgs_cli.fit import fit
from cclgs_cli.query import query
from cclgs_cli.synth import synth
from cclgs_core.plumbing.ranks import DEFAULT_TIMEOUT_S, launched_ranks

app = typer.Typer(
    name="cclgs",
    help="3D language fields on Gaussian splats (CCL-LGS): preprocess, train, query, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
plugins_app = typer.Typer(help="List installed plugins, or check one against its contract suite.")
app.add_typer(plugins_app, name="plugins")
app.command("demo")(demo)
app.command("synth")(synth)
app.command("fit")(fit)
app.command("query")(query)
app.command("doctor")(doctor)
app.add_typer(eval_app, name="eval")

_PROTOCOL_HELP = (
    "Evaluation protocol: 'heldout' keeps the benchmark's labelled frames out of training; 'langsplat' trains "
    "on them too, as LangSplat's LERF-OVS code does. Recorded in RUN/run.json and named by `cclgs eval`."
)


_RUN_HELP = (
    "Run directory for the cache and results [default: SCENE/cclgs]. Under torchrun write --run-dir: torchrun "
    "takes --run for its own --run-path."
)


class _State:
    debug = False


def _version(value: bool) -> None:
    if value:
        from cclgs_core import __version__

        typer.echo(f"cclgs {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    context: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    strict_plugins: bool = typer.Option(
        False, "--strict-plugins", help="Fail on any broken plugin instead of skipping it."
    ),
) -> None:
    _State.debug = debug
    if strict_plugins:
        os.environ["CCLGS_STRICT_PLUGINS"] = "1"
    if launched_ranks() > 1 and context.invoked_subcommand != "preprocess":
        from cclgs_core.errors import LaunchError

        raise LaunchError(
            f"`cclgs {context.invoked_subcommand}` runs as one process, and torchrun started {launched_ranks()}: "
            "only `preprocess` shards its images over processes (tracking, compression and training each need all "
            "frames at once). Run `torchrun ... -m cclgs_cli preprocess ...` first, then this command without "
            "torchrun; it reads the sharded results from the run directory",
            every_rank=True,
        )


@plugins_app.callback(invoke_without_command=True)
def plugins_list(ctx: typer.Context) -> None:
    """Every plugin with its components, providing package, version and status."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from cclgs_core.interfaces import KINDS
    from cclgs_core.plumbing.registry import get_registry

    registry = get_registry()
    table = Table(title="cclgs components")
    for column in ("kind", "name", "plugin", "package", "status"):
        table.add_column(column)
    conflicts = registry.conflicts()
    for kind in KINDS:
        components = registry.components(kind)
        if not components:
            table.add_row(kind, "-", "", "", "[yellow]none installed[/]")
        for component in components:
            plugin = component.plugin
            table.add_row(kind, component.name, plugin.name, f"{plugin.distribution} {plugin.version}", "[green]ok[/]")
    for (kind, name), message in sorted(conflicts.items()):
        table.add_row(kind, name, "", "", f"[red]conflict[/]: {message}")
    for plugin in registry.plugins():
        if plugin.status != "ok":
            colour = "red" if plugin.status == "broken" else "yellow"
            table.add_row(
                "",
                "",
                plugin.name,
                f"{plugin.distribution} {plugin.version}",
                f"[{colour}]{plugin.status}[/]: {plugin.reason}",
            )
    Console(width=max(100, Console().width)).print(table)


@plugins_app.command("check")
def plugins_check(
    name: str = typer.Argument(..., help="Component name, as listed by `cclgs plugins`."),
    kind: Optional[str] = typer.Option(None, help="Component kind, when the name exists for several kinds."),
    option: list[str] = typer.Option([], "--set", help="Component option as key=value (TOML value), repeatable."),
) -> None:
    """Run the contract suite of the component's kind against an installed component."""
    from cclgs_cli.contract import run_contract

    raise typer.Exit(run_contract(name, kind, option))


@app.command("config")
def config_show(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML run config."),
    override: list[str] = typer.Option([], "--set", help="Override as section.key=value, repeatable."),
) -> None:
    """Check a run config against the installed plugins (every component is built, so that its value
    rules run) and print it with every default filled in; options without a value are listed as comments."""
    import tomli_w

    from cclgs_core.plumbing.config import load_config

    run_config = load_config(config, override)
    run_config.check_values()
    resolved = run_config.resolved()
    unset = run_config.unset_options()
    sections = [tomli_w.dumps({key: value for key, value in resolved.items() if key not in unset})]
    for kind, names in unset.items():
        lines = [tomli_w.dumps({kind: resolved[kind]}).rstrip("\n")]
        lines += [f"# {name} = ...  (unset)" for name in names]
        sections.append("\n".join(lines) + "\n")
    typer.echo("\n".join(sections))


@app.command("preprocess")
def preprocess(
    scene: Path = typer.Argument(
        ..., help="Scene folder (nerfstudio transforms.json, COLMAP sparse/0 or LERF-OVS layout)."
    ),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML run config."),
    override: list[str] = typer.Option([], "--set", help="Override as section.key=value, repeatable."),
    run: Optional[Path] = typer.Option(None, "--run", "--run-dir", help=_RUN_HELP),
    downscale: int = typer.Option(1, help="Divide image resolution by this factor."),
    protocol: str = typer.Option("heldout", help=_PROTOCOL_HELP),
    rank_timeout: float = typer.Option(
        DEFAULT_TIMEOUT_S, help="Under torchrun: seconds a rank waits for the others, to connect or to finish."
    ),
) -> None:
    """Two-level masks and per-mask features for every training image, cached and resumable.

    Launched by torchrun (`torchrun --nproc_per_node N -m cclgs_cli preprocess ...`), each process
    computes its share of the images into the run directory, which every process must see."""
    from cclgs_cli.progress import progress_bar
    from cclgs_core.datasets import load_scene
    from cclgs_core.plumbing.config import load_config
    from cclgs_core.plumbing.ranks import join_launch
    from cclgs_core.stages.pipeline import no_progress, run_preprocess
    from cclgs_core.stages.runs import apply_protocol

    run_config = load_config(config, override)
    loaded = apply_protocol(load_scene(scene, downscale=downscale), protocol)
    run_dir = run or scene / "cclgs"
    launch = join_launch(rank_timeout)
    # Under torchrun, rank 0 alone shows its progress (the shares are even) and reports.
    quiet = launch is not None and not launch.coordinator
    try:
        with contextlib.nullcontext(no_progress) if quiet else progress_bar() as progress:
            result = run_preprocess(loaded, run_config, run_dir, progress=progress, launch=launch)
    finally:
        if launch is not None:
            launch.close()
    if quiet:
        return
    typer.echo(
        f"{len(result.frames)} frames: masks computed for {result.computed_masks}, "
        f"features for {result.computed_features} (the rest were cached)\n"
        f"masks:    {result.masks.path}\nfeatures: {result.features.path}\npreviews: {run_dir / 'previews' / 'masks'}"
    )


@app.command("train")
def train(
    scene: Path = typer.Argument(
        ..., help="Scene folder (nerfstudio transforms.json, COLMAP sparse/0 or LERF-OVS layout)."
    ),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML run config."),
    override: list[str] = typer.Option([], "--set", help="Override as section.key=value, repeatable."),
    run: Optional[Path] = typer.Option(None, "--run", "--run-dir", help=_RUN_HELP),
    gaussians: Optional[Path] = typer.Option(
        None, help="3DGS .ply to train on [default: the scene's gaussians_file_path]."
    ),
    downscale: int = typer.Option(1, help="Divide image resolution by this factor."),
    protocol: str = typer.Option("heldout", help=_PROTOCOL_HELP),
) -> None:
    """Train the semantic field on frozen Gaussians (preprocessing runs first where not cached)."""
    from cclgs_cli.progress import progress_bar
    from cclgs_core.plumbing.config import load_config
    from cclgs_core.stages.runs import RUN_FILE, train_and_record_run

    run_config = load_config(config, override)
    run_dir = run or (scene.parent if scene.suffix == ".json" else scene) / "cclgs"
    with progress_bar() as progress:
        result, info = train_and_record_run(
            scene, run_config, run_dir, downscale, protocol, gaussians, progress=progress
        )
    final = result.log.accuracy[-1] if result.log.accuracy else {}
    accuracy = ", ".join(f"{level} {value:.1%}" for level, value in final.items())
    typer.echo(f"loss {result.log.losses[-1]:.4f}; target accuracy on the last view: {accuracy or 'n/a'}")
    typer.echo(
        f"field: {result.field_path} (on {result.gaussians_path})\n"
        f"run:   {run_dir / RUN_FILE} (protocol {info.protocol}: {len(info.trained_frames)} training frames, "
        f"{len(info.evaluation_frames)} evaluation frames)"
    )


def main() -> None:
    """Entry point: user errors, and files the system refuses (a full disk, no permission), print one
    message and exit with code 2 (tracebacks with --debug)."""
    from cclgs_core.errors import CclgsError, LaunchError, storage_error

    previous_sigterm = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        app()
    except SystemExit as exit:  # typer turns Ctrl-C into exit 130: find the interruption behind it
        stop = _interruption_behind(exit)
        if stop is None:
            raise
        sys.exit(_report_stop(stop))
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM through _stop_on_sigterm, outside typer
        sys.exit(_report_stop(stop))
    except (CclgsError, OSError) as error:
        if _State.debug or os.environ.get("CCLGS_DEBUG"):
            raise
        message = str(error if isinstance(error, CclgsError) else storage_error(error))
        if launched_ranks() > 1:  # under torchrun
            if isinstance(error, LaunchError) and error.every_rank and os.environ.get("RANK") != "0":
                sys.exit(2)  # every rank found the same; rank 0 says it
            if not isinstance(error, LaunchError):  # a launch error names its rank already
                message = f"rank {os.environ.get('RANK')} of {launched_ranks()}: {message}"
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as after Ctrl-C."""


def _stop_on_sigterm(signal_number: int, frame: object) -> None:
    raise _Terminated()


def _interruption_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt in the chain of exceptions that led to ``error``, if any."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, KeyboardInterrupt):
        cause = cause.__cause__ or cause.__context__
    return cause


def _report_stop(stop: KeyboardInterrupt) -> int:
    """Print one line on a stop: where, what is saved (the stages' notes on ``stop``), how to
    resume; return the shell's exit status for the signal (130 for SIGINT, 143 for SIGTERM)."""
    from cclgs_cli.progress import where_stopped
    from cclgs_core.errors import STARTS_OVER

    name, status = ("SIGTERM", 143) if isinstance(stop, _Terminated) else ("Ctrl-C (SIGINT)", 130)
    notes = getattr(stop, "__notes__", [])
    saved = "; ".join(notes) or "every stage finished before it, in the run directory"
    resume = (
        "" if any(note.endswith(STARTS_OVER) for note in notes) else " Run the same command again to resume from there."
    )
    typer.secho(
        f"stopped by {name} during {where_stopped()}. Saved: {saved}.{resume}",
        fg=typer.colors.YELLOW,
        err=True,
    )
    return status


if __name__ == "__main__":
    main()
