"""`cclgs preprocess` sharded over processes by torchrun (gloo on the CPU): the same artifacts as one
process, a killed rank resumed, and one clear error for each bad launch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_distribution, run_cli

#: A mask generator that is the synthetic one, except that the process whose RANK is $KILL_RANK
#: kills itself (SIGKILL: no cleanup) when it is about to do its frame number $KILL_AFTER + 1.
DYING_MASKS = """
import os
import signal

from cclgs_core import hookimpl
from cclgs_synthetic.masks import SyntheticMaskGenerator


class DyingMasks(SyntheticMaskGenerator):
    frames_done = 0

    def generate(self, image, frame):
        doomed = "KILL_RANK" in os.environ and os.environ.get("RANK") == os.environ["KILL_RANK"]
        if doomed and self.frames_done == int(os.environ["KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)
        self.frames_done += 1
        return super().generate(image, frame)


@hookimpl
def cclgs_register_mask_generator(register):
    register("dying", DyingMasks)
"""

CONFIG = """
[mask_generator]
name = "dying"
[feature_extractor]
name = "simulated"
[tracker]
name = "none"
"""

TRAIN_VIEWS = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    from cclgs_synthetic.world import generate_world

    root = tmp_path_factory.mktemp("sharded")
    (root / "run.toml").write_text(CONFIG)
    plugin = make_distribution(root / "site", "dying-masks", {"dying_masks": DYING_MASKS}, {"dying": "dying_masks"})
    world = generate_world(root / "world", objects=3, width=48, height=48, train_views=TRAIN_VIEWS, test_views=1)
    reference = root / "reference"
    single = run_cli("preprocess", str(world), "-c", str(root / "run.toml"), "--run", str(reference), extra_path=plugin)
    assert single.returncode == 0, single.stderr
    return {"world": world, "config": root / "run.toml", "plugin": plugin, "reference": reference}


def _environment(plugin: Path, **variables: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("CCLGS_DEBUG", "KILL_RANK", "KILL_AFTER")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin), environment.get("PYTHONPATH")]))
    environment["CCLGS_PROGRESS_SECONDS"] = "0"
    return {**environment, **variables}


def _torchrun(setup: dict[str, Path], run: Path, ranks: int = 2, **variables: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node RANKS -m cclgs_cli preprocess WORLD -c CONFIG --run-dir RUN``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    command += ["-m", "cclgs_cli", "preprocess", str(setup["world"]), "-c", str(setup["config"]), "--run-dir", str(run)]
    environment = _environment(setup["plugin"], **variables)
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)


def _tree(run: Path) -> dict[str, bytes]:
    """Every file under ``run``: relative path -> bytes."""
    return {str(path.relative_to(run)): path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()}


def test_two_ranks_write_what_one_process_writes(setup, tmp_path):
    run = tmp_path / "run"
    result = _torchrun(setup, run)
    assert result.returncode == 0, result.stderr
    assert f"{TRAIN_VIEWS} frames: masks computed for {TRAIN_VIEWS}, features for {TRAIN_VIEWS}" in result.stdout
    assert result.stdout.count("frames: masks computed") == 1  # rank 0 reports for both
    assert "masks and features, rank 0's share: 6/6" in result.stderr
    # The cache, the previews and the resolved config, byte for byte; no writer manifest or probe left.
    assert _tree(run) == _tree(setup["reference"])
    assert not list(run.rglob(".*"))


def test_a_killed_rank_resumes_to_the_same_artifacts(setup, tmp_path):
    run = tmp_path / "run"
    killed = _torchrun(setup, run, KILL_RANK="1", KILL_AFTER="2")
    assert killed.returncode != 0, "rank 1 should have died"
    (masks,) = (run / "cache" / "masks").iterdir()
    assert not (masks / "manifest.json").exists(), "the stage must not be recorded complete"
    rank_one = json.loads((masks / "manifest.rank-1.json").read_text())["items"]
    assert len(rank_one) == 2, "rank 1 recorded the frames it finished before it died"
    writers = [json.loads(manifest.read_text())["items"] for manifest in masks.glob("manifest.rank-*.json")]
    done_before = {item for items in writers for item in items}

    resumed = _torchrun(setup, run)
    assert resumed.returncode == 0, resumed.stderr
    computed = TRAIN_VIEWS - len(done_before)
    assert f"masks computed for {computed}," in resumed.stdout
    assert _tree(run) == _tree(setup["reference"])
    assert not list(run.rglob(".*"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_rank(setup, rank: int, port: int, cwd: Path, *arguments: str, **variables: str) -> subprocess.Popen:
    """One rank started by hand, with the variables torchrun would set (the two ranks of a launch on
    two machines, say)."""
    variables |= {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
    variables |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cclgs_cli", "preprocess", str(setup["world"]), "-c", str(setup["config"])]
    return subprocess.Popen(
        [*command, "--rank-timeout", "20", *arguments],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(setup["plugin"], **variables),
    )


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def test_a_rank_that_cannot_reach_the_others_says_so(setup, tmp_path):
    lonely = _start_rank(setup, 1, _free_port(), tmp_path, "--run-dir", "run", "--rank-timeout", "2")
    code, stderr = _finish(lonely)
    assert code == 2
    assert stderr.startswith("error: rank 1 of 2") and "could not reach the other ranks through 127.0.0.1:" in stderr
    assert "--rank-timeout" in stderr and stderr.count("\n") == 1, stderr  # one line: c10d's retry log held back


def test_a_run_directory_that_is_not_shared_is_refused(setup, tmp_path):
    # The same relative --run-dir seen from two working directories: two machines whose run
    # directory is local to each.
    port = _free_port()
    first, second = tmp_path / "machine-a", tmp_path / "machine-b"
    first.mkdir(), second.mkdir()
    ranks = [_start_rank(setup, rank, port, cwd, "--run-dir", "run") for rank, cwd in enumerate((first, second))]
    (code0, stderr0), (code1, stderr1) = (_finish(rank) for rank in ranks)
    assert (code0, code1) == (2, 2)
    assert "is not shared between the ranks: rank 0 (on " in stderr0 and "sees no file of rank(s) 1" in stderr0
    assert stderr0.count("\n") == 1 and stderr1 == "", (stderr0, stderr1)  # rank 0 speaks for both
    for machine in (first, second):
        assert not (machine / "run" / "cache").exists() and not (machine / "run" / ".ranks").exists()


def test_ranks_with_different_configs_are_refused(setup, tmp_path):
    port = _free_port()
    run = str(tmp_path / "run")
    ranks = [_start_rank(setup, 0, port, tmp_path, "--run-dir", run)]
    ranks.append(_start_rank(setup, 1, port, tmp_path, "--run-dir", run, "--set", "seed=3"))
    (code0, stderr0), (code1, stderr1) = (_finish(rank) for rank in ranks)
    assert (code0, code1) == (2, 2)
    assert "the ranks were started on different runs: rank 1 differs from rank 0 in seed." in stderr0, stderr0
    assert stderr1 == ""
    assert not (tmp_path / "run" / "cache").exists()


def test_a_rank_whose_partner_dies_says_so(setup, tmp_path):
    # Started by hand, rank 0 is not stopped by torchrun when rank 1 dies: it finds out itself.
    port, run = _free_port(), str(tmp_path / "run")
    survivor = _start_rank(setup, 0, port, tmp_path, "--run-dir", run)
    doomed = _start_rank(setup, 1, port, tmp_path, "--run-dir", run, KILL_RANK="1", KILL_AFTER="1")
    (code0, stderr0), (code1, _) = _finish(survivor), _finish(doomed)
    assert code1 == -signal.SIGKILL
    progress, error = stderr0.rstrip("\n").splitlines()[:-1], stderr0.rstrip("\n").splitlines()[-1]
    assert code0 == 2 and error.startswith("error: rank 0 of 2 (on "), stderr0
    assert all(line.startswith("masks and features, rank 0's share: ") for line in progress), stderr0
    assert "lost the other ranks while waiting for every rank to finish its frames" in error
    assert "rerun the same command: every finished frame is kept" in error


def test_launch_variables_and_devices_are_checked(monkeypatch):
    from cclgs_core.errors import LaunchError
    from cclgs_core.plumbing.ranks import join_launch
    from cclgs_core.testing.emulated_cuda import emulated_cuda

    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LaunchError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set: start the ranks with"):
        join_launch()
    for name, value in (("RANK", "1"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")):
        monkeypatch.setenv(name, value)
    with emulated_cuda(), pytest.raises(LaunchError, match=r"LOCAL_RANK 1 but this machine has 1 CUDA device\(s\)"):
        join_launch()


def test_other_commands_refuse_to_run_under_torchrun(setup, tmp_path):
    launched = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    result = run_cli("train", str(setup["world"]), "--run", str(tmp_path / "run"), env=launched)
    assert result.returncode == 2
    assert "`cclgs train` runs as one process, and torchrun started 2" in result.stderr
    assert "only `preprocess` shards" in result.stderr


def test_writers_fill_one_artifact_and_the_finisher_folds_their_manifests(tmp_path):
    from cclgs_core.plumbing.cache import MANIFEST, StageCache

    cache = StageCache(tmp_path)
    first, second = (cache.artifact("masks", {"scene": "s"}, writer) for writer in ("rank-0", "rank-1"))
    first.write_json("a.json", 1)
    second.write_json("b.json", 2)
    assert not (first.path / MANIFEST).exists()  # no file has two writers
    assert cache.artifact("masks", {"scene": "s"}).items() == ["a.json", "b.json"]  # readers see both
    resumed = cache.artifact("masks", {"scene": "s"}, "rank-1")  # rank 1 again, after a kill
    resumed.write_json("c.json", 3)
    assert sorted(json.loads((resumed.path / "manifest.rank-1.json").read_text())["items"]) == ["b.json", "c.json"]
    with pytest.raises(RuntimeError, match="cannot complete"):
        resumed.mark_complete()
    finisher = cache.artifact("masks", {"scene": "s"})
    finisher.mark_complete()
    assert sorted(path.name for path in finisher.path.iterdir()) == ["a.json", "b.json", "c.json", MANIFEST]
    assert cache.artifact("masks", {"scene": "s"}).complete


def test_only_this_machines_dead_temporaries_are_removed(tmp_path):
    from cclgs_core.plumbing.cache import HOST_TAG, remove_stale_temporaries

    dead_pid = 2**22 + 12345  # above the largest pid_max Linux allows: no process has it
    here, elsewhere = tmp_path / f".a.npz.{dead_pid}@{HOST_TAG}.tmp", tmp_path / f".b.npz.{dead_pid}@other-node.tmp"
    alive = tmp_path / f".c.npz.{os.getpid()}@{HOST_TAG}.tmp"
    for path in (here, elsewhere, alive):
        path.write_bytes(b"partial")
    remove_stale_temporaries(tmp_path)
    assert not here.exists() and elsewhere.exists() and alive.exists()
