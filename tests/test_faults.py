"""Faults outside the bad-input corpus: the system refusing a file (a full disk, no permission, a
read-only filesystem, a vanished file, a file where a folder should be) ends in one line and exit
2, leaves no temporary file, and the same command resumes to the same result."""

from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path

import pytest
from helpers import artifact_items

CONFIG = """
[mask_generator]
name = "synthetic"
[feature_extractor]
name = "simulated"
[tracker]
name = "none"
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from cclgs_synthetic.world import generate_world

    root = tmp_path_factory.mktemp("faults")
    (root / "run.toml").write_text(CONFIG)
    return generate_world(root / "world", objects=3, width=40, height=40, train_views=8, test_views=1)


def cclgs(monkeypatch, capsys, *args: object) -> tuple[int, str]:
    """Run the ``cclgs`` entry point in this process: (exit code, stderr)."""
    from cclgs_cli.app import main

    monkeypatch.setattr(sys, "argv", ["cclgs", *map(str, args)])
    monkeypatch.delenv("CCLGS_DEBUG", raising=False)
    try:
        main()
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    return code, capsys.readouterr().err


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not progress lines (``stage: done/total ...``)."""
    return [line for line in stderr.splitlines() if not re.match(r"[\w ,']+: \d+/\d+ \(", line)]


REFUSALS = {
    errno.ENOSPC: "no space left on the device. Free some space there",
    errno.EACCES: "permission denied. Give this user access to it",
    errno.EROFS: "the filesystem is read-only. Choose a run directory on a writable filesystem",
    errno.ENOENT: "it does not exist (was it removed while the command ran?). Restore it",
}


@pytest.mark.parametrize("code", list(REFUSALS), ids=[errno.errorcode[code] for code in REFUSALS])
def test_a_refused_write_ends_in_one_line_and_the_same_command_resumes(world, tmp_path, monkeypatch, capsys, code):
    config = world.parent / "run.toml"
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert cclgs(monkeypatch, capsys, "preprocess", world, "-c", config, "--run", reference)[0] == 0

    real_fsync, calls = os.fsync, []

    def failing_fsync(descriptor: int) -> None:  # the 7th file written finds the system refusing
        calls.append(descriptor)
        if len(calls) == 7:
            raise OSError(code, os.strerror(code))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    exit_code, stderr = cclgs(monkeypatch, capsys, "preprocess", world, "-c", config, "--run", run)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert exit_code == 2
    (line,) = error_lines(stderr)
    assert line.startswith(f"error: {run / 'cache'}") and REFUSALS[code] in line, line
    assert line.endswith("and run the same command again: what was finished is kept")
    assert not [path for path in run.rglob("*") if path.name.endswith(".tmp")]

    assert cclgs(monkeypatch, capsys, "preprocess", world, "-c", config, "--run", run)[0] == 0
    for stage in ("masks", "features"):
        assert artifact_items(run, stage) == artifact_items(reference, stage)


def test_a_file_where_the_run_directory_should_be(world, tmp_path, monkeypatch, capsys):
    config = world.parent / "run.toml"
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    exit_code, stderr = cclgs(monkeypatch, capsys, "preprocess", world, "-c", config, "--run", blocker / "run")
    assert exit_code == 2
    assert error_lines(stderr) == [
        f"error: {blocker}: a file stands where a folder should be. Move that file away (or choose another path) and "
        "run the same command again: what was finished is kept"
    ]
    exit_code, stderr = cclgs(monkeypatch, capsys, "preprocess", world, "-c", config, "--run", blocker)
    assert exit_code == 2
    (line,) = error_lines(stderr)
    assert line.startswith(f"error: {blocker}: it exists and is not a folder. Move it away"), line
    assert blocker.read_text() == "not a folder"
