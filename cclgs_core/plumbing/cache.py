"""The stage cache: one directory per scene run, one artifact per (stage, inputs, options).

Layout: ``<root>/<stage>/<key>/`` holds the artifact's items (``.npz``, ``.json``, ``.png``,
``.pt`` files) and ``manifest.json``, which lists every finished item with its SHA-256. The
key hashes everything the stage's result depends on, so changing one option re-runs only the
stages that depend on it.

Every file is written to a temporary name in the same directory and renamed into place, and
the manifest is rewritten (atomically) after each item. A run killed at any point therefore
leaves only finished items in the manifest; a re-run skips them and redoes the rest. An item
whose bytes no longer match its checksum counts as missing.

Several processes can fill one artifact at once (``cclgs preprocess`` under torchrun): each is a
named *writer* and records its items in its own ``manifest.<writer>.json``, so no file has two
writers. Every reader sees the union of the manifests; ``mark_complete`` folds them into
``manifest.json`` and removes the writers' files. Temporary names carry the host as well as the
process id, so a process on one machine never takes another machine's live temporary for stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from cclgs_core.errors import storage_error

MANIFEST = "manifest.json"
#: A writer's own manifest: ``manifest.<writer>.json``.
WRITER_MANIFESTS = "manifest.*.json"
#: This machine, as it appears in temporary names (no dots, so that the name splits unambiguously).
HOST_TAG = socket.gethostname().replace(".", "_") or "localhost"


def stable_key(payload: Mapping[str, Any]) -> str:
    """A short hex digest of a JSON-able mapping, independent of key order."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def artifact_key(stage: str, inputs: Mapping[str, Any]) -> str:
    """The name of the directory holding ``stage``'s artifact for these inputs and options."""
    return stable_key({"stage": stage, **inputs})


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.
    StorageError (naming the path, the reason and the fix) when the system refuses."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}@{HOST_TAG}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:  # a full disk, no permission, Ctrl-C: leave no temporary behind
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):  # name the file meant, not the temporary
            meant = error.filename if error.filename not in (None, str(temporary)) else path
            raise storage_error(error, meant) from error
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files that a killed writer on this machine left in ``directory`` (their
    process is gone). Another machine's temporaries are left alone: their process ids mean nothing here."""
    for temporary in directory.glob(".*.tmp") if directory.is_dir() else ():
        pid, _, host = temporary.name.rsplit(".", 2)[-2].partition("@")
        if pid.isdigit() and host in ("", HOST_TAG) and not _process_alive(int(pid)):
            temporary.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Artifact:
    """One stage's result directory, filled item by item.

    writer: None for the only process filling the artifact; otherwise a name unique among the
    processes filling it at once (``rank-3``), whose items go to ``manifest.<writer>.json``.
    """

    def __init__(self, path: Path, description: Mapping[str, Any], writer: str | None = None):
        self.path = path
        self.description = dict(description)
        self.writer = writer
        self._manifest = self._read_manifest()
        #: the items this writer finished, in this process or an earlier one (what its manifest lists)
        self._written: dict[str, Any] = {}
        if writer is not None:
            self._written.update((_read_json(self._writer_manifest()) or {}).get("items", {}))
        remove_stale_temporaries(path)

    def _writer_manifest(self) -> Path:
        return self.path / (MANIFEST if self.writer is None else f"manifest.{self.writer}.json")

    def _read_manifest(self) -> dict[str, Any]:
        """``manifest.json`` with the items of every writer's manifest added."""
        manifest = _read_json(self.path / MANIFEST) or {"description": self.description, "items": {}, "complete": False}
        for writer_manifest in sorted(self.path.glob(WRITER_MANIFESTS)):
            manifest["items"].update((_read_json(writer_manifest) or {}).get("items", {}))
        return manifest

    def _save_manifest(self) -> None:
        if self.writer is None:
            atomic_write_text(self.path / MANIFEST, json.dumps(self._manifest, indent=1, sort_keys=True))
            return
        own = {"description": self.description, "items": self._written, "complete": False}
        atomic_write_text(self._writer_manifest(), json.dumps(own, indent=1, sort_keys=True))

    @property
    def complete(self) -> bool:
        """True once ``mark_complete`` ran and every listed item is intact."""
        return bool(self._manifest.get("complete")) and all(self.has(item) for item in self._manifest["items"])

    def items(self) -> list[str]:
        return sorted(self._manifest["items"])

    def has(self, item: str) -> bool:
        """True when ``item`` was finished and its bytes still match the recorded checksum."""
        entry = self._manifest["items"].get(item)
        file_path = self.path / item
        if entry is None or not file_path.exists():
            return False
        return hashlib.sha256(file_path.read_bytes()).hexdigest() == entry["sha256"]

    def write_bytes(self, item: str, data: bytes) -> None:
        atomic_write_bytes(self.path / item, data)
        entry = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        self._manifest["items"][item] = self._written[item] = entry
        self._save_manifest()

    def write_json(self, item: str, value: Any) -> None:
        self.write_bytes(item, json.dumps(value, indent=1, sort_keys=True).encode())

    def write_arrays(self, item: str, **arrays: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        self.write_bytes(item, buffer.getvalue())

    def read_bytes(self, item: str) -> bytes:
        if not self.has(item):
            raise FileNotFoundError(f"{self.path / item} is missing or corrupted; re-run the stage")
        return (self.path / item).read_bytes()

    def read_json(self, item: str) -> Any:
        return json.loads(self.read_bytes(item))

    def read_arrays(self, item: str) -> dict[str, np.ndarray]:
        with np.load(io.BytesIO(self.read_bytes(item)), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}

    def get_or_compute(self, item: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Read an array item, computing and storing it first when it is missing."""
        if not self.has(item):
            self.write_arrays(item, **compute())
        return self.read_arrays(item)

    def mark_complete(self) -> None:
        """Record that every item is written, in ``manifest.json``, folding in (and then removing)
        the writers' manifests. Only the one process left once all writers have finished calls it."""
        if self.writer is not None:
            raise RuntimeError(f"writer {self.writer!r} cannot complete {self.path}: the single process finishing does")
        on_disk = self._read_manifest()  # with what other processes wrote meanwhile
        self._manifest = {**on_disk, "items": {**on_disk["items"], **self._manifest["items"]}, "complete": True}
        self._save_manifest()
        for writer_manifest in self.path.glob(WRITER_MANIFESTS):
            writer_manifest.unlink(missing_ok=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is absent or unreadable (manifests are only ever
    replaced atomically, so an unreadable one is rebuilt)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class StageCache:
    """All artifacts of one scene run, under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def artifact(self, stage: str, inputs: Mapping[str, Any], writer: str | None = None) -> Artifact:
        """The artifact of ``stage`` for these inputs and options (created empty if new), filled by
        ``writer`` (see ``Artifact``)."""
        return Artifact(self.root / stage / artifact_key(stage, inputs), {"stage": stage, **inputs}, writer)
