"""Random initialisation that every process repeats exactly.

A model built at random initialisation (``allow_random_weights`` of the OpenCLIP, SAM and SAM2
plugins) must be the same network in every process: ``cclgs preprocess`` encodes the masks with
it and ``cclgs query``, a later process, encodes the text with it. Built from torch's global
generator as it happens to be, two processes get two different networks, and two identical
queries give different answers.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

#: The seed of torch's generator while a model is built at random initialisation.
RANDOM_WEIGHTS_SEED = 0


@contextmanager
def repeatable_initialisation(seed: int = RANDOM_WEIGHTS_SEED) -> Iterator[None]:
    """Inside, torch's CPU generator starts from ``seed``; outside, its state is as before.

    Build models on the CPU inside (they may move to a GPU afterwards): CUDA generators are not
    reseeded.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
