"""Field backends against the dense reference (the contract), plus backend-specific behaviour."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cclgs_core.errors import PluginError
from cclgs_core.registry import PluginRegistry
from cclgs_core.testing.backends import (
    FieldBackendContract,
    contract_camera,
    contract_scene,
    reference_render,
)

_registry = PluginRegistry()


class TestReferenceBackend(FieldBackendContract):
    @pytest.fixture
    def backend(self):
        return _registry.create("field_backend", "reference")


class TestTorchBackend(FieldBackendContract):
    @pytest.fixture(params=[8, 16], ids=["tile8", "tile16"])
    def backend(self, request):
        # a small batch budget so that several tile batches (and their gradients) are combined
        return _registry.create("field_backend", "torch", {"tile_size": request.param, "batch_elements": 20_000})


class TestCachedBackend(FieldBackendContract):
    @pytest.fixture
    def backend(self):
        # top_k above the contract scenes' Gaussian counts: the truncation is exact
        return _registry.create("field_backend", "cached", {"top_k": 64})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
class TestGsplatBackend(FieldBackendContract):
    # gsplat cuts each Gaussian at 3 standard deviations (see GsplatBackend)
    forward_atol = 2e-2
    gradient_rtol = 5e-2

    @pytest.fixture
    def backend(self):
        return _registry.create("field_backend", "gsplat")

    @pytest.fixture
    def device(self):
        return "cuda"
