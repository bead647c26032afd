"""Saving and loading a trained semantic field: one self-contained file next to the run.

The file holds the per-Gaussian features, the decoder heads, and per level the compressor's
name, options and learned state (so embeddings can be decoded), plus the path and a digest of
the Gaussians ``.ply`` it was trained on and the feature extractor used for the targets (so a
query encodes text in the same space). A query needs this file and the ``.ply``, nothing else.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cclgs_core.errors import DataError
from cclgs_core.plumbing.cache import atomic_write_bytes
from cclgs_core.plumbing.registry import PluginRegistry, get_registry
from cclgs_core.stages.semantic_field import SemanticField

FORMAT_VERSION = 1


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass
class SavedField:
    """A loaded field with what is needed to query it."""

    field: SemanticField
    gaussians_path: Path
    #: {"name": ..., "options": {...}} of the feature extractor that produced the targets.
    feature_extractor: dict[str, Any]


def save_field(
    path: Path,
    field: SemanticField,
    compressor_identity: dict[str, Any],
    gaussians_path: Path,
    feature_extractor_identity: dict[str, Any],
) -> None:
    """Write the field atomically. ``*_identity``: {"name", "options"} as recorded by the pipeline."""
    payload = {
        "format": FORMAT_VERSION,
        "levels": field.levels,
        "field_dim": field.field_dim,
        "features": field.features.detach().cpu(),
        "heads": {level: head.state_dict() for level, head in field.heads.items()},
        "compressor": {"name": compressor_identity["name"], "options": compressor_identity["options"]},
        "compressor_states": {level: field.compressors[level].state_dict() for level in field.levels},
        "gaussians": {"path": str(Path(gaussians_path).resolve()), "digest": file_digest(gaussians_path)},
        "feature_extractor": {
            "name": feature_extractor_identity["name"],
            "options": feature_extractor_identity["options"],
        },
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_field(path: Path, registry: PluginRegistry | None = None, check_gaussians: bool = True) -> SavedField:
    """Rebuild a saved field; DataError when the file or the Gaussians it names are missing or changed."""
    registry = registry or get_registry()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; train a field first with `cclgs train SCENE`")
    try:
        payload = torch.load(path, weights_only=True)
    except Exception as error:
        raise DataError(f"{path} is not a cclgs semantic field file ({error}); re-run `cclgs train`") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise DataError(f"{path} is not a cclgs semantic field file of format {FORMAT_VERSION}; re-run `cclgs train`")
    gaussians_path = Path(payload["gaussians"]["path"])
    if check_gaussians:
        if not gaussians_path.is_file():
            raise DataError(f"{path} was trained on {gaussians_path}, which no longer exists; restore it or re-train")
        if file_digest(gaussians_path) != payload["gaussians"]["digest"]:
            raise DataError(f"{gaussians_path} changed since {path} was trained on it; re-run `cclgs train`")
    compressors = {}
    for level in payload["levels"]:
        compressor = registry.create("compressor", payload["compressor"]["name"], payload["compressor"]["options"])
        compressor.load_state_dict(payload["compressor_states"][level])
        compressors[level] = compressor
    field = SemanticField(payload["features"].shape[0], compressors, field_dim=payload["field_dim"])
    with torch.no_grad():
        field.features.copy_(payload["features"])
    for level, state in payload["heads"].items():
        field.heads[level].load_state_dict(state)
    return SavedField(field, gaussians_path, payload["feature_extractor"])
