"""Relevance of a text query to per-pixel embeddings (docs/design.md, "Queries").

The practice of LERF and LangSplat: a pixel embedding ``e`` is compared with the query ``q``
and with each canonical phrase ``c_k`` ("object", "things", "stuff", "texture" for CLIP; a
feature extractor lists its own in ``canonical_phrases``). For every canonical phrase, a
two-way softmax over the cosine similarities, scaled by a temperature of 10, gives the
probability that the pixel is the query rather than that phrase::

    p_k = exp(10 cos(e, q)) / (exp(10 cos(e, q)) + exp(10 cos(e, c_k)))

and the relevance is the minimum over the phrases, ``min_k p_k``, in (0, 1): 0.5 means the
query explains the pixel no better than the most similar generic phrase; close to 1, much
better. Thresholding it gives a mask; the pixel with the highest relevance localises the query.

Shapes follow ``cclgs_core.types``: P pixels, D embedding dimension, T queries, and K canonical
phrases.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

#: The softmax temperature of LERF and LangSplat.
TEMPERATURE = 10.0


def relevance(
    embeddings: torch.Tensor, queries: torch.Tensor, canonical: torch.Tensor, temperature: float = TEMPERATURE
) -> torch.Tensor:
    """Pairwise-softmax relevance of each query at each pixel, minimum over the canonical phrases.

    embeddings: (P, D) pixel embeddings (unit rows, e.g. a compressor's ``decode`` output)
    queries:    (T, D) unit text embeddings of the queries
    canonical:  (K, D) unit text embeddings of the canonical phrases, K >= 1
    returns:    (T, P) relevance in (0, 1)
    """
    if canonical.shape[0] == 0:
        raise ValueError("relevance needs at least one canonical phrase to compare the query against")
    query_similarity = queries @ embeddings.T  # (T, P)
    canonical_similarity = canonical @ embeddings.T  # (K, P)
    # Two-way softmax of (query, phrase k): its first entry is sigmoid(t * (cos_q - cos_k)).
    pairwise = torch.sigmoid(
        temperature * (query_similarity[:, None, :] - canonical_similarity[None, :, :])
    )  # (T, K, P)
    return pairwise.min(dim=1).values


def text_embeddings(extractor: Any, queries: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed queries and the extractor's canonical phrases with ``extractor.encode_texts``.

    extractor: a FeatureExtractor (``encode_texts`` and ``canonical_phrases``)
    returns:   (T, D) query embeddings and (K, D) canonical embeddings, float32 unit rows
    """
    phrases = list(extractor.canonical_phrases)
    encoded = torch.as_tensor(extractor.encode_texts([*queries, *phrases]), dtype=torch.float32)  # (T + K, D)
    return encoded[: len(queries)], encoded[len(queries) :]


def relevance_in_chunks(
    embed: Any, count: int, queries: torch.Tensor, canonical: torch.Tensor, chunk: int = 65536
) -> torch.Tensor:
    """``relevance`` over many pixels without holding all (P, D) embeddings at once.

    embed:   callable (start, stop) -> (stop - start, D) unit embeddings of pixels [start, stop)
    count:   P, the number of pixels
    queries: (T, D); canonical: (K, D)
    returns: (T, P)
    """
    parts = []
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        embeddings = embed(start, stop)
        same = {"device": embeddings.device, "dtype": embeddings.dtype}
        parts.append(relevance(embeddings, queries.to(**same), canonical.to(**same)))
    if not parts:
        return queries.new_zeros((queries.shape[0], 0))
    return torch.cat(parts, dim=1)
