"""Shared test helpers: fake installed distributions for the plugin machinery, running the CLI in
process, and the ``ns-train ccl-lgs`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

#: A run config of the synthetic world with every source of simulated noise off (targets agree
#: across views) and a small, fast codebook.
NOISE_FREE_SYNTHETIC_CONFIG = """
seed = 0

[mask_generator]
name = "synthetic"
merge_prob = 0.0
split_prob = 0.0
boundary_prob = 0.0
drop_prob = 0.0
min_area = 4

[tracker]
name = "none"

[feature_extractor]
name = "simulated"
dim = 32
noise = 0.0
confusion_base = 0.0
confusion_occlusion = 0.0

[compressor]
name = "codebook"
num_prototypes = 16
steps = 60
head_hidden = 32
"""


def make_distribution(root: Path, dist_name: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
    """Write an installed-looking distribution into ``root`` (a sys.path entry).

    modules:      module name -> source code
    entry_points: entry point name -> module, in the group ``cclgs``
    Real ``dist-info`` metadata, so ``importlib.metadata`` discovers it like a pip install.
    """
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist_name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1.0\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[cclgs]\n{lines}")
    (info / "RECORD").write_text("")
    return root


def run_cli(
    *args: str, extra_path: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``cclgs`` in a subprocess (optionally with a directory prepended to PYTHONPATH)."""
    environment = dict(os.environ)
    if extra_path is not None:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), environment.get("PYTHONPATH")]))
    environment.update(env or {})
    environment.pop("CCLGS_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "cclgs_cli.app", *args], capture_output=True, text=True, env=environment, timeout=600
    )


def invoke_cli(*args: object):
    """Run the ``cclgs`` CLI in-process and return typer's result; re-raise what it raised (errors
    are checked by their type) and require exit status 0."""
    from typer.testing import CliRunner

    from cclgs_cli.app import app

    result = CliRunner().invoke(app, [str(arg) for arg in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


#: What nerfstudio 1.1.5 needs on the CPU under torch >= 2.6: no slow compiles, and reloading its own checkpoints.
NERFSTUDIO_ENV = {"TORCHDYNAMO_DISABLE": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


def nerfstudio_environment() -> dict[str, str]:
    return {**os.environ, **NERFSTUDIO_ENV}


def ns_train_command(
    data: Path, output_dir: Path, experiment: str, device: str, run_config: Path, run_dir: Path, *options: str
) -> list[str]:
    """``ns-train ccl-lgs`` for 100 iterations, saved at the end as OUTPUT_DIR/EXPERIMENT/ccl-lgs/run,
    with a cclgs run config and run directory, plus further ``options``."""
    return [
        sys.executable,
        "-m",
        "nerfstudio.scripts.train",
        "ccl-lgs",
        "--data",
        str(data),
        "--output-dir",
        str(output_dir),
        "--experiment-name",
        experiment,
        "--timestamp",
        "run",
        "--machine.device-type",
        device,
        "--max-num-iterations",
        "100",
        "--steps-per-save",
        "100",
        "--vis",
        "tensorboard",
        "--pipeline.model.cclgs-config",
        str(run_config),
        "--pipeline.model.cclgs-run-dir",
        str(run_dir),
        *options,
    ]


def artifact_items(run: Path, stage: str) -> dict[str, bytes]:
    """Every finished item of the run's single artifact of ``stage`` (which must be complete): name -> bytes."""
    (artifact,) = (run / "cache" / stage).iterdir()
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["complete"]
    return {name: (artifact / name).read_bytes() for name in manifest["items"]}
