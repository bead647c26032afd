"""The codebook compressors (ccl, codebook) and the autoencoder on crafted features."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from cclgs_autoencoder import AutoencoderCompressor
from cclgs_codebook import ContrastiveCodebook, PlainCodebook
from cclgs_codebook.codebook import codebook_losses, kmeans_plus_plus
from cclgs_core.errors import ConfigError, DataError, PluginError
from cclgs_core.interfaces import FeatureCompressor
from cclgs_core.plumbing.registry import get_registry

MARGIN = 0.7


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: extra threads only add contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def two_directions(cosine: float, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors (dim,) whose cosine is ``cosine``."""
    rng = np.random.default_rng(seed)
    first = rng.normal(size=dim)
    first /= np.linalg.norm(first)
    other = rng.normal(size=dim)
    other -= first * (first @ other)
    other /= np.linalg.norm(other)
    return first, cosine * first + np.sqrt(1.0 - cosine**2) * other


def views_of(centers: list[np.ndarray], labels: list[int], views: int = 6, noise: float = 0.02, seed: int = 1):
    """Every view sees each center once, with a little noise: per view (M, D) features, (M,) labels."""
    rng = np.random.default_rng(seed)
    features, view_labels = [], []
    for _ in range(views):
        noisy = np.stack(centers) + noise * rng.normal(size=(len(centers), len(centers[0])))
        features.append((noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32))
        view_labels.append(np.array(labels, dtype=np.int64))
    return features, view_labels


def assigned_cosine(codebook: ContrastiveCodebook, first: np.ndarray, second: np.ndarray) -> float:
    """Cosine between the prototypes that two embeddings (D,) are assigned to."""
    prototypes = codebook.prototypes.numpy()
    indices = codebook.targets(np.stack([first, second]))
    return float(prototypes[indices[0]] @ prototypes[indices[1]])


def test_ccl_and_codebook_are_registered_with_their_defaults():
    registry = get_registry()
    ccl = registry.get("compressor", "ccl").options()
    plain = registry.get("compressor", "codebook").options()
    assert ccl["pull_weight"] == (float, 0.25) and ccl["push_weight"] == (float, 0.25)
    assert plain["pull_weight"] == (float, 0.0) and plain["push_weight"] == (float, 0.0)
    assert ccl["margin"] == plain["margin"] == (float, 0.7)
    assert ccl["lr"] == (float, 1e-3) and ccl["num_prototypes"] == (int, 128)
    assert inspect.signature(PlainCodebook).parameters["push_weight"].default == 0.0
    assert registry.get("compressor", "autoencoder").options()["encoder_dims"][1] == (256, 128, 64, 32, 3)
    for compressor in (ContrastiveCodebook(), PlainCodebook(), AutoencoderCompressor()):
        assert isinstance(compressor, FeatureCompressor)


def test_pull_draws_prototypes_of_one_track_together():
    # One object seen in two guises (cos 0.3) across views: two prototypes, one per guise.
    guise_a, guise_b = two_directions(0.3)
    features, labels = views_of([guise_a, guise_b], [0, 0])
    cosines = {}
    for weight in (0.0, 0.25, 4.0):
        codebook = ContrastiveCodebook(num_prototypes=2, pull_weight=weight, steps=1200)
        curves = codebook.fit(features, labels, seed=0)
        cosines[weight] = assigned_cosine(codebook, guise_a, guise_b)
        if weight:
            assert np.mean(curves["pull"][-50:]) < 0.6 * curves["pull"][0]
    assert cosines[0.0] < 0.35  # no pull: each prototype stays on its guise
    assert cosines[0.25] > 0.6  # the paper's weight: balanced against L_max
    assert cosines[4.0] > 0.98  # a strong pull: the two prototypes nearly coincide


def test_push_separates_prototypes_of_different_tracks_down_to_the_margin():
    # Two objects whose features are too similar (cos 0.9 > margin).
    first, second = two_directions(0.9)
    features, labels = views_of([first, second], [0, 1])
    plain = PlainCodebook(num_prototypes=2, steps=1200)
    plain.fit(features, labels, seed=0)
    ccl = ContrastiveCodebook(num_prototypes=2, steps=1200)
    curves = ccl.fit(features, labels, seed=0)
    assert assigned_cosine(plain, first, second) > 0.88
    # Below the margin the push has no gradient while L_max still pulls each prototype back to
    # its own features, so the pair settles at the margin; Adam's steps of about lr leave it
    # oscillating within a few thousandths of it.
    assert assigned_cosine(ccl, first, second) <= MARGIN + 5e-3
    assert curves["push"][0] > 0.15 and np.mean(curves["push"][-50:]) < 1e-3


