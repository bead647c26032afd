"""Killed runs resume to the same results; corrupted cache items are detected and recomputed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import artifact_items, run_cli

CONFIG = """
[mask_generator]
name = "synthetic"
[feature_extractor]
name = "simulated"
[tracker]
name = "none"
[compressor]
name = "codebook"
steps = 200
[field_backend]
name = "cached"
[train]
iterations = 400
checkpoint_every = 20
pixels_per_step = 2000
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from cclgs_synthetic.world import generate_world

    root = tmp_path_factory.mktemp("resume")
    (root / "run.toml").write_text(CONFIG)
    return generate_world(root / "world", objects=3, width=48, height=48, train_views=12, test_views=1)


def _kill_when(command: list[str], ready) -> None:
    """Start ``command``, SIGKILL it as soon as ``ready()`` is true (or it ends by itself)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cclgs_cli.app", *args]


def _manifest_items(run: Path, stage: str) -> int:
    for manifest in (run / "cache" / stage).glob("*/manifest.json"):
        try:
            return len(json.loads(manifest.read_text())["items"])
        except (json.JSONDecodeError, FileNotFoundError):
            return 0
    return 0


@pytest.mark.parametrize("kill_after_items", [1, 5, 11])
def test_killed_preprocessing_resumes_to_identical_artifacts(world, tmp_path, kill_after_items):
    config = str(world.parent / "run.toml")
    reference = tmp_path / "reference"
    assert run_cli("preprocess", str(world), "-c", config, "--run", str(reference)).returncode == 0
    killed = tmp_path / "killed"
    _kill_when(
        _cli("preprocess", str(world), "-c", config, "--run", str(killed)),
        lambda: _manifest_items(killed, "masks") >= kill_after_items,
    )
    resumed = run_cli("preprocess", str(world), "-c", config, "--run", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    for stage in ("masks", "features"):
        assert artifact_items(killed, stage) == artifact_items(reference, stage)
    leftovers = [p for p in (killed / "cache").rglob(".*.tmp")]
    assert not leftovers, leftovers


def test_corrupted_item_is_recomputed(world, tmp_path):
    config = str(world.parent / "run.toml")
    run = tmp_path / "run"
    assert run_cli("preprocess", str(world), "-c", config, "--run", str(run)).returncode == 0
    (artifact,) = (run / "cache" / "features").iterdir()
    victim = sorted(artifact.glob("*.npz"))[3]
    original = victim.read_bytes()
    victim.write_bytes(original[:-10] + b"0123456789")
    again = run_cli("preprocess", str(world), "-c", config, "--run", str(run))
    assert again.returncode == 0, again.stderr
    assert "masks computed for 0, features for 1" in again.stdout
    assert victim.read_bytes() == original


def _field_tensors(path: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(path, weights_only=True)
    tensors = {"features": payload["features"]}
    for level, state in payload["heads"].items():
        tensors.update({f"{level}.{name}": value for name, value in state.items()})
    return tensors


@pytest.fixture(scope="module")
def reference_field(world, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The field of an uninterrupted ``cclgs train`` of the world."""
    run = tmp_path_factory.mktemp("reference") / "run"
    trained = run_cli("train", str(world), "-c", str(world.parent / "run.toml"), "--run", str(run))
    assert trained.returncode == 0, trained.stderr
    return _field_tensors(run / "field" / "semantic_field.pt")


def _assert_same_field(expected: dict[str, torch.Tensor], run: Path) -> None:
    actual = _field_tensors(run / "field" / "semantic_field.pt")
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_array_equal(actual[name].numpy(), expected[name].numpy(), err_msg=name)
    assert not list((run / "field").glob(".*.tmp"))


def test_killed_training_resumes_to_the_same_field(world, reference_field, tmp_path):
    config = str(world.parent / "run.toml")
    killed = tmp_path / "killed"
    _kill_when(
        _cli("train", str(world), "-c", config, "--run", str(killed)),
        lambda: any((killed / "field").glob("checkpoint-*.pt")),
    )
    assert not (killed / "field" / "semantic_field.pt").exists(), "the run finished before it could be killed"
    resumed = run_cli("train", str(world), "-c", config, "--run", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_field(reference_field, killed)


@pytest.mark.parametrize(
    ("signal_number", "status", "name"), [(signal.SIGINT, 130, "Ctrl-C (SIGINT)"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_interrupted_training_says_what_is_saved_and_resumes(
    world, reference_field, tmp_path, signal_number, status, name
):
    config = str(world.parent / "run.toml")
    run = tmp_path / "run"
    training = subprocess.Popen(
        _cli("train", str(world), "-c", config, "--run", str(run)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # as a terminal starts it: a parent that ignores SIGINT would pass that on
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while training.poll() is None and not any((run / "field").glob("checkpoint-*.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert training.poll() is None, "the run finished before it could be stopped"
    training.send_signal(signal_number)
    _, stderr = training.communicate(timeout=300)
    assert training.returncode == status, stderr
    assert not (run / "field" / "semantic_field.pt").exists(), "the run finished before the signal arrived"
    last_line = stderr.decode().strip().splitlines()[-1]
    said = re.fullmatch(
        rf"stopped by {re.escape(name)} during semantic field at (\d+)/400\. Saved: the semantic field's checkpoint "
        rf"of step (\d+) in {re.escape(str(run / 'field'))}/checkpoint-\w+\.pt\. Run the same command again to resume "
        r"from there\.",
        last_line,
    )
    assert said, last_line
    assert int(said[2]) % 20 == 0 and 20 <= int(said[2]) <= int(said[1])  # checkpoint_every = 20
    resumed = run_cli("train", str(world), "-c", config, "--run", str(run))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_field(reference_field, run)


def test_changed_training_settings_do_not_resume_an_old_checkpoint(world, tmp_path):
    config = str(world.parent / "run.toml")
    run = tmp_path / "run"
    assert run_cli("train", str(world), "-c", config, "--run", str(run), "--set", "train.iterations=40").returncode == 0
    first = _field_tensors(run / "field" / "semantic_field.pt")
    changed = run_cli(
        "train", str(world), "-c", config, "--run", str(run), "--set", "train.iterations=40", "--set", "train.lr=0.01"
    )
    assert changed.returncode == 0, changed.stderr
    assert len(list((run / "field").glob("checkpoint-*.pt"))) == 2
    assert not torch.equal(first["features"], _field_tensors(run / "field" / "semantic_field.pt")["features"])
