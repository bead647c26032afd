"""Contrastive codebook learning (CCL-LGS, docs/design.md, "Contrastive codebook").

A codebook T of N prototypes lives in the extractor's embedding space; cosines use the
L2-normalised prototypes. For a feature F_i with nearest prototype j_i = argmax_j cos(F_i, T_j):

    L_max  = 1 - cos(F_i, T_{j_i})
    L_pull = 1 - cos(T_{j_i}, T_{j_k})               for pairs with y_i = y_k != -1
    L_push = ReLU(cos(T_{j_i}, T_{j_k}) - margin)    for pairs with y_i != y_k, both != -1
    L      = L_max + pull_weight * L_pull + push_weight * L_push

with the paper's margin 0.7, weights 0.25 and Adam (lr 1e-3, betas 0.9, 0.999). A feature
labelled -1 enters L_max only. "codebook" is the same model with both weights 0 (the paper's
"codebook only" ablation).

Choices the paper leaves open, made here:

- N = 128 prototypes by default, LEGaussians' codebook size; fewer when the level has fewer
  distinct features, since a prototype no feature can reach is never trained.
- Initialisation: k-means++ seeding on the level's features (squared Euclidean distance of
  unit vectors, 2 - 2 cos; duplicates weighted by their count), from ``numpy`` seeded by
  ``seed``. Prototypes start on real features spread over the data, so none starts dead.
- Pair sampling: each step draws ``batch_size`` = 512 features without replacement, uniformly
  from all views of the level (all of them when there are fewer), and uses every unordered
  pair of the batch. L_pull and L_push are means over their valid pairs (0 when a batch has
  none), so the weights keep their meaning whatever the batch size. Two features assigned to
  the same prototype have cosine exactly 1 and give no gradient, as the formula implies.
  Uniform draws across views make cross-view pairs of one track the common case for a track
  seen in many views, which is what the pull term is for.
- Steps: 2000. Adam moves each prototype coordinate by about lr per step, so 2000 steps let a
  prototype turn by well over a radian, and at batch 512 they visit a 30,000-feature level
  (about 300 views x 100 masks) some 34 times. Such a level takes about half a minute on one
  busy CPU core (k-means++ about 4 s, a step about 11 ms).
- Training runs on the CPU in float32 and is bit-for-bit deterministic for a given seed.
- Head for the field: field_dim -> ``head_hidden`` (128) -> ReLU -> N logits; the field's loss
  is cross-entropy against the prototype index of each covered pixel (callers pass only pixels
  covered by a mask).
- Decoding a pixel's logits (``decode_rule``): "argmax", the paper's rule and the default, takes
  the most likely prototype; "expected" takes the probability-weighted mean of the prototypes,
  renormalised, so that a pixel torn between two prototypes decodes between them instead of
  jumping to one. Logits of 0 at one index and -inf elsewhere decode to that prototype under
  both rules.

torch is imported inside the functions that use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from cclgs_core import ConfigError, DataError, PluginError

if TYPE_CHECKING:
    import torch


#: How a pixel's prototype logits become an embedding (see the module docstring).
DECODE_RULES = ("argmax", "expected")


class ContrastiveCodebook:
    """CCL: a codebook trained with L_max plus the pull and push terms over track labels.

    num_prototypes: capacity N of the codebook (capped by the number of distinct features)
    pull_weight:    weight of L_pull (0.25 in the paper)
    push_weight:    weight of L_push (0.25 in the paper)
    margin:         cosine above which prototypes of different tracks are pushed apart
    steps:          optimisation steps
    batch_size:     features per step; every pair in the batch is compared
    lr:             Adam learning rate
    head_hidden:    hidden width of the field's decoder head
    decode_rule:    "argmax" (the paper's) or "expected" (probability-weighted prototypes)
    """

    target_kind: Literal["index", "latent"] = "index"

    def __init__(
        self,
        num_prototypes: int = 128,
        pull_weight: float = 0.25,
        push_weight: float = 0.25,
        margin: float = 0.7,
        steps: int = 2000,
        batch_size: int = 512,
        lr: float = 1e-3,
        head_hidden: int = 128,
        decode_rule: str = "argmax",
    ):
        _require(num_prototypes >= 1, f"num_prototypes must be >= 1 (got {num_prototypes})")
        _require(pull_weight >= 0 and push_weight >= 0, "pull_weight and push_weight must be >= 0")
        _require(-1.0 <= margin <= 1.0, f"margin is a cosine and must lie in [-1, 1] (got {margin})")
        _require(steps >= 1, f"steps must be >= 1 (got {steps})")
        _require(batch_size >= 2, f"batch_size must be >= 2, as pairs are drawn within a batch (got {batch_size})")
        _require(lr > 0, f"lr must be > 0 (got {lr})")
        _require(head_hidden >= 1, f"head_hidden must be >= 1 (got {head_hidden})")
        _require(
            decode_rule in DECODE_RULES, f"decode_rule must be one of {', '.join(DECODE_RULES)} (got {decode_rule!r})"
        )
        self.num_prototypes = num_prototypes
        self.pull_weight = pull_weight
        self.push_weight = push_weight
        self.margin = margin
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.head_hidden = head_hidden
        self.decode_rule = decode_rule
        self._prototypes: "torch.Tensor | None" = None  # (L, D) float32 unit rows

    @property
    def output_size(self) -> int:
        """L: the learned prototype count after ``fit``; the capacity N before."""
        return self.num_prototypes if self._prototypes is None else int(self._prototypes.shape[0])

    @property
    def prototypes(self) -> "torch.Tensor":
        """(L, D) float32 unit prototypes."""
        if self._prototypes is None:
            raise PluginError(f"{type(self).__name__} has no codebook yet: call fit() or load_state_dict() first")
        return self._prototypes

    def fit(self, features: Sequence[np.ndarray], labels: Sequence[np.ndarray], seed: int) -> dict[str, list[float]]:
        """features: per view (M_t, D) unit rows; labels: per view (M_t,) int64, -1 for none.
        Returns per-step loss curves "total", "max", "pull", "push"."""
        import torch
        import torch.nn.functional as F

        stacked, stacked_labels = _stack_views(features, labels)
        initial = kmeans_plus_plus(stacked, self.num_prototypes, seed)  # (L, D)
        all_features = torch.from_numpy(stacked)  # (n, D)
        all_labels = torch.from_numpy(stacked_labels)  # (n,)
        parameters = torch.nn.Parameter(torch.from_numpy(initial))
        optimizer = torch.optim.Adam([parameters], lr=self.lr, betas=(0.9, 0.999))
        generator = torch.Generator().manual_seed(seed)
        curves: dict[str, list[float]] = {"total": [], "max": [], "pull": [], "push": []}
        for _ in range(self.steps):
            batch = torch.randperm(len(all_features), generator=generator)[: self.batch_size]
            l_max, l_pull, l_push = codebook_losses(all_features[batch], all_labels[batch], parameters, self.margin)
            total = l_max + self.pull_weight * l_pull + self.push_weight * l_push
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            for key, value in (("total", total), ("max", l_max), ("pull", l_pull), ("push", l_push)):
                curves[key].append(float(value.detach()))
        self._prototypes = F.normalize(parameters.detach(), dim=1).contiguous()
        return curves

    def targets(self, features: np.ndarray) -> np.ndarray:
        """features: (M, D). Returns (M,) int64 index of the nearest prototype by cosine."""
        prototypes = self.prototypes.numpy()
        features = _as_features(features, prototypes.shape[1])
        if len(features) == 0:
            return np.zeros(0, dtype=np.int64)
        return (features @ prototypes.T).argmax(axis=1).astype(np.int64)

    def make_head(self, field_dim: int) -> "torch.nn.Module":
        """(P, field_dim) rendered features -> (P, L) prototype logits."""
        from torch import nn

        return nn.Sequential(
            nn.Linear(field_dim, self.head_hidden), nn.ReLU(), nn.Linear(self.head_hidden, self.output_size)
        )

    def loss(self, outputs: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        """outputs: (P, L) logits; targets: (P,) int64 prototype indices. Cross-entropy, a scalar."""
        import torch.nn.functional as F

        return F.cross_entropy(outputs, targets)

    def decode(self, outputs: "torch.Tensor") -> "torch.Tensor":
        """outputs: (P, L) logits -> (P, D) unit embeddings: each pixel's most likely prototype
        ("argmax") or its probability-weighted mean of the prototypes ("expected")."""
        import torch.nn.functional as F

        prototypes = self.prototypes.to(outputs.device)
        if self.decode_rule == "argmax":
            return prototypes[outputs.argmax(dim=1)]
        return F.normalize(outputs.softmax(dim=1) @ prototypes, dim=1)

    def state_dict(self) -> dict[str, "torch.Tensor"]:
        """{"prototypes": (L, D) float32 unit rows}."""
        return {"prototypes": self.prototypes.clone()}

    def load_state_dict(self, state: dict[str, "torch.Tensor"]) -> None:
        """state: {"prototypes": (L, D)}."""
        import torch.nn.functional as F

        prototypes = state.get("prototypes")
        if prototypes is None or prototypes.ndim != 2 or prototypes.shape[0] < 1:
            raise PluginError(
                f"{type(self).__name__}.load_state_dict needs 'prototypes' of shape (L, D); the cached state is not a "
                "codebook"
            )
        self._prototypes = F.normalize(prototypes.detach().float().cpu(), dim=1).contiguous()


class PlainCodebook(ContrastiveCodebook):
    """The "codebook only" ablation: ``ContrastiveCodebook`` with pull and push weights 0."""

    def __init__(
        self,
        num_prototypes: int = 128,
        pull_weight: float = 0.0,
        push_weight: float = 0.0,
        margin: float = 0.7,
        steps: int = 2000,
        batch_size: int = 512,
        lr: float = 1e-3,
        head_hidden: int = 128,
        decode_rule: str = "argmax",
    ):
        super().__init__(
            num_prototypes, pull_weight, push_weight, margin, steps, batch_size, lr, head_hidden, decode_rule
        )


def codebook_losses(
    features: "torch.Tensor", labels: "torch.Tensor", prototypes: "torch.Tensor", margin: float
) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """The three CCL terms on one batch.

    features:   (B, D) unit embeddings
    labels:     (B,) int64 track labels, -1 for none
    prototypes: (L, D) codebook (any norm; cosines use the normalised rows)
    returns:    scalar L_max (mean over features), L_pull and L_push (means over their pairs)
    """
    import torch
    import torch.nn.functional as F

    unit = F.normalize(prototypes, dim=1)  # (L, D)
    best_cosine, nearest = (features @ unit.T).max(dim=1)  # (B,), (B,)
    l_max = (1.0 - best_cosine).mean()

    # Prototype cosines with an exact, constant diagonal: two features that chose one
    # prototype have cosine 1 and give no gradient.
    same = torch.eye(len(unit), dtype=torch.bool)
    prototype_cosine = torch.where(same, torch.ones((), dtype=unit.dtype), unit @ unit.T)  # (L, L)
    pair_cosine = prototype_cosine[nearest[:, None], nearest[None, :]]  # (B, B)
    labelled = labels >= 0
    pairs = torch.triu(labelled[:, None] & labelled[None, :], diagonal=1)  # (B, B) each pair once
    same_track = labels[:, None] == labels[None, :]
    l_pull = _mean_or_zero(1.0 - pair_cosine[pairs & same_track])
    l_push = _mean_or_zero(torch.relu(pair_cosine[pairs & ~same_track] - margin))
    return l_max, l_pull, l_push


def kmeans_plus_plus(features: np.ndarray, count: int, seed: int) -> np.ndarray:
    """k-means++ seeding. features: (n, D) unit rows. Returns (L, D) float32 distinct rows of
    ``features``, L = min(count, number of distinct rows)."""
    distinct, weights = np.unique(features, axis=0, return_counts=True)
    points = np.ascontiguousarray(distinct, dtype=np.float32)  # (n_distinct, D)
    rng = np.random.default_rng(seed)
    chosen = [int(rng.choice(len(points), p=weights / weights.sum()))]
    nearest_sq = np.full(len(points), np.inf, dtype=np.float32)  # (n_distinct,) squared distance to the nearest seed
    while True:
        newest = chosen[-1]
        nearest_sq = np.minimum(nearest_sq, np.clip(2.0 - 2.0 * points @ points[newest], 0.0, None))
        nearest_sq[chosen] = 0.0
        mass = weights * nearest_sq.astype(np.float64)
        if len(chosen) == min(count, len(points)) or mass.sum() <= 0.0:
            break
        chosen.append(int(rng.choice(len(points), p=mass / mass.sum())))
    return points[chosen]


def _stack_views(features: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-view (M_t, D) features and (M_t,) labels -> (n, D) float32 unit rows, (n,) int64."""
    if len(features) != len(labels):
        raise DataError(
            f"codebook fit got features of {len(features)} views but labels of {len(labels)}; re-run the tracking stage"
        )
    dims = {np.shape(view)[1] for view in features if np.ndim(view) == 2}
    if len(dims) != 1:
        raise DataError("codebook fit needs per-view (M, D) features of one D; re-run the feature stage")
    for index, (view, view_labels) in enumerate(zip(features, labels)):
        if len(view) != len(view_labels):
            raise DataError(
                f"view {index}: {len(view)} features but {len(view_labels)} labels; re-run the tracking stage"
            )
    stacked = np.concatenate([np.asarray(view, dtype=np.float32) for view in features])
    if len(stacked) == 0:
        raise DataError("codebook fit got no features at all: every view has zero masks; check the mask stage")
    stacked = _as_features(stacked, stacked.shape[1])
    return stacked, np.concatenate([np.asarray(view, dtype=np.int64) for view in labels])


def _as_features(features: np.ndarray, dim: int) -> np.ndarray:
    """(M, D) any float -> (M, D) float32 unit rows; DataError on a wrong D or a zero row."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != dim:
        raise DataError(
            f"features of shape {features.shape} do not match the codebook's dimension {dim}; the feature stage and "
            "the codebook disagree"
        )
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise DataError("features contain zero or non-finite rows; re-run the feature stage")
    return features / norms


def _mean_or_zero(values: "torch.Tensor") -> "torch.Tensor":
    """Mean of a 1-d tensor, or 0 when it is empty."""
    return values.mean() if values.numel() else values.new_zeros(())


def _require(condition: bool, rule: str) -> None:
    """ConfigError naming the broken option rule unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"compressor option {rule}")
