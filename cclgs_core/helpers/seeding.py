"""Random initialisation that every process repeats exactly.

Every seeded model build goes through ``repeatable_initialisation``: the semantic field's
heads, the autoencoder, and the models that the OpenCLIP, SAM and SAM2 plugins build without a
checkpoint (``allow_random_weights``). Those must be the same network in every process:
``cclgs preprocess`` encodes the masks with it and ``cclgs query``, a later process, encodes the
text with it. Built from torch's global generator as it happens to be, two processes get two
different networks, and two identical queries give different answers.
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
