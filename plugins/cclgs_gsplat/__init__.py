"""Built-in field backends (Gaussian rasterisers): reference, torch, cached, gsplat."""

from cclgs_core import hookimpl
from cclgs_gsplat.cached import CachedBackend
from cclgs_gsplat.gsplat_backend import GsplatBackend
from cclgs_gsplat.reference import ReferenceBackend
from cclgs_gsplat.torch_backend import TorchBackend


@hookimpl
def cclgs_register_field_backend(register):
    register("reference", ReferenceBackend)
    register("torch", TorchBackend)
    register("cached", CachedBackend)
    register("gsplat", GsplatBackend)