def test_unlabelled_features_take_part_in_no_pair():
    generator = torch.Generator().manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(6, 8, generator=generator), dim=1)  # (6, 8)
    prototypes = torch.randn(6, 8, generator=generator)  # (6, 8): likely one per feature
    labels = torch.tensor([0, 0, 1, 1, -1, -1])
    l_max, l_pull, l_push = codebook_losses(features, labels, prototypes, MARGIN)
    max_4, pull_4, push_4 = codebook_losses(features[:4], labels[:4], prototypes, MARGIN)
    assert torch.allclose(l_pull, pull_4) and torch.allclose(l_push, push_4)
    assert l_pull > 0 and l_push > 0
    assert not torch.allclose(l_max, max_4)  # the unlabelled features still shape L_max
    relabelled = labels.clone()
    relabelled[4] = 0
    assert not torch.allclose(codebook_losses(features, relabelled, prototypes, MARGIN)[1], l_pull)


def test_relabelling_a_track_as_unlabelled_removes_its_push():
    first, second = two_directions(0.9)
    features, labels = views_of([first, second], [0, -1])
    ccl = ContrastiveCodebook(num_prototypes=2, steps=600)
    ccl.fit(features, labels, seed=0)
    plain = PlainCodebook(num_prototypes=2, steps=600)
    plain.fit(features, labels, seed=0)
    assert torch.allclose(ccl.prototypes, plain.prototypes, atol=1e-6)
    assert assigned_cosine(ccl, first, second) > 0.88


def clusters(count: int = 6, dim: int = 16, views: int = 8, noise: float = 0.15, seed: int = 3):
    rng = np.random.default_rng(seed)
    centers = list(rng.normal(size=(count, dim)))
    return views_of([c / np.linalg.norm(c) for c in centers], list(range(count)), views=views, noise=noise, seed=seed)


def test_plain_codebook_loss_falls():
    features, labels = clusters()
    curves = PlainCodebook(num_prototypes=6, steps=400).fit(features, labels, seed=0)
    assert set(curves) == {"total", "max", "pull", "push"}
    assert np.mean(curves["total"][-20:]) < 0.8 * np.mean(curves["total"][:5])
    assert curves["total"] == curves["max"]


def test_fit_is_deterministic_for_a_seed():
    features, labels = clusters()
    states = []
    for seed in (5, 5, 6):
        codebook = ContrastiveCodebook(num_prototypes=6, steps=100, batch_size=16)
        codebook.fit(features, labels, seed=seed)
        states.append(codebook.state_dict()["prototypes"])
    assert torch.equal(states[0], states[1])
    assert not torch.equal(states[0], states[2])


def test_targets_head_decode_and_state_round_trip():
    features, labels = clusters()
    codebook = ContrastiveCodebook(num_prototypes=6, steps=200)
    codebook.fit(features, labels, seed=0)
    every = np.concatenate(features)  # (48, 16)
    indices = codebook.targets(every)
    assert indices.dtype == np.int64 and indices.shape == (48,)
    assert len(set(indices.tolist())) == 6  # one prototype per cluster
    logits = torch.nn.functional.one_hot(torch.from_numpy(indices), codebook.output_size).float() * 5.0  # (48, 6)
    decoded = codebook.decode(logits)  # (48, 16)
    assert torch.allclose(decoded.norm(dim=1), torch.ones(48), atol=1e-5)
    assert np.array_equal(codebook.targets(decoded.numpy()), indices)
    assert torch.allclose(decoded, codebook.prototypes[torch.from_numpy(indices)])
    assert codebook.targets(np.zeros((0, 16), dtype=np.float32)).shape == (0,)

    head = codebook.make_head(8)
    outputs = head(torch.randn(5, 8))  # (5, 6)
    assert outputs.shape == (5, 6)
    loss = codebook.loss(outputs, torch.from_numpy(indices[:5]))
    loss.backward()
    assert loss.ndim == 0 and head[0].weight.grad is not None

    restored = PlainCodebook(num_prototypes=6)
    restored.load_state_dict(codebook.state_dict())
    assert np.array_equal(restored.targets(every), indices)
    with pytest.raises(DataError, match="dimension"):
        restored.targets(np.ones((2, 5), dtype=np.float32))


def test_expected_decode_mixes_prototypes_by_probability():
    features, labels = clusters()
    argmax = ContrastiveCodebook(num_prototypes=6, steps=50)
    argmax.fit(features, labels, seed=0)
    expected = ContrastiveCodebook(num_prototypes=6, steps=50, decode_rule="expected")
    expected.load_state_dict(argmax.state_dict())
    prototypes = argmax.prototypes  # (6, 16)
    # 0 at one index and -inf elsewhere: the prototype itself under both rules.
    certain = torch.full((6, 6), float("-inf")).fill_diagonal_(0.0)
    assert torch.allclose(expected.decode(certain), prototypes, atol=1e-6)
    assert torch.allclose(argmax.decode(certain), prototypes)
    # Torn evenly between prototypes 0 and 1: the renormalised midpoint, not one of them.
    torn = torch.tensor([[2.0, 2.0, -30.0, -30.0, -30.0, -30.0]])
    midpoint = torch.nn.functional.normalize(prototypes[:2].mean(dim=0, keepdim=True), dim=1)
    assert torch.allclose(expected.decode(torn), midpoint, atol=1e-5)
    assert torch.equal(argmax.decode(torn), prototypes[:1])
    with pytest.raises(ConfigError, match="decode_rule"):
        PlainCodebook(decode_rule="mean")


