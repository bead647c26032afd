"""The whole third-party path, following CONTRIBUTING.md literally.

The example plugin's files are taken verbatim from CONTRIBUTING.md, installed with pip (real
dist-info and entry_points.txt), discovered through the entry-point mechanism by the CLI and the
registry, selected by a run config, and checked with the contract suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

from cclgs_core.plumbing.config import load_config
from cclgs_core.plumbing.registry import PluginRegistry
from cclgs_core.testing.imports import imported_modules
from cclgs_core.testing.scenes import make_tiny_scene

CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def contributing_examples() -> dict[str, str]:
    """File name -> code of every block preceded by ``<!-- example: NAME -->``."""
    text = CONTRIBUTING.read_text()
    blocks = re.findall(r"<!-- example: (\S+) -->\s*```\w*\n(.*?)```", text, flags=re.S)
    return dict(blocks)


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """pip-install the example distribution into a fresh target directory; return that directory."""
    examples = contributing_examples()
    assert {"cclgs_gridcell.py", "pyproject.toml", "test_gridcell.py"} <= set(examples)
    root = tmp_path_factory.mktemp("thirdparty")
    project = root / "cclgs-gridcell"
    project.mkdir()
    for name in ("cclgs_gridcell.py", "pyproject.toml"):
        (project / name).write_text(examples[name])
    (root / "tests").mkdir()
    (root / "tests" / "test_gridcell.py").write_text(examples["test_gridcell.py"])
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(project),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    entry_points = next(site.glob("cclgs_gridcell-*.dist-info")) / "entry_points.txt"
    assert "gridcell = cclgs_gridcell" in entry_points.read_text()
    return site


def run_pytest(test_file: Path, import_path: Path) -> subprocess.CompletedProcess:
    """pytest on ``test_file`` in a fresh process that imports plugins from ``import_path`` too."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(import_path), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(test_file.parent)]
    return subprocess.run([*command, str(test_file)], capture_output=True, text=True, env=environment)


def test_cli_lists_the_installed_plugin(installed_example):
    result = run_cli("plugins", extra_path=installed_example)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "grid-cell" in line)
    assert "gridcell" in row and "cclgs-gridcell 0.1.0" in row and "ok" in row


def test_config_selects_the_plugin(installed_example, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_example))
    config_path = tmp_path / "run.toml"
    config_path.write_text('[tracker]\nname = "grid-cell"\ncells = 8\n')
    tracker = load_config(config_path).create("tracker", PluginRegistry())
    assert tracker.cells == 8
    scene = make_tiny_scene(tmp_path / "scene")
    from cclgs_core.testing.contracts import _segment_maps_from_grid

    maps = _segment_maps_from_grid(scene)
    labels = tracker.track(scene, scene.frames, maps)
    # a 2x2 block grid under an 8x8 cell grid: block centroids fall in distinct cells, same in every view
    assert len(set(labels[0].tolist())) == 4
    assert all((view == labels[0]).all() for view in labels)


def test_contract_suite_via_cli_and_pytest(installed_example, tmp_path):
    result = run_cli("plugins", "check", "grid-cell", "--set", "cells=3", extra_path=installed_example)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout  # 3 tracker rules and 2 every kind shares
    run = run_pytest(installed_example.parent / "tests" / "test_gridcell.py", installed_example)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 passed" in run.stdout


def test_the_examples_import_only_the_curated_api():
    examples = {name: code for name, code in contributing_examples().items() if name.endswith(".py")}
    assert {"cclgs_gridcell.py", "test_gridcell.py", "cclgs_trackmeans.py", "test_trackmeans.py"} <= set(examples)
    own = {name.removesuffix(".py") for name in examples}
    for name, code in examples.items():
        cclgs_imports = [module for _, module in imported_modules(code) if module.startswith("cclgs")]
        assert cclgs_imports, f"{name} imports nothing from cclgs_core"
        outside = [module for module in cclgs_imports if module not in {"cclgs_core", "cclgs_core.testing", *own}]
        assert not outside, f"{name} imports {outside}: examples use only cclgs_core and cclgs_core.testing"


def test_the_compressor_example_passes_its_contract(tmp_path):
    examples = contributing_examples()
    for name in ("cclgs_trackmeans.py", "test_trackmeans.py"):
        (tmp_path / name).write_text(examples[name])
    run = run_pytest(tmp_path / "test_trackmeans.py", tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "7 passed" in run.stdout  # 5 compressor rules and 2 every kind shares
