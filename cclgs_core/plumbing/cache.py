"""The stage cache: one directory per scene run, one artifact per (stage, inputs, options).

Layout: ``<root>/<stage>/<key>/`` holds the artifact's items (``.npz``, ``.json``, ``.png``,
``.pt`` files) and ``manifest.json``, which lists every finished item with its SHA-256. The
key hashes everything the stage's result depends on, so changing one option re-runs only the
stages that depend on it.

Every file is written to a temporary name in the same directory and renamed into place, and
the manifest is rewritten (atomically) after each item. A run killed at any point therefore
leaves only finished items in the manifest; a re-run skips them and redoes the rest. An item
whose bytes no longer match its checksum counts as missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

MANIFEST = "manifest.json"


def stable_key(payload: Mapping[str, Any]) -> str:
    """A short hex digest of a JSON-able mapping, independent of key order."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files that a killed writer left in ``directory`` (their process is gone)."""
    for temporary in directory.glob(".*.tmp") if directory.is_dir() else ():
        pid = temporary.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _process_alive(int(pid)):
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
    """One stage's result directory, filled item by item."""

    def __init__(self, path: Path, description: Mapping[str, Any]):
        self.path = path
        self.description = dict(description)
        self._manifest = self._read_manifest()
        remove_stale_temporaries(path)

    def _read_manifest(self) -> dict[str, Any]:
        manifest_path = self.path / MANIFEST
        if manifest_path.exists():
            try:
                return json.loads(manifest_path.read_text())
            except json.JSONDecodeError:
                pass  # a manifest is only ever replaced atomically; an unreadable one is rebuilt
        return {"description": self.description, "items": {}, "complete": False}

    def _save_manifest(self) -> None:
        atomic_write_text(self.path / MANIFEST, json.dumps(self._manifest, indent=1, sort_keys=True))

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
        self._manifest["items"][item] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
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
        self._manifest["complete"] = True
        self._save_manifest()


class StageCache:
    """All artifacts of one scene run, under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def artifact(self, stage: str, inputs: Mapping[str, Any]) -> Artifact:
        """The artifact of ``stage`` for these inputs and options (created empty if new)."""
        key = stable_key({"stage": stage, **inputs})
        return Artifact(self.root / stage / key, {"stage": stage, **inputs})
