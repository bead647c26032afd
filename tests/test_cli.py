"""The `cclgs` command line: help, version, plugin listing, broken plugins, clean errors."""

from __future__ import annotations

import pytest
from helpers import make_distribution, run_cli

from cclgs_core import __version__
from cclgs_core.interfaces import KINDS


def test_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0 and "plugins" in result.stdout
    result = run_cli("--version")
    assert result.stdout.strip() == f"cclgs {__version__}"


def test_plugins_lists_every_kind_without_heavy_imports():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cclgs_cli.app import app\n"
        "result = CliRunner().invoke(app, ['plugins'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(result.output)\n"
        "heavy = [m for m in ('torch', 'segment_anything', 'sam2', 'open_clip', 'nerfstudio', 'gsplat') if m in "
        "sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for kind in KINDS:
        assert kind in result.stdout
    assert "HEAVY []" in result.stdout


def test_broken_plugin_shown_while_others_work(tmp_path):
    site = make_distribution(
        tmp_path / "site",
        "broken-dist",
        {"broken_plugin": "import not_a_real_module_xyz\n"},
        {"brokenplug": "broken_plugin"},
    )
    result = run_cli("plugins", extra_path=site)
    assert result.returncode == 0, result.stderr
    broken = next(line for line in result.stdout.splitlines() if "brokenplug" in line)
    assert "broken" in broken
    assert "not_a_real_module_xyz" in result.stdout
    assert any("none" in line and "ok" in line for line in result.stdout.splitlines())

    strict = run_cli("--strict-plugins", "plugins", extra_path=site)
    assert strict.returncode == 2
    assert "brokenplug" in strict.stderr and "Traceback" not in strict.stderr


def test_user_error_is_one_line_exit_2(tmp_path):
    result = run_cli("config", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "missing.toml does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    debug = run_cli("--debug", "config", "--config", str(tmp_path / "missing.toml"))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_config_command_rejects_unknown_component(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[tracker]\nname = "none"\n[field_backend]\nname = "reference"\n')
    result = run_cli("config", "--config", str(path), "--set", "tracker.name=ghost")
    assert result.returncode == 2
    assert "no tracker named 'ghost'" in result.stderr


@pytest.mark.parametrize(
    "override, line",
    [
        ("compressor.num_prototypes=0", "[compressor] 'ccl': compressor option num_prototypes must be >= 1 (got 0)"),
        (
            "mask_generator.points_per_side=0",
            "[mask_generator] 'sam': mask generator 'sam' option points_per_side must be >= 1 (got 0)",
        ),
    ],
)
def test_config_command_builds_every_component_so_value_rules_fail_there(tmp_path, override, line):
    path = tmp_path / "run.toml"
    path.write_text('[tracker]\nname = "none"\n[feature_extractor]\nname = "simulated"\n')
    assert run_cli("config", "--config", str(path)).returncode == 0  # types and values fine: it prints
    result = run_cli("config", "--config", str(path), "--set", override)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: {path}:", f"  {line}"]


def test_plugins_check_unknown_name():
    result = run_cli("plugins", "check", "nonexistent-thing")
    assert result.returncode == 2
    assert "no installed component is named 'nonexistent-thing'" in result.stderr


def test_progress_lines_for_logs_are_timed_and_end_once():
    import io

    from cclgs_cli.progress import ProgressLines

    now = [0.0]
    stream = io.StringIO()
    update = ProgressLines(stream, interval_s=10.0, clock=lambda: now[0])
    for second, done in [(0, 0), (5, 10), (12, 24), (15, 30), (23, 46), (25, 50), (26, 50)]:
        now[0] = second
        update("semantic field", done, 50)
    for second, done in [(40, 0), (50, 1)]:
        now[0] = second
        update("compression", done, 1, "a status")
    for second, done in [(60, 1000), (62, 5000)]:  # the same stage again, in the next run
        now[0] = second
        update("semantic field", done, 5000)
    assert stream.getvalue().splitlines() == [
        "semantic field: 0/50 (0%), elapsed 0:00",  # the first update
        "semantic field: 24/50 (48%), 2/s, elapsed 0:12, ETA 0:13",  # 10 s after the last line
        "semantic field: 46/50 (92%), 2/s, elapsed 0:23, ETA 0:02",
        "semantic field: 50/50 (100%), 2/s, elapsed 0:25",  # the end, once
        "compression: 0/1 (0%), elapsed 0:00, a status",  # a stage of one step: no rate
        "compression: 1/1 (100%), elapsed 0:10, a status",
        "semantic field: 1000/5000 (20%), elapsed 0:00",
        "semantic field: 5000/5000 (100%), 2,000/s, elapsed 0:02",  # rate from the resumed step on
    ]


def test_a_bad_progress_interval_is_a_config_error(monkeypatch):
    from cclgs_cli.progress import INTERVAL_ENV, log_interval
    from cclgs_core.errors import ConfigError

    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(ConfigError, match="CCLGS_PROGRESS_SECONDS='soon': give the seconds"):
        log_interval()
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert log_interval() == 2.5
