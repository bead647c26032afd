"""Cross-view consistency metrics against ground truth (docs/design.md, "Synthetic benchmark").

Everything works on the masks of one level over all views, stacked into one table of n masks:

- ``views``  (n,) int64 the view each mask belongs to;
- ``counts`` (n, I) int64 how many pixels of each ground-truth entity (an instance or a part,
  I of them) each mask covers (``entity_pixel_counts``);
- ``tracks`` (n,) int64 track labels, -1 for none; ``embeddings`` (n, D) one embedding per mask
  (every pixel of a mask carries its mask's embedding).

Pixels covered by no mask carry no embedding and are left out of every embedding metric; they
are the same for every compressor, since all of them see the same masks.

Track-label accuracy (``pairwise_track_scores``) compares the tracker's labels with each mask's
dominant entity over all pairs of masks in *different* views whose dominant entities are known:
recall is the share of same-entity pairs that carry one label (an unlabelled mask agrees with
nothing), precision the share of same-label pairs (both labelled) that show one entity.

View consistency in embedding space:

- ``class_agreement``: per entity, the share of its covered pixels, over all views, whose
  embedding is nearest (by cosine) among the class text embeddings to the entity's own class.
  Two near-identical prototypes of one object therefore count as agreement;
- ``cross_view_cosines``: per pair of entities (a, b), the mean cosine between the embedding of
  a pixel of a and that of a pixel of b in a different view, over all such pixel pairs. Its
  diagonal measures how well one entity agrees with itself across views, its off-diagonal how
  far different entities stay apart (``cosine_summary`` averages both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def entity_pixel_counts(segments: np.ndarray, entities: np.ndarray, num_masks: int, num_entities: int) -> np.ndarray:
    """segments: (H, W) mask ids, -1 = no mask; entities: (H, W) ground-truth ids, -1 = none.
    Returns (M, I) int64: pixels of entity e under mask m, M = num_masks, I = num_entities."""
    both = (segments >= 0) & (entities >= 0)
    flat = segments[both].astype(np.int64) * num_entities + entities[both].astype(np.int64)
    return np.bincount(flat, minlength=num_masks * num_entities).reshape(num_masks, num_entities)


def dominant_entity(counts: np.ndarray) -> np.ndarray:
    """counts: (n, I). Returns (n,) int64 the entity covering most of each mask's labelled
    pixels (lowest id on ties), -1 for a mask over no labelled pixel."""
    dominant = counts.argmax(axis=1).astype(np.int64)
    dominant[counts.sum(axis=1) == 0] = -1
    return dominant


@dataclass
class TrackScores:
    """Pairwise track-label accuracy over mask pairs of different views (see module docstring).

    precision and recall are None when they have no pair to be measured on.
    """

    precision: float | None
    recall: float | None
    labelled: float
    same_entity_pairs: int
    same_label_pairs: int

    @property
    def f1(self) -> float | None:
        if not self.precision or not self.recall:
            return None if self.precision is None or self.recall is None else 0.0
        return 2 * self.precision * self.recall / (self.precision + self.recall)

    def as_dict(self) -> dict:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "labelled": self.labelled,
            "same_entity_pairs": self.same_entity_pairs,
            "same_label_pairs": self.same_label_pairs,
        }


def pairwise_track_scores(views: np.ndarray, tracks: np.ndarray, truth: np.ndarray) -> TrackScores:
    """views: (n,) view of each mask; tracks: (n,) labels, -1 = none; truth: (n,) dominant
    entity, -1 = none. Masks without a known entity are left out; ``labelled`` is the share
    of the remaining masks that carry a label."""
    known = truth >= 0
    views, tracks, truth = views[known], tracks[known], truth[known]
    cross_view = np.triu(views[:, None] != views[None, :], k=1)  # (n', n') each pair once
    same_entity = cross_view & (truth[:, None] == truth[None, :])
    same_label = cross_view & (tracks[:, None] == tracks[None, :]) & (tracks[:, None] >= 0)
    agreeing = int((same_entity & same_label).sum())
    entity_pairs, label_pairs = int(same_entity.sum()), int(same_label.sum())
    return TrackScores(
        precision=agreeing / label_pairs if label_pairs else None,
        recall=agreeing / entity_pairs if entity_pairs else None,
        labelled=float((tracks >= 0).mean()) if len(tracks) else 0.0,
        same_entity_pairs=entity_pairs,
        same_label_pairs=label_pairs,
    )


def nearest_text(embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """embeddings: (n, D); text_embeddings: (T, D). Returns (n,) int64 index of the text of
    highest cosine with each embedding."""
    return (_unit(embeddings) @ _unit(text_embeddings).T).argmax(axis=1).astype(np.int64)


def class_agreement(
    counts: np.ndarray, embeddings: np.ndarray, text_embeddings: np.ndarray, entity_class: np.ndarray
) -> np.ndarray:
    """counts: (n, I) pixels per mask and entity; embeddings: (n, D); text_embeddings: (T, D)
    one per class; entity_class: (I,) class of each entity. Returns (I,) float64 share of each
    entity's covered pixels whose embedding is nearest to its class, NaN for an entity no mask
    covers."""
    right = nearest_text(embeddings, text_embeddings)[:, None] == np.asarray(entity_class)[None, :]  # (n, I)
    covered = counts.sum(axis=0).astype(np.float64)
    agreeing = (counts * right).sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(covered > 0, agreeing / covered, np.nan)


def cross_view_cosines(views: np.ndarray, counts: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """views: (n,); counts: (n, I); embeddings: (n, D). Returns (I, I) float64 mean cosine over
    pixel pairs (a pixel of entity a, a pixel of entity b in another view), NaN where no such
    pair exists."""
    unit = _unit(embeddings)
    other_view = (views[:, None] != views[None, :]).astype(np.float64)  # (n, n)
    weights = counts.astype(np.float64)
    cosine_sums = weights.T @ ((unit @ unit.T) * other_view) @ weights  # (I, I)
    pair_counts = weights.T @ other_view @ weights  # (I, I)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pair_counts > 0, cosine_sums / pair_counts, np.nan)


def cosine_summary(cosines: np.ndarray) -> tuple[float, float]:
    """cosines: (I, I) from ``cross_view_cosines``. Returns (mean of the diagonal, mean of the
    off-diagonal), each over its defined entries: one entity across views vs different entities."""
    off_diagonal = ~np.eye(len(cosines), dtype=bool)
    return float(np.nanmean(np.diag(cosines))), float(np.nanmean(cosines[off_diagonal]))


def _unit(rows: np.ndarray) -> np.ndarray:
    """(n, D) -> (n, D) float64 rows scaled to unit length."""
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)
