"""The emulated CUDA device (cclgs_core.testing.emulated_cuda) behaves as CUDA does where it matters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cclgs_core.testing.emulated_cuda import DeviceMixingError, emulated_cuda


def test_mixing_devices_and_numpy_raise_as_on_cuda():
    host = torch.ones(3)
    with emulated_cuda():
        device = host.to("cuda")
        assert device.device == torch.device("cuda", 0) and device.is_cuda and host.device.type == "cpu"
        with pytest.raises(DeviceMixingError, match="cuda:0 and cpu"):
            device + host
        with pytest.raises(TypeError, match="numpy"):
            device.numpy()
        with pytest.raises(TypeError, match="numpy"):
            np.asarray(device * 2)  # results of CUDA tensors are on CUDA
        assert (device * torch.tensor(2.0)).is_cuda  # a 0-dim CPU tensor is a scalar, as on CUDA
        back = device.cpu()
        assert back.numpy().tolist() == [1, 1, 1] and not back.is_cuda and device.is_cuda
        assert torch.zeros(2, device="cuda").is_cuda and torch.zeros(2).device.type == "cpu"
        assert torch.zeros(2, device=device.device).is_cuda and device[torch.tensor([0, 2])].is_cuda
        device.copy_(host)  # a copy between devices is allowed
    assert host.numpy().tolist() == [1, 1, 1]


def test_modules_parameters_and_gradients_move_together():
    with emulated_cuda():
        layer = torch.nn.Linear(3, 2).to("cuda")
        assert layer.weight.is_cuda and layer.bias.is_cuda
        optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
        inputs = torch.randn(4, 3).to("cuda")
        loss = layer(inputs).square().mean()
        loss.backward()
        assert layer.weight.grad.is_cuda
        optimizer.step()
        with pytest.raises(DeviceMixingError):
            layer(torch.randn(4, 3))  # a CPU batch into a CUDA layer
        host_layer = torch.nn.Linear(3, 2)
        with pytest.raises(DeviceMixingError):
            host_layer(inputs)
