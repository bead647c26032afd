"""Reproducible random streams keyed by values (seed, frame, level, ...), independent of call order."""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash(*keys: object) -> int:
    """A 64-bit integer from the ``repr`` of ``keys``; equal on every machine and Python run."""
    digest = hashlib.sha256(repr(keys).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def derived_rng(*keys: object) -> np.random.Generator:
    """A numpy generator seeded by ``keys``: the same keys always give the same stream."""
    return np.random.default_rng(stable_hash(*keys))
