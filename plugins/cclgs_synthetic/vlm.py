"""The "simulated" feature extractor: a SIMULATED vision-language model for synthetic worlds.

It stands in for CLIP where no weights exist, and reproduces the inconsistency CCL-LGS targets.
It is a simulation; results obtained with it are simulation results.

Embedding space. Every concept (a class, a canonical phrase, any other text, the background)
has a fixed unit embedding ``e(key)`` derived from a hash of its normalised text (lower case,
single spaces), independent of the seed, the scene and the machine: a shared direction with
weight sqrt(s) plus a concept-specific random direction with weight sqrt(1 - s), normalised,
so two distinct concepts have cosine about ``s = concept_similarity`` (CLIP image embeddings of
different objects are far from orthogonal). A class is recognised by its query text (the
``query`` field of ``classes.json``); the background by the reserved key ``<background>``.

A mask's feature, in view v (image stem) of a world:

1. mix: the pixel-weighted mean of the embeddings of the classes under the mask (unlabelled
   pixels count as background), normalised. A mask that spans two objects mixes two classes;
2. view-dependent confusion: let i be the instance covering most of the mask and o its
   occlusion in view v (``visibility.json``). With probability
   ``min(1, confusion_base + confusion_occlusion * o)``, drawn once per (seed, view, instance),
   the feature becomes ``normalise((1 - confusion_strength) * mix + confusion_strength * e(d))``
   with d a distractor class drawn uniformly from the world's other classes (same draw). With
   strength > 0.5 the confused feature is nearer the distractor than the true class;
3. noise: isotropic Gaussian noise of expected norm ``noise`` is added and the result
   normalised (seeded by seed, view and the segment map).

Texts: ``encode_texts`` returns ``e(text)``, so a class's query gives its class embedding and
every other text an embedding of its own. The canonical phrases default to LERF's ("object",
"things", "stuff", "texture").

Defaults (fixed before any comparison, see SIMULATION.md): dim 512, concept_similarity 0.6,
noise 0.4, confusion_base 0.05, confusion_occlusion 0.5, confusion_strength 0.6.

The world's tables are found from the frame: the nearest ancestor directory of the frame's
image that holds ``classes.json`` (see ``cclgs_synthetic.groundtruth``); a frame outside a
synthetic world raises DataError.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from cclgs_core import ConfigError, DataError, Frame, SegmentMap
from cclgs_synthetic.groundtruth import WorldTables, find_world_root, frame_key, load_label_map, load_world_tables
from cclgs_synthetic.seeding import derived_rng

#: Key of the background concept (pixels of no object).
BACKGROUND_KEY = "<background>"


def normalize_text(text: str) -> str:
    """Lower case with single spaces: the key of a text's concept."""
    return " ".join(str(text).lower().split())


