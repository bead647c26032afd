"""A CUDA device emulated on the CPU, so that tests without a GPU catch device mixing.

Inside ``emulated_cuda()``, torch reports one CUDA device. Tensors moved or created there
(``.to("cuda")``, ``.cuda()``, ``device="cuda"``) stay in CPU memory but are marked as CUDA
tensors: they report ``device`` cuda:0, refuse ``.numpy()``, and an operation that mixes them
with CPU tensors raises as CUDA does. ``.cpu()`` and ``.to("cpu")`` return unmarked copies.
Results of operations on marked tensors are marked, and so are the gradients autograd
accumulates into marked leaves. What CUDA allows stays allowed: 0-dim CPU tensors as scalars,
copies between devices (``copy_``, ``to``) and indexing a CUDA tensor with CPU indices.

Marks belong to storages (kept alive while marked, so an address is never reused), so views,
``param.data = ...`` and ``Module.to`` keep them; sparse tensors are marked by identity.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Iterator
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")

#: Functions that may take tensors of both devices, as they may on CUDA.
_CROSS_DEVICE = {
    torch.Tensor.copy_,
    torch.Tensor.__getitem__,
    torch.Tensor.__setitem__,
    torch.Tensor.__repr__,
    torch.Tensor.__format__,
    torch._has_compatible_shallow_copy_type,  # Module._apply, before it swaps a parameter's data
}
_DEVICE_GETTER = torch.Tensor.device.__get__
_IS_CUDA_GETTER = torch.Tensor.is_cuda.__get__
_DATA_SETTER = torch.Tensor.data.__set__


class DeviceMixingError(RuntimeError):
    """What CUDA raises when one operation gets tensors of two devices."""


class _EmulatedCuda(TorchFunctionMode):
    """The torch function mode behind ``emulated_cuda``: it marks CUDA tensors and checks every call."""

    def __init__(self) -> None:
        super().__init__()
        self._storages: dict[int, Any] = {}  # data pointer -> storage, kept alive
        # by identity (tensors compare elementwise, so no WeakSet): id -> weak reference
        self._by_identity: dict[int, weakref.ref] = {}
        self._leaves: dict[int, weakref.ref] = {}

    # -- marks -------------------------------------------------------------------------------

    def on_cuda(self, tensor: torch.Tensor) -> bool:
        """Whether ``tensor`` is (emulated to be) on the CUDA device."""
        if tensor.layout == torch.strided:
            pointer = tensor.untyped_storage().data_ptr()
            if pointer != 0:
                return pointer in self._storages
        reference = self._by_identity.get(id(tensor))
        return reference is not None and reference() is tensor

    def _mark(self, tensor: torch.Tensor) -> None:
        if tensor.layout == torch.strided and tensor.untyped_storage().data_ptr() != 0:
            storage = tensor.untyped_storage()
            self._storages[storage.data_ptr()] = storage
        else:  # sparse, or empty with no storage to mark
            self._by_identity[id(tensor)] = weakref.ref(tensor)

    def _mark_all(self, result: Any) -> Any:
        for value in tree_flatten(result)[0]:
            if isinstance(value, torch.Tensor):
                self._mark(value)
        return result

    # -- dispatch ----------------------------------------------------------------------------

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func == _DEVICE_GETTER:  # property getters arrive as new method-wrappers each time: compare, not `is`
            return CUDA if self.on_cuda(args[0]) else func(*args)
        if func == _IS_CUDA_GETTER:
            return self.on_cuda(args[0])
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and self.on_cuda(args[0]):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first (emulated CUDA)")
        if func is torch.Tensor.cpu:
            return self._to_cpu(func(*args, **kwargs), args[0])
        if func is torch.Tensor.cuda:
            return self._to_cuda(args[0].clone() if not self.on_cuda(args[0]) else args[0])
        if func is torch.Tensor.to:
            return self._to(func, args, kwargs)
        if func in (torch.Tensor.backward, torch.autograd.backward):
            result = func(*args, **kwargs)
            self._mark_gradients()
            return result

        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "cuda":  # a factory asked for CUDA
            kwargs = {**kwargs, "device": CPU}
            result = func(*args, **kwargs)
            inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            if any(_shares_storage(result, t) for t in inputs):
                result = result.clone()
            return self._mark_all(result)

        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_cuda = [self.on_cuda(t) for t in tensors]
        if any(on_cuda):
            if func not in _CROSS_DEVICE and func != _DATA_SETTER:
                for tensor, marked in zip(tensors, on_cuda):
                    if not marked and tensor.dim() > 0:
                        name = getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))
                        raise DeviceMixingError(
                            f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 "
                            f"and cpu! (emulated CUDA, in {name}, a CPU tensor of shape {tuple(tensor.shape)})"
                        )
            for tensor, marked in zip(tensors, on_cuda):
                if marked and tensor.requires_grad and tensor.is_leaf:
                    self._leaves[id(tensor)] = weakref.ref(tensor)
            return self._mark_all(func(*args, **kwargs))
        return func(*args, **kwargs)

    def _to(self, func, args, kwargs):
        target = _target_device(args[1:], kwargs)
        if target is None:  # a dtype change: stays where it is
            result = func(*args, **kwargs)
            return self._mark_all(result) if self.on_cuda(args[0]) else result
        rest = [CPU if _is_device(value) else value for value in args[1:]]
        result = func(args[0], *rest, **{k: (CPU if k == "device" else v) for k, v in kwargs.items()})
        if target.type == "cuda":
            if self.on_cuda(args[0]):
                return result
            return self._to_cuda(result.clone() if _shares_storage(result, args[0]) else result)
        return self._to_cpu(result, args[0])

    def _to_cuda(self, tensor: torch.Tensor) -> torch.Tensor:
        self._mark(tensor)
        return tensor

    def _to_cpu(self, result: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """An unmarked tensor: a copy when the source was on CUDA (as the transfer would make)."""
        return result.clone() if self.on_cuda(source) and _shares_storage(result, source) else result

    def _mark_gradients(self) -> None:
        for reference in list(self._leaves.values()):
            leaf = reference()
            if leaf is not None and leaf.grad is not None and not self.on_cuda(leaf.grad):
                self._mark(leaf.grad)


def _is_device(value: Any) -> bool:
    if isinstance(value, torch.device):
        return True
    if isinstance(value, str):
        try:
            torch.device(value)
        except RuntimeError:
            return False
        return True
    return False


def _target_device(args: tuple, kwargs: dict) -> torch.device | None:
    """The device ``Tensor.to`` was asked for (from a device, a string or another tensor), or None."""
    for value in list(args) + [kwargs.get("device"), kwargs.get("other")]:
        if isinstance(value, torch.Tensor):
            return value.device  # under the mode: cuda:0 for a marked tensor
        if value is not None and _is_device(value):
            return torch.device(value)
    return None


def _shares_storage(result: Any, tensor: torch.Tensor) -> bool:
    if not isinstance(result, torch.Tensor) or result.layout != torch.strided or tensor.layout != torch.strided:
        return False
    pointer = result.untyped_storage().data_ptr()
    return pointer != 0 and pointer == tensor.untyped_storage().data_ptr()


@contextlib.contextmanager
def emulated_cuda() -> Iterator[_EmulatedCuda]:
    """Within: torch sees one CUDA device, emulated on the CPU (see the module's docstring)."""
    mode = _EmulatedCuda()
    with (
        mock.patch.object(torch.cuda, "is_available", lambda: True),
        mock.patch.object(torch.cuda, "device_count", lambda: 1),
        mock.patch.object(torch.cuda, "get_device_name", lambda device=None: "emulated CUDA device"),
        mock.patch.object(torch.cuda, "get_device_capability", lambda device=None: (9, 0)),
        # optimizers ask the CUDA driver whether a graph is being captured
        mock.patch.object(torch.optim.Optimizer, "_accelerator_graph_capture_health_check", lambda self: None),
        mode,
    ):
        yield mode
