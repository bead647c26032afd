"""Relevance of a text query (docs/design.md, "Queries"): pairwise softmax against canonical
phrases, minimum over them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cclgs_core.stages.relevance import relevance, relevance_in_chunks, text_embeddings


def test_relevance_matches_a_hand_computed_pairwise_softmax():
    embeddings = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0]])  # (P=3, D=3)
    queries = torch.tensor([[1.0, 0.0, 0.0]])  # (T=1, D)
    canonical = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # (K=2, D)
    scores = relevance(embeddings, queries, canonical)
    assert scores.shape == (1, 3)
    # pixel 0: cos_q = 1, cos_k = (0, 0) -> softmax(10, 0) = 1 / (1 + e^-10) for both phrases
    assert scores[0, 0] == pytest.approx(1 / (1 + math.exp(-10)))
    # pixel 1: cos_q = 0, phrase 0 has cos 1 -> 1 / (1 + e^10); phrase 1 gives 0.5; the minimum wins
    assert scores[0, 1] == pytest.approx(1 / (1 + math.exp(10)))
    # pixel 2: cos_q = 0.6, phrase 0 has 0.8 -> e^6 / (e^6 + e^8)
    assert scores[0, 2] == pytest.approx(math.exp(6) / (math.exp(6) + math.exp(8)), rel=1e-5)


def test_relevance_is_half_when_the_query_is_a_canonical_phrase():
    rng = np.random.default_rng(0)
    embeddings = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(50, 8)), dtype=torch.float32), dim=1)
    phrase = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(1, 8)), dtype=torch.float32), dim=1)
    others = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(3, 8)), dtype=torch.float32), dim=1)
    scores = relevance(embeddings, phrase, torch.cat([phrase, others]))
    assert torch.all(scores <= 0.5 + 1e-6)
    assert torch.allclose(relevance(embeddings, phrase, phrase), torch.full((1, 50), 0.5))


def test_several_queries_and_chunks_agree_with_one_pass():
    rng = np.random.default_rng(1)
    embeddings = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(1000, 16)), dtype=torch.float32), dim=1)
    queries = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(3, 16)), dtype=torch.float32), dim=1)
    canonical = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(4, 16)), dtype=torch.float32), dim=1)
    whole = relevance(embeddings, queries, canonical)  # (3, 1000)
    chunked = relevance_in_chunks(lambda start, stop: embeddings[start:stop], 1000, queries, canonical, chunk=64)
    assert whole.shape == chunked.shape == (3, 1000)
    assert torch.allclose(whole, chunked)
    assert torch.allclose(whole[1], relevance(embeddings, queries[1:2], canonical)[0])


def test_relevance_needs_a_canonical_phrase():
    with pytest.raises(ValueError, match="canonical"):
        relevance(torch.ones(2, 3), torch.ones(1, 3), torch.ones(0, 3))


def test_text_embeddings_split_queries_from_canonical_phrases():
    class Extractor:
        dim = 4
        canonical_phrases = ("object", "things")

        def encode_texts(self, texts):
            vocabulary = ["mug", "bowl", "object", "things"]
            return np.eye(4, dtype=np.float32)[[vocabulary.index(text) for text in texts]]

    queries, canonical = text_embeddings(Extractor(), ["bowl", "mug"])
    assert torch.equal(queries, torch.eye(4)[[1, 0]])
    assert torch.equal(canonical, torch.eye(4)[[2, 3]])