class SimulatedFeatureExtractor:
    """SIMULATED vision-language model: class embeddings mixed by mask coverage, plus noise and
    occlusion-driven confusion. Only for synthetic worlds written by ``cclgs synth``."""

    def __init__(
        self,
        dim: int = 512,
        seed: int = 0,
        concept_similarity: float = 0.6,
        noise: float = 0.4,
        confusion_base: float = 0.05,
        confusion_occlusion: float = 0.5,
        confusion_strength: float = 0.6,
        canonical_phrases: tuple[str, ...] = ("object", "things", "stuff", "texture"),
    ):
        problems = []
        if dim < 8:
            problems.append(f"dim must be >= 8, got {dim}")
        for name, value in (
            ("concept_similarity", concept_similarity),
            ("confusion_base", confusion_base),
            ("confusion_occlusion", confusion_occlusion),
            ("confusion_strength", confusion_strength),
        ):
            if not 0.0 <= value <= 1.0 or (name == "concept_similarity" and value == 1.0):
                problems.append(f"{name} must lie in [0, 1{')' if name == 'concept_similarity' else ']'}, got {value}")
        if noise < 0:
            problems.append(f"noise must be >= 0, got {noise}")
        if problems:
            raise ConfigError("feature_extractor 'simulated': " + "; ".join(problems))
        self.dim = dim
        self.seed = seed
        self.concept_similarity = concept_similarity
        self.noise = noise
        self.confusion_base = confusion_base
        self.confusion_occlusion = confusion_occlusion
        self.confusion_strength = confusion_strength
        self.canonical_phrases = tuple(canonical_phrases)
        self._tables: dict[Path, WorldTables] = {}
        common = derived_rng("simulated vlm shared direction", dim).standard_normal(dim)
        self._common = common / np.linalg.norm(common)

    def concept_embedding(self, key: str) -> np.ndarray:
        """(D,) float64 unit embedding of a concept key (a normalised text or ``BACKGROUND_KEY``)."""
        specific = derived_rng("simulated vlm concept", self.dim, key).standard_normal(self.dim)
        specific /= np.linalg.norm(specific)
        mixed = np.sqrt(self.concept_similarity) * self._common + np.sqrt(1.0 - self.concept_similarity) * specific
        return mixed / np.linalg.norm(mixed)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Returns (T, D) float32 unit rows: each text's concept embedding."""
        rows = [self.concept_embedding(normalize_text(text)) for text in texts]
        return np.array(rows, dtype=np.float32).reshape(len(rows), self.dim)

    def confusion_probability(self, occlusion: float) -> float:
        """Probability that an instance occluded by ``occlusion`` (in [0, 1]) is confused in a view."""
        return float(min(1.0, self.confusion_base + self.confusion_occlusion * occlusion))

    def encode_masks(self, image: np.ndarray, segment_map: SegmentMap, frame: Frame) -> np.ndarray:
        """image: (H, W, 3) uint8 (only its size is used). Returns (M, D) float32 unit rows."""
        tables = self._world(frame)
        key = frame_key(frame)
        if key not in tables.occlusion:
            raise DataError(
                f"{tables.root / 'visibility.json'} has no view {key!r}: frame {frame.image_path} is not part of this "
                "world"
            )
        classes, instances = load_label_map(frame, "class"), load_label_map(frame, "instance")
        segments = segment_map.segments
        if segments.shape != classes.shape or image.shape[:2] != classes.shape:
            raise DataError(
                f"frame {frame.name}: image {image.shape[:2]}, masks {segments.shape} and ground truth "
                f"{classes.shape} differ in size"
            )
        count = segment_map.num_masks
        if count == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        class_count = len(tables.class_queries)
        # Row 0 is the background, row c + 1 class c.
        concepts = np.stack(
            [self.concept_embedding(BACKGROUND_KEY)]
            + [self.concept_embedding(normalize_text(q)) for q in tables.class_queries]
        )
        covered = segments >= 0
        class_hist = _histogram(segments[covered], classes[covered] + 1, count, class_count + 1)  # (M, C + 1)
        instance_hist = _histogram(segments[covered], instances[covered] + 1, count, len(tables.instance_class) + 1)
        mix = class_hist @ concepts
        mix /= np.linalg.norm(mix, axis=1, keepdims=True)

        occlusion = tables.occlusion[key]
        for mask_id, dominant in enumerate(np.argmax(instance_hist, axis=1) - 1):
            if dominant < 0 or class_count < 2:
                continue
            own_class = int(tables.instance_class[dominant])
            rng = derived_rng(self.seed, "simulated vlm confusion", key, int(dominant))
            confused = rng.uniform() < self.confusion_probability(occlusion.get(int(dominant), 0.0))
            distractor = [c for c in range(class_count) if c != own_class][int(rng.integers(class_count - 1))]
            if confused:
                pulled = (1.0 - self.confusion_strength) * mix[mask_id] + self.confusion_strength * concepts[
                    distractor + 1
                ]
                mix[mask_id] = pulled / np.linalg.norm(pulled)

        digest = hashlib.sha256(np.ascontiguousarray(segments, dtype=np.int32).tobytes()).hexdigest()
        noise = derived_rng(self.seed, "simulated vlm noise", key, digest).standard_normal((count, self.dim))
        features = mix + noise * (self.noise / np.sqrt(self.dim))
        features /= np.linalg.norm(features, axis=1, keepdims=True)
        return features.astype(np.float32)

    def _world(self, frame: Frame) -> WorldTables:
        root = find_world_root(frame)
        if root not in self._tables:
            self._tables[root] = load_world_tables(root)
        return self._tables[root]


def _histogram(rows: np.ndarray, columns: np.ndarray, row_count: int, column_count: int) -> np.ndarray:
    """rows, columns: (P,) int pairs. Returns (row_count, column_count) float64 counts."""
    flat = np.bincount(
        rows.astype(np.int64) * column_count + columns.astype(np.int64), minlength=row_count * column_count
    )
    return flat.reshape(row_count, column_count).astype(np.float64)