def test_prototypes_capped_by_distinct_features_and_seeded_on_them():
    points = np.eye(4, dtype=np.float32)[:3]  # three distinct unit features (3, 4)
    features = [points, points[::-1].copy()]
    labels = [np.array([0, 1, 2]), np.array([2, 1, 0])]
    seeds = kmeans_plus_plus(np.concatenate(features), 128, seed=0)
    assert seeds.shape == (3, 4)
    assert {tuple(row) for row in seeds} == {tuple(row) for row in points}
    codebook = PlainCodebook(steps=5)
    assert codebook.output_size == 128
    codebook.fit(features, labels, seed=0)
    assert codebook.output_size == 3


def test_codebook_errors():
    with pytest.raises(PluginError, match="fit"):
        ContrastiveCodebook().targets(np.ones((1, 4), dtype=np.float32))
    with pytest.raises(ConfigError, match="margin"):
        ContrastiveCodebook(margin=2.0)
    with pytest.raises(DataError, match="labels"):
        ContrastiveCodebook().fit([np.eye(3, dtype=np.float32)], [np.zeros(2, dtype=np.int64)], seed=0)
    with pytest.raises(DataError, match="no features"):
        ContrastiveCodebook().fit([np.zeros((0, 3), dtype=np.float32)], [np.zeros(0, dtype=np.int64)], seed=0)


def reconstruction_cosine(autoencoder: AutoencoderCompressor, features: np.ndarray) -> float:
    decoded = autoencoder.decode(torch.from_numpy(autoencoder.targets(features))).numpy()
    return float(np.mean(np.sum(decoded * features, axis=1)))


def test_autoencoder_learns_to_reconstruct():
    # noise 0.03 per coordinate: a feature's cosine with its cluster centre is about 0.97
    features, labels = clusters(count=8, dim=64, views=10, noise=0.03)
    every = np.concatenate(features)  # (80, 64)
    untrained = AutoencoderCompressor(steps=1, batch_size=64)
    untrained.fit(features, labels, seed=0)
    trained = AutoencoderCompressor(steps=300, batch_size=64)
    curves = trained.fit(features, labels, seed=0)
    assert set(curves) == {"total", "l2", "cos"}
    assert reconstruction_cosine(untrained, every) < 0.3
    assert reconstruction_cosine(trained, every) > 0.9
    assert np.mean(curves["total"][-20:]) < 0.2 * curves["total"][0]


def test_autoencoder_targets_head_decode_and_state_round_trip():
    features, labels = clusters(count=4, dim=32, views=4)
    every = np.concatenate(features)  # (16, 32)
    autoencoder = AutoencoderCompressor(steps=20, batch_size=8)
    autoencoder.fit(features, labels, seed=0)
    latents = autoencoder.targets(every)
    assert latents.shape == (16, 3) and latents.dtype == np.float32
    assert np.allclose(np.linalg.norm(latents, axis=1), 1.0, atol=1e-5)
    assert autoencoder.targets(np.zeros((0, 32), dtype=np.float32)).shape == (0, 3)
    decoded = autoencoder.decode(torch.from_numpy(latents))
    assert decoded.shape == (16, 32)
    assert torch.allclose(decoded.norm(dim=1), torch.ones(16), atol=1e-5)

    head = autoencoder.make_head(8)
    outputs = head(torch.randn(16, 8))  # (16, 3)
    loss = autoencoder.loss(outputs, torch.from_numpy(latents))
    assert outputs.shape == (16, 3) and loss.ndim == 0
    assert torch.isclose(loss, (outputs - torch.from_numpy(latents)).abs().mean())

    restored = AutoencoderCompressor()
    restored.load_state_dict(autoencoder.state_dict())
    assert np.array_equal(restored.targets(every), latents)
    again = AutoencoderCompressor(steps=20, batch_size=8)
    again.fit(features, labels, seed=0)
    assert all(torch.equal(value, again.state_dict()[key]) for key, value in autoencoder.state_dict().items())
    with pytest.raises(PluginError, match="encoder_dims"):
        AutoencoderCompressor(encoder_dims=(16, 3)).load_state_dict(autoencoder.state_dict())
