"""Open-vocabulary queries against a trained semantic field (DESIGN.md section 1.6).

A pixel's embedding is the decoded rendered field feature, ``T[argmax]`` for codebooks. For
codebooks the relevance is computed once per prototype and looked up per pixel, so a query
costs one render plus an index, whatever the embedding size. Of the two mask levels, the one
whose relevance map has the highest peak is chosen (LangSplat's rule). In 3D, the same decode
applied to each Gaussian's own feature selects the Gaussians of a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cclgs_core.gaussians import Gaussians
from cclgs_core.relevance import relevance, text_embeddings
from cclgs_core.semantic_field import SemanticField
from cclgs_core.types import Camera


def level_relevance(field: SemanticField, features: torch.Tensor, level: str, queries: torch.Tensor, canonical: torch.Tensor) -> torch.Tensor:
    """Relevance of each query for field features of one level.

    features: (P, levels * d_f) rendered (or per-Gaussian) field features
    queries:  (T, D) and canonical: (K, D) unit text embeddings
    returns:  (T, P)
    """
    compressor = field.compressors[level]
    with torch.no_grad():
        outputs = field.outputs(features, level)  # (P, L)
        if compressor.target_kind == "index":
            prototypes = compressor.decode(torch.eye(outputs.shape[1]))  # (L, D): decode of each one-hot
            per_prototype = relevance(prototypes, queries, canonical)  # (T, L)
            return per_prototype[:, outputs.argmax(dim=1)]
        return relevance(compressor.decode(outputs), queries, canonical)


@dataclass
class ViewRelevance:
    """Relevance of T queries in one view: maps (T, levels, H, W) and the rendered alpha (H, W)."""

    maps: np.ndarray
    alpha: np.ndarray
    levels: list[str]

    def best_level(self, query: int) -> int:
        """The level whose map of ``query`` has the highest peak."""
        return int(np.argmax(self.maps[query].reshape(len(self.levels), -1).max(axis=1)))


class QueryEngine:
    """A trained field ready to answer text queries in any view and in 3D."""

    def __init__(self, field: SemanticField, gaussians: Gaussians, backend: Any, extractor: Any):
        self.field = field
        self.gaussians = gaussians
        self.backend = backend
        self.extractor = extractor

    def embed(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, D) query and (K, D) canonical-phrase embeddings."""
        return text_embeddings(self.extractor, list(texts))

    def view(self, camera: Camera, texts: Sequence[str]) -> ViewRelevance:
        """Render the field in ``camera`` and score every text there."""
        queries, canonical = self.embed(texts)
        with torch.no_grad():
            output = self.backend.render(self.gaussians, self.field.features, camera)
        height, width = output.alpha.shape
        flat = output.features.reshape(height * width, -1)
        maps = torch.stack(
            [level_relevance(self.field, flat, level, queries, canonical).reshape(-1, height, width) for level in self.field.levels],
            dim=1,
        )  # (T, levels, H, W)
        return ViewRelevance(maps.numpy(), output.alpha.numpy(), list(self.field.levels))

    def select_gaussians(self, text: str, threshold: float = 0.5, level: str | None = None) -> tuple[np.ndarray, str]:
        """3D segmentation: (N,) bool Gaussians whose own decoded feature has relevance above
        ``threshold`` for ``text``, on ``level`` (default: the level with the highest peak)."""
        queries, canonical = self.embed([text])
        features = self.field.features.detach()
        scores = {name: level_relevance(self.field, features, name, queries, canonical)[0] for name in self.field.levels}
        chosen = level or max(scores, key=lambda name: float(scores[name].max()))
        return (scores[chosen] > threshold).numpy(), chosen


def load_query_engine(field_path: Path, backend_name: str = "torch", registry: Any = None) -> QueryEngine:
    """Build a QueryEngine from a saved field file (which names its Gaussians and feature extractor)."""
    from cclgs_core.field_io import load_field
    from cclgs_core.ply import read_gaussians
    from cclgs_core.registry import get_registry

    registry = registry or get_registry()
    saved = load_field(field_path, registry)
    gaussians = read_gaussians(saved.gaussians_path)
    extractor = registry.create("feature_extractor", saved.feature_extractor["name"], saved.feature_extractor["options"])
    backend = registry.create("field_backend", backend_name)
    return QueryEngine(saved.field, gaussians, backend, extractor)
