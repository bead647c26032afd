"""`cclgs fit` fits Gaussians to a small synthetic world and writes a readable .ply."""

from __future__ import annotations

import json
import re

from helpers import run_cli

from cclgs_cli.progress import INTERVAL_ENV
from cclgs_core.scene.ply import read_gaussians


def test_fit_command_writes_gaussians_and_reports_psnr(tmp_path):
    world = tmp_path / "world"
    made = run_cli(
        "synth",
        str(world),
        "--width",
        "40",
        "--height",
        "40",
        "--train-views",
        "6",
        "--test-views",
        "2",
        "--objects",
        "3",
    )
    assert made.returncode == 0, made.stderr
    assert "rendering views: 8/8 (100%)" in made.stderr  # output piped: progress as lines
    out = tmp_path / "fitted.ply"
    result = run_cli(
        "fit", str(world), "--out", str(out), "--steps", "40", "--background", "1,1,1", env={INTERVAL_ENV: "0"}
    )
    assert result.returncode == 0, result.stderr
    # Piped, not a terminal: a line per step at a 0 s interval, with rate, ETA and status.
    lines = [line for line in result.stderr.splitlines() if line.startswith("fitting: ")]
    assert len(lines) == 40 and lines[-1].startswith("fitting: 40/40 (100%), ")
    step = r"fitting: 20/40 \(50%\), ([\d.,]+/s|[\d.]+ s each), elapsed \d:\d\d, ETA \d:\d\d"
    assert re.fullmatch(step + r", PSNR [\d.]+ dB \(held-out [\d.]+ dB\), \d+ Gaussians", lines[19]), lines[19]
    assert len(read_gaussians(out)) > 0
    assert re.search(r"held-out PSNR over 2 views: 0 s: [\d.]+ dB, .*\d+ s: [\d.]+ dB$", result.stdout.strip())
    report = json.loads((tmp_path / "fitted_fit.json").read_text())
    assert len(report["heldout_views"]) == 2  # the world's own test views, not every 8th
    assert report["steps"] == 40
    assert report["heldout_psnr_db"] == report["heldout"][-1]["heldout_psnr_db"]
    assert report["heldout_psnr_db"] > 12.0  # a plain white image scores 6-7 dB on these views


def test_fit_rejects_a_bad_background(tmp_path):
    result = run_cli("fit", str(tmp_path), "--background", "white")
    assert result.returncode == 2 and "--background 'white'" in result.stderr


def test_fit_starts_from_random_points_without_sparse_points(tmp_path):
    world = tmp_path / "world"
    made = run_cli("synth", str(world), "--width", "40", "--height", "40", "--train-views", "6", "--test-views", "2")
    assert made.returncode == 0, made.stderr
    out = tmp_path / "fitted.ply"
    result = run_cli(
        "fit",
        str(world),
        "--out",
        str(out),
        "--steps",
        "80",
        "--background",
        "1,1,1",
        "--init",
        "random",
        "--random-points",
        "3000",
    )
    assert result.returncode == 0, result.stderr
    assert "starting from 3000 random points" in result.stdout
    report = json.loads((tmp_path / "fitted_fit.json").read_text())
    assert report["heldout_psnr_db"] > 12.0  # a plain white image scores 6-7 dB on these views
