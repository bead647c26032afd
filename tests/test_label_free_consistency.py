"""The label-free consistency measure (cclgs_core.evaluation.consistency) checked against the
synthetic world's ground truth: its correspondences land on the same instance, and it ranks
embeddings that agree across views above the same embeddings with cross-view conflicts."""

from __future__ import annotations

import numpy as np
import pytest

from cclgs_core.evaluation.consistency import MaskEmbeddings, measure_consistency, spherical_kmeans, unit
from cclgs_core.scene.correspondence import carry_pixels, neighbouring_view_pairs, render_geometry

DIMENSION = 64


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(geometry, instance maps, view pairs) of a small synthetic world, depth from its Gaussians."""
    from cclgs_core.datasets import load_scene
    from cclgs_core.evaluation.labelmaps import read_label_map
    from cclgs_core.plumbing.registry import get_registry
    from cclgs_core.scene.ply import read_gaussians
    from cclgs_synthetic.world import generate_world

    root = generate_world(
        tmp_path_factory.mktemp("consistency") / "world", objects=4, width=64, height=64, train_views=10, test_views=0
    )
    scene = load_scene(root)
    cameras = [frame.camera for frame in scene.frames]
    backend = get_registry().create("field_backend", "torch")
    geometry = render_geometry(read_gaussians(scene.gaussians_path), cameras, backend)
    instances = [read_label_map(frame.ground_truth["instance"]) for frame in scene.frames]  # (H, W) ids, -1 none
    return geometry, instances, neighbouring_view_pairs(cameras, 3)


def instance_embeddings(instances, conflict: float, seed: int) -> MaskEmbeddings:
    """Every instance's pixels carry one random unit vector (ground-truth consistent), except
    that with probability ``conflict`` a view gives an instance the vector of another one: the
    cross-view semantic conflicts the contrastive codebook is meant to resolve."""
    rng = np.random.default_rng(seed)
    count = max(int(labels.max()) for labels in instances) + 1
    shared = unit(rng.normal(size=(count, DIMENSION)))  # (I, D)
    per_view = []
    for _ in instances:
        chosen = np.arange(count)
        swapped = rng.random(count) < conflict
        chosen[swapped] = (chosen[swapped] + rng.integers(1, count, size=int(swapped.sum()))) % count
        per_view.append(shared[chosen])
    return MaskEmbeddings(segments=instances, mask_embeddings=per_view)


def test_correspondences_land_on_the_same_instance(world):
    geometry, instances, pairs = world
    matched = same = 0
    for u, v in pairs:
        pixels = np.flatnonzero(geometry[u].valid & (instances[u] >= 0))
        seen, landed = carry_pixels(pixels, geometry[u], geometry[v], tolerance=0.03)
        matched += int(seen.sum())
        same += int((instances[u].reshape(-1)[pixels[seen]] == instances[v].reshape(-1)[landed[seen]]).sum())
    assert matched > 1000
    assert same / matched > 0.95


def test_the_measure_ranks_consistent_embeddings_above_noisy_ones(world):
    geometry, instances, pairs = world
    regions = [(view, labels == instance) for view, labels in enumerate(instances) for instance in np.unique(labels)]
    regions = [(view, region) for view, region in regions if region.sum() >= 40]
    consistent, some, many = (
        measure_consistency(instance_embeddings(instances, conflict, seed=1), geometry, pairs, regions)
        for conflict in (0.0, 0.25, 0.5)
    )
    # Ground truth: one vector per instance agrees wherever the correspondences are right.
    assert consistent.cos_corresponding > 0.95 and consistent.label_agreement > 0.95
    assert consistent.exemplar_iou > 0.9 and consistent.exemplars >= 10
    assert consistent.label_kind.startswith("nearest of")
    # More conflicts rank lower on every figure, by clear margins.
    for better, worse in ((consistent, some), (some, many)):
        assert better.cos_gap > worse.cos_gap + 0.15
        assert better.label_agreement > worse.label_agreement + 0.2
        assert better.exemplar_iou > worse.exemplar_iou + 0.2
    # Shuffled partners are the chance level: well below the corresponding pairs when consistent.
    assert consistent.label_agreement_shuffled < consistent.label_agreement - 0.3


def test_a_source_with_its_own_labels_is_compared_by_them(world):
    geometry, instances, pairs = world
    source = instance_embeddings(instances, 0.0, seed=2)
    source.mask_labels = [np.arange(len(embeddings)) for embeddings in source.mask_embeddings]
    report = measure_consistency(source, geometry, pairs)
    assert report.label_kind == "argmax prototype"
    assert report.label_agreement > 0.95 and report.exemplar_iou is None


def test_spherical_kmeans_finds_separated_directions():
    rng = np.random.default_rng(0)
    directions = unit(rng.normal(size=(4, 8)))
    samples = unit(np.repeat(directions, 50, axis=0) + 0.05 * rng.normal(size=(200, 8)))
    centres = spherical_kmeans(samples, 4, seed=0)
    assert centres.shape == (4, 8)
    assert (directions @ centres.T).max(axis=1).min() > 0.99
