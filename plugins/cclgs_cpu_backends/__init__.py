"""Field backends written in plain PyTorch, which run on the CPU: ``reference`` (one Gaussian at a
time, the ground truth of the others), ``torch`` (tiled and differentiable) and ``cached``
(blending weights precomputed once for frozen geometry)."""

from cclgs_core import hookimpl
from cclgs_cpu_backends.cached import CachedBackend
from cclgs_cpu_backends.reference import ReferenceBackend
from cclgs_cpu_backends.torch_backend import TorchBackend


@hookimpl
def cclgs_register_field_backend(register):
    register("reference", ReferenceBackend)
    register("torch", TorchBackend)
    register("cached", CachedBackend)
