"""Label-free cross-view consistency of per-pixel embeddings, for any scene with geometry.

A language field is consistent when one surface point decodes to the same embedding in every
view that sees it. Real scenes carry no labels to check that against, but their geometry says
which pixels of two views show one point (``cclgs_core.scene.correspondence``: lifted through
the rendered depth, depth-tested in the other view). Over pairs of neighbouring views this
module measures, for any source of per-pixel embeddings (``PixelEmbeddings``: the masks'
decoded 2D targets, or a rendered semantic field):

- **cosine**: the mean cosine between the embeddings of corresponding pixels, and the same for
  *non-corresponding* pairs made by shuffling the second view's pixels among the pair's
  correspondences (same pixels, wrong partners). Their difference (the gap) is what agreement
  across views adds to the scene's general similarity: a field that decodes everything to one
  vector has cosine 1 for both and gap 0;
- **label agreement**: how often corresponding pixels carry the same discrete label, against
  the shuffled pairs as chance. A codebook's label is its argmax prototype (CCL-LGS's decode);
  a source without one (raw features, an autoencoder) is labelled by its nearest among
  ``anchor_count`` anchors, the spherical k-means centres of a sample of its own embeddings;
- **exemplar IoU**: a query taken by example in one view (the mean embedding of a region) is
  evaluated in a neighbouring view with LERF's relevance, its canonical phrases being
  ``CANONICAL_COUNT`` k-means centres of the rest of the region's view; its mask (relevance >
  0.5: closer to the query than to every canonical centre) is compared with the region
  carried through the geometry into that view. It is scored only on the pixels of the target
  view that the source view sees (elsewhere the geometry says nothing), and only where the
  carried region has at least ``min_region_pixels`` pixels. (One canonical embedding, the mean
  of the rest, as ``QueryEngine.exemplar_query`` uses, is dominated by the largest surface: on
  the synthetic world it gives ground-truth-consistent embeddings an IoU of only 0.76, so the
  measure would blame the features for the query rule.)

Pixels an embedding source does not cover (no mask, no rendered opacity) take no part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from cclgs_core.scene.correspondence import ViewGeometry, carry_pixels

#: Relevance above which a pixel belongs to a query's mask (LERF's and LangSplat's threshold).
MASK_THRESHOLD = 0.5
#: Canonical embeddings of an exemplar query: k-means centres of the rest of its view.
CANONICAL_COUNT = 8
#: Pixels of the rest of the view the canonical centres are fitted on.
CANONICAL_SAMPLES = 1000


class PixelEmbeddings(Protocol):
    """Per-pixel embeddings of every view of a scene (view indices as in the geometry list)."""

    def covered(self, view: int) -> np.ndarray:
        """(H, W) bool pixels that carry an embedding."""

    def embeddings(self, view: int, pixels: np.ndarray) -> np.ndarray:
        """pixels: (P,) int64 flat indices of covered pixels. Returns (P, D) float32 unit rows."""

    def labels(self, view: int, pixels: np.ndarray) -> np.ndarray | None:
        """(P,) int64 discrete labels (a codebook's argmax prototype), or None when the source has none."""


@dataclass
class MaskEmbeddings:
    """Every pixel of a mask carries its mask's embedding: the 2D targets a field is trained on.

    segments: per view (H, W) int mask ids, -1 = no mask; mask_embeddings: per view (M, D) unit
    rows; mask_labels: per view (M,) int64 discrete labels, or None.
    """

    segments: Sequence[np.ndarray]
    mask_embeddings: Sequence[np.ndarray]
    mask_labels: Sequence[np.ndarray] | None = None

    def covered(self, view: int) -> np.ndarray:
        return self.segments[view] >= 0

    def embeddings(self, view: int, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.mask_embeddings[view], dtype=np.float32)[self.segments[view].reshape(-1)[pixels]]

    def labels(self, view: int, pixels: np.ndarray) -> np.ndarray | None:
        if self.mask_labels is None:
            return None
        return np.asarray(self.mask_labels[view], dtype=np.int64)[self.segments[view].reshape(-1)[pixels]]


@dataclass
class FieldEmbeddings:
    """A trained semantic field rendered in every view (``render_field``) and decoded per pixel
    at one level. A codebook field's labels are its argmax prototypes; an autoencoder's field
    has none.

    field: a SemanticField; rendered: per view (H * W, levels * d_f) features; covered: per
    view (H, W) bool pixels with enough rendered opacity.
    """

    field: Any
    rendered: Sequence[Any]
    covered_pixels: Sequence[np.ndarray]
    level: str

    def covered(self, view: int) -> np.ndarray:
        return self.covered_pixels[view]

    def embeddings(self, view: int, pixels: np.ndarray) -> np.ndarray:
        return self.field.decode(self.rendered[view][pixels], self.level).cpu().numpy()

    def labels(self, view: int, pixels: np.ndarray) -> np.ndarray | None:
        if self.field.compressors[self.level].target_kind != "index":
            return None
        return self.field.predicted_targets(self.rendered[view][pixels], self.level).cpu().numpy()


def render_field(field, gaussians, backend, cameras: Sequence, min_alpha: float = 0.5) -> tuple[list, list]:
    """The field's features in every camera: per view (H * W, levels * d_f) torch features and
    (H, W) bool pixels with rendered opacity at least ``min_alpha``."""
    import torch

    from cclgs_core.helpers.devices import to_host

    rendered, covered = [], []
    backend.prepare(gaussians, list(cameras))
    with torch.no_grad():
        for camera in cameras:
            output = backend.render(gaussians, field.features, camera)
            rendered.append(output.features.reshape(output.alpha.numel(), -1).cpu())
            covered.append(to_host(output.alpha) >= min_alpha)
    return rendered, covered


@dataclass
class ConsistencyReport:
    """The figures of the module docstring; ``label_kind`` says which labels were compared."""

    cos_corresponding: float
    cos_shuffled: float
    label_agreement: float
    label_agreement_shuffled: float
    label_kind: str
    exemplar_iou: float | None
    correspondences: int
    view_pairs: int
    exemplars: int

    @property
    def cos_gap(self) -> float:
        return self.cos_corresponding - self.cos_shuffled

    def as_dict(self) -> dict:
        return {**asdict(self), "cos_gap": self.cos_gap}


def unit(rows: np.ndarray) -> np.ndarray:
    """(n, D) rows -> (n, D) float64 rows scaled to unit length (zero rows stay zero)."""
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def spherical_kmeans(samples: np.ndarray, count: int, seed: int, iterations: int = 25) -> np.ndarray:
    """(count, D) unit centres of (S, D) unit samples by cosine k-means (k-means++ start), or
    fewer when every sample already coincides with a centre."""
    rng = np.random.default_rng(seed)
    samples = samples.astype(np.float32)
    centres = [samples[rng.integers(len(samples))]]
    for _ in range(1, count):
        distance = 1.0 - (samples @ np.stack(centres).T).max(axis=1).astype(np.float64)  # (S,)
        weights = np.where(distance > 1e-5, distance, 0.0) ** 2  # samples on a centre are not drawn again
        if weights.sum() <= 0:
            break
        centres.append(samples[rng.choice(len(samples), p=weights / weights.sum())])
    centres = np.stack(centres)  # (K, D)
    for _ in range(iterations):
        nearest = (samples @ centres.T).argmax(axis=1)  # (S,)
        for index in range(len(centres)):
            members = samples[nearest == index]
            if len(members):
                centres[index] = unit(members.sum(axis=0, keepdims=True))[0]
    return centres


def _sample(pixels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``limit`` of (P,) pixels, drawn without replacement, in ascending order."""
    if len(pixels) <= limit:
        return pixels
    return np.sort(rng.choice(pixels, size=limit, replace=False))


def _flat_covered(source: PixelEmbeddings, geometry: ViewGeometry, view: int) -> np.ndarray:
    """(H * W,) bool pixels with geometry that carry an embedding."""
    return (source.covered(view) & geometry.valid).reshape(-1)


class _Labeller:
    """The source's own labels, or the nearest of k-means anchors of its embeddings."""

    def __init__(self, source: PixelEmbeddings, geometry: Sequence[ViewGeometry], anchor_count: int, seed: int):
        self.source = source
        self.anchors = None
        if source.labels(0, np.zeros(0, dtype=np.int64)) is not None:
            self.kind = "argmax prototype"
            return
        rng = np.random.default_rng(seed)
        samples = []
        for view, view_geometry in enumerate(geometry):
            pixels = _sample(np.flatnonzero(_flat_covered(source, view_geometry, view)), 400, rng)
            if len(pixels):
                samples.append(source.embeddings(view, pixels))
        self.anchors = spherical_kmeans(unit(np.concatenate(samples)), anchor_count, seed)
        self.kind = f"nearest of {len(self.anchors)} anchors"

    def __call__(self, view: int, pixels: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        if self.anchors is None:
            return self.source.labels(view, pixels)
        return (embeddings @ self.anchors.T).argmax(axis=1)


def _exemplar_query(
    source: PixelEmbeddings,
    geometry: Sequence[ViewGeometry],
    view: int,
    region: np.ndarray,
    max_pixels: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The (1, D) query of ``region`` ((H, W) bool in ``view``) and its (K, D) canonical
    centres; None when the region or the rest of the view carries no embedding."""
    usable = _flat_covered(source, geometry[view], view)  # (H * W,)
    inside = _sample(np.flatnonzero(usable & region.reshape(-1)), max_pixels, rng)
    outside = _sample(np.flatnonzero(usable & ~region.reshape(-1)), CANONICAL_SAMPLES, rng)
    if len(inside) == 0 or len(outside) == 0:
        return None
    query = unit(source.embeddings(view, inside).astype(np.float64).mean(axis=0, keepdims=True))
    outside_embeddings = unit(source.embeddings(view, outside))
    return query, spherical_kmeans(outside_embeddings, CANONICAL_COUNT, seed=int(rng.integers(2**31)))


def _exemplar_iou(
    source: PixelEmbeddings,
    geometry: Sequence[ViewGeometry],
    query: tuple[np.ndarray, np.ndarray],
    region_view: int,
    region: np.ndarray,
    target_view: int,
    tolerance: float,
    max_pixels: int,
    min_region_pixels: int,
    rng: np.random.Generator,
) -> float | None:
    """IoU in ``target_view`` of the mask of an exemplar query (query, canonical) of ``region``
    with the region carried through the geometry; None where too little of it is seen."""
    import torch

    from cclgs_core.stages.relevance import relevance

    usable = _flat_covered(source, geometry[region_view], region_view)  # (H * W,)
    # Target pixels that the region's view sees too, and whether they land in the region.
    scored = _sample(np.flatnonzero(_flat_covered(source, geometry[target_view], target_view)), max_pixels, rng)
    seen, landed = carry_pixels(scored, geometry[target_view], geometry[region_view], tolerance)
    seen &= usable[landed]
    scored, truth = scored[seen], region.reshape(-1)[landed[seen]]  # (Q,), (Q,) bool
    if truth.sum() < min_region_pixels:
        return None
    query_embedding, canonical = query
    scores = relevance(
        torch.from_numpy(source.embeddings(target_view, scored)).float(),
        torch.from_numpy(query_embedding).float(),
        torch.from_numpy(canonical).float(),
    )[0].numpy()  # (Q,)
    predicted = scores > MASK_THRESHOLD
    return float((predicted & truth).sum() / (predicted | truth).sum())


def measure_consistency(
    source: PixelEmbeddings,
    geometry: Sequence[ViewGeometry],
    view_pairs: Sequence[tuple[int, int]],
    regions: Sequence[tuple[int, np.ndarray]] = (),
    tolerance: float = 0.03,
    max_pixels: int = 4000,
    anchor_count: int = 32,
    min_region_pixels: int = 20,
    seed: int = 0,
) -> ConsistencyReport:
    """The label-free consistency of ``source`` over ``view_pairs`` (u, v) of ``geometry``.

    regions: (view, (H, W) bool) exemplar regions; each is queried in the views paired with its
    own. tolerance: relative depth agreement of a seen point; max_pixels: pixels sampled per
    pair, per exemplar region and per exemplar target view. Returns a ConsistencyReport.
    """
    rng = np.random.default_rng(seed)
    labeller = _Labeller(source, geometry, anchor_count, seed)
    same_cos, shuffled_cos, same_label, shuffled_label = [], [], [], []
    for u, v in view_pairs:
        pixels_u = _sample(np.flatnonzero(_flat_covered(source, geometry[u], u)), max_pixels, rng)
        seen, pixels_v = carry_pixels(pixels_u, geometry[u], geometry[v], tolerance)
        seen &= _flat_covered(source, geometry[v], v)[pixels_v]
        pixels_u, pixels_v = pixels_u[seen], pixels_v[seen]
        if len(pixels_u) < 2:
            continue
        embeddings_u = unit(source.embeddings(u, pixels_u))  # (P, D)
        embeddings_v = unit(source.embeddings(v, pixels_v))  # (P, D)
        partners = rng.permutation(len(pixels_v))  # the shuffled, non-corresponding partners
        same_cos.append((embeddings_u * embeddings_v).sum(axis=1))
        shuffled_cos.append((embeddings_u * embeddings_v[partners]).sum(axis=1))
        labels_u = labeller(u, pixels_u, embeddings_u)
        labels_v = labeller(v, pixels_v, embeddings_v)
        same_label.append(labels_u == labels_v)
        shuffled_label.append(labels_u == labels_v[partners])
    if not same_cos:
        raise ValueError("no pair of views shares a surface point with an embedding in both; check the geometry")
    ious = []
    for region_view, region in regions:
        query = _exemplar_query(source, geometry, region_view, region, max_pixels, rng)
        if query is None:
            continue
        for u, v in view_pairs:
            if region_view not in (u, v):
                continue
            target_view = v if region_view == u else u
            iou = _exemplar_iou(
                source, geometry, query, region_view, region, target_view, tolerance, max_pixels, min_region_pixels, rng
            )
            if iou is not None:
                ious.append(iou)
    return ConsistencyReport(
        cos_corresponding=float(np.concatenate(same_cos).mean()),
        cos_shuffled=float(np.concatenate(shuffled_cos).mean()),
        label_agreement=float(np.concatenate(same_label).mean()),
        label_agreement_shuffled=float(np.concatenate(shuffled_label).mean()),
        label_kind=labeller.kind,
        exemplar_iou=float(np.mean(ious)) if ious else None,
        correspondences=int(sum(len(values) for values in same_cos)),
        view_pairs=len(same_cos),
        exemplars=len(ious),
    )
