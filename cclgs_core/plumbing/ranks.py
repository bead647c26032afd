"""Processes launched together by torchrun, for stages that shard their frames (``cclgs preprocess``).

torchrun starts the processes, on one machine or many, and tells each its place through the
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). ``join_launch`` connects
them with ``torch.distributed`` over gloo. Only a few bytes cross between ranks: a description of
each rank's run, the probe files each sees, a verdict. The results travel through the run
directory, which every rank must see, so gloo serves CPU and GPU launches alike and NCCL would
bring nothing. When CUDA is present each rank makes ``cuda:LOCAL_RANK`` its current device, so
components set to "auto" or "cuda" use one GPU per rank.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

from cclgs_core.errors import LaunchError, error_summary
from cclgs_core.plumbing.cache import atomic_write_text

Item = TypeVar("Item")

#: What torchrun sets for every process it starts.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: Seconds a rank waits for the others, to connect or at a barrier, unless told otherwise.
DEFAULT_TIMEOUT_S = 1800.0


def launched_ranks() -> int:
    """How many processes were launched together (WORLD_SIZE; 1 for a plain run)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


@dataclass
class Launch:
    """This process's place among the ranks of one launch, connected to the others."""

    rank: int
    world_size: int
    local_rank: int
    timeout_s: float

    @property
    def coordinator(self) -> bool:
        """Rank 0, which checks the ranks' joint result and records it."""
        return self.rank == 0

    @property
    def writer(self) -> str:
        """This rank's name as a writer of shared cache artifacts."""
        return f"rank-{self.rank}"

    @property
    def name(self) -> str:
        return f"rank {self.rank} of {self.world_size} (on {socket.gethostname()})"

    def shard(self, items: Sequence[Item]) -> list[Item]:
        """This rank's share of ``items``: every ``world_size``-th one from position ``rank`` on, so
        shares differ by at most one item and depend only on the order of ``items``."""
        return list(items[self.rank :: self.world_size])

    def gather(self, value: Any, doing: str) -> list[Any]:
        """Every rank's ``value`` (plain Python data), in rank order."""
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        with self._talking(doing):
            dist.all_gather_object(values, value, weights_only=True)
        return values

    def broadcast(self, value: Any, doing: str) -> Any:
        """Rank 0's ``value`` (plain Python data), on every rank."""
        import torch.distributed as dist

        holder = [value]
        with self._talking(doing):
            dist.broadcast_object_list(holder, src=0, weights_only=True)
        return holder[0]

    def barrier(self, doing: str) -> None:
        """Wait until every rank gets here."""
        import torch.distributed as dist

        with self._talking(doing):
            dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    @contextlib.contextmanager
    def _talking(self, doing: str) -> Iterator[None]:
        """Turn a failed exchange with the other ranks into a LaunchError saying what was going on."""
        try:
            yield
        except RuntimeError as error:  # torch.distributed's errors (DistBackendError, timeouts) derive from it
            raise LaunchError(
                f"{self.name} lost the other ranks while {doing} ({error_summary(error).rstrip('.')}). Another "
                f"rank stopped or did not answer within --rank-timeout ({self.timeout_s:g} s); its own message says "
                "why. Fix that and rerun the same command: every finished frame is kept"
            ) from error


