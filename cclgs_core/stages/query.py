"""Open-vocabulary queries against a trained semantic field (docs/design.md, "Queries").

A pixel's embedding is the decoded rendered field feature (``T[argmax]`` for codebooks under
the paper's decode rule), decoded in chunks of pixels. Of the two mask levels, the one
whose relevance map has the highest peak is chosen (LangSplat's rule). In 3D, the same decode
applied to each Gaussian's own feature selects the Gaussians of a query.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from cclgs_core.helpers.devices import to_host
from cclgs_core.scene.gaussians import Gaussians
from cclgs_core.stages.relevance import relevance_in_chunks, text_embeddings
from cclgs_core.stages.semantic_field import SemanticField
from cclgs_core.types import Camera


def level_relevance(
    field: SemanticField, features: torch.Tensor, level: str, queries: torch.Tensor, canonical: torch.Tensor
) -> torch.Tensor:
    """Relevance of each query for field features of one level.

    features: (P, levels * d_f) rendered (or per-Gaussian) field features
    queries:  (T, D) and canonical: (K, D) unit text embeddings
    returns:  (T, P)
    """
    compressor = field.compressors[level]
    with torch.inference_mode():  # decode need not be differentiable (CONTRIBUTING.md)
        outputs = field.outputs(features, level)  # (P, L)
        # Decoded to (P, D) embeddings in chunks, so a full-resolution view stays small in memory.
        # Every pixel goes through decode, whatever the kind: a codebook's decode rule may mix
        # prototypes ("expected"), so relevance per prototype picked by argmax would be wrong.
        return relevance_in_chunks(
            lambda start, stop: compressor.decode(outputs[start:stop]), len(outputs), queries, canonical
        )


@dataclass
class ViewRelevance:
    """Relevance of T queries in one view: maps (T, levels, H, W) and the rendered alpha (H, W)."""

    maps: np.ndarray
    alpha: np.ndarray
    levels: list[str]

    def best_level(self, query: int) -> int:
        """The level whose map of ``query`` has the highest peak."""
        return int(np.argmax(self.maps[query].reshape(len(self.levels), -1).max(axis=1)))


#: A query's embeddings per level: level -> ((T, D) queries, (K, D) canonical embeddings).
LevelQueries = dict[str, tuple[torch.Tensor, torch.Tensor]]
#: A point exemplar picks the pixels whose decoded embedding has at least this cosine with its own.
POINT_SIMILARITY = 0.9
#: Pixels decoded at once when averaging embeddings.
_CHUNK = 65536


def _decoded_chunks(field: SemanticField, flat: torch.Tensor, level: str) -> Iterator[torch.Tensor]:
    """The decoded embeddings of ``flat`` (P, levels * d_f), ``_CHUNK`` pixels (rows) at a time."""
    for start in range(0, len(flat), _CHUNK):
        yield field.decode(flat[start : start + _CHUNK], level)  # (chunk, D)


def _decoded_similarity(field: SemanticField, flat: torch.Tensor, level: str, embedding: torch.Tensor) -> torch.Tensor:
    """(P,) cosine of every pixel's decoded embedding with ``embedding`` (1, D); flat: (P, levels * d_f)."""
    return torch.cat([chunk @ embedding[0] for chunk in _decoded_chunks(field, flat, level)])


def _mean_embedding(field: SemanticField, flat: torch.Tensor, pixels: torch.Tensor, level: str) -> torch.Tensor:
    """(1, D) unit mean of the decoded embeddings of the ``pixels`` (P,) bool of ``flat`` (P, levels * d_f)."""
    total = sum(chunk.sum(dim=0) for chunk in _decoded_chunks(field, flat[pixels], level))
    return torch.nn.functional.normalize(total[None], dim=-1)


