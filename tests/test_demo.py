"""A reduced `cclgs demo`: world, preprocessing, three trained fields, held-out reports."""

from __future__ import annotations

import json
import math

from cclgs_cli.demo_runs import METHODS, run_demo


def test_reduced_demo_compares_the_three_methods(tmp_path):
    # The demo's three methods with short compressor schedules (the autoencoder's took 117 of 165 s).
    methods = {name: [*overrides, "compressor.steps=200"] for name, overrides in METHODS.items()}
    results, summary = run_demo(
        tmp_path / "demo", size=48, train_views=8, test_views=2, iterations=150, methods=methods
    )
    assert [result.method for result in results] == list(METHODS)
    for result in results:
        assert 0.0 <= result.miou <= 1.0 and not math.isnan(result.miou)
        assert result.report.is_file()
    data = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert data["simulation"] is True and data["protocol"] == "heldout"
    text = summary.read_text()
    assert "a simulation" in text and all(f"| {method} |" in text for method in METHODS)