def join_launch(timeout_s: float = DEFAULT_TIMEOUT_S) -> Launch | None:
    """Connect this process to the others of its torchrun launch; None when it runs alone."""
    world_size = launched_ranks()
    if world_size == 1:
        return None
    missing = [name for name in LAUNCH_VARIABLES if not os.environ.get(name)]
    if missing:
        raise LaunchError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} not set: start the ranks with torchrun "
            "(`torchrun --nproc_per_node N -m cclgs_cli preprocess ...`), which sets them all"
        )
    import torch
    import torch.distributed as dist

    launch = Launch(int(os.environ["RANK"]), world_size, int(os.environ["LOCAL_RANK"]), timeout_s)
    if torch.cuda.is_available():
        if launch.local_rank >= torch.cuda.device_count():
            raise LaunchError(
                f"{launch.name}: LOCAL_RANK {launch.local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                "device(s); start at most that many ranks per machine (--nproc_per_node)"
            )
        torch.cuda.set_device(launch.local_rank)
    address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        with _native_log_held_back():
            dist.init_process_group(
                "gloo", rank=launch.rank, world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s)
            )
    except (RuntimeError, ValueError) as error:  # DistNetworkError, DistStoreError and timeouts are RuntimeErrors
        raise LaunchError(
            f"{launch.name} could not reach the other ranks through {address} within {timeout_s:g} s "
            f"({error_summary(error).rstrip('.')}). Start every rank with the same torchrun command (the same "
            "--nnodes and --rdzv-endpoint, or --master-addr and --master-port), check that the port is open between "
            "the machines, or give --rank-timeout more seconds"
        ) from error
    return launch


@contextlib.contextmanager
def _native_log_held_back() -> Iterator[None]:
    """Hold back what native code writes to stderr for the duration (c10d logs every failed
    connection attempt with a C++ stack): shown afterwards when all went well, dropped when an
    exception leaves, which the caller reports in one line (``CCLGS_DEBUG=1`` lets it all through)."""
    if os.environ.get("CCLGS_DEBUG"):
        yield
        return
    with tempfile.TemporaryFile() as held_back:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held_back.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held_back.seek(0)
        sys.stderr.write(held_back.read().decode(errors="replace"))


def require_same_run(launch: Launch, description: dict[str, Any]) -> None:
    """LaunchError on every rank unless every rank describes the same run (``description``: plain
    data; its keys name what differs, such as a config section or "scene")."""
    described = launch.gather(description, "comparing the ranks' configs and scenes")
    reference = described[0]
    differences = []
    for rank, other in enumerate(described):
        differing = sorted(key for key in other.keys() | reference.keys() if other.get(key) != reference.get(key))
        if differing:
            differences.append(f"rank {rank} differs from rank 0 in {', '.join(differing)}")
    if differences:
        raise LaunchError(
            f"the ranks were started on different runs: {'; '.join(differences)}. Give "
            "every rank the same SCENE, --config file, --set overrides and --downscale",
            every_rank=True,
        )


def require_shared_directory(launch: Launch, directory: Path) -> None:
    """LaunchError on every rank unless each rank sees the files every other rank writes in ``directory``."""
    token = launch.broadcast(uuid.uuid4().hex if launch.coordinator else None, "choosing a probe name")
    probes = Path(directory) / ".ranks"
    mine = probes / f"{token}.rank-{launch.rank}"
    atomic_write_text(mine, socket.gethostname())
    launch.barrier("writing probe files into the run directory")
    seen = sorted(int(path.name.rsplit("-", 1)[1]) for path in probes.glob(f"{token}.rank-*"))
    everyone = launch.gather({"host": socket.gethostname(), "seen": seen}, "comparing the probe files each rank sees")
    mine.unlink()
    launch.barrier("removing the probe files")
    with contextlib.suppress(OSError):  # the first rank to get here removes it (each, when not shared)
        probes.rmdir()
    blind = []
    for rank, view in enumerate(everyone):
        unseen = sorted(set(range(launch.world_size)) - set(view["seen"]))
        if unseen:
            blind.append(f"rank {rank} (on {view['host']}) sees no file of rank(s) {', '.join(map(str, unseen))}")
    if blind:
        raise LaunchError(
            f"the run directory {directory} is not shared between the ranks: {'; '.join(blind)}. Every rank writes "
            "its frames there and rank 0 collects them: put the run directory (--run-dir) on a filesystem that every "
            "machine mounts at the same path (NFS, Lustre, ...)",
            every_rank=True,
        )
