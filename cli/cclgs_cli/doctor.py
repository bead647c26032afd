"""``cclgs doctor``: can this machine run cclgs, and a given run config?

It reports versions, the devices torch sees, the CUDA toolkit and gsplat's compiled extension,
broken plugins, and with ``-c`` builds every configured component and calls its ``load()``
(checkpoints, weights, devices).
It never compiles anything: gsplat's extension is judged from its files (``cclgs_gsplat.extension``).
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Optional

import typer

#: Distributions whose versions are reported (pip names).
REPORTED_DISTRIBUTIONS = ("torch", "gsplat", "nerfstudio", "segment-anything", "sam2", "open_clip_torch")


class Report:
    """Lines to print, and the problems that stop a run, each with one line of advice."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.problems: list[str] = []

    def say(self, line: str) -> None:
        self.lines.append(line)

    def problem(self, line: str, advice: str) -> None:
        self.lines.append(line)
        self.problems.append(advice)


def doctor(
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Run config to check: every component is built and its weights loaded."
    ),
    override: list[str] = typer.Option([], "--set", help="Override as section.key=value, repeatable."),
) -> None:
    """Check this machine (versions, devices, CUDA toolkit, gsplat's extension, plugins) and, with -c, that
    a run config can run here. Exit 0 when it can, 2 otherwise. Never builds anything."""
    report = Report()
    _environment(report)
    _plugins(report)
    if config is not None or override:
        _run_config(report, config, override)
    else:
        _run_device(report, "auto")
    typer.echo("\n".join(report.lines))
    if report.problems:
        typer.echo("\nto fix:")
        typer.echo("\n".join(f"- {advice}" for advice in report.problems))
        typer.echo(f"not ready: {len(report.problems)} problem(s)")
        raise typer.Exit(2)
    typer.echo("ready" + (f": {config} can run here" if config is not None else ""))


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _environment(report: Report) -> None:
    import torch

    from cclgs_core import __version__

    report.say(f"cclgs {__version__}, Python {platform.python_version()}")
    report.say(", ".join(f"{name} {_version(name)}" for name in REPORTED_DISTRIBUTIONS))
    built_with = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
    if torch.cuda.is_available():
        devices = ", ".join(
            f"cuda:{index} {torch.cuda.get_device_name(index)} (compute {'.'.join(map(str, capability))})"
            for index in range(torch.cuda.device_count())
            for capability in [torch.cuda.get_device_capability(index)]
        )
        report.say(f"torch built with {built_with}; devices: {devices}")
    else:
        report.say(f"torch built with {built_with}; no CUDA device visible")
    _cuda_toolkit(report, torch.version.cuda)
    _gsplat_extension(report)


def _cuda_toolkit(report: Report, torch_cuda: str | None) -> None:
    from cclgs_gsplat.toolkit import find_toolkits, matching_toolkit

    toolkits = find_toolkits()
    if not toolkits:
        report.say("CUDA toolkit: none found (needed only to build gsplat's extension; `make gpu-setup` installs one)")
        return
    match = matching_toolkit(torch_cuda)
    found = ", ".join(f"nvcc {toolkit.version} at {toolkit.home}" for toolkit in toolkits)
    verdict = f"matches torch's CUDA {torch_cuda}" if match else f"none matches torch's CUDA {torch_cuda}"
    report.say(f"CUDA toolkit: {found} ({verdict})")


def _gsplat_extension(report: Report) -> None:
    from cclgs_gsplat.extension import extension_status

    status = extension_status()
    report.say(f"gsplat extension: {'ready, ' if status.ready else ''}{status.detail}")


def _plugins(report: Report) -> None:
    from cclgs_core.plumbing.registry import get_registry

    registry = get_registry()
    broken = [plugin for plugin in registry.plugins() if plugin.status == "broken"]
    report.say(f"plugins: {len(registry.components())} components from {len(registry.plugins())} plugins")
    for plugin in broken:
        report.problem(
            f"plugin {plugin.name} ({plugin.distribution}) is broken: {plugin.reason}",
            f"reinstall or remove {plugin.distribution}, or skip it with CCLGS_DISABLE_PLUGINS={plugin.name}",
        )


def _run_config(report: Report, config: Optional[Path], override: list[str]) -> None:
    from cclgs_core.errors import CclgsError
    from cclgs_core.plumbing.config import load_config

    try:
        run_config = load_config(config, override)
        run_config.validate()
    except CclgsError as error:
        report.problem(f"config {config}: does not load", str(error))
        return
    _run_device(report, run_config.device)
    report.say(f"config {run_config.source}:")
    for kind, choice in run_config.components.items():
        try:
            component = run_config.create(kind)
        except CclgsError as error:
            report.problem(f"  [{kind}] {choice.name}: does not build", f"[{kind}] {error}")
            continue
        try:
            if hasattr(component, "load"):
                component.load()
        except CclgsError as error:
            report.problem(f"  [{kind}] {choice.name}: does not load", f"[{kind}] {error}")
            continue
        report.say(f"  [{kind}] {choice.name}: ready")


def _run_device(report: Report, name: str) -> None:
    from cclgs_core.errors import ConfigError
    from cclgs_core.helpers.devices import resolve_device

    try:
        report.say(f"device a run uses: {resolve_device(name)} (device = {name})")
    except ConfigError as error:
        report.problem(f"device a run uses: none (device = {name})", str(error))