class QueryEngine:
    """A trained field ready to answer text queries in any view and in 3D. The field, the
    Gaussians and the text embeddings live on ``device``; the answers come back on the host."""

    def __init__(
        self,
        field: SemanticField,
        gaussians: Gaussians,
        backend: Any,
        extractor: Any,
        device: torch.device | str = "cpu",
    ):
        self.device = torch.device(device)
        self.field = field.to(self.device)
        self.gaussians = gaussians.to(self.device)
        self.backend = backend
        self.extractor = extractor

    def embed(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, D) query and (K, D) canonical-phrase embeddings, on the engine's device."""
        queries, canonical = text_embeddings(self.extractor, list(texts))
        return queries.to(self.device), canonical.to(self.device)

    def text_queries(self, texts: Sequence[str]) -> LevelQueries:
        """Text queries: the same (T, D) text embeddings and (K, D) canonical phrases at every level."""
        queries, canonical = self.embed(texts)
        return {level: (queries, canonical) for level in self.field.levels}

    def exemplar_query(
        self, camera: Camera, region: np.ndarray | None = None, point: tuple[int, int] | None = None
    ) -> LevelQueries:
        """One query by example (docs/design.md, "Queries"): a region of the view ``camera``, given
        as (H, W) bool pixels or as a point (x, y) that picks the pixels decoding like it.

        Per level, the query is the mean decoded embedding of the region's covered pixels (alpha
        >= 0.5), and its single canonical embedding the mean over the view's other covered
        pixels: a pixel is relevant when it looks more like the example than like the rest of
        the view. Returns level -> ((1, D), (1, D)).
        """
        from cclgs_core.errors import DataError

        flat, alpha = self._render(camera)
        height, width = alpha.shape
        covered = (alpha >= 0.5).reshape(-1)  # (P,)
        if point is not None:
            x, y = point
            if not (0 <= x < width and 0 <= y < height) or not bool(covered[y * width + x]):
                raise DataError(f"exemplar point ({x}, {y}) is outside the view's {width}x{height} rendered surface")
        queries = {}
        for level in self.field.levels:
            if point is not None:
                picked = self.field.decode(flat[y * width + x][None], level)  # (1, D)
                inside = covered & (_decoded_similarity(self.field, flat, level, picked) >= POINT_SIMILARITY)
            else:
                inside = covered & torch.as_tensor(region, dtype=torch.bool, device=covered.device).reshape(-1)
            outside = covered & ~inside
            if not bool(inside.any()) or not bool(outside.any()):
                raise DataError(
                    f"the exemplar region covers {'none' if not bool(inside.any()) else 'all'} of the rendered "
                    "surface in its view; give a region on one object"
                )
            queries[level] = (
                _mean_embedding(self.field, flat, inside, level),
                _mean_embedding(self.field, flat, outside, level),
            )
        return queries

    def view(self, camera: Camera, texts: Sequence[str]) -> ViewRelevance:
        """Render the field in ``camera`` and score every text there."""
        return self.view_queries(camera, self.text_queries(texts))

    def view_queries(self, camera: Camera, queries: LevelQueries) -> ViewRelevance:
        """Render the field in ``camera`` and score the T queries of ``queries`` at every level."""
        flat, alpha = self._render(camera)
        height, width = alpha.shape
        maps = torch.stack(
            [
                level_relevance(self.field, flat, level, *queries[level]).reshape(-1, height, width)
                for level in self.field.levels
            ],
            dim=1,
        )  # (T, levels, H, W)
        return ViewRelevance(to_host(maps), to_host(alpha), list(self.field.levels))

    def _render(self, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
        """The field rendered in ``camera``: (H * W, levels * d_f) features and (H, W) alpha."""
        with torch.no_grad():
            output = self.backend.render(self.gaussians, self.field.features, camera)
        return output.features.reshape(output.alpha.numel(), -1), output.alpha

    def select_gaussians(self, text: str, threshold: float = 0.5, level: str | None = None) -> tuple[np.ndarray, str]:
        """3D segmentation: (N,) bool Gaussians whose own decoded feature has relevance above
        ``threshold`` for ``text``, on ``level`` (default: the level with the highest peak)."""
        queries, canonical = self.embed([text])
        features = self.field.features.detach()
        scores = {
            name: level_relevance(self.field, features, name, queries, canonical)[0] for name in self.field.levels
        }
        chosen = level or max(scores, key=lambda name: float(scores[name].max()))
        return to_host(scores[chosen] > threshold), chosen


def load_query_engine(
    field_path: Path,
    backend_name: str = "torch",
    registry: Any = None,
    backend_options: dict[str, Any] | None = None,
    device: str = "auto",
) -> QueryEngine:
    """Build a QueryEngine from a saved field file (which names its Gaussians and feature
    extractor), on ``device`` (a name for ``devices.resolve_device``)."""
    from cclgs_core.helpers.devices import resolve_device
    from cclgs_core.plumbing.registry import get_registry
    from cclgs_core.scene.ply import read_gaussians
    from cclgs_core.stages.field_io import load_field

    registry = registry or get_registry()
    saved = load_field(field_path, registry)
    gaussians = read_gaussians(saved.gaussians_path)
    extractor = registry.create(
        "feature_extractor", saved.feature_extractor["name"], saved.feature_extractor["options"]
    )
    backend = registry.create("field_backend", backend_name, backend_options or {})
    return QueryEngine(saved.field, gaussians, backend, extractor, resolve_device(device))


@dataclass
class ViewAnswer:
    """One text in one view: the chosen level, the peak relevance, the mask's share of the view, and the PNGs."""

    text: str
    frame: str
    level: str
    peak: float
    coverage: float
    relevance_png: str
    mask_png: str


def answer_in_views(
    engine: QueryEngine,
    frames: Sequence[Any],
    texts: Sequence[str],
    out_dir: Path,
    threshold: float = 0.5,
    progress: Callable[[str, int, int], None] | None = None,
    queries: LevelQueries | None = None,
) -> list[ViewAnswer]:
    """Score every text in every frame; write ``OUT/<text>/<frame>_relevance.png`` (the chosen
    level's relevance over the image: transparent at 0.5 = no better than the canonical phrases,
    full colour at 1), ``<frame>_mask.png`` (white where the relevance exceeds ``threshold``) and
    ``OUT/query.json`` listing every answer. ``queries`` (e.g. an exemplar's) replaces the text
    embeddings; ``texts`` then only name them."""
    import json

    from cclgs_core.evaluation.visualize import heatmap_overlay, save_png
    from cclgs_core.plumbing.cache import atomic_write_text

    out_dir = Path(out_dir)
    folders = _unique_slugs(texts)
    queries = queries if queries is not None else engine.text_queries(texts)
    answers = []
    for done, frame in enumerate(frames):
        image = frame.load_image()
        relevance_maps = engine.view_queries(frame.camera, queries)
        stem = frame.name.replace("/", "__")
        for index, text in enumerate(texts):
            level = relevance_maps.best_level(index)
            relevance_map = relevance_maps.maps[index, level]  # (H, W)
            mask = relevance_map > threshold
            relevance_path = save_png(
                out_dir / folders[index] / f"{stem}_relevance.png", heatmap_overlay(image, relevance_map, 0.5, 1.0)
            )
            mask_path = save_png(out_dir / folders[index] / f"{stem}_mask.png", mask)
            answers.append(
                ViewAnswer(
                    text,
                    frame.name,
                    relevance_maps.levels[level],
                    float(relevance_map.max()),
                    float(mask.mean()),
                    relevance_path.relative_to(out_dir).as_posix(),
                    mask_path.relative_to(out_dir).as_posix(),
                )
            )
        if progress is not None:
            progress("querying views", done + 1, len(frames))
    summary = {"threshold": threshold, "answers": [asdict(answer) for answer in answers]}
    atomic_write_text(out_dir / "query.json", json.dumps(summary, indent=2))
    return answers


#: Without a test split, queries go to every this-many-th training view: the views that
#: nerfstudio's default evaluation interval holds out.
HOLDOUT_INTERVAL = 8


def choose_frames(
    scene: Any, names: Sequence[str] = (), all_views: bool = False, split: str = "auto"
) -> tuple[list[Any], str]:
    """The frames to query and how they were chosen (a phrase for the user).

    Frames named in ``names`` (any split); else, of ``split``, every frame (``all_views``) or the
    first. ``split`` "auto" is "test" when the scene has test frames; otherwise every
    ``HOLDOUT_INTERVAL``-th training frame (every training frame with ``all_views``).
    """
    from cclgs_core.errors import ConfigError, DataError

    if split not in ("auto", "train", "test"):
        raise ConfigError(f"split must be auto, train or test, got {split!r}")
    if names:
        by_name = {frame.name: frame for frame in scene.frames}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            sample = ", ".join(sorted(by_name)[:5])
            raise DataError(f"{scene.root}: no frame named {unknown[0]!r}; frame names look like {sample}")
        return [by_name[name] for name in names], "the views named"
    if split == "auto" and not scene.split("test"):
        training = scene.split("train")
        if all_views:
            return training, "every training view (the scene has no test split)"
        every = training[::HOLDOUT_INTERVAL]
        return every, f"every {HOLDOUT_INTERVAL}th training view (the scene has no test split)"
    split = "test" if split == "auto" else split
    frames = scene.split(split)
    if not frames:
        other = "train" if split == "test" else "test"
        raise DataError(f"{scene.root}: the scene has no {split} frames; pass --split {other} or --view NAME")
    return (frames, f"every {split} view") if all_views else (frames[:1], f"the first {split} view")


def _unique_slugs(texts: Sequence[str]) -> list[str]:
    """A distinct folder name per text (a numeric suffix where two texts give the same slug)."""
    from cclgs_core.evaluation.visualize import slug

    names: list[str] = []
    for text in texts:
        name, count = slug(text), 2
        while name in names:
            name, count = f"{slug(text)}_{count}", count + 1
        names.append(name)
    return names


def export_selection(engine: QueryEngine, text: str, path: Path, threshold: float = 0.5) -> tuple[int, str]:
    """Write the Gaussians that ``text`` selects (``select_gaussians``) as a standard 3DGS .ply.
    Returns (how many were selected, the level used); DataError when none is selected."""
    from cclgs_core.errors import DataError
    from cclgs_core.scene.ply import write_gaussians

    selected, level = engine.select_gaussians(text, threshold)
    if not selected.any():
        raise DataError(
            f"no Gaussian has relevance above {threshold} for {text!r}; lower --threshold or rephrase the query"
        )
    write_gaussians(Path(path), engine.gaussians.subset(torch.as_tensor(selected)))
    return int(selected.sum()), level
